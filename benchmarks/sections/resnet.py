"""Section 8b of BENCHMARKS.md (`--only resnet`): a snapshot on ResNet50 (224x224)."""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf
import timing
import workload

import keras_convviz as kcv

from .common import table, target, time_call


def run(cfg, ctx):
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(
        weights=None, input_shape=(224, 224, 3), classes=10, classifier_activation=None
    )
    images = workload.probe_images(8, 224)
    x = tf.constant(images)
    targets = tf.constant(workload.predicted_classes(model, images))
    floor = workload.make_backward_floor(model)
    floor(x, targets)
    callback = kcv.ConvViz(str(Path(ctx["tmp"]) / "resnet"), probe=images, occlusion=False)
    callback.set_model(model)
    callback.on_train_begin()
    members = callback.callbacks

    first_held = time_call(lambda: callback.on_epoch_end(0))
    first_whole = first_held + time_call(callback.settle)
    held, whole, floors = [], [], []
    for epoch in range(1, 1 + cfg["resnet_reps"]):
        if epoch % 2:
            floors.append(time_call(lambda: floor(x, targets).numpy()))
        held.append(time_call(lambda: callback.on_epoch_end(epoch)))  # noqa: B023
        whole.append(held[-1] + time_call(callback.settle))
        if not epoch % 2:
            floors.append(time_call(lambda: floor(x, targets).numpy()))
    callback.on_train_end()
    layers = len(members[0]._needs)
    row = {
        "model": "ResNet50 224px, 8 images",
        "feature_map_layers": layers,
        "floor_s": round(timing.median(floors), 3),
        "held_s": round(timing.median(held), 3),
        "held_vs_floor": round(timing.paired_ratio(held, floors), 2),
        "whole_s": round(timing.median(whole), 3),
        "first_held_s": round(first_held, 2),
        "first_whole_s": round(first_whole, 2),
    }
    text = table(
        [row],
        [
            ("model", "model"),
            ("feature_map_layers", "feature-map layers"),
            ("floor_s", "fwd+bwd(input) s"),
            ("held_s", "snapshot held s"),
            ("held_vs_floor", "held / fwd+bwd"),
            ("whole_s", "snapshot with drawing and writing s"),
            ("first_held_s", "first held s"),
            ("first_whole_s", "first with drawing and writing s"),
        ],
    )
    notes = [
        "keras.applications.ResNet50(weights=None, 224x224, 10 classes, logits), 8 random "
        "probe images; ConvViz(occlusion=False) with its defaults (feature maps of every "
        "conv layer, filters, Grad-CAM, health, alerts). held = on_epoch_end on the calling "
        "thread (the shared pass and the kernel copies); the drawing, encoding and writing "
        "then run on the writer thread, timed until it is done.",
    ]
    targets_ = [
        target(
            "ResNet50 snapshot held / fwd+bwd(input)",
            row["held_vs_floor"],
            "<= 1.5x",
            row["held_vs_floor"] <= 1.5,
        )
    ]
    return {"rows": [row], "table": text, "notes": notes, "targets": targets_}
