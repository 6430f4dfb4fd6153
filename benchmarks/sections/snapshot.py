"""Section 5 of BENCHMARKS.md (`--only snapshot`): a full snapshot without occlusion.

A `ConvViz` snapshot timed by phase (compute, render, write) against fwd+bwd, and with the
health numbers on.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import keras
import tensorflow as tf
import timing
import workload

import keras_convviz as kcv
from keras_convviz.callbacks.background import WRITER

from .common import ms, table, target, time_call


def _snapshot_setup(model, probe, log_dir, **options):
    """A ConvViz on the model, prepared and warmed up: `(callback, members, shared pass)`."""
    callback = kcv.ConvViz(str(log_dir), probe=probe, occlusion_freq=0, **options)
    callback.set_model(model)
    callback.on_train_begin()
    members = [cb for cb in callback.callbacks if cb.freq > 0]
    shared = next(cb._shared for cb in members if getattr(cb, "_shared", None) is not None)
    for epoch in range(2):  # warm-up: traces the pass and every render function
        callback.on_epoch_end(epoch)
    WRITER.wait_idle()  # the warm-up's drawing and writing done; now timed in place
    return callback, members, shared


def _snapshot_phases(callback, members, shared, epoch) -> dict:
    """One snapshot, timed by phase, in place: compute (the shared pass and the kernel
    copies, what the training thread runs), render, write (on the writer thread in fit)."""
    start = time.perf_counter()
    captured = [cb._capture(epoch) for cb in members]
    t_compute = time.perf_counter()
    items = [(cb, cb._snapshot(epoch, c)) for cb, c in zip(members, captured)]
    t_render = time.perf_counter()
    for cb, summaries in items:
        written = cb._write(epoch, summaries)
        if cb._monitor is not None:
            cb._monitor.observe(epoch, epoch, written, cb.model)
    if callback.monitor is not None:
        callback.monitor.end_snapshot()
    end = time.perf_counter()
    return {
        "compute": t_compute - start,
        "render": t_render - t_compute,
        "write": end - t_render,
        "total": end - start,
        "items": items,
    }


def run(cfg, ctx):
    model, images = ctx["model"], ctx["images"]
    # A compiled loss and labelled probe, so the health numbers include the loss gradients.
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = workload.predicted_classes(model, images)
    plain = _snapshot_setup(
        model, images, Path(ctx["tmp"]) / "snapshot_plain", health=False, alerts=False
    )

    def copy():
        # Its own copy of the model (same weights): callbacks on one model and probe share
        # one pass, which would compute the union of both configurations' needs.
        twin = keras.models.clone_model(model)
        twin.set_weights(model.get_weights())
        twin.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return twin

    health = _snapshot_setup(copy(), (images, labels), Path(ctx["tmp"]) / "snapshot_health")
    gradients = _snapshot_setup(
        copy(),
        (images, labels),
        Path(ctx["tmp"]) / "snapshot_gradients",
        health={"gradients": True},
    )
    x = tf.constant(images)
    predicted = tf.constant(labels)
    to_input = workload.make_backward_floor(model)
    to_layer = workload.make_backward_floor(model, workload.CAM_LAYER)
    to_input(x, predicted)
    to_layer(x, predicted)
    passes_before = plain[2].passes_run
    phases = {k: [] for k in ("floor_input", "floor_layer", "compute", "render", "write", "total")}
    with_health = {k: [] for k in ("compute", "render", "write", "total")}
    with_gradients = {k: [] for k in with_health}
    epoch = 2
    for rep in range(cfg["snapshot_reps"]):
        if rep % 2 == 0:
            phases["floor_input"].append(time_call(lambda: to_input(x, predicted).numpy()))
            phases["floor_layer"].append(time_call(lambda: to_layer(x, predicted).numpy()))
        # The configurations in a seeded random order each repetition.
        order = [plain, health, gradients]
        random.Random(rep).shuffle(order)
        for setup in order:
            timed = _snapshot_phases(*setup, epoch)
            into = {id(plain): phases, id(health): with_health}.get(id(setup), with_gradients)
            for key in with_health:
                into[key].append(timed[key])
            if setup is plain:
                items = timed["items"]
        if rep % 2 == 1:
            phases["floor_layer"].append(time_call(lambda: to_layer(x, predicted).numpy()))
            phases["floor_input"].append(time_call(lambda: to_input(x, predicted).numpy()))
        epoch += 1
    passes = (plain[2].passes_run - passes_before) / cfg["snapshot_reps"]
    summaries = sum(len(s) for _, s in items)
    images_written = sum(1 for _, s in items for i in s if hasattr(i, "data"))
    members = plain[1]
    for setup in (plain, health, gradients):
        setup[0].on_train_end()
    compute_ratio = timing.paired_ratio(phases["compute"], phases["floor_input"])
    compute_ratio_layer = timing.paired_ratio(phases["compute"], phases["floor_layer"])
    row = {k + "_ms": ms(timing.median(v)) for k, v in phases.items()}
    row.update(
        {
            "compute_vs_fwd_bwd_input": round(compute_ratio, 3),
            "compute_vs_fwd_bwd_layer": round(compute_ratio_layer, 3),
            "total_vs_fwd_bwd_input": round(
                timing.paired_ratio(phases["total"], phases["floor_input"]), 1
            ),
            "passes_per_snapshot": passes,
            "summaries": summaries,
            "images_written": images_written,
            "members": [type(cb).__name__ for cb in members],
        }
    )
    health_row = {k + "_ms": ms(timing.median(v)) for k, v in with_health.items()}
    health_row.update(
        {
            "compute_vs_without": round(
                timing.paired_ratio(with_health["compute"], phases["compute"]), 3
            ),
            "total_vs_without": round(
                timing.paired_ratio(with_health["total"], phases["total"]), 3
            ),
            "members": [type(cb).__name__ for cb in health[1]],
        }
    )
    gradients_row = {k + "_ms": ms(timing.median(v)) for k, v in with_gradients.items()}
    gradients_row["compute_vs_without"] = round(
        timing.paired_ratio(with_gradients["compute"], phases["compute"]), 3
    )
    gradients_row["total_vs_without"] = round(
        timing.paired_ratio(with_gradients["total"], phases["total"]), 3
    )
    health_row["config"] = "health (default)"
    gradients_row["config"] = 'health={"gradients": True}'
    text = table(
        [row],
        [
            ("compute_ms", "compute ms (SharedPass.result)"),
            ("floor_input_ms", "fwd+bwd(input) ms"),
            ("floor_layer_ms", "fwd+bwd(layer) ms"),
            ("compute_vs_fwd_bwd_input", "compute / fwd+bwd(input)"),
            ("compute_vs_fwd_bwd_layer", "compute / fwd+bwd(layer)"),
            ("render_ms", "render ms"),
            ("write_ms", "write ms"),
            ("total_ms", "total ms"),
            ("passes_per_snapshot", "passes/snapshot"),
        ],
    )
    text += "\n\n" + table(
        [health_row, gradients_row],
        [
            ("config", "with"),
            ("compute_ms", "compute ms"),
            ("render_ms", "render ms"),
            ("write_ms", "write + alerts ms"),
            ("total_ms", "total ms"),
            ("compute_vs_without", "compute / without"),
            ("total_vs_without", "total / without"),
        ],
    )
    notes = [
        "ConvViz(log_dir, probe, occlusion_freq=0, health=False, alerts=False) on the 8 probe "
        "images: FeatureMaps of conv1-3 (with their activation health numbers, computed in "
        "its render), FilterWeights of conv1-3 and GradCAM of conv3, one shared pass. compute "
        "= SharedPass.result (the compiled forward + Grad-CAM backward, all activations "
        "returned); render = each callback's _snapshot (its compiled _render and the slicing "
        f"into summaries); write = each callback's _write ({images_written} PNG images and "
        f"{summaries - images_written} scalars, flushed).",
        "with health = the same with the probe's labels, ModelHealth and the alerts on (the "
        "defaults): the compiled loss on the probe (from the same forward), the prediction "
        "numbers, the alert rules and the health table; with gradients = also the loss's "
        "gradient with respect to every conv kernel (one more backward pass, to the first "
        "layer, on the same forward). Interleaved with the row above, snapshot by snapshot, "
        "in a seeded random order, each configuration on its own copy of the model (same "
        "weights). Everything here runs in place (no writer thread).",
    ]
    return {
        "rows": [row, health_row, gradients_row],
        "table": text,
        "notes": notes,
        "targets": [
            target(
                "snapshot compute vs fwd+bwd(input)",
                row["compute_vs_fwd_bwd_input"],
                "<= 1.5x",
                compute_ratio <= 1.5,
            ),
            target("snapshot passes per epoch", passes, "1", passes == 1),
            target(
                "snapshot compute+render+write vs fwd+bwd(input)",
                row["total_vs_fwd_bwd_input"],
                "report",
                None,
            ),
            target(
                "health numbers: snapshot compute with / without",
                health_row["compute_vs_without"],
                "<= 1.1x",
                health_row["compute_vs_without"] <= 1.1,
            ),
            target(
                "health with gradient norms: snapshot compute with / without",
                gradients_row["compute_vs_without"],
                "report",
                None,
            ),
            target(
                "health numbers: whole snapshot with / without",
                health_row["total_vs_without"],
                "report",
                None,
            ),
        ],
    }
