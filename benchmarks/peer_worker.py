"""A peer library's side of the benchmark, run inside that peer's own virtual environment.

Started by `peers.PeerProcess` as
`<peer venv>/bin/python benchmarks/peer_worker.py PEER WORKLOAD.npz`.
It loads the shared workload (weights and images written by the main process), then
answers one JSON request per line on stdin with one JSON line on its protocol channel
(the original stdout; everything else the libraries print goes to stderr):

    {"op": "info"}                                   -> {"versions": {...}}
    {"op": "occlusion", "patch": 8, "stride": 8, "reps": 3, "warmup": 0}
                                                     -> {"times": [seconds, ...]}
    {"op": "grad_cam", "reps": 3, "warmup": 0}       -> {"times": [...]}
    {"op": "method", "method": "smoothgrad", "options": {...}, "reps": 3, "warmup": 0}
                                                     -> {"times": [...]}
    {"op": "map", "method": "smoothgrad", "options": {...}, "path": "out.npy"}
                                                     -> {"shape": [...]} (the map, saved)
    {"op": "actmax", "layer": "conv3", "filters": [0, ...], "steps": 128, "reps": 3,
     "warmup": 0}                                    -> {"times": [...]}
    {"op": "actmax_images", ..., "path": "out.npy"}  -> {"shape": [...]} (the images, saved)
    {"op": "quit"}

`actmax` is the peer's activation maximisation of channels `filters` of `layer` (mean over
positions), one image per filter in one batch, `steps` steps, at the workload's image size.

`method` is one of the peer's `METHODS` (the names of `kcv.grad_cam` and `kcv.saliency`);
`options` carries the settings both sides share: `batch_size`, `samples`, `noise`, `steps`.

Between requests it blocks on stdin and uses no CPU, so the main process can time our
package in between: rounds of (ours, peer) alternate, and machine drift cancels.

Every tool explains the same model (ending in logits), the same 8 images, and class 0 for
every image (the cost does not depend on the class; tf-explain takes one class per call).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The protocol channel is a private copy of stdout; stdout itself goes to stderr, so the
# progress bars and prints of the libraries cannot corrupt the protocol.
_PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import timing  # noqa: E402
import workload  # noqa: E402

TARGET_CLASS = 0


def load_workload(path: str):
    data = np.load(path)
    arch = str(data["arch"]) if "arch" in data.files else "cnn"
    model = workload.build_model(arch, image_size=int(data["image_size"]))
    model.set_weights([data[f"w{i}"] for i in range(int(data["num_weights"]))])
    return model, data["images"]


class TfExplain:
    name = "tf-explain"

    def __init__(self, model, images):
        import tf_explain
        from tf_explain.core.grad_cam import GradCAM
        from tf_explain.core.occlusion_sensitivity import OcclusionSensitivity

        self.model, self.images = model, images
        # Default construction, as its documentation shows: `model.predict` then scores
        # the occluded images in batches of its default size (32).
        self.occlusion = OcclusionSensitivity()
        self.grad_cam_explainer = GradCAM()
        self.versions = {"tf-explain": getattr(tf_explain, "__version__", "?")}

    def run_occlusion(self, patch: int, stride: int):
        if stride != patch:
            raise ValueError("tf-explain has no stride: windows never overlap")
        return self.occlusion.explain(
            (self.images, None), self.model, class_index=TARGET_CLASS, patch_size=patch
        )

    def run_grad_cam(self):
        return self.grad_cam_explainer.explain(
            (self.images, None),
            self.model,
            class_index=TARGET_CLASS,
            layer_name=workload.CAM_LAYER,
        )


class Xplique:
    name = "xplique"

    def __init__(self, model, images):
        import xplique
        from xplique.attributions import GradCAM, Occlusion

        self.model, self.images = model, images
        self._occlusion_cls = Occlusion
        self._occluders = {}
        self._explainers = {}
        self.targets = tf.one_hot(np.full(len(images), TARGET_CLASS), workload.NUM_CLASSES).numpy()
        baseline = images.astype(np.float64).mean(axis=(0, 1, 2))
        # One scalar occluding value (xplique takes a float): the mean grey of the probe.
        self.occlusion_value = float(baseline.mean())
        # The model ends in logits; `output_layer=` would be ignored by xplique 2.0.2.
        self.grad_cam_explainer = None
        self._grad_cam_cls = GradCAM
        self.versions = {"xplique": xplique.__version__}

    def run_occlusion(self, patch: int, stride: int):
        key = (patch, stride)
        if key not in self._occluders:
            self._occluders[key] = self._occlusion_cls(
                self.model,
                batch_size=512,
                patch_size=patch,
                patch_stride=stride,
                occlusion_value=self.occlusion_value,
            )
        return self._occluders[key].explain(self.images, self.targets).numpy()

    def run_grad_cam(self):
        if self.grad_cam_explainer is None:  # built once, on first use (the CNN's layer)
            self.grad_cam_explainer = self._grad_cam_cls(self.model, conv_layer=workload.CAM_LAYER)
        return self.grad_cam_explainer.explain(self.images, self.targets).numpy()

    # The new methods. `reducer=None` keeps the channels (as our raw attributions), so the
    # maps compare; it changes no work. Saliency keeps its own reducer (max of |dS/dx| over
    # channels, the map our "gradient" is drawn as).
    METHODS = ("gradcam++", "gradient", "gradient_x_input", "smoothgrad", "integrated_gradients")

    def _explainer(self, method: str, options: dict):
        from xplique.attributions import (
            GradCAMPP,
            GradientInput,
            IntegratedGradients,
            Saliency,
            SmoothGrad,
        )

        batch_size = options["batch_size"]
        if method == "gradcam++":
            return GradCAMPP(self.model, batch_size=batch_size, conv_layer=workload.CAM_LAYER)
        if method == "gradient":
            return Saliency(self.model, batch_size=batch_size)
        if method == "gradient_x_input":
            return GradientInput(self.model, batch_size=batch_size, reducer=None)
        if method == "smoothgrad":
            # xplique's noise is an absolute standard deviation; ours is relative to the
            # image's range, which is 1 for the workload's images (uniform in [0, 1]).
            return SmoothGrad(
                self.model,
                batch_size=batch_size,
                reducer=None,
                nb_samples=options["samples"],
                noise=options["noise"] * options["range"],
            )
        if method == "integrated_gradients":
            return IntegratedGradients(
                self.model,
                batch_size=batch_size,
                reducer=None,
                steps=options["steps"],
                baseline_value=0.0,
            )
        raise ValueError(f"xplique has no {method!r} here; it has {self.METHODS}")

    def run_method(self, method: str, options: dict):
        key = (method, json.dumps(options, sort_keys=True))
        if key not in self._explainers:  # built once, outside the timing
            self._explainers[key] = self._explainer(method, options)
        return self._explainers[key].explain(self.images, self.targets).numpy()

    def run_actmax(self, layer: str, filters: list, steps: int):
        """Its feature visualisation as its documentation shows it: `Objective.channel`
        (the channel's mean over positions), `optimize` with its defaults (Fourier
        parameterisation, decorrelated colours, its standard transformations, Adam 0.05),
        at the model's input size; one image per channel, in one batch."""
        from xplique.features_visualizations import Objective, optimize

        objective = Objective.channel(self.model, layer, list(filters))
        size = self.images.shape[1:3]
        images, _ = optimize(objective, nb_steps=steps, custom_shape=tuple(size))
        return images[-1].numpy()


