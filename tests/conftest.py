"""Shared fixtures: tiny models, probes, and reading event files back like TensorBoard."""

from __future__ import annotations

import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402


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


def read_runs(log_dir) -> dict:
    """Read every run under `log_dir` with TensorBoard's own event reader.

    Returns:
        {run: {tag: {"kind": "images"|"scalars", "steps": [...], "values": [...]}}} where
        image values are decoded (height, width, channels) uint8 arrays.
    """
    runs = {}
    for run in sorted(os.listdir(log_dir)):
        path = os.path.join(log_dir, run)
        if not os.path.isdir(path):
            continue
        acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
        acc.Reload()
        tags = {}
        for tag in acc.Tags()["tensors"]:
            plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
            events = acc.Tensors(tag)
            if plugin == "images":
                values = []
                for event in events:
                    blob = tf.make_ndarray(event.tensor_proto)
                    image = np.asarray(PILImage.open(io.BytesIO(blob[2])))
                    # [width, height, png], as tf.summary.image writes it
                    assert [int(v) for v in blob[:2]] == [image.shape[1], image.shape[0]], tag
                    values.append(image)
            elif plugin == "scalars":
                values = [float(tf.make_ndarray(e.tensor_proto)) for e in events]
            else:  # e.g. the model graph that keras.callbacks.TensorBoard writes
                continue
            tags[tag] = {"kind": plugin, "steps": [e.step for e in events], "values": values}
        if tags:  # a run of text summaries only (alerts, the health table) is left out
            runs[run] = tags
    return runs


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
