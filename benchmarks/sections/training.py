"""Section 8 of BENCHMARKS.md (`--only training`): what `ConvViz` adds to the demo's `fit`.

Interleaved fits with and without it, the time each snapshot holds the training thread
against its compiled passes, and a fit first in its process (`fresh_fit.py`).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import timing

import keras_convviz as kcv
from keras_convviz.core.shared import _SHARED_ATTRIBUTE

from .common import HERE, table, target, time_call


class EpochClock(keras.callbacks.Callback):
    """When each epoch began, took its first step and ended, and training ended. As the
    last callback of a fit it marks the end of ConvViz's hooks (the snapshot held, its
    flush). Before an epoch's first step, freeing the previous epoch's tf.data iterator
    now and then waits for tf.data's autotuning thread (section 12c), in fits with and
    without ConvViz alike: `stalls` says how long."""

    def __init__(self):
        super().__init__()
        self.begin, self.end, self.first_step = [], [], []
        self.train_end = None

    def on_epoch_begin(self, epoch, logs=None):
        self.begin.append(time.perf_counter())

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.first_step.append(time.perf_counter())

    @property
    def stalls(self) -> list[float]:
        return [f - b for b, f in zip(self.begin, self.first_step)]

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.train_end = time.perf_counter()


# What each configuration of the training rows adds to a plain `fit`.
TRAINING_CONFIGS = {
    "default": {},
    # Every method and diagnostic of the open issues on, on the same probe.
    "all": {"saliency": True, "faithfulness": True, "health": {"gradients": True}},
    # Activation maximisation of the last conv layer (its ascent runs at the epoch's end).
    "actmax": {"activation_maximization": {"layer_names": ["conv4"]}},
}


def pass_runs(model, callback) -> list:
    """The compiled passes of a snapshot on the trained model, as calls: the shared pass
    for the union of the callbacks' needs (the plan they ran at every epoch), and the
    ascent of activation maximisation (a cold start, as at every snapshot without
    `warm_start`)."""
    passes = model.__dict__.get(_SHARED_ATTRIBUTE, {})
    runs = []
    for shared in passes.values():
        plan = max(shared._plans.values(), key=lambda plan: len(plan.needs))
        runs.append(functools.partial(shared.core.run, plan, shared.bound))
    for child in callback.callbacks:
        if isinstance(child, kcv.ActivationMaximization):
            child._prepare(model)
            runs.append(functools.partial(child._capture, 0))
    return runs


def _pass_seconds(model, callback, reps: int = 5) -> float:
    """`pass_runs`, each timed alone (median of `reps` after one call), summed."""
    times = []
    for run in pass_runs(model, callback):
        run()
        times.append(timing.median([time_call(run) for _ in range(reps)]))
    return sum(times)


def _training_row(spec, configs, ctx) -> dict:
    from keras_convviz.datasets import make_shapes
    from keras_convviz.demo import train_demo_model

    train = make_shapes(spec["n_train"], image_size=64, seed=0)
    val = make_shapes(spec["n_val"], image_size=64, seed=10_000)
    probe = (val.images[:8], val.labels[:8])
    records = {name: [] for name in ("none", *configs)}

    def fit(name: str):
        clock, mark = EpochClock(), EpochClock()
        callbacks = [clock]
        convviz = None
        if name != "none":
            log_dir = Path(tempfile.mkdtemp(dir=ctx["tmp"], prefix="train_logs_"))
            options = TRAINING_CONFIGS[name]
            convviz = kcv.ConvViz(str(log_dir), probe=probe, freq=1, **options)
            callbacks += [convviz, mark]
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        model, _ = train_demo_model(
            train,
            epochs=spec["epochs"],
            validation_data=(val.images, val.labels),
            callbacks=callbacks,
        )
        total = time.perf_counter() - start
        record = {
            # Up to the end of the last callback's on_train_end (ConvViz's flush included):
            # after it, `fit` drops its tf.data iterator, which now and then stalls for about
            # a second with or without ConvViz, noise this ratio leaves out.
            "fit": (mark if convviz else clock).train_end - start,
            "total": total,
            "epochs": [e - b for b, e in zip(clock.begin, clock.end)],
            # The waits for tf.data before each epoch's first step (section 12c).
            "stalls": clock.stalls,
            # The time each snapshot held the training thread (ConvViz.on_epoch_end).
            "snapshots": [m - e for e, m in zip(clock.end, mark.end)],
        }
        if convviz is not None:
            record["pass"] = _pass_seconds(model, convviz)
        records[name].append(record)

    for name in ("none", *configs):  # warm-up: first-time imports and graph building
        fit(name)
    for key in records:
        records[key].clear()
    names = ["none", *configs]
    for rep in range(spec["reps"]):
        for name in names if rep % 2 == 0 else names[::-1]:
            fit(name)
    without = [r["fit"] for r in records["none"]]
    without_total = [r["total"] for r in records["none"]]
    epoch_time = timing.median([e for r in records["none"] for e in r["epochs"][1:]])
    rows = []
    for name in configs:
        runs = records[name]
        steady = timing.median([s for r in runs for s in r["snapshots"][1:]])
        passes = timing.median([r["pass"] for r in runs])
        rows.append(
            {
                "config": name,
                "n_train": spec["n_train"],
                "epochs": spec["epochs"],
                "fit_with_s": round(timing.median([r["fit"] for r in runs]), 2),
                "fit_without_s": round(timing.median(without), 2),
                "fit_ratio": round(timing.paired_ratio([r["fit"] for r in runs], without), 3),
                "fit_ratio_no_stalls": round(
                    timing.paired_ratio(
                        [r["fit"] - sum(r["stalls"]) for r in runs],
                        [r["fit"] - sum(r["stalls"]) for r in records["none"]],
                    ),
                    3,
                ),
                "fit_ratio_returned": round(
                    timing.paired_ratio([r["total"] for r in runs], without_total), 3
                ),
                "epoch_s": round(epoch_time, 3),
                "first_snapshot_s": round(timing.median([r["snapshots"][0] for r in runs]), 3),
                "snapshot_s": round(steady, 4),
                "pass_s": round(passes, 4),
                "held_vs_pass": round(steady / passes, 2),
                "snapshot_fraction_of_epoch": round(steady / epoch_time, 4),
            }
        )
    return {"rows": rows, "records": records}


def _fresh_process_row(spec) -> dict:
    """The `default` row's fit ratio when the ConvViz fit is the first of its process
    (`fresh_fit.py`, one process per repetition, the two fits' order alternating)."""
    runs = []
    for rep in range(spec["fresh_reps"]):
        command = [sys.executable, str(HERE / "fresh_fit.py"), "--n-train", str(spec["n_train"])]
        command += ["--n-val", str(spec["n_val"]), "--epochs", str(spec["epochs"])]
        if rep % 2:
            command.append("--convviz-first")
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return {"config": "default, fresh process", "error": done.stderr[-400:]}
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    with_ = [r["convviz"]["fit"] for r in runs]
    without = [r["none"]["fit"] for r in runs]
    return {
        "config": "default, fresh process",
        "n_train": spec["n_train"],
        "epochs": spec["epochs"],
        "fit_with_s": round(timing.median(with_), 2),
        "fit_without_s": round(timing.median(without), 2),
        "fit_ratio": round(timing.paired_ratio(with_, without), 3),
        "first_snapshot_s": round(timing.median([r["convviz"]["first_held"] for r in runs]), 3),
        "runs": runs,
    }


def run(cfg, ctx):
    rows, records = [], {}
    for spec in cfg["train"]:
        configs = ("default", "all", "actmax") if spec.get("all") else ("default",)
        measured = _training_row(spec, configs, ctx)
        rows += measured["rows"]
        records[str(spec["n_train"])] = measured["records"]
        if spec.get("fresh_reps"):
            rows.append(_fresh_process_row(spec))
    text = table(
        rows,
        [
            ("config", "ConvViz"),
            ("n_train", "train images"),
            ("epochs", "epochs"),
            ("fit_without_s", "fit s, no callback"),
            ("fit_with_s", "fit s, ConvViz freq=1"),
            ("fit_ratio", "ratio"),
            ("fit_ratio_no_stalls", "ratio, tf.data waits left out"),
            ("fit_ratio_returned", "ratio, until fit returned"),
            ("epoch_s", "epoch s"),
            ("first_snapshot_s", "first snapshot held s (traces the pass)"),
            ("snapshot_s", "later snapshot held s"),
            ("pass_s", "its compiled pass s"),
            ("held_vs_pass", "held / pass"),
            ("snapshot_fraction_of_epoch", "held / epoch"),
        ],
    )
    notes = [
        "keras_convviz.demo.train_demo_model (the demo CNN with batch norm, Adam, batch 32) "
        "on synthetic 64x64 shapes, validated on the given number; ConvViz(log_dir, probe=8 "
        "labelled validation images, freq=1): `default` = feature maps, filters, Grad-CAM, "
        "occlusion (patch 8), health and alerts; `all` adds saliency (SmoothGrad), "
        "faithfulness and the loss's gradient norms; `actmax` adds activation maximisation "
        "of conv4 (16 filters, 128 steps) to the default. Interleaved fits after a warm-up "
        "of each; each fit builds a fresh model, so the ratio includes the pass's tracing and "
        "each callback's own; what is traced once per process (feature-map and filter "
        "drawing per layer shape, the heat-map panel) was traced by the warm-up, as in a "
        "notebook's later fits. The `fresh process` row has the ConvViz fit first in its "
        "process (fresh_fit.py, after a warm-up fit without ConvViz).",
        "fit s = from `fit`'s call to the end of the last callback's on_train_end (ConvViz's "
        "wait for its last snapshot included); `until fit returned` adds what `fit` does "
        "after that: dropping its tf.data iterator, which stalls for up to about a second "
        "now and then, with or without ConvViz. `tf.data waits left out`: both fits less "
        "the waits before each epoch's first step, for tf.data's autotuning thread "
        "(section 12c), which come in fits with and without ConvViz alike.",
        "held = ConvViz.on_epoch_end on the training thread, timed between two marker "
        "callbacks: the shared pass (and copies of the kernels); drawing, encoding and "
        "writing run on the writer thread meanwhile. pass = the shared pass for the same "
        "needs on the trained model, timed alone (median of 5), plus activation "
        "maximisation's ascent where it is on.",
    ]
    targets = []
    for row in rows:
        if "error" in row:
            continue
        goal = 1.10 if row["n_train"] >= 4000 else 1.12
        label = f"fit with ConvViz({row['config']}) / without, {row['n_train']} images"
        targets.append(target(label, row["fit_ratio"], f"<= {goal}x", row["fit_ratio"] <= goal))
        if "held_vs_pass" in row:  # not on the fresh-process row: the fit and first snapshot
            targets.append(
                target(
                    f"later snapshot held / its pass ({row['config']}, {row['n_train']})",
                    row["held_vs_pass"],
                    "<= 1.5x",
                    row["held_vs_pass"] <= 1.5,
                )
            )
        targets.append(
            target(
                f"first snapshot held s ({row['config']}, {row['n_train']})",
                row["first_snapshot_s"],
                "<= 1.5 s",
                row["first_snapshot_s"] <= 1.5,
            )
        )
    return {"rows": rows, "table": text, "notes": notes, "targets": targets, "records": records}
