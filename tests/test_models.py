"""The model shapes users really train: each built here, small, and run through the callbacks."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from conftest import CONVVIZ_RUNS, core_logits, read_runs, steps_of

import keras_convviz as kcv
from keras_convviz._rendering import CAPTION_HEIGHT, COLOUR_BAR_WIDTH
from keras_convviz.core.shared import core_for

RUNS = CONVVIZ_RUNS


def fit_convviz(model, x, y, log_dir, epochs=2, **kwargs):
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=8,
        verbose=0,
        callbacks=[kcv.ConvViz(log_dir, (x[:2], y[:2]), on_error="raise", **kwargs, budget=None)],
    )
    runs = read_runs(log_dir)
    assert sorted(runs) == RUNS
    for tags in runs.values():
        for tag, record in tags.items():
            assert record["steps"] == steps_of(tag, list(range(epochs)))
            if record["kind"] == "images":
                assert all(image.std() > 0 for image in record["values"])
    return runs


def classifier(layers, input_shape=None, classes=3, activation="softmax"):
    keras.utils.set_random_seed(0)
    head = [
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, activation=activation),
    ]
    stack = ([keras.Input(input_shape)] if input_shape else []) + layers + head
    model = keras.Sequential(stack)
    loss = "binary_crossentropy" if activation == "sigmoid" else "sparse_categorical_crossentropy"
    model.compile("adam", loss)
    return model


def images(shape, n=8, dtype=np.float32, high=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape)) * high).astype(dtype)


def test_sequential_without_input_is_built_from_the_probe(tmp_path):
    x, y = images((24, 24, 3)), np.arange(8) % 3
    model = classifier([keras.layers.Conv2D(4, 3, activation="relu", name="conv")])
    assert not model.built
    fit_convviz(model, x, y, tmp_path)
    only_filters = classifier([keras.layers.Conv2D(4, 3, activation="relu", name="conv")])
    only_filters.fit(
        x, y, epochs=2, verbose=0, callbacks=[kcv.FilterWeights(tmp_path / "f", on_error="raise")]
    )
    assert read_runs(tmp_path / "f")["filter_weights"]["filter_weights/conv"]["steps"] == [0, 1]


def test_preprocessing_layers_before_the_convs(tmp_path):
    x, y = images((24, 24, 3), high=255.0), np.arange(8) % 3
    model = classifier(
        [
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.RandomFlip(),
            keras.layers.RandomRotation(0.1),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        ],
        input_shape=(24, 24, 3),
    )
    fit_convviz(model, x, y, tmp_path)
    # Augmentation is off in inference mode: the maps are deterministic.
    first = kcv.grad_cam(model, x[:3])
    np.testing.assert_array_equal(first, kcv.grad_cam(model, x[:3]))


def test_nested_keras_applications_base(tmp_path):
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(96, 96, 3), alpha=0.35
    )
    inputs = keras.Input((96, 96, 3))
    h = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    h = base(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    graph = core_for(model).graph
    assert graph.default_cam_layer().path == f"{base.name}/out_relu"
    x = images((96, 96, 3), n=2, high=255.0)
    by_path = kcv.grad_cam(model, x, layer_name=f"{base.name}/Conv_1")
    np.testing.assert_array_equal(by_path, kcv.grad_cam(model, x, layer_name="Conv_1"))
    maps = kcv.feature_maps(model, x, layer_names=[f"{base.name}/Conv1"])
    inner = keras.Model(base.inputs, base.get_layer("Conv1").output)
    expected = inner([(x / 127.5 - 1).astype(np.float32)]).numpy()
    np.testing.assert_allclose(maps[f"{base.name}/Conv1"], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="No layer is called 'Conv_9'"):
        kcv.grad_cam(model, x, layer_name="Conv_9")


def test_nested_resnet50_with_a_frozen_base():
    keras.utils.set_random_seed(0)
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    base.trainable = False
    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(base(inputs)))
    model = keras.Model(inputs, outputs)
    assert core_for(model).graph.default_cam_layer().path == f"{base.name}/conv5_block3_out"
    cams = kcv.grad_cam(model, images((64, 64, 3), n=2), class_index=1)
    assert cams.shape == (2, 64, 64) and np.isfinite(cams).all()
    assert cams.max() > 0  # gradients flow through frozen layers


@pytest.mark.parametrize(
    ("shape", "dtype", "high"),
    [
        ((20, 20, 1), np.float32, 1.0),  # grayscale
        ((20, 20, 2), np.float32, 1.0),
        ((20, 20, 4), np.float32, 1.0),
        ((16, 28, 3), np.float32, 1.0),  # not square
        ((20, 20, 3), np.uint8, 255),  # uint8 probe
        ((20, 20, 3), np.float32, 255.0),  # [0, 255] floats
    ],
    ids=["gray", "2ch", "4ch", "non_square", "uint8", "0_255"],
)
def test_image_formats(tmp_path, shape, dtype, high):
    x = images(shape, dtype=dtype, high=high)
    y = np.arange(8) % 3
    model = classifier(
        [keras.layers.Conv2D(4, 3, activation="relu", name="conv")], input_shape=shape
    )
    runs = fit_convviz(model, x.astype(np.float32), y, tmp_path, patch_size=4)
    panel = runs["grad_cam"]["grad_cam/conv/image_0"]["values"][0]
    factor = -(-160 // min(shape[:2]))
    width = 3 * shape[1] * factor + 6 + COLOUR_BAR_WIDTH
    assert panel.shape == (shape[0] * factor + CAPTION_HEIGHT, width, 3)
    # uint8 probes go through the functional API as they are.
    assert kcv.grad_cam(model, x[:2]).shape == (2, *shape[:2])


def test_separable_depthwise_and_transposed_convs(tmp_path):
    x, y = images((16, 16, 3)), np.arange(8) % 3
    model = classifier(
        [
            keras.layers.SeparableConv2D(6, 3, activation="relu", name="separable"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),
            keras.layers.Conv2DTranspose(5, 3, strides=2, name="transposed"),
        ],
        input_shape=(16, 16, 3),
    )
    runs = fit_convviz(model, x, y, tmp_path)
    assert {t for t in runs["filter_weights"] if runs["filter_weights"][t]["kind"] == "images"} == {
        "filter_weights/separable",
        "filter_weights/depthwise",
        "filter_weights/transposed",
    }
    maps = kcv.feature_maps(model, x[:2])
    assert {k: v.shape for k, v in maps.items()} == {
        "separable": (2, 14, 14, 6),
        "depthwise": (2, 12, 12, 12),
        "transposed": (2, 25, 25, 5),
    }


def test_binary_sigmoid_head_scores_both_classes_with_sign():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(conv)
    )
    model = keras.Model(inputs, outputs)
    x = images((12, 12, 1), n=4)
    positive = kcv.grad_cam(model, x, layer_name="conv", class_index=1)
    negative = kcv.grad_cam(model, x, layer_name="conv", class_index=0)
    # Grad-CAM of -z: the same weights with the opposite sign before the ReLU.
    activation = keras.Model(inputs, conv)(x).numpy()
    weights = model.layers[-1].kernel.numpy()[:, 0] / 144.0
    signed = np.einsum("nhwk,k->nhw", activation, weights)
    np.testing.assert_allclose(positive, np.maximum(signed, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(negative, np.maximum(-signed, 0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        kcv.grad_cam(model, x, class_index=2)
    # Occlusion of class 0 is the negative of occlusion of class 1.
    occ1 = kcv.occlusion_sensitivity(model, x, patch_size=4, class_index=1)
    occ0 = kcv.occlusion_sensitivity(model, x, patch_size=4, class_index=0)
    np.testing.assert_allclose(occ0, -occ1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", None], ids=["multi_label", "regression"])
def test_multi_label_and_regression_heads_score_the_unit(tmp_path, activation):
    x = images((12, 12, 3))
    model = classifier(
        [keras.layers.Conv2D(4, 3, name="conv")], (12, 12, 3), classes=3, activation=activation
    )
    head = model.layers[-1]
    logits = keras.Model(model.inputs, model.layers[-2].output)([x]).numpy() @ head.kernel.numpy()
    logits += head.bias.numpy()
    np.testing.assert_allclose(core_logits(model, x), logits, rtol=1e-5, atol=1e-6)
    assert kcv.grad_cam(model, x, class_index=2).shape == (8, 12, 12)


def test_logits_and_softmax_models_give_the_same_grad_cam():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(h))
    logit_model = keras.Model(inputs, logits)
    softmax_model = keras.Model(inputs, keras.layers.Softmax()(logits))
    activation_model = keras.Model(inputs, keras.layers.Activation("softmax")(logits))
    x = images((12, 12, 3))
    expected = kcv.grad_cam(logit_model, x, class_index=1)
    assert expected.max() > 0
    for model in (softmax_model, activation_model):
        np.testing.assert_allclose(kcv.grad_cam(model, x, class_index=1), expected, rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(tmp_path, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16, 16, 3))
        h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
        h = keras.layers.GlobalAveragePooling2D()(h)
        outputs = keras.layers.Dense(3, activation="softmax", dtype="float32")(h)
        model = keras.Model(inputs, outputs)
        model.compile("adam", "sparse_categorical_crossentropy")
        x = images((16, 16, 3), high=255.0)
        fit_convviz(model, x, np.arange(8) % 3, tmp_path)
        for values in (
            kcv.grad_cam(model, x),
            kcv.occlusion_sensitivity(model, x, patch_size=4),
            kcv.feature_maps(model, x)["conv"],
        ):
            assert values.dtype == np.float32 and np.isfinite(values).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_subclassed_model_gets_a_clear_error(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3)
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(self.pool(self.conv(x)))

    model = Net()
    model(np.zeros((1, 12, 12, 3), np.float32))
    with pytest.raises(
        TypeError,
        match="cannot reach the layers of the subclassed model .* Use a "
        "Functional or Sequential model, or call the functional explainers on a "
        "Functional sub-model",
    ):
        kcv.grad_cam(model, images((12, 12, 3)))


def test_one_and_three_dimensional_convs_are_skipped_with_a_warning(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv2d")(inputs)
    h = keras.layers.Reshape((256, 4))(h)
    h = keras.layers.Conv1D(4, 3, name="conv1d")(h)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = images((16, 16, 3))
    with pytest.warns(
        UserWarning,
        match=r"FeatureMaps: the convolutions whose output lays out over the 2-D "
        r"\(height x width\) input are shown; the conv layers \['conv1d'\] are skipped",
    ):
        model.fit(
            x,
            np.arange(8) % 3,
            epochs=1,
            verbose=0,
            callbacks=[kcv.FeatureMaps(tmp_path, x[:2], on_error="raise")],
        )
    assert "feature_maps/conv2d/image_0" in read_runs(tmp_path)["feature_maps"]


def test_a_deep_model_shows_one_conv_layer_per_resolution_stage_by_default(tmp_path):
    layers = [keras.Input((32, 32, 3))]
    layers += [
        keras.layers.Conv2D(
            2, 3, strides=2 if i in (5, 10, 15) else 1, padding="same", name=f"c{i}"
        )
        for i in range(20)
    ]  # 32x32, 16x16, 8x8, 4x4: five convs each
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]
    model = keras.Sequential(layers)
    probe = np.zeros((1, 32, 32, 3), np.float32)

    def shown(max_layers=8, **options):
        maps = kcv.FeatureMaps(tmp_path, probe, max_layers=max_layers, **options)
        maps.set_model(model)
        maps.on_train_begin()
        return [need.ref.path for need in maps._needs]

    maps, kernels = kcv.FeatureMaps(tmp_path, probe), kcv.FilterWeights(tmp_path)
    for callback in (maps, kernels):
        callback.set_model(model)
        with pytest.warns(
            UserWarning,
            match=r": 4 of the 20 conv layers .* one per resolution stage .* `layer_names` .*"
            r"`max_layers=20`",
        ):
            callback.on_train_begin()
    # The last conv before each drop of resolution.
    assert [need.ref.path for need in maps._needs] == ["c4", "c9", "c14", "c19"]
    assert list(kernels._layers) == ["c4", "c9", "c14", "c19"]
    # More stages than `max_layers`: spread evenly over them, the first and last kept.
    with pytest.warns(UserWarning, match="spread evenly over its 4 stages"):
        assert shown(max_layers=2) == ["c4", "c19"]
    with pytest.warns(UserWarning, match="spread evenly over its 4 stages"):
        assert shown(max_layers=3) == ["c4", "c14", "c19"]
    # Every conv fits within `max_layers`: every one is shown.
    assert shown(max_layers=20) == [f"c{i}" for i in range(20)]
    # Named layers are shown as asked, however many.
    assert len(shown(layer_names=[f"c{i}" for i in range(20)])) == 20
    with pytest.raises(ValueError, match=r"`max_layers` must be an int >= 1. Received: max_lay"):
        kcv.FeatureMaps(tmp_path, probe, max_layers=0)


def test_convviz_says_each_set_up_message_once_for_all_its_children(tmp_path):
    """FeatureMaps, FilterWeights and ActivationMaximization pick the same default layers;
    a `ConvViz` says which in one warning naming all three, not one warning each."""
    layers = [keras.Input((8, 8, 3))]
    layers += [keras.layers.Conv2D(2, 3, padding="same", name=f"c{i}") for i in range(20)]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]
    model = keras.Sequential(layers)
    probe = np.zeros((2, 8, 8, 3), np.float32)
    callback = kcv.ConvViz(
        tmp_path, probe, grad_cam=False, occlusion=False, activation_maximization=True
    )
    callback.set_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_train_begin()
    about_layers = [str(w.message) for w in caught if "conv layers" in str(w.message)]
    assert len(about_layers) == 1, about_layers
    assert about_layers[0].startswith("FeatureMaps, FilterWeights and ActivationMaximization: "), (
        about_layers[0]
    )
