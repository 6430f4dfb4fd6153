"""Event files read back with TensorBoard's reader: exact runs, tags, steps, shapes, ranges."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import CONVVIZ_RUNS, event_files, read_runs, small_cnn, steps_of

import keras_convviz as kcv
from keras_convviz import summary_io
from keras_convviz._rendering import CAPTION_HEIGHT, COLOUR_BAR_WIDTH

N_PROBE = 3
LAYERS = ("conv_a", "conv_b")


def fit(model, data, callbacks, epochs=3):
    x, y = data
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=callbacks)


def probe_of(data):
    x, y = data
    return x[:N_PROBE], y[:N_PROBE]


def expected_tags(run):
    images = {
        "feature_maps": [
            f"feature_maps/{layer}/image_{i}" for layer in LAYERS for i in range(N_PROBE)
        ],
        "filter_weights": [f"filter_weights/{layer}" for layer in LAYERS],
        "grad_cam": [f"grad_cam/conv_b/image_{i}" for i in range(N_PROBE)],
        "occlusion_sensitivity": [f"occlusion_sensitivity/image_{i}" for i in range(N_PROBE)],
        "health": [],
    }[run]
    scalars = {
        "feature_maps": [
            f"feature_maps/{layer}/{s}"
            for layer in LAYERS
            for s in ("dead_fraction", "near_zero_fraction", "mean", "std", "max_activation")
        ],
        "filter_weights": [
            f"filter_weights/{layer}/{s}"
            for layer in LAYERS
            for s in ("max_abs", "norm", "relative_update")
        ],
        "grad_cam": [
            f"grad_cam/conv_b/image_{i}/{s}" for i in range(N_PROBE) for s in ("max", "change")
        ],
        "occlusion_sensitivity": [f"occlusion_sensitivity/image_{i}/max" for i in range(N_PROBE)],
        "health": [
            *(
                f"health/{s}"
                for s in (
                    "accuracy",
                    "confidence",
                    "majority_fraction",
                    "label_majority_fraction",
                    "loss",
                )
            ),
            *(f"health/image_{i}/probability" for i in range(N_PROBE)),
            # The dense head, which no picture shows (softmax: no dead or saturated units).
            "health/head/max_activation",
            "health/head/relative_update",
        ],
    }[run]
    return {t: "images" for t in images} | {t: "scalars" for t in scalars}


# (height, width) of each image, from the layout rules of the renderers:
# feature grids tile channels (upsampled to >= 32 px) with 1-px separators, ceil(sqrt(n)) cols;
# heatmap panels are [image | overlay | map | colour bar] upsampled to >= 160 px with 2-px
# separators, and a caption line below;
# first-layer filters are 3x3 patches x6 in a grid, deeper ones a filters x inputs grid x4.
EXPECTED_SHAPES = {
    "feature_maps/conv_a": (3 * 32 + 4, 3 * 32 + 4),  # 8 channels of 32x32 -> 3x3 grid
    "feature_maps/conv_b": (4 * 32 + 5, 4 * 32 + 5),  # 16 channels of 16x16 (x2) -> 4x4
    "filter_weights/conv_a": (3 * 18 + 4, 3 * 18 + 4),  # 8 RGB patches 3x3 (x6)
    "filter_weights/conv_b": (16 * 12 + 17, 8 * 12 + 9),  # 16 filters x 8 inputs, 3x3 (x4)
    "grad_cam": (160 + CAPTION_HEIGHT, 3 * 160 + 6 + COLOUR_BAR_WIDTH),
    "occlusion_sensitivity": (160 + CAPTION_HEIGHT, 3 * 160 + 6 + COLOUR_BAR_WIDTH),
}


def expected_shape(tag):
    for prefix, shape in EXPECTED_SHAPES.items():
        if tag.startswith(prefix):
            return shape
    raise KeyError(tag)


def check_run(tags, run, steps):
    expected = expected_tags(run)
    assert {t: v["kind"] for t, v in tags.items()} == expected
    for tag, record in tags.items():
        assert record["steps"] == steps_of(tag, steps), tag
        if record["kind"] == "images":
            for image in record["values"]:
                assert image.dtype == np.uint8
                assert image.shape == (*expected_shape(tag), 3), tag
                assert image.std() > 0, f"{tag} is a blank image"
        else:
            assert all(np.isfinite(record["values"])), tag


@pytest.mark.parametrize(
    "make",
    [
        lambda d, p: kcv.FeatureMaps(d, p),
        lambda d, p: kcv.FilterWeights(d),
        lambda d, p: kcv.GradCAM(d, p),
        lambda d, p: kcv.OcclusionSensitivity(d, p, patch_size=8),
    ],
    ids=["feature_maps", "filter_weights", "grad_cam", "occlusion_sensitivity"],
)
def test_each_callback_writes_exact_tags(tmp_path, model, data, make):
    callback = make(str(tmp_path), probe_of(data))
    fit(model, data, [callback])
    runs = read_runs(tmp_path)
    assert list(runs) == [callback.run_name]
    check_run(runs[callback.run_name], callback.run_name, steps=[0, 1, 2])


def test_convviz_writes_all_its_runs(tmp_path, model, data):
    fit(model, data, [kcv.ConvViz(tmp_path, probe_of(data), patch_size=8, budget=None)])
    runs = read_runs(tmp_path)
    assert sorted(runs) == CONVVIZ_RUNS
    for run, tags in runs.items():
        check_run(tags, run, steps=[0, 1, 2])
    # One event file per run: TensorBoard's fast loader serves every image only then.
    assert len(event_files(tmp_path)) == 5


def test_freq_writes_every_nth_epoch(tmp_path, model, data):
    fit(model, data, [kcv.GradCAM(tmp_path, probe_of(data), freq=2)], epochs=5)
    tags = read_runs(tmp_path)["grad_cam"]
    steps = {t: tuple(v["steps"]) for t, v in tags.items()}
    # A change is measured between snapshots: from the second one on.
    assert {s for t, s in steps.items() if not t.endswith("/change")} == {(0, 2, 4)}
    assert {s for t, s in steps.items() if t.endswith("/change")} == {(2, 4)}


def test_freq_zero_writes_nothing(tmp_path, model, data):
    fit(model, data, [kcv.ConvViz(tmp_path / "logs", probe_of(data), freq=0)])
    assert event_files(tmp_path) == []
    assert not (tmp_path / "logs").exists()


def test_fit_twice_with_one_instance(tmp_path, model, data):
    callback = kcv.GradCAM(tmp_path, probe_of(data))
    fit(model, data, [callback], epochs=2)
    x, y = data
    model.fit(x, y, epochs=4, initial_epoch=2, verbose=0, callbacks=[callback])
    tags = read_runs(tmp_path)["grad_cam"]
    steps = {t: tuple(v["steps"]) for t, v in tags.items()}
    assert {s for t, s in steps.items() if not t.endswith("/change")} == {(0, 1, 2, 3)}
    # The second fit's first map is compared with the first fit's last one.
    assert {s for t, s in steps.items() if t.endswith("/change")} == {(1, 2, 3)}
    assert len(event_files(tmp_path)) == 1  # both fits in one event file


def test_coexists_with_keras_tensorboard(tmp_path, model, data):
    import keras

    x, y = data
    model.fit(
        x,
        y,
        epochs=2,
        validation_data=(x, y),
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(tmp_path), kcv.GradCAM(tmp_path, probe_of(data))],
    )
    assert {"train", "validation", "grad_cam"} <= set(p.name for p in tmp_path.iterdir())
    assert "grad_cam/conv_b/image_0" in read_runs(tmp_path)["grad_cam"]


def test_probe_as_dataset_and_one_hot_labels(tmp_path, data):
    import tensorflow as tf

    x, y = data
    one_hot = np.eye(4, dtype=np.float32)[y]
    dataset = tf.data.Dataset.from_tensor_slices((x, one_hot)).batch(N_PROBE)
    model = small_cnn()
    fit(
        model,
        data,
        [
            kcv.GradCAM(tmp_path / "a", dataset),
            kcv.GradCAM(tmp_path / "b", (x[:N_PROBE], y[:N_PROBE])),
        ],
        epochs=1,
    )
    a = read_runs(tmp_path / "a")["grad_cam"]
    b = read_runs(tmp_path / "b")["grad_cam"]
    for tag in a:
        np.testing.assert_array_equal(a[tag]["values"][0], b[tag]["values"][0])


def test_sequential_model_with_input(tmp_path, data):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(4, activation="softmax", name="head"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    fit(model, data, [kcv.ConvViz(tmp_path, probe_of(data), patch_size=8, budget=None)], epochs=2)
    runs = read_runs(tmp_path)
    assert sorted(runs) == CONVVIZ_RUNS
    for run, tags in runs.items():
        check_run(tags, run, steps=[0, 1])


def test_written_images_and_scalars_are_exactly_the_rendered_ones(tmp_path, data, monkeypatch):
    from keras_convviz.callbacks.base import SnapshotCallback
    from keras_convviz.summary_io import Image, Scalar

    written = {}
    write = SnapshotCallback._write

    def record(self, epoch, summaries):
        for item in summaries:
            if item.sparse if isinstance(item, Scalar) else False:
                continue  # non_finite, written only once non-zero: never on this healthy run
            value = item.data[0] if isinstance(item, Image) else item.value
            written[(self.run_name, item.tag, epoch)] = np.asarray(value)
        return write(self, epoch, summaries)

    monkeypatch.setattr(SnapshotCallback, "_write", record)
    model = small_cnn()
    callback = kcv.ConvViz(tmp_path, probe_of(data), patch_size=8, budget=None)
    fit(model, data, [callback], epochs=5)
    x, y = data
    model.fit(x, y, epochs=7, initial_epoch=5, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    read_back = {
        (run, tag, step): value
        for run, tags in runs.items()
        for tag, record in tags.items()
        for step, value in zip(record["steps"], record["values"])
    }
    assert read_back.keys() == written.keys()
    for key, value in written.items():
        if value.dtype == np.uint8:  # an image: the PNG decodes to exactly the rendered pixels
            np.testing.assert_array_equal(read_back[key], value, err_msg=str(key))
        else:
            assert read_back[key] == np.float32(value), key


def test_images_encoded_side_by_side_keep_their_order():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, 5 + i, 9 + 2 * i, 3), dtype=np.uint8) for i in range(12)]
    encoded = summary_io.encode_images([tf.constant(image) for image in images])
    for image, summary in zip(images, encoded):
        width, height, png = summary.numpy()
        assert (int(width), int(height)) == (image.shape[2], image.shape[1])
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image[0])