class TfKerasVis:
    name = "tf-keras-vis"

    # Its defaults where they change the work; where they change only the map's form
    # (`gradient_modifier`, `keepdims`, `normalize_*`), settings that give our raw form so
    # the maps compare: SmoothGrad averages raw gradients (its default averages |gradient|).
    METHODS = ("gradcam++", "layercam", "scorecam", "gradient", "smoothgrad")

    def __init__(self, model, images):
        import tf_keras_vis
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam

        self.model, self.images = model, images
        # clone=False: the model is used as it is (it ends in logits, so no model modifier).
        self._explainers = {
            "gradcam++": GradcamPlusPlus(model, clone=False),
            "layercam": Layercam(model, clone=False),
            "scorecam": Scorecam(model, clone=False),
            "saliency": Saliency(model, clone=False),
        }
        self.versions = {"tf-keras-vis": tf_keras_vis.__version__}

    @staticmethod
    def score(output):
        return output[:, TARGET_CLASS]

    def run_actmax(self, layer: str, filters: list, steps: int):
        """Its `ActivationMaximization` with its defaults (Jitter + Rotate2D, total variation
        and norm regularisers, RMSprop), on a model cut at `layer` (the layers after it are
        not run, as ours), scored on each image's channel mean over positions; one seed
        image per filter, uniform in [0, 1], in one batch."""
        import keras
        from tf_keras_vis.activation_maximization import ActivationMaximization

        key = ("actmax", layer)
        if key not in self._explainers:  # built once, outside the timing
            cut = keras.Model(self.model.inputs, self.model.get_layer(layer).output)
            self._explainers[key] = (cut, ActivationMaximization(cut, clone=False))
        cut, explainer = self._explainers[key]
        select = tf.one_hot(list(filters), int(cut.output.shape[-1]))

        def score(output):
            return tf.reduce_sum(tf.reduce_mean(output, axis=(1, 2)) * select, axis=-1)

        seed = tf.random.uniform((len(filters), *self.images.shape[1:]), 0.0, 1.0, seed=0)
        return explainer(score, seed_input=seed, input_range=(0.0, 1.0), steps=steps)

    def run_method(self, method: str, options: dict):
        x = self.images
        if method in ("gradcam++", "layercam"):
            return self._explainers[method](
                self.score, x, penultimate_layer=workload.CAM_LAYER, normalize_cam=False
            )
        if method == "scorecam":
            return self._explainers[method](
                self.score,
                x,
                penultimate_layer=workload.CAM_LAYER,
                batch_size=options["batch_size"],
                normalize_cam=False,
            )
        if method in ("gradient", "smoothgrad"):
            samples = options["samples"] if method == "smoothgrad" else 0
            return self._explainers["saliency"](
                self.score,
                x,
                smooth_samples=samples,
                smooth_noise=options.get("noise", 0.0),
                keepdims=True,
                gradient_modifier=None,
                normalize_map=False,
            )
        raise ValueError(f"tf-keras-vis has no {method!r} here; it has {self.METHODS}")


