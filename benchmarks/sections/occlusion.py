"""Section 1 of BENCHMARKS.md (`--only occlusion`): occlusion vs the floor.

The small CNN, 8 images 64x64: `kcv.occlusion_sensitivity` and its compiled pass against one
compiled forward pass over the same pre-built occluded images. `occlusion_vs_floor` also
serves sections 9a (MobileNetV2) and 9b (scaling).
"""

from __future__ import annotations

import inspect

import numpy as np
import tensorflow as tf
import timing
import workload

import keras_convviz as kcv
from keras_convviz import explain  # how the public calls build their plans

from .common import check, core_call, ms, quietly, table, target


def occlusion_default_baseline():
    """The `baseline` a default `kcv.occlusion_sensitivity` call uses."""
    return inspect.signature(kcv.occlusion_sensitivity).parameters["baseline"].default


def occlusion_fill(images, patch: int) -> np.ndarray | None:
    """What fills a window in a default public call, for the floor's pre-built images.

    `None` for the probe's channel mean; else the fill as the package computes it inside
    its pass (`gaussian_blur` with sigma = the patch size for the default `"blur"`), so the
    floor scores exactly the images our pass builds.
    """
    baseline = occlusion_default_baseline()
    if baseline is None or baseline == "mean":
        return None
    from keras_convviz.methods.perturb import gaussian_blur

    return gaussian_blur(np.asarray(images, np.float32), float(patch)).numpy()


def occlusion_core_call(model, images, patch, stride, batch_size, class_index=None):
    from keras_convviz._args import occlusion_sizes
    from keras_convviz.methods.occlusion import Occlusion
    from keras_convviz.methods.perturb import occlusion_baseline

    def needs(probe, core, bound):
        patch_, stride_ = occlusion_sizes(probe.image_shape, patch, stride)
        targets = explain._target(probe, bound, class_index)
        baseline = occlusion_baseline(occlusion_default_baseline(), probe)
        return [Occlusion(patch_, stride_, batch_size, targets, baseline)]

    try:
        return core_call(needs, model, images)
    except ImportError:
        return None


def occlusion_vs_floor(*args, **kwargs) -> dict:
    return quietly(lambda: _occlusion_vs_floor(*args, **kwargs))


def _occlusion_vs_floor(model, images, patch, stride, batch_size, reps, breakdown=True):
    """Ours (the public call) vs the floor, on exactly the same occluded images."""
    image_size = images.shape[1]
    predicted = workload.predicted_classes(model, images)
    per_image = workload.windows_per_image(image_size, patch, stride)
    fill = occlusion_fill(images, patch)
    occluded = tf.constant(workload.occluded_images(images, patch, stride, fill))
    targets = tf.constant(np.repeat(predicted, per_image))
    floor = workload.make_forward_floor(model, batch_size)

    def ours():
        return kcv.occlusion_sensitivity(
            model, images, patch_size=patch, stride=stride, batch_size=batch_size
        )

    def run_floor():
        return floor(occluded, targets).numpy()

    fns = {"ours": ours, "floor": run_floor}
    core = occlusion_core_call(model, images, patch, stride, batch_size) if breakdown else None
    if core is not None:
        fns["core"] = core
    max_diff = None
    if stride == patch:  # our map is the floor's drop, pixel for pixel
        maps = ours()
        logits = model(images, training=False).numpy()
        base = logits[np.arange(len(images)), predicted]
        drops = base[:, None] - run_floor().reshape(len(images), per_image)
        ours_drops = maps[:, ::patch, ::patch].reshape(len(images), -1)
        if ours_drops.shape == drops.shape:
            max_diff = float(np.abs(ours_drops - drops).max())
    meter = timing.CpuMeter()
    times = timing.interleave(fns, reps=reps, warmup=1)
    cpu = meter.stop()
    row = {
        "patch": patch,
        "stride": stride,
        "batch_size": batch_size,
        "occluded_images": len(images) * per_image,
        "ours_ms": ms(timing.median(times["ours"])),
        "floor_ms": ms(timing.median(times["floor"])),
        "ratio": round(timing.paired_ratio(times["ours"], times["floor"]), 3),
        "spread": round(timing.spread(times["ours"]), 3),
        "max_abs_diff_vs_floor": max_diff,
        "others_cores": cpu.get("others_cores"),
    }
    if "core" in times:
        row["core_ms"] = ms(timing.median(times["core"]))
        row["core_ratio"] = round(timing.paired_ratio(times["core"], times["floor"]), 3)
    row["times_s"] = {k: [round(v, 5) for v in vs] for k, vs in times.items()}
    return row


# The occlusion-vs-floor columns shared by the small-CNN and the MobileNetV2 tables.
OCCLUSION_VS_FLOOR_COLUMNS = [
    ("occluded_images", "occluded images"),
    ("ours_ms", "ours ms"),
    ("core_ms", "core pass ms"),
    ("floor_ms", "floor ms"),
    ("ratio", "ours/floor"),
    ("core_ratio", "core/floor"),
    ("met", "<= 1.15x"),
    ("others_cores", "others' cores"),
]


def run(cfg, ctx):
    model, images = ctx["model"], ctx["images"]
    rows, targets = [], []
    for patch, stride, batch_size in cfg["occlusion"]:
        row = occlusion_vs_floor(model, images, patch, stride, batch_size, cfg["reps"])
        row["met"] = check(row["ratio"] <= 1.15)
        rows.append(row)
        targets.append(
            target(
                f"occlusion p{patch}/s{stride}/B{batch_size} vs floor",
                row["ratio"],
                "<= 1.15x",
                row["ratio"] <= 1.15,
            )
        )
    text = table(
        rows,
        [
            ("patch", "patch"),
            ("stride", "stride"),
            ("batch_size", "B"),
            *OCCLUSION_VS_FLOOR_COLUMNS,
        ],
    )
    notes = [
        "ours = kcv.occlusion_sensitivity(...) end to end (argument checks, probe and plan "
        "building, the one compiled pass, .numpy()); core pass = core_for(model).run(plan, "
        "bound) alone, for the plan the public call builds (built once, outside the timing: "
        "the baseline fill included; the pass includes the forward on the unoccluded "
        "images), .numpy(); floor = one compiled tf.function running the model "
        "(training=False) over the same pre-built occluded images (filled as the default "
        f"baseline={occlusion_default_baseline()!r} fills them) in chunks of B and gathering "
        "the target logit.",
        "max |ours - floor| over the window scores (stride = patch): "
        + ", ".join(
            f"p{r['patch']}: {r['max_abs_diff_vs_floor']:.2g}"
            for r in rows
            if r["max_abs_diff_vs_floor"] is not None
        ),
    ]
    return {"rows": rows, "table": text, "notes": notes, "targets": targets}
