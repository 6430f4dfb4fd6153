"""`ConvViz`: the one-line entry point, all four callbacks with sensible defaults."""

from __future__ import annotations

import keras

from keras_convviz._base import check_freq
from keras_convviz._probe import make_probe
from keras_convviz.feature_maps import FeatureMaps
from keras_convviz.filter_weights import FilterWeights
from keras_convviz.grad_cam import GradCAM
from keras_convviz.occlusion_sensitivity import OcclusionSensitivity


class ConvViz(keras.callbacks.Callback):
    """Feature maps, filter weights, Grad-CAM and occlusion sensitivity in one callback.

    Runs `FeatureMaps`, `FilterWeights`, `GradCAM` and `OcclusionSensitivity` on one probe;
    they share one compiled pass, so a snapshot costs one forward and backward pass on the
    probe plus the occlusion pass. Each writes into its own run directory under `log_dir`
    (`feature_maps/`, `filter_weights/`, `grad_cam/`, `occlusion_sensitivity/`), beside the
    `train/` and `validation/` runs of `keras.callbacks.TensorBoard(log_dir)`.

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: images, `(images, labels)` or a `tf.data.Dataset` (first batch is used).
        freq: int. Epochs between snapshots for all four; `0` disables. Defaults to `1`.
        layer_names: list of str or None. Layers for feature maps and filters. Defaults to
            `None`: every 2-D conv layer.
        cam_layer: str or None. The Grad-CAM layer. Defaults to `None`: the last layer with
            a 4-D output before the head.
        class_index: int or None. Target class for Grad-CAM and occlusion. Defaults to
            `None`: the true label when the probe has labels, else the predicted class.
        max_channels: int. Feature-map channels shown per layer. Defaults to `32`.
        patch_size: int, (int, int) or None. Occlusion window. Defaults to `None`: an eighth
            of the shorter image side.
        occlusion_freq: int or None. Epochs between occlusion snapshots (occlusion scores
            many images, so it may run less often). Defaults to `None`: same as `freq`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input: str, int or None. For a model with several inputs, the one that takes
            the images (name or position); the probe then gives every input, `x` as a dict
            keyed by input name or a list in input order. Defaults to `None`: the only 4-D
            input.
        score_output: str, int or None. For a model with several outputs, the one that
            holds the class scores (name or position). Defaults to `None`: the only
            (batch, units) output.

    Example:

    ```python
    probe = (x_val[:8], y_val[:8])
    model.fit(x, y, epochs=30, callbacks=[kcv.ConvViz("logs/run1", probe)])
    # tensorboard --logdir logs --samples_per_plugin images=1000
    ```
    """

    def __init__(
        self,
        log_dir,
        probe,
        freq: int = 1,
        layer_names: list[str] | None = None,
        cam_layer: str | None = None,
        class_index: int | None = None,
        max_channels: int = 32,
        patch_size=None,
        occlusion_freq: int | None = None,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
    ):
        super().__init__()
        freq = check_freq(freq)
        occlusion_freq = freq if occlusion_freq is None else check_freq(occlusion_freq)
        common = {
            "log_dir": log_dir,
            "on_error": on_error,
            "probe": make_probe(probe, image_input),
            "image_input": image_input,
            "score_output": score_output,
        }
        self.callbacks = [
            FeatureMaps(layer_names=layer_names, max_channels=max_channels, freq=freq, **common),
            FilterWeights(layer_names=layer_names, freq=freq, log_dir=log_dir, on_error=on_error),
            GradCAM(layer_name=cam_layer, class_index=class_index, freq=freq, **common),
            OcclusionSensitivity(
                patch_size=patch_size,
                class_index=class_index,
                freq=occlusion_freq,
                **common,
            ),
        ]

    def set_model(self, model):
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_train_begin(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_end(logs)
