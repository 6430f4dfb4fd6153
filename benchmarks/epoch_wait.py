"""Where the wall time of the epoch after a `ConvViz` snapshot goes (issue 24, target b).

    nice -n 10 python benchmarks/epoch_wait.py mobilenet --epochs 11 --repeats 3
    nice -n 10 python benchmarks/epoch_wait.py resnet50v2 --autotune on --sample

Each model is built as in the `applications` section (`weights=None`, 5 classes, 64 px,
64 `make_shapes` images, batch 16: 4 steps an epoch, `metrics=["accuracy"]`), fitted once
to trace its train step, then per repeat: a fit without `ConvViz` and one with
`ConvViz(log_dir, probe=(x[:4], y[:4]), occlusion=False, freq=2)` (its epochs 1, 3, 5, ...
train after a snapshot, 2, 4, 6, ... after none), once with tf.data's autotuning as Keras
leaves it (`on`) and once with `tf.data.Options().autotune.enabled = False` set on the
dataset Keras makes of the arrays (`off`), interleaved, so both see the same machine.

Per epoch (first callback's `on_epoch_begin` to its `on_epoch_end`, the snapshot not
included) it records the wall time, the process CPU time (`time.process_time`, every
thread) and, from `/proc/self/task/<tid>/schedstat` and `status`, the training thread's
time on a CPU, its time waiting on a run queue (ready, but the core was taken) and the
rest, blocked (sleeping on a lock, a condition, I/O), its voluntary and involuntary
context switches; the run-queue wait summed over every thread of the process (others'
processes, or our own threads, taking the cores); `/proc/loadavg`; time in Python's garbage
collector (`gc.callbacks`); and `stall`: from Keras's epoch iterator handing `fit` the
epoch's tf.data iterator to the first step's `on_train_batch_begin`, where `fit` rebinds
its `iterator` variable and so frees the previous epoch's iterator. `age_at_step` is that
iterator's age when the first step began (seconds since its first element, in the previous
epoch's first step).

`--sample` samples the training thread's Python stack every 2 ms; `--time-free` keeps each
epoch's iterator alive and frees it, timed (`free`), at the next epoch's second step;
`--sleep S` replaces `ConvViz` with a callback that sleeps `S` seconds at the same epochs.

Prints one JSON line per fit and a summary line per model and autotune mode.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras.src.backend.tensorflow.trainer import TFEpochIterator  # noqa: E402
from keras.src.trainers.data_adapters import array_data_adapter  # noqa: E402

import keras_convviz as kcv  # noqa: E402
from keras_convviz.datasets import make_shapes  # noqa: E402

CLASSES = 5
PROBE = 4
BATCH = 16
N_TRAIN = 64
apps = keras.applications
MODELS = {
    "mobilenet": (apps.MobileNet, apps.mobilenet.preprocess_input, 64),
    "resnet50v2": (apps.ResNet50V2, apps.resnet_v2.preprocess_input, 64),
    "convnexttiny": (apps.ConvNeXtTiny, apps.convnext.preprocess_input, 64),
    "mobilenetv3small": (apps.MobileNetV3Small, apps.mobilenet_v3.preprocess_input, 64),
}

# Whether the next fit's dataset of arrays is made with tf.data's autotuning off.
AUTOTUNE_OFF = [False]
_get_tf_dataset = array_data_adapter.ArrayDataAdapter.get_tf_dataset


def _get_tf_dataset_maybe_untuned(self):
    dataset = _get_tf_dataset(self)
    if AUTOTUNE_OFF[0]:
        options = tf.data.Options()
        options.autotune.enabled = False
        dataset = dataset.with_options(options)
    return dataset


array_data_adapter.ArrayDataAdapter.get_tf_dataset = _get_tf_dataset_maybe_untuned

# When Keras's epoch iterator was asked for each step and when it answered, and (with
# --time-free) the tf.data iterators it handed out, kept alive until Probe frees them.
NEXT_CALLS: list = []
KEPT: list = []
KEEP = [False]
_next = TFEpochIterator.__next__


def _timed_next(self):
    start = time.perf_counter()
    try:
        out = _next(self)
        if KEEP[0] and (not KEPT or KEPT[-1] is not out[2]):
            KEPT.append(out[2])
        return out
    finally:
        NEXT_CALLS.append((start, time.perf_counter()))


TFEpochIterator.__next__ = _timed_next


def _tasks() -> dict[int, dict]:
    """Every thread of this process: {tid: {name, run, wait (s), vol, invol}}."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                run_ns, wait_ns, _ = (int(v) for v in f.read().split())
            with open(f"/proc/self/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # the thread ended meanwhile
        out[int(tid)] = {
            "name": status["Name"].strip(),
            "run": run_ns / 1e9,
            "wait": wait_ns / 1e9,
            "vol": int(status["voluntary_ctxt_switches"]),
            "invol": int(status["nonvoluntary_ctxt_switches"]),
        }
    return out


class GcTimer:
    """Wall time spent in Python's garbage collector."""

    def __init__(self):
        self.total = 0.0
        self._start = None
        gc.callbacks.append(self)

    def __call__(self, phase, info):
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.total += time.perf_counter() - self._start
            self._start = None


class Sampler:
    """Samples the training thread's Python stack (innermost frames) every `period` s."""

    def __init__(self, ident, period=0.002):
        self.ident, self.period = ident, period
        self.on = False
        self.counts: collections.Counter = collections.Counter()
        threading.Thread(target=self._loop, name="sampler", daemon=True).start()

    def _loop(self):
        while True:
            time.sleep(self.period)
            if not self.on:
                continue
            frame = sys._current_frames().get(self.ident)
            stack = []
            while frame is not None and len(stack) < 4:
                code = frame.f_code
                where = f"{os.path.basename(code.co_filename)}:{frame.f_lineno}:{code.co_name}"
                stack.append(where)
                frame = frame.f_back
            self.counts[" < ".join(stack)] += 1

    def take(self):
        counts, self.counts = self.counts, collections.Counter()
        return counts


class Probe(keras.callbacks.Callback):
    """Placed first: per epoch, the counters at its begin and end, and step begin times."""

    def __init__(self, gc_timer, sampler=None):
        super().__init__()
        self.gc, self.sampler = gc_timer, sampler
        self.tid = threading.get_native_id()
        self.rows = []

    def _snap(self):
        return (time.perf_counter(), time.process_time(), _tasks(), self.gc.total)

    def on_epoch_begin(self, epoch, logs=None):
        self._begin = self._snap()
        self._steps = []
        self._free = None
        NEXT_CALLS.clear()
        if self.sampler is not None:
            self.sampler.take()
            self.sampler.on = True

    def on_train_batch_begin(self, batch, logs=None):
        self._steps.append(time.perf_counter())
        if batch == 1 and len(KEPT) > 1:  # free the iterators of earlier epochs, timed
            start = time.perf_counter()
            del KEPT[:-1]
            self._free = time.perf_counter() - start

    def on_epoch_end(self, epoch, logs=None):
        end = self._snap()
        if self.sampler is not None:
            self.sampler.on = False
        (w0, c0, t0, g0), (w1, c1, t1, g1) = self._begin, end
        me0, me1 = t0[self.tid], t1[self.tid]
        both = set(t0) & set(t1)
        wall = w1 - w0
        run = me1["run"] - me0["run"]
        wait = me1["wait"] - me0["wait"]
        others: dict[str, float] = {}
        for tid in both - {self.tid}:
            spent = t1[tid]["run"] - t0[tid]["run"]
            if spent > 0.001:
                name = t1[tid]["name"]
                others[name] = round(others.get(name, 0.0) + spent, 3)
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        row = {
            "epoch": epoch,
            "t0": round(w0, 4),
            "wall": round(wall, 4),
            "cpu": round(c1 - c0, 4),
            "train_run": round(run, 4),
            "train_runq": round(wait, 4),
            "train_blocked": round(wall - run - wait, 4),
            "train_vol": me1["vol"] - me0["vol"],
            "train_invol": me1["invol"] - me0["invol"],
            "proc_runq": round(sum(t1[t]["wait"] - t0[t]["wait"] for t in both), 4),
            "threads": [len(t0), len(t1)],
            "others_run": others,
            "gc": round(g1 - g0, 4),
            "stall": round(self._steps[0] - NEXT_CALLS[0][1], 4),
            "first_next": round(NEXT_CALLS[0][0] - w0, 4),
            "steps": [round(b - w0, 3) for b in self._steps],
            "free": None if self._free is None else round(self._free, 4),
            "load": load,
        }
        if self.sampler is not None:
            row["samples"] = self.sampler.take().most_common(6)
        self.rows.append(row)


class Mark(keras.callbacks.Callback):
    """Placed after ConvViz: when its `on_epoch_end` returned."""

    def __init__(self):
        super().__init__()
        self.end = []

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(time.perf_counter())


class Sleeper(keras.callbacks.Callback):
    """A stand-in for ConvViz: sleeps `seconds` at the end of every second epoch."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_epoch_end(self, epoch, logs=None):
        if epoch % 2 == 0:
            time.sleep(self.seconds)


def _build(name):
    builder, preprocess, size = MODELS[name]
    keras.utils.set_random_seed(0)
    model = builder(weights=None, input_shape=(size, size, 3), classes=CLASSES)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    data = make_shapes(N_TRAIN, image_size=size, seed=0)
    x = np.asarray(preprocess(data.images * 255.0), dtype=np.float32)
    return model, x, data.labels


def _fit(model, x, y, epochs, probe, snapshots=None):
    mark = Mark()
    callbacks = [probe] + ([snapshots, mark] if snapshots is not None else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(
            x, y, epochs=epochs, batch_size=BATCH, verbose=0, shuffle=True, callbacks=callbacks
        )
    rows = probe.rows
    for row, prev, end in zip(rows[1:], rows, mark.end):
        row["held_before"] = round(end - (prev["t0"] + prev["wall"]), 4)
    for row, prev in zip(rows[1:], rows):
        # The previous epoch's iterator gave its first element (and started its autotuning
        # thread) in that epoch's first step.
        row["age_at_step"] = round(row["t0"] + row["steps"][0] - prev["t0"] - prev["steps"][0], 3)
    return rows


KEYS = ("wall", "cpu", "train_run", "train_runq", "train_blocked", "proc_runq", "gc", "stall")


def _summary(rows):
    out = {key: round(statistics.median(r[key] for r in rows), 4) for key in KEYS}
    out["n"] = len(rows)
    out["wall_mean"] = round(statistics.mean(r["wall"] for r in rows), 4)
    out["cpu_mean"] = round(statistics.mean(r["cpu"] for r in rows), 4)
    out["blocked_mean"] = round(statistics.mean(r["train_blocked"] for r in rows), 4)
    out["runq_mean"] = round(statistics.mean(r["train_runq"] for r in rows), 4)
    out["proc_runq_mean"] = round(statistics.mean(r["proc_runq"] for r in rows), 4)
    out["stall_mean"] = round(statistics.mean(r["stall"] for r in rows), 4)
    out["stalls_over_50ms"] = sum(r["stall"] > 0.05 for r in rows)
    out["stall_ends_at_age"] = sorted(r["age_at_step"] for r in rows if r["stall"] > 0.05)
    out["load"] = [min(r["load"] for r in rows), max(r["load"] for r in rows)]
    return out


def measure(name, epochs, repeats, modes, tmp, sample=False, sleep=None):
    model, x, y = _build(name)
    gc_timer = GcTimer()
    sampler = Sampler(threading.get_ident()) if sample else None
    _fit(model, x, y, 1, Probe(gc_timer))  # Keras traces its train step
    rows = {
        mode: {"plain": [], "after_snapshot": [], "after_none": [], "held": []} for mode in modes
    }
    for rep in range(repeats):
        for mode in modes:
            AUTOTUNE_OFF[0] = mode == "off"
            got = _fit(model, x, y, epochs, Probe(gc_timer, sampler))
            print(
                json.dumps(
                    {"model": name, "autotune": mode, "fit": "plain", "rep": rep, "epochs": got}
                )
            )
            rows[mode]["plain"] += got[1:]  # each fit's first epoch makes the iterator's threads
            log_dir = tempfile.mkdtemp(dir=tmp, prefix=name)
            if sleep is None:
                snapshots = kcv.ConvViz(
                    log_dir, probe=(x[:PROBE], y[:PROBE]), occlusion=False, freq=2
                )
            else:
                snapshots = Sleeper(sleep)
            got = _fit(model, x, y, epochs, Probe(gc_timer, sampler), snapshots)
            print(
                json.dumps(
                    {"model": name, "autotune": mode, "fit": "snapshots", "rep": rep, "epochs": got}
                )
            )
            # Epoch 1 follows the fit's first snapshot (its tracing): left out, as in 12b.
            rows[mode]["after_snapshot"] += got[3::2]
            rows[mode]["after_none"] += got[2::2]
            rows[mode]["held"] += [r["held_before"] for r in got[3::2]]
            sys.stdout.flush()
    for mode in modes:
        summary = {"model": name, "autotune": mode, "summary": True, "cpu_model": _cpu_model()}
        for label in ("plain", "after_snapshot", "after_none"):
            summary[label] = _summary(rows[mode][label])
        summary["later_held_median"] = round(statistics.median(rows[mode]["held"]), 3)
        for key, ref in (("wall", "plain"), ("wall", "after_none"), ("cpu", "plain")):
            for stat in ("", "_mean"):
                k = key + stat
                summary[f"ratio_{k}_vs_{ref}"] = round(
                    summary["after_snapshot"][k] / summary[ref][k], 2
                )
        print(json.dumps(summary), flush=True)


def _cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--autotune", choices=("on", "off", "both"), default="both")
    parser.add_argument("--sample", action="store_true", help="sample the training thread's stack")
    parser.add_argument(
        "--time-free",
        action="store_true",
        help="free each epoch's tf.data iterator at the next epoch's second step, timed",
    )
    parser.add_argument("--sleep", type=float, help="a callback sleeping this long, not ConvViz")
    args = parser.parse_args()
    KEEP[0] = args.time_free
    modes = ["on", "off"] if args.autotune == "both" else [args.autotune]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            measure(name, args.epochs, args.repeats, modes, tmp, args.sample, args.sleep)


if __name__ == "__main__":
    main()
