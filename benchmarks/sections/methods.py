"""Section 4 of BENCHMARKS.md (`--only methods`): the new methods side by side.

The CAM family, gradient saliency and Score-CAM against the floor, then against xplique and
tf-keras-vis (time and map correlation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import timing
import workload

import keras_convviz as kcv
from keras_convviz import explain  # how the public calls build their plans

from .common import (
    check,
    check_goal,
    core_call,
    ms,
    quietly,
    rounds_vs_peer,
    start_peer,
    table,
    target,
    write_workload,
)

CAM_NEW = ("gradcam++", "layercam", "hirescam", "eigencam", "scorecam")


SALIENCY_NEW = ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients")


SIGNED = ("gradient_x_input", "integrated_gradients")


# Which peer has which method (peer_worker.py's METHODS).
METHOD_PEERS = {
    "xplique": ("gradcam++", "gradient", "gradient_x_input", "smoothgrad", "integrated_gradients"),
    "tf-keras-vis": ("gradcam++", "layercam", "scorecam", "gradient", "smoothgrad"),
}


FLOOR_GOALS = {"smoothgrad": 1.2, "integrated_gradients": 1.2, "scorecam": 1.2}


PEER_SPEEDUP_GOAL = 1.5


def method_call(model, images, method, opts, class_index=0, seed=0):
    """The public call of one new method (`kcv.grad_cam` or `kcv.saliency`), as a function."""
    if method in CAM_NEW:
        return lambda: kcv.grad_cam(
            model,
            images,
            layer_name=workload.CAM_LAYER,
            class_index=class_index,
            method=method,
            batch_size=opts["batch_size"],
        )
    return lambda: kcv.saliency(
        model,
        images,
        method=method,
        class_index=class_index,
        samples=opts["samples"],
        noise=opts["noise"],
        steps=opts["steps"],
        seed=seed,
        batch_size=opts["batch_size"],
    )


def method_core_call(model, images, method, opts, class_index=0):
    """`core.run(plan, bound)` for the plan `method_call` builds (see `core_call`)."""
    from keras_convviz.core.needs import Const
    from keras_convviz.methods.cam import Cam
    from keras_convviz.methods.saliency import saliency_need

    def needs(probe, core, bound):
        targets = explain._target(probe, bound, class_index)
        if method in CAM_NEW:
            ref = core.graph.find_spatial(workload.CAM_LAYER, "layer_name")
            return [Cam(ref, method, targets, opts["batch_size"])]
        from keras_convviz._args import make_baseline

        base = Const(make_baseline(0.0, probe))
        options = {k: opts[k] for k in ("samples", "noise", "steps", "batch_size")}
        return [saliency_need(method, targets, base, seed=0, **options)]

    try:
        return core_call(needs, model, images)
    except ImportError:
        return None


def _relative_diff(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|."""
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-12))


def method_vs_floor(*args, **kwargs) -> dict:
    return quietly(lambda: _method_vs_floor(*args, **kwargs))


