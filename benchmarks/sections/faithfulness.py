"""Section 4b of BENCHMARKS.md (`--only faithfulness`): deletion and insertion vs the floor."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import timing
import workload

import keras_convviz as kcv

from .common import check_goal, ms, quietly, table, target

FAITHFULNESS_COLUMNS = [
    ("steps", "steps"),
    ("batch_size", "B"),
    ("curve_images", "curve images"),
    ("ours_ms", "ours ms"),
    ("floor_ms", "fwd over the curve images ms"),
    ("ratio", "ours / floor"),
    ("max_abs_diff_vs_floor", "max |AUC diff|"),
    ("met", "<= 1.2x"),
]


def _faithfulness_vs_floor(model, images, steps, batch_size, reps):
    n = len(images)
    targets = np.zeros(n, np.int32)  # class 0, as the other rows
    maps = kcv.grad_cam(model, (images, targets), layer_name=workload.CAM_LAYER)
    baseline = images.mean(axis=(0, 1, 2))
    built = workload.curve_images(images, maps, steps, baseline)
    inputs = tf.constant(built)
    repeated = tf.constant(np.zeros(len(built), np.int32))
    forward_floor = workload.make_forward_floor(model, batch_size)

    def ours():
        return kcv.faithfulness(model, (images, targets), maps, steps=steps, batch_size=batch_size)

    def floor():
        return forward_floor(inputs, repeated).numpy()

    meter = timing.CpuMeter()
    times = timing.interleave({"ours": ours, "floor": floor}, reps=reps, warmup=1)
    cpu = meter.stop()
    # The same areas from the model's own outputs on the pre-built images.
    probabilities = tf.nn.softmax(model.predict(built, batch_size=batch_size, verbose=0))
    curves = probabilities.numpy()[:, 0].reshape(n, 2, steps + 1).astype(np.float64)
    areas = (curves.sum(-1) - 0.5 * (curves[..., 0] + curves[..., -1])) / steps
    got = ours()
    diff = max(
        float(np.abs(got["deletion"] - areas[:, 0]).max()),
        float(np.abs(got["insertion"] - areas[:, 1]).max()),
    )
    ratio = round(timing.paired_ratio(times["ours"], times["floor"]), 3)
    return {
        "steps": steps,
        "batch_size": batch_size,
        "curve_images": len(built),
        "ours_ms": ms(timing.median(times["ours"])),
        "floor_ms": ms(timing.median(times["floor"])),
        "ratio": ratio,
        "spread": round(timing.spread(times["ours"]), 3),
        "others_cores": cpu.get("others_cores"),
        "max_abs_diff_vs_floor": float(f"{diff:.2g}"),
        "met": check_goal(ratio, 1.2),
        "times_s": {k: [round(v, 5) for v in vs] for k, vs in times.items()},
    }


def run(cfg, ctx):
    model, images = ctx["model"], ctx["images"]
    rows = []
    for steps in cfg["faithfulness_steps"]:
        ctx["log"](f"  faithfulness, {steps} steps")
        rows.append(
            quietly(lambda s=steps: _faithfulness_vs_floor(model, images, s, 256, 3 * cfg["reps"]))
        )
    notes = [
        "ours = kcv.faithfulness(model, images, maps) end to end (maps: Grad-CAM of conv3, "
        "class 0, baseline the per-channel mean): ranking, building every deletion and "
        "insertion image of the 8 images, scoring them in chunks of B, and the areas. "
        "floor = one compiled forward pass over the same curve images, pre-built, in "
        "chunks of B: the 2(K + 1) images of the definition, of which ours scores 2K - 1 "
        "(each curve's end on the image itself is the pass's own forward, and both curves "
        "share the baseline image). max |AUC diff| compares our areas with the same areas "
        "computed from model.predict on the pre-built images."
    ]
    return {
        "rows": rows,
        "table": table(rows, FAITHFULNESS_COLUMNS),
        "notes": notes,
        "targets": [
            target(
                f"faithfulness K={r['steps']} vs floor", r["ratio"], "<= 1.2x", r["ratio"] <= 1.2
            )
            for r in rows
        ],
    }
