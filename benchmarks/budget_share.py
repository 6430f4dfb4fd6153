"""The share of training time ConvViz's snapshots hold, with `budget=0.1` and `budget=None`.

ConvNeXtTiny (weights=None) at 64 px, 5 classes, 128 images per epoch, 6 epochs, with
`ConvViz(log_dir, probe=(x[:4], y[:4]))` and its defaults. Held: from the end of Keras's
epoch to the end of ConvViz's `on_epoch_end` (a timing callback before and one after
ConvViz); training: the rest of each epoch. Both in wall time and in process CPU time (all
threads: the writer's and TensorFlow's pools too, so what the writer thread does beside
training counts as held only where the training thread waits for it). The share is over
epochs 2..6, after the first snapshot.

    python benchmarks/budget_share.py [--budget 0.1|none] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_convviz as kcv  # noqa: E402


class Marks(keras.callbacks.Callback):
    """Wall and CPU clock at each epoch begin and end (placed before or after ConvViz)."""

    def __init__(self):
        super().__init__()
        self.begin, self.end = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.begin.append((time.perf_counter(), time.process_time()))

    def on_epoch_end(self, epoch, logs=None):
        self.end.append((time.perf_counter(), time.process_time()))


def run(budget, epochs: int) -> dict:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((128, 64, 64, 3), dtype=np.float32) * 255
    y = rng.integers(0, 5, 128)
    model = keras.applications.ConvNeXtTiny(
        weights=None, input_shape=(64, 64, 3), classes=5, include_top=True
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    before, after = Marks(), Marks()
    with tempfile.TemporaryDirectory() as log_dir, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        convviz = kcv.ConvViz(log_dir, probe=(x[:4], y[:4]), budget=budget)
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[before, convviz, after])
        from keras_convviz.exports.events import read_runs

        runs = read_runs(log_dir)
        occlusion = (
            runs.get("occlusion_sensitivity", {})
            .get("occlusion_sensitivity/image_0", {})
            .get("steps", [])
        )
    out = {"budget": budget, "occlusion_epochs": occlusion, "warnings": []}
    for w in seen:
        if "budget" in str(w.message):
            out["warnings"].append(str(w.message))
    for clock, name in ((0, "wall"), (1, "cpu")):
        # Training of epoch e: its begin to Keras's end (the `before` mark); held: the
        # `before` mark to the `after` mark (ConvViz's on_epoch_end).
        train = [b[clock] - a[clock] for a, b in zip(before.begin, before.end)]
        held = [b[clock] - a[clock] for a, b in zip(before.end, after.end)]
        out[name] = {
            "train": [round(t, 2) for t in train],
            "held": [round(h, 2) for h in held],
            "share_after_first": round(sum(held[1:]) / sum(train[1:]), 3),
            "share_all": round(sum(held) / sum(train), 3),
        }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", default="0.1")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    budget = None if args.budget == "none" else float(args.budget)
    print(json.dumps(run(budget, args.epochs)))