PEERS = {"tf-explain": TfExplain, "xplique": Xplique, "tf-keras-vis": TfKerasVis}


def main() -> None:
    peer_name, workload_path = sys.argv[1], sys.argv[2]
    model, images = load_workload(workload_path)
    peer = PEERS[peer_name](model, images)
    import keras

    versions = {
        **peer.versions,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    _reply({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "quit":
                break
            if op == "info":
                _reply({"versions": versions})
                continue
            if op == "occlusion":

                def fn(r=request):
                    return peer.run_occlusion(r["patch"], r["stride"])

            elif op == "grad_cam":
                fn = peer.run_grad_cam
            elif op == "method":

                def fn(r=request):
                    return peer.run_method(r["method"], r["options"])

            elif op == "actmax":

                def fn(r=request):
                    return peer.run_actmax(r["layer"], r["filters"], r["steps"])

            elif op == "actmax_images":
                r = request
                value = np.asarray(peer.run_actmax(r["layer"], r["filters"], r["steps"]))
                np.save(request["path"], value.astype(np.float32))
                _reply({"shape": list(value.shape)})
                continue
            elif op == "map":
                value = np.asarray(peer.run_method(request["method"], request["options"]))
                np.save(request["path"], value.astype(np.float32))
                _reply({"shape": list(value.shape)})
                continue
            else:
                raise ValueError(f"unknown op {op!r}")
            times = timing.interleave({"fn": fn}, request["reps"], request["warmup"])["fn"]
            _reply({"times": times})
        except Exception as error:  # noqa: BLE001 - reported to the harness, which goes on
            _reply({"error": f"{type(error).__name__}: {error}"})


def _reply(message: dict) -> None:
    _PROTOCOL.write(json.dumps(message) + "\n")
    _PROTOCOL.flush()


if __name__ == "__main__":
    main()