def _method_vs_floor(model, images, method, opts, reps):
    """Ours (the public call), the compiled pass alone and the floor, interleaved.

    Returns the row and, where ours is the floor's work plus a reduction, how far our map is
    from the same reduction of the floor's output (relative to its maximum).
    """
    n = len(images)
    batch_size = opts["batch_size"]
    targets = tf.constant(np.zeros(n, np.int32))  # class 0, as for the peers
    x = tf.constant(images)
    exactness = None
    if method in ("smoothgrad", "integrated_gradients"):
        per_image = opts["samples"] if method == "smoothgrad" else opts["steps"]
        if method == "smoothgrad":
            inputs = workload.noisy_inputs(images, per_image, opts["noise"])
        else:
            inputs = workload.path_inputs(images, per_image)
        inputs = tf.constant(inputs)
        repeated = tf.constant(np.zeros(n * per_image, np.int32))
        gradient_floor = workload.make_gradient_floor(model, batch_size, per_image)

        def floor():
            return gradient_floor(inputs, repeated).numpy()

        floor_name = f"fwd+bwd(input) over {n * per_image} inputs, B={batch_size}"
        floor_inputs = n * per_image

        def exactness():
            mean = floor() / per_image
            reference = mean if method == "smoothgrad" else images * mean
            return _relative_diff(ours(), reference)

    elif method == "scorecam":
        masked, activation = workload.score_cam_inputs(model, images, workload.CAM_LAYER)
        channels = activation.shape[-1]
        masked = tf.constant(masked)
        repeated = tf.constant(np.zeros(len(masked), np.int32))
        forward_floor = workload.make_forward_floor(model, batch_size)

        def floor():
            return forward_floor(masked, repeated).numpy()

        floor_name = f"fwd over {len(masked)} masked inputs, B={batch_size}"
        floor_inputs = len(masked)

        def exactness():
            weights = tf.nn.softmax(floor().reshape(n, channels), axis=-1)
            cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", activation, weights))
            reference = tf.image.resize(cam[..., None], images.shape[1:3], "bilinear")[..., 0]
            return _relative_diff(ours(), reference.numpy())

    elif method == "eigencam":
        forward_floor = workload.make_forward_floor(model, batch_size)

        def floor():
            return forward_floor(x, targets).numpy()

        floor_name = "fwd"
        floor_inputs = n
    else:
        layer = workload.CAM_LAYER if method in CAM_NEW else None
        backward_floor = workload.make_backward_floor(model, layer)

        def floor():
            return backward_floor(x, targets).numpy()

        floor_name = "fwd+bwd(layer)" if layer else "fwd+bwd(input)"
        floor_inputs = n
    ours = method_call(model, images, method, opts)
    fns = {"ours": ours, "floor": floor}
    core = method_core_call(model, images, method, opts)
    if core is not None:
        fns["core"] = core
    meter = timing.CpuMeter()
    times = timing.interleave(fns, reps=reps, warmup=1)
    cpu = meter.stop()
    row = {
        "method": method,
        "batch_size": batch_size,
        "floor": floor_name,
        "floor_inputs": floor_inputs,
        "ours_ms": ms(timing.median(times["ours"])),
        "floor_ms": ms(timing.median(times["floor"])),
        "ratio": round(timing.paired_ratio(times["ours"], times["floor"]), 3),
        "spread": round(timing.spread(times["ours"]), 3),
        "others_cores": cpu.get("others_cores"),
    }
    if "core" in times:
        row["core_ms"] = ms(timing.median(times["core"]))
        row["core_ratio"] = round(timing.paired_ratio(times["core"], times["floor"]), 3)
    if exactness is not None:
        row["max_rel_diff_vs_floor"] = float(f"{exactness():.2g}")
    goal = FLOOR_GOALS.get(method)
    row["target"] = f"<= {goal:g}x" if goal else "report"
    row["met"] = check_goal(row["ratio"], goal)
    row["times_s"] = {k: [round(v, 5) for v in vs] for k, vs in times.items()}
    return row


