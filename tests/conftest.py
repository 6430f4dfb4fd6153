"""Shared fixtures: tiny models, probes, and reading event files back like TensorBoard."""

from __future__ import annotations

import os
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_convviz.exports.events import read_runs  # noqa: E402, F401  (tests import it from here)


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
    from keras_convviz.core.binding import bind
    from keras_convviz.core.needs import Logits, Plan
    from keras_convviz.core.probe import make_probe
    from keras_convviz.core.shared import core_for

    core = core_for(model)
    bound = bind(core.graph, make_probe(images))
    return core.run(Plan([Logits()]), bound)[Logits()].numpy()


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
        callbacks=[kcv.ConvViz(log_dir, (x[:2], y[:2]), patch_size=8)],
    )
    return log_dir
