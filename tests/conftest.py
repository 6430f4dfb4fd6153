"""Shared fixtures: tiny models, probes, and reading event files back like TensorBoard."""

from __future__ import annotations

import os
import subprocess
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_convviz.core import shared  # noqa: E402
from keras_convviz.core.recorder import Recorder  # noqa: E402
from keras_convviz.exports.events import decode_png, find_runs, read_run  # noqa: E402
from keras_convviz.methods.occlusion import incremental  # noqa: E402
from keras_convviz.methods.occlusion.windows import window_starts  # noqa: E402


def read_runs(log_dir) -> dict:
    """Every run under `log_dir`, read with TensorBoard's own event reader.

    Runs without image or scalar tags (text only: the alerts) are left out.

    Returns:
        `{run: {tag: {"kind": "images"|"scalars", "steps": [...], "values": [...]}}}`,
        image values decoded as `(height, width, channels)` uint8 arrays (the first image
        of each step).
    """
    runs = {}
    for run in find_runs(log_dir):
        tags = {}
        for series in read_run(log_dir, run):
            if series.kind == "images":
                values = [decode_png(v[0], s) for v, s in zip(series.values, series.sizes)]
            else:
                values = list(series.values)
            tags[series.tag] = {"kind": series.kind, "steps": series.steps, "values": values}
        if tags:  # a run of text summaries only (alerts, the health table) is left out
            runs[run] = tags
    return runs


def forget(model: keras.Model) -> None:
    """Drop a model's core and shared passes (the next call resolves the model afresh)."""
    model.__dict__.pop(shared._CORE_ATTRIBUTE, None)
    model.__dict__.pop(shared._SHARED_ATTRIBUTE, None)


def plan_for(model, image_shape, patch, stride) -> incremental.Plan | None:
    """The incremental occlusion plan for a single-input model and window size, without
    running it: which layers are recomputed on rectangles, where full layers start, the
    estimated cost ratio (what `method="auto"` decides on).

    Args:
        model: a built Keras model with one (image) input.
        image_shape: `(height, width, channels)`.
        patch: `(rows, cols)` of the window; stride: `(rows, cols)`.
    """
    graph = shared.core_for(model).graph
    head = graph.head(None)
    tops = window_starts(image_shape[0], patch[0], stride[0])
    lefts = window_starts(image_shape[1], patch[1], stride[1])
    found = []

    def trace(images):
        calls = Recorder([images])
        graph.run([images], {}, head, wrap=calls)
        found.append(incremental.make_plan(calls.records, images, head.layer, tops, lefts, patch))
        return tf.constant(0)

    tf.function(trace, autograph=False).get_concrete_function(
        tf.TensorSpec((None, *image_shape), tf.float32)
    )
    return found[0]


def small_cnn(input_shape=(32, 32, 3), num_classes=4, final_activation="softmax", seed=0):
    """conv 8 / pool / conv 16 / GAP / dense, the shape of a user's small CNN."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation=final_activation, name="head")(x)
    model = keras.Model(inputs, outputs, name="small_cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture
def model():
    return small_cnn()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, size=32).astype(np.int32)
    return x, y


# The runs a default `ConvViz` writes on a healthy model, sorted.
CONVVIZ_RUNS = ["feature_maps", "filter_weights", "grad_cam", "health", "occlusion_sensitivity"]


def stop_process(process) -> None:
    """Stop a subprocess a test started (terminate, then kill after 20 s) and reap it."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# Quantities measured between two snapshots: written from the second snapshot on.
BETWEEN_SNAPSHOTS = ("/relative_update", "/change")


def steps_of(tag: str, steps: list[int]) -> list[int]:
    """The steps a tag is written at, when its callback snapshots at `steps`."""
    return list(steps[1:]) if tag.endswith(BETWEEN_SNAPSHOTS) else list(steps)


def event_files(log_dir) -> list[str]:
    found = []
    for root, _, files in os.walk(log_dir):
        found += [os.path.join(root, f) for f in files if "tfevents" in f]
    return sorted(found)


def core_logits(model, images) -> np.ndarray:
    """The class scores the compiled core reads from a model (before a final squashing)."""
    from keras_convviz.core import targets
    from keras_convviz.core.binding import bind
    from keras_convviz.core.needs import ClassScores, Plan
    from keras_convviz.core.probe import make_probe
    from keras_convviz.core.shared import core_for

    core = core_for(model)
    bound = bind(core.graph, make_probe(images))
    classes = np.full(len(images), -1, np.int32)
    need = ClassScores(targets.for_head(bound.binding.head, classes))
    return core.run(Plan([need]), bound)[need].numpy()


# The demo CNN trained on synthetic shapes: the model whose maps the truth tests check and
# whose filters the activation-maximization tests climb. Trained long enough that every
# assertion on it holds with a margin for every seed, with oneDNN on and off
# (benchmarks/seed_spread.py; BENCHMARKS.md, "Seed spread of the trained-model tests").
SHAPES_TRAIN = 4000
SHAPES_EPOCHS = 5
SHAPES_BATCH = 32
SHAPES_PROBE = 32


def train_shapes_model(seed: int, callbacks=()) -> keras.Model:
    """The demo CNN trained on `SHAPES_TRAIN` shapes drawn with seed `100 + seed`."""
    from keras_convviz.datasets import make_shapes
    from keras_convviz.demo import train_demo_model

    keras.utils.set_random_seed(seed)
    data = make_shapes(SHAPES_TRAIN, seed=100 + seed)
    return train_demo_model(
        data, epochs=SHAPES_EPOCHS, batch_size=SHAPES_BATCH, callbacks=callbacks
    )[0]


PROBE_SEED = 4242