def view(method: str, value: np.ndarray) -> np.ndarray:
    """A map `(batch, h, w)` both sides can be compared on.

    CAMs as they are; the signed saliency methods summed over channels; the others as the
    largest magnitude over channels (a peer's map already reduced is taken as it is).
    """
    value = np.asarray(value, np.float64)
    if value.ndim == 4 and value.shape[-1] == 1:
        value = value[..., 0]
    if value.ndim == 4:
        value = value.sum(axis=-1) if method in SIGNED else np.abs(value).max(axis=-1)
    return value


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the Pearson correlation of two `(batch, h, w)` maps."""
    values = []
    for x, y in zip(a, b):
        x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
        denominator = np.sqrt((x * x).sum() * (y * y).sum())
        values.append(float((x * y).sum() / denominator) if denominator > 0 else float("nan"))
    return float(np.mean(values))


def run(cfg, ctx):
    model, images = ctx["model"], ctx["images"]
    opts = dict(cfg["method_options"])
    reps = cfg["reps"]
    methods = CAM_NEW + SALIENCY_NEW
    targets, notes = [], []

    # a. ours vs the floor, interleaved in this process.
    floor_rows = []
    for method in methods:
        ctx["log"](f"  {method} vs the floor")
        floor_rows.append(method_vs_floor(model, images, method, opts, reps))
    for method in cfg["method_floor_small_batch"]:
        ctx["log"](f"  {method} vs the floor, B=64")
        floor_rows.append(method_vs_floor(model, images, method, {**opts, "batch_size": 64}, reps))
    for row in floor_rows:
        goal = FLOOR_GOALS.get(row["method"])
        if goal is not None:
            targets.append(
                target(
                    f"{row['method']} B{row['batch_size']} vs floor",
                    row["ratio"],
                    f"<= {goal:g}x",
                    row["ratio"] <= goal,
                )
            )

    # b. ours vs the peers that have each method, rounds alternating with the peer's process.
    peer_rows, installs = [], {}
    ours_maps = {m: view(m, method_call(model, images, m, opts)()) for m in methods}
    workload_path = Path(ctx["tmp"]) / "workload.npz"
    write_workload(model, images, workload_path)
    span = float(np.mean(images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))))
    peer_opts = {**opts, "range": round(span, 4)}
    for name, has in METHOD_PEERS.items():
        peer = start_peer(name, ctx, workload_path, installs, notes)
        if peer is None:
            continue
        try:
            for method in has:
                ctx["log"](f"  {name}: {method}")
                request = {"op": "method", "method": method, "options": peer_opts}
                try:
                    path = Path(ctx["tmp"]) / f"{name}-{method}.npy"
                    shape = peer.request(**{**request, "op": "map", "path": str(path)})["shape"]
                    peer_map = view(method, np.load(path))
                    result = rounds_vs_peer(
                        peer,
                        method_call(model, images, method, opts),
                        request,
                        cfg["peer_rounds"],
                        cfg["peer_reps"],
                    )
                except RuntimeError as error:
                    notes.append(f"{name} {method} failed: {error}")
                    continue
                corr = None
                if peer_map.shape == ours_maps[method].shape:
                    corr = round(correlation(ours_maps[method], peer_map), 3)
                peer_rows.append(
                    {
                        "method": method,
                        "peer": name,
                        **result,
                        "peer_map_shape": shape,
                        "correlation": corr,
                    }
                )
        finally:
            peer.close()

    # c. one row per method: each peer, the fastest one, the target.
    reference = {}
    if "smoothgrad" in methods:  # how much two SmoothGrads agree when only the noise differs
        other = view("smoothgrad", method_call(model, images, "smoothgrad", opts, seed=1)())
        reference["smoothgrad"] = round(correlation(ours_maps["smoothgrad"], other), 3)
    side_rows = []
    for method in methods:
        floor_row = next(r for r in floor_rows if r["method"] == method)
        row = {
            "method": method,
            "ours_ms": floor_row["ours_ms"],
            "floor": floor_row["floor"],
            "floor_ms": floor_row["floor_ms"],
            "floor_ratio": floor_row["ratio"],
        }
        theirs = [r for r in peer_rows if r["method"] == method]
        for r in theirs:
            row[f"{r['peer']}_ms"] = r["peer_ms"]
            row[f"{r['peer']}_speedup"] = r["speedup"]
            row[f"{r['peer']}_corr"] = r["correlation"]
        if theirs:
            fastest = min(theirs, key=lambda r: r["speedup"])
            met = fastest["speedup"] >= PEER_SPEEDUP_GOAL
            row["vs_fastest"] = f"{fastest['speedup']:.3g} ({fastest['peer']})"
            # Unpaired (medians of two measurements): how far the peer is from the floor.
            row["fastest_vs_floor"] = round(fastest["peer_ms"] / floor_row["floor_ms"], 2)
            row["others_cores"] = max((r["others_cores"] or 0.0) for r in theirs)
            row["met"] = check(met)
            targets.append(
                target(
                    f"{method}: ours vs fastest peer ({fastest['peer']})",
                    fastest["speedup"],
                    f">= {PEER_SPEEDUP_GOAL:g}x",
                    met,
                )
            )
        else:
            row["vs_fastest"] = "no peer"
            row["met"] = "n/a"
        side_rows.append(row)

    text = (
        "a. Ours vs the floor (small CNN, 8 images 64x64, conv3, class 0)\n\n"
        + table(
            floor_rows,
            [
                ("method", "method"),
                ("batch_size", "B"),
                ("floor", "floor"),
                ("ours_ms", "ours ms"),
                ("core_ms", "core pass ms"),
                ("floor_ms", "floor ms"),
                ("ratio", "ours/floor"),
                ("core_ratio", "core/floor"),
                ("max_rel_diff_vs_floor", "max rel. diff vs floor"),
                ("target", "target"),
                ("met", "met"),
                ("others_cores", "others' cores"),
            ],
        )
        + "\n\nb. Side by side with the peers\n\n"
        + table(
            side_rows,
            [
                ("method", "method"),
                ("ours_ms", "ours ms"),
                ("floor_ms", "floor ms"),
                ("floor_ratio", "ours/floor"),
                ("xplique_ms", "xplique ms"),
                ("xplique_speedup", "xplique/ours"),
                ("xplique_corr", "corr. xplique"),
                ("tf-keras-vis_ms", "tf-keras-vis ms"),
                ("tf-keras-vis_speedup", "tf-keras-vis/ours"),
                ("tf-keras-vis_corr", "corr. tf-keras-vis"),
                ("vs_fastest", "fastest peer/ours"),
                ("fastest_vs_floor", "fastest peer/floor"),
                ("met", ">= 1.5x"),
                ("others_cores", "others' cores"),
            ],
        )
    )
    notes += [
        f"Settings on every side: samples={opts['samples']}, noise={opts['noise']} (x the "
        f"image's range, {span:.4f} here), steps={opts['steps']}, baseline 0, "
        f"batch_size={opts['batch_size']}, class 0 for every image; ours = kcv.grad_cam(model, "
        "x, 'conv3', class_index=0, method=m, batch_size=B) or kcv.saliency(model, x, "
        "method=m, class_index=0, samples, noise, steps, batch_size=B) end to end; core pass "
        "= core_for(model).run(plan, bound) for the plan that call builds, .numpy().",
        "Floors: fwd+bwd(layer) / fwd+bwd(input) = one compiled forward and the gradient of "
        "the target logit w.r.t. conv3 / the input, on the 8 images; fwd = one compiled "
        "forward on them; for SmoothGrad and Integrated Gradients one compiled forward + "
        "input gradient over the noisy / path inputs (pre-built, the same ones ours scores), "
        "in chunks of B, summed per image; for Score-CAM one compiled forward over its "
        "channels x images masked inputs (pre-built the same way) in chunks of B. max rel. "
        "diff = max |ours - the method computed from the floor's output| / max |that|.",
        "Peers: xplique GradCAMPP(conv_layer='conv3'), Saliency, GradientInput, "
        "SmoothGrad(nb_samples, noise), IntegratedGradients(steps, baseline_value=0), each "
        "with batch_size=B (reducer=None where it has one, so the channels are kept; Saliency "
        "keeps its max-|.| reducer); tf-keras-vis GradcamPlusPlus, Layercam, "
        "Scorecam(batch_size=B) with penultimate_layer='conv3', Saliency(smooth_samples=0 or "
        "samples, smooth_noise=noise, gradient_modifier=None, keepdims=True); normalisation "
        "off. Explainers built once outside the timing. tf-keras-vis has no batch size for "
        "SmoothGrad: it takes one gradient per sample over the 8 images.",
        "corr. = mean over images of the Pearson correlation of ours and the peer's map: CAMs "
        "as they are; gradient and SmoothGrad as max |.| over channels; gradient x input and "
        "Integrated Gradients summed over channels. SmoothGrad's noise draws differ between "
        "tools: two of ours with seeds 0 and 1 correlate at "
        f"{reference.get('smoothgrad')}. xplique's Integrated Gradients uses the trapezoid "
        "rule on 0..1, ours the midpoint rule; tf-keras-vis's Score-CAM weighs channels by "
        "softmax-over-classes probabilities, ours (and the issue's definition) by a softmax "
        "over channels of the logits.",
        f"Peer rounds: {cfg['peer_rounds']} rounds of {cfg['peer_reps']} calls after a "
        "warm-up call; peer/ours = median over rounds of median(peer)/median(ours).",
    ]
    return {
        "rows": floor_rows + peer_rows,
        "side_by_side": side_rows,
        "table": text,
        "notes": notes,
        "targets": targets,
        "installs": installs,
        "reference_correlation": reference,
    }
