"""What a `ConvViz` snapshot costs training on deep keras.applications models (issue 24).

    nice -n 10 python benchmarks/snapshot_cost.py efficientnetv2b0 mobilenetv2_frozen
    nice -n 10 python benchmarks/snapshot_cost.py --layers 8 --epochs 7 all

Each model (`weights=None`, 5 classes, the softmax head keras.applications builds) is
fitted once without `ConvViz` (Keras traces its train step) and then with
`ConvViz(log_dir, probe=(x[:4], y[:4]), occlusion=False, freq=2)`, so in one fit the epochs
after a snapshot (1, 3, 5) and those after none (2, 4, 6) train side by side. Per epoch it
records the wall time and the process's CPU time (every thread); per snapshot the time
`ConvViz.on_epoch_end` holds the training thread and the writer thread's wall and CPU time
for its jobs. One compiled forward + backward pass on the probe (to the input) is the floor.

Prints one JSON line per model, and with `--profile` the training thread's top functions by
cumulative time over epochs 4 and 5 (a snapshot drawn in place, or a job's wait for the
writer thread).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_convviz as kcv  # noqa: E402
from keras_convviz.callbacks import background  # noqa: E402
from keras_convviz.core.shared import core_for  # noqa: E402

CLASSES = 5
PROBE = 4
BATCH = 32


def _app(builder, size, **kw):
    def build():
        return builder(weights=None, input_shape=(size, size, 3), classes=CLASSES, **kw)

    return build, size


def _frozen_mobilenetv2(size=64):
    def build():
        base = keras.applications.MobileNetV2(
            weights=None, include_top=False, input_shape=(size, size, 3)
        )
        base.trainable = False
        inputs = keras.Input((size, size, 3))
        x = base(inputs, training=False)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
        return keras.Model(inputs, outputs, name="frozen_mobilenetv2")

    return build, size


MODELS = {
    "mobilenet": _app(keras.applications.MobileNet, 64),
    "mobilenetv3small": _app(keras.applications.MobileNetV3Small, 64),
    "efficientnetv2b0": _app(keras.applications.EfficientNetV2B0, 64),
    "resnet50v2": _app(keras.applications.ResNet50V2, 64),
    "inceptionv3": _app(keras.applications.InceptionV3, 75),
    "convnexttiny": _app(keras.applications.ConvNeXtTiny, 64),
    "mobilenetv2_frozen": _frozen_mobilenetv2(64),
}


class Clock(keras.callbacks.Callback):
    """Epoch begin/end wall and process CPU times; placed first and last around
    ConvViz, the difference of the two ends is what ConvViz held."""

    def __init__(self):
        super().__init__()
        self.begin, self.end, self.cpu_begin, self.cpu_end = [], [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.begin.append(time.perf_counter())
        self.cpu_begin.append(time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.end.append(time.perf_counter())
        self.cpu_end.append(time.process_time())


class WriterMeter:
    """Wall and thread-CPU time of every job the writer thread runs, by submission order."""

    def __init__(self):
        self.jobs = []
        self._run = background.Job.run
        meter = self

        def run(job):
            start, cpu = time.perf_counter(), time.thread_time()
            meter._run(job)
            meter.jobs.append((start, time.perf_counter(), time.thread_time() - cpu))

        background.Job.run = run

    def close(self):
        background.Job.run = self._run


def _floor(model, images):
    @tf.function(autograph=False)
    def floor(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(model(x, training=False))
        return tape.gradient(score, x)

    start = time.perf_counter()
    floor(images).numpy()
    traced = time.perf_counter() - start
    times = []
    for _ in range(7):
        start = time.perf_counter()
        floor(images).numpy()
        times.append(time.perf_counter() - start)
    return statistics.median(times), traced


def _conv_layers(model, count):
    graph = core_for(model).graph
    refs = graph.conv_layers(graph.geometry)
    picked = np.unique(np.round(np.linspace(0, len(refs) - 1, count)).astype(int))
    return [refs[i].path for i in picked]


def measure(name, epochs, n_train, layers, profile, tmp, where=None):
    build, size = MODELS[name]
    keras.utils.set_random_seed(0)
    model = build()
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((n_train, size, size, 3), dtype=np.float32)
    y = rng.integers(0, CLASSES, n_train).astype(np.int32)
    probe = (x[:PROBE], y[:PROBE])
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)  # Keras traces its step
    step_trace, step_trace_cpu = time.perf_counter() - start, time.process_time() - cpu
    floor, floor_trace = _floor(model, tf.constant(x[:PROBE]))
    options = {}
    if layers:
        options["layer_names"] = _conv_layers(model, layers)
    first, last = Clock(), Clock()
    meter = WriterMeter()
    log_dir = tempfile.mkdtemp(dir=tmp, prefix=name)
    convviz = kcv.ConvViz(log_dir, probe=probe, occlusion=False, freq=2, **options)
    if where is not None:  # "writer" or "in_place" instead of the default's choice
        for child in convviz.callbacks:
            child.background = where == "writer"
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()

        class Prof(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 3:
                    profiler.enable()
                if epoch == 5:
                    profiler.disable()

    cpu0 = time.process_time()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        callbacks = [first, convviz, last] + ([Prof()] if profile else [])
        model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=callbacks)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    meter.close()
    epoch_wall = [e - b for b, e in zip(first.begin, first.end)]
    epoch_cpu = [e - b for b, e in zip(first.cpu_begin, first.cpu_end)]
    held = [b - a for a, b in zip(first.end, last.end)]
    held_cpu = [b - a for a, b in zip(first.cpu_end, last.cpu_end)]
    after = [epoch_wall[e] for e in range(1, epochs, 2)]
    clean = [epoch_wall[e] for e in range(2, epochs, 2)]
    row = {
        "model": name,
        "size": size,
        "layers": layers or "default",
        "drawn": where or "default",
        "floor_s": round(floor, 4),
        "floor_trace_s": round(floor_trace, 2),
        "first_epoch_s": round(step_trace, 2),  # Keras's train step traced, one epoch run
        "first_epoch_cpu_s": round(step_trace_cpu, 2),
        "first_held_s": round(held[0], 3),
        "later_held_s": [round(held[e], 3) for e in range(2, epochs, 2)],
        "first_held_cpu_s": round(held_cpu[0], 3),
        "later_held_cpu_s": [round(held_cpu[e], 3) for e in range(2, epochs, 2)],
        "epoch_after_s": [round(v, 3) for v in after],
        "epoch_clean_s": [round(v, 3) for v in clean],
        "epoch_after_cpu_s": [round(epoch_cpu[e], 3) for e in range(1, epochs, 2)],
        "epoch_clean_cpu_s": [round(epoch_cpu[e], 3) for e in range(2, epochs, 2)],
        "writer_jobs": [
            (round(s - start, 2), round(e - s, 3), round(c, 3)) for s, e, c in meter.jobs
        ],
        "writer_cpu_s": round(sum(c for *_, c in meter.jobs), 3),
        "fit_wall_s": round(wall, 2),
        "fit_cpu_s": round(cpu, 2),
        "load": os.getloadavg()[0],
    }
    later = statistics.median(row["later_held_s"]) if row["later_held_s"] else None
    row["target_held"] = later is not None and later <= 1.5 * floor + 0.5
    row["after_ratio"] = round(statistics.median(after) / statistics.median(clean), 2)
    print(json.dumps(row), flush=True)
    if profiler is not None:
        import pstats

        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+")
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--n-train", type=int, default=128)
    parser.add_argument("--layers", type=int, default=0, help="conv layers shown (0: default)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--drawn", choices=("writer", "in_place"), help="where snapshots are drawn")
    args = parser.parse_args()
    names = list(MODELS) if args.models == ["all"] else args.models
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            measure(name, args.epochs, args.n_train, args.layers, args.profile, tmp, args.drawn)


if __name__ == "__main__":
    main()
