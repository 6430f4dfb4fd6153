"""Clear errors for bad arguments, raised before the first epoch; failures never end a run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from conftest import small_cnn

import keras_convviz as kcv


def fit_raises(model, data, callback, error, message):
    x, y = data
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(error, match=message):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    # Raised before any training step: nothing the user trains has changed.
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_unknown_layer_name_lists_the_conv_layers(tmp_path, model, data):
    x, _ = data
    message = re.escape(
        "No layer is called 'conv_z'. Conv layers: ['conv_a', 'conv_b']. "
        "Received: layer_names='conv_z'"
    )
    fit_raises(
        model, data, kcv.FeatureMaps(tmp_path, x[:2], layer_names=["conv_z"]), ValueError, message
    )
    fit_raises(
        model,
        data,
        kcv.GradCAM(tmp_path, x[:2], layer_name="conv_z"),
        ValueError,
        "No layer is called 'conv_z'",
    )
    fit_raises(
        model,
        data,
        kcv.FilterWeights(tmp_path, layer_names=["conv_z"]),
        ValueError,
        "No layer is called 'conv_z'",
    )
    with pytest.raises(ValueError, match="No layer is called 'nope'"):
        kcv.grad_cam(model, x[:2], layer_name="nope")


def test_layer_without_spatial_output(tmp_path, model, data):
    x, _ = data
    message = re.escape(
        "must name layers whose output lays out over the 2-D (height x width) input (the "
        "input's spatial axes, or tokens on a patch grid). Layer 'gap' has output shape (None, 16)"
    )
    fit_raises(model, data, kcv.GradCAM(tmp_path, x[:2], layer_name="gap"), ValueError, message)
    fit_raises(
        model,
        data,
        kcv.FilterWeights(tmp_path, layer_names=["pool"]),
        ValueError,
        "must name conv layers for FilterWeights. Layer 'pool' is a MaxPooling2D",
    )


@pytest.mark.parametrize("freq", [-1, 1.5, "2", True])
def test_bad_freq(tmp_path, data, freq):
    x, _ = data
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`freq` must be a non-negative int (epochs between snapshots; 0 disables). "
            f"Received: freq={freq!r}"
        ),
    ):
        kcv.GradCAM(tmp_path, x[:2], freq=freq)
    with pytest.raises(ValueError, match="`freq` must be a non-negative int"):
        kcv.ConvViz(tmp_path, x[:2], freq=freq)


def test_patch_size_and_stride_out_of_range(tmp_path, data):
    x, _ = data
    with pytest.raises(
        ValueError,
        match=re.escape("`patch_size` must fit in the 32x32 probe images. Received: patch_size=40"),
    ):
        kcv.OcclusionSensitivity(tmp_path, x[:2], patch_size=40)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`patch_size` must be a positive int or a pair of positive ints. Received: patch_size=0"
        ),
    ):
        kcv.OcclusionSensitivity(tmp_path, x[:2], patch_size=0)
    with pytest.raises(ValueError, match=re.escape("`stride` must be at most `patch_size`")):
        kcv.OcclusionSensitivity(tmp_path, x[:2], patch_size=4, stride=8)
    with pytest.raises(ValueError, match="`patch_size` must fit"):
        kcv.occlusion_sensitivity(small_cnn(), x[:2], patch_size=(8, 33))


def test_probe_that_does_not_fit_the_model(tmp_path, model, data):
    wrong_size = np.zeros((2, 28, 28, 3), np.float32)
    message = re.escape(
        "`probe` images must match the model input shape (batch, 32, 32, 3). "
        "Received: images of shape (2, 28, 28, 3)"
    )
    fit_raises(model, data, kcv.GradCAM(tmp_path, wrong_size), ValueError, message)
    wrong_channels = np.zeros((2, 32, 32, 1), np.float32)
    fit_raises(
        model,
        data,
        kcv.FeatureMaps(tmp_path, wrong_channels),
        ValueError,
        re.escape("Received: images of shape (2, 32, 32, 1)"),
    )
    # Whether an array is one sample or a batch is known from the model's input: one image
    # of this model is told so before the first epoch, a batch that does not fit is not.
    fit_raises(
        model,
        data,
        kcv.GradCAM(tmp_path, np.zeros((32, 32, 3), np.float32)),
        ValueError,
        re.escape(
            "Received: images of shape (32, 32, 3); that is one sample: for one sample use x[None]"
        ),
    )
    with pytest.raises(ValueError) as error:
        model.fit(*data, epochs=1, verbose=0, callbacks=[kcv.GradCAM(tmp_path, wrong_size)])
    assert "x[None]" not in str(error.value)


def test_bad_probe_content(tmp_path, data):
    x, y = data
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`probe` must hold at least one image. Received: images of shape (0, 32, 32, 3)"
        ),
    ):
        kcv.GradCAM(tmp_path, x[:0])
    bad = x[:2].copy()
    bad[0, 0, 0, 0] = np.nan
    bad[1, 1, 1, 1] = np.inf
    with pytest.raises(
        ValueError,
        match=re.escape("`probe` images must be finite. Received: images with 2 NaN/Inf values"),
    ):
        kcv.FeatureMaps(tmp_path, bad)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`probe` labels must have one entry per image (4 images). Received: 3 labels"
        ),
    ):
        kcv.GradCAM(tmp_path, (x[:4], y[:3]))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`probe` must be a batch of images, an (images, labels) tuple or a "
            "tf.data.Dataset. Received: probe=None"
        ),
    ):
        kcv.OcclusionSensitivity(tmp_path, None)


def test_class_index_out_of_range(tmp_path, model, data):
    x, y = data
    fit_raises(
        model,
        data,
        kcv.GradCAM(tmp_path, x[:2], class_index=4),
        ValueError,
        re.escape(
            "`class_index` must be in [0, 4) for the model's 4 outputs. Received: class_index=4"
        ),
    )
    with pytest.raises(ValueError, match=re.escape("Received: class_index=-1")):
        kcv.OcclusionSensitivity(tmp_path, x[:2], class_index=-1)
    with pytest.raises(TypeError, match=re.escape("Received: class_index='cat'")):
        kcv.GradCAM(tmp_path, x[:2], class_index="cat")
    # Probe labels beyond the output's classes: the model or the labels are broken (a
    # softmax over one unit with 0/1 labels); the callback switches off with one warning
    # and `fit` runs (`ConvViz` also raises the `labels_out_of_range` alert).
    callback = kcv.GradCAM(tmp_path, (x[:2], np.array([0, 7])))
    with pytest.warns(UserWarning, match=re.escape("labels are classes 0..7 but output")):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert not callback._active


def test_bad_counts(tmp_path, data):
    x, _ = data
    with pytest.raises(
        ValueError, match=re.escape("`max_channels` must be an int >= 1. Received: max_channels=0")
    ):
        kcv.FeatureMaps(tmp_path, x[:2], max_channels=0)
    with pytest.raises(
        ValueError, match=re.escape("`batch_size` must be an int >= 1. Received: batch_size=0")
    ):
        kcv.OcclusionSensitivity(tmp_path, x[:2], batch_size=0)
    with pytest.raises(
        ValueError,
        match=re.escape("`on_error` must be one of ('warn', 'raise'). Received: on_error='ignore'"),
    ):
        kcv.GradCAM(tmp_path, x[:2], on_error="ignore")


def test_unwritable_log_dir_is_found_before_training(tmp_path, model, data):
    x, _ = data
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fit_raises(
        model,
        data,
        kcv.GradCAM(blocker / "logs", x[:2]),
        ValueError,
        "`log_dir` must be a writable directory",
    )


def test_a_failing_snapshot_warns_once_and_training_goes_on(tmp_path, model, data):
    x, y = data
    callback = kcv.GradCAM(tmp_path, x[:2])

    def broken(epoch, captured):
        raise MemoryError("out of memory (injected)")

    callback._snapshot = broken
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=5, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 5
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages[0].startswith(
        "GradCAM could not write its snapshot at epoch 1: MemoryError: out of memory (injected)"
    )
    assert "off for the rest of this training run" in messages[1]
    assert len(messages) == 2

    raising = kcv.GradCAM(tmp_path, x[:2], on_error="raise")
    raising._snapshot = broken
    with pytest.raises(MemoryError, match="injected"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[raising])


BACKEND_SCRIPT = """
import keras
import keras
import numpy as np
import keras_convviz as kcv

