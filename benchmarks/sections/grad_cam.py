"""Section 2 of BENCHMARKS.md (`--only grad_cam`): Grad-CAM vs the floor.

`grad_cam_vs_floor` also serves section 9a (MobileNetV2).
"""

from __future__ import annotations

import tensorflow as tf
import timing
import workload

import keras_convviz as kcv

from .common import ms, table, target


def grad_cam_vs_floor(model, images, layer, reps):
    predicted = tf.constant(workload.predicted_classes(model, images))
    x = tf.constant(images)
    to_input = workload.make_backward_floor(model)
    to_layer = workload.make_backward_floor(model, layer)
    times = timing.interleave(
        {
            "ours": lambda: kcv.grad_cam(model, images, layer_name=layer),
            "floor_input": lambda: to_input(x, predicted).numpy(),
            "floor_layer": lambda: to_layer(x, predicted).numpy(),
        },
        reps=reps,
        warmup=1,
    )
    return {
        "layer": layer,
        "images": len(images),
        "ours_ms": ms(timing.median(times["ours"])),
        "floor_input_ms": ms(timing.median(times["floor_input"])),
        "floor_layer_ms": ms(timing.median(times["floor_layer"])),
        "ratio_input": round(timing.paired_ratio(times["ours"], times["floor_input"]), 3),
        "ratio_layer": round(timing.paired_ratio(times["ours"], times["floor_layer"]), 3),
        "times_s": {k: [round(v, 5) for v in vs] for k, vs in times.items()},
    }


GRAD_CAM_COLUMNS = [
    ("model", "model"),
    ("layer", "layer"),
    ("images", "images"),
    ("ours_ms", "ours ms"),
    ("floor_input_ms", "fwd+bwd to input ms"),
    ("floor_layer_ms", "fwd+bwd to layer ms"),
    ("ratio_input", "ours / fwd+bwd(input)"),
    ("ratio_layer", "ours / fwd+bwd(layer)"),
]


def run(cfg, ctx):
    row = grad_cam_vs_floor(ctx["model"], ctx["images"], workload.CAM_LAYER, cfg["reps"] * 3)
    row["model"] = "small CNN 64px"
    notes = [
        "ours = kcv.grad_cam(model, images, layer_name='conv3') end to end; "
        "fwd+bwd(input) = one compiled forward pass and the gradient of the target logit "
        "with respect to the input (a full backward pass); fwd+bwd(layer) = the gradient "
        "with respect to the Grad-CAM layer only, the least Grad-CAM can do."
    ]
    return {
        "rows": [row],
        "table": table([row], GRAD_CAM_COLUMNS),
        "notes": notes,
        "targets": [
            target("Grad-CAM vs fwd+bwd(input)", row["ratio_input"], "report", None),
        ],
    }