def shapes_probe_data():
    """The probe the trained-model tests look at: shapes none of the trainings saw."""
    from keras_convviz.datasets import make_shapes

    return make_shapes(SHAPES_PROBE, seed=PROBE_SEED)


@pytest.fixture(scope="session")
def shapes_probe():
    return shapes_probe_data()


class TrainedShapes(NamedTuple):
    model: keras.Model
    log_dir: str  # ConvViz's logs of its training, faithfulness and `in_region` included
    alerts: list  # every alert that training raised
    layer: str  # Grad-CAM's layer (the default one)


def train_with_convviz(seed: int, log_dir) -> TrainedShapes:
    """`train_shapes_model(seed)` with `ConvViz` at every epoch, alerts on, the
    faithfulness of Grad-CAM and occlusion on 16 probe images, and the probe shapes' masks
    as `regions` (the clean model of the shortcut tests)."""
    import keras_convviz as kcv
    from keras_convviz.datasets import make_shortcut_shapes

    probe = shapes_probe_data()
    # `make_shortcut_shapes` without cues draws the same images, and knows the shapes' masks.
    masks = make_shortcut_shapes(SHAPES_PROBE, seed=PROBE_SEED, cues=None).masks
    alerts = []
    convviz = kcv.ConvViz(
        str(log_dir),
        (probe.images[:16], probe.labels[:16]),
        regions=masks[:16],
        faithfulness=True,
        on_alert=alerts.append,
        on_error="raise",
        budget=None,  # every kind at every epoch
    )
    model = train_shapes_model(seed, [convviz])
    return TrainedShapes(model, str(log_dir), alerts, grad_cam_layer(convviz))


def grad_cam_layer(convviz) -> str:
    """The layer a `ConvViz`'s Grad-CAM explains (its default one)."""
    import keras_convviz as kcv

    (grad_cam,) = [c for c in convviz.callbacks if isinstance(c, kcv.GradCAM)]
    return grad_cam._map_needs[0].ref.path


@pytest.fixture(scope="session")
def trained_shapes(tmp_path_factory) -> TrainedShapes:
    """Seed 0 trained with `ConvViz` (read only: the truth, activation-maximization and
    shortcut tests share it)."""
    return train_with_convviz(0, tmp_path_factory.mktemp("trained_shapes"))


EPOCHS_12 = 12


@pytest.fixture(scope="session")
def logs_12_epochs(tmp_path_factory):
    """Logs of a 12-epoch `ConvViz` run of the small CNN on 2 probe images, shared by the
    export and TensorBoard tests (read only: copy before changing)."""
    import keras_convviz as kcv

    log_dir = tmp_path_factory.mktemp("logs_12_epochs")
    rng = np.random.default_rng(0)
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, size=32).astype(np.int32)
    small_cnn().fit(
        x,
        y,
        epochs=EPOCHS_12,
        verbose=0,
        callbacks=[kcv.ConvViz(log_dir, (x[:2], y[:2]), patch_size=8, budget=None)],
    )
    return log_dir


# The shortcut model of tests/test_shortcut.py: the demo CNN on the truth tests' 64x64 shapes
# with the class's cue in a corner. The cue is learnt within the first epoch, so a short
# training suffices; the clean model is `trained_shapes` (the same probe without the cue),
# which learns the shapes well (BENCHMARKS.md, "Seed spread of the trained-model tests").
SHORTCUT_SIZE = 64
SHORTCUT_TRAIN = 1000
SHORTCUT_EPOCHS = 6


def train_shortcut(seed: int, log_dir) -> TrainedShapes:
    """The demo CNN on `SHORTCUT_TRAIN` shapes drawn with seed `100 + seed`, the class's cue
    in a corner of every image, `ConvViz` at every epoch on the truth tests' probe images
    (with their cue) and the shapes' masks as `regions` (occlusion off: Grad-CAM is what
    the alert reads)."""
    import keras_convviz as kcv
    from keras_convviz.datasets import make_shortcut_shapes
    from keras_convviz.demo import train_demo_model

    train = make_shortcut_shapes(SHORTCUT_TRAIN, SHORTCUT_SIZE, seed=100 + seed)
    probe = make_shortcut_shapes(SHAPES_PROBE, SHORTCUT_SIZE, seed=PROBE_SEED)
    alerts = []
    convviz = kcv.ConvViz(
        str(log_dir),
        (probe.images[:16], probe.labels[:16]),
        regions=probe.masks[:16],
        occlusion=False,
        on_alert=alerts.append,
        on_error="raise",
        budget=None,
    )
    keras.utils.set_random_seed(seed)
    model = train_demo_model(train, epochs=SHORTCUT_EPOCHS, callbacks=[convviz])[0]
    return TrainedShapes(model, str(log_dir), alerts, grad_cam_layer(convviz))


@pytest.fixture(scope="session")
def shortcut_runs(tmp_path_factory, trained_shapes) -> dict[str, TrainedShapes]:
    """Seed 0 trained with the shortcut, and `trained_shapes` as the clean model (read
    only)."""
    return {
        "shortcut": train_shortcut(0, tmp_path_factory.mktemp("shortcut")),
        "clean": trained_shapes,
    }


class CountCalls(keras.layers.Layer):
    """Identity layer counting inference forward passes and the backward passes through it."""

    def build(self, input_shape):
        self.forward = self.add_weight(shape=(), initializer="zeros", trainable=False)
        self.backward = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, inputs, training=False):
        if training:
            return inputs
        self.forward.assign_add(1.0)

        @tf.custom_gradient
        def identity(x):
            def grad(upstream):
                self.backward.assign_add(1.0)
                return upstream

            return tf.identity(x), grad

        return identity(inputs)