assert keras.backend.backend() == "numpy", keras.backend.backend()
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                          keras.layers.Dense(2)])
for attempt in (lambda: kcv.ConvViz("logs", np.zeros((1, 8, 8, 3))),
                lambda: kcv.grad_cam(model, np.zeros((1, 8, 8, 3)))):
    try:
        attempt()
    except ValueError as error:
        print("ValueError:", error)
"""


def test_a_non_tensorflow_keras_backend_is_refused_at_construction(tmp_path):
    # Keras picks its backend once per process, so Keras runs on its numpy backend in a
    # subprocess of its own.
    env = {**os.environ, "KERAS_BACKEND": "numpy", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", BACKEND_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    message = (
        "ValueError: keras_convviz needs the TensorFlow Keras backend (set "
        "KERAS_BACKEND=tensorflow before importing keras). Received: backend 'numpy'"
    )
    assert result.stdout.splitlines() == [message, message]
    assert not (tmp_path / "logs").exists()


# ---- what a new user tripped over (issue 16, item 5) ------------------------------------


def test_a_negative_class_index_is_called_one_at_construction(tmp_path, data):
    x, _ = data
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`class_index` must be None, 'predicted' or a non-negative int class index. "
            "Received: class_index=-1"
        ),
    ):
        kcv.GradCAM(tmp_path, x[:2], class_index=-1)


def test_an_unbatched_dataset_probe_is_told_to_batch(tmp_path, model, data):
    import tensorflow as tf

    x, y = data
    dataset = tf.data.Dataset.from_tensor_slices((x[:4], y[:4]))
    callback = kcv.GradCAM(tmp_path, dataset)
    fit_raises(model, data, callback, ValueError, re.escape("use dataset.batch(n)"))


def test_swapped_log_dir_and_probe_are_named(tmp_path, data):
    x, _ = data
    with pytest.raises(
        TypeError,
        match=re.escape(
            "not a path. Received: probe='logs/run1'. The log directory comes first: "
            "ConvViz(log_dir, probe)."
        ),
    ):
        kcv.ConvViz(x[:2], "logs/run1")


def test_convviz_errors_name_the_argument_the_user_passed(tmp_path, model, data):
    x, _ = data
    fit_raises(
        model,
        data,
        kcv.ConvViz(tmp_path, x[:2], cam_layer="conv_z", on_error="raise"),
        ValueError,
        re.escape("Received: cam_layer='conv_z'"),
    )


def test_an_unknown_layer_lists_the_nested_models(tmp_path):
    inner = small_cnn()
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, inner(inputs), name="outer")
    with pytest.raises(
        ValueError,
        match=re.escape("Nested models (address their layers as 'model/layer'): ['small_cnn']"),
    ):
        kcv.grad_cam(outer, np.zeros((1, 32, 32, 3), np.float32), layer_name="base/conv_b")


def test_a_large_probe_warns_and_says_how_to_take_fewer(tmp_path, model, data):
    import tensorflow as tf

    # Told when training starts, once the probe is known to be a batch of the model's
    # samples (an array alone could be one sample of a model of another rank).
    x, y = data
    with pytest.warns(UserWarning, match=re.escape("The probe holds 32 samples")):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kcv.GradCAM(tmp_path, (x, y))])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    with pytest.warns(UserWarning, match=re.escape("dataset.unbatch().take(n).batch(n)")):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kcv.FeatureMaps(tmp_path, dataset)])


def test_class_index_names_its_choices(tmp_path, data):
    x, _ = data
    with pytest.raises(
        TypeError,
        match=re.escape(
            "`class_index` must be None, 'predicted' or an int class index. "
            "Received: class_index='largest'"
        ),
    ):
        kcv.ConvViz(tmp_path, x[:2], class_index="largest")


def test_warnings_name_the_users_line_not_ours(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((20, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 20)
    callback = kcv.ConvViz(tmp_path, (x, y), occlusion=False)  # 20 images: a large probe
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        small_cnn().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    large = [w for w in seen if "The probe holds 20 samples" in str(w.message)]
    assert len(large) == 1
    assert large[0].filename == __file__  # the `fit` line above, through Keras's frames
