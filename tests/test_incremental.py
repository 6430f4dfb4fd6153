"""Incremental occlusion (Krypton): the same scores as the naive path, on every layer kind.

The naive path (the model on every occluded copy) is the oracle: on small random models
that cover each supported layer kind, a fallback case and nested models, the maps of
`method="incremental"` must match `method="naive"` within 1e-5 of the scores' scale, and the
plan must show that the layers really ran on rectangles.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import core_logits, plan_for, read_runs

import keras_convviz as kcv
from keras_convviz.methods.occlusion.incremental import AUTO_MAX_RATIO, takes_incremental

L = keras.layers
SIZE = 24


def randomise(model: keras.Model, seed: int) -> keras.Model:
    """Random kernels and biases, and random batch-norm statistics (inference mode reads
    them), so no layer is an identity by accident."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        name = w.path
        if "moving_variance" in name or "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1])) or 1
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        else:
            value = rng.normal(0.0, 0.2, shape)
        w.assign(value.astype(np.float32))
    return model


def convs_and_pools() -> keras.Model:
    """Conv2D of every geometry (kernel, stride, dilation, same/valid) and both pools."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = L.Rescaling(2.0, offset=-1.0)(inputs)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="same3")(x)
    x = L.AveragePooling2D(3, strides=1, padding="same", name="avg_same")(x)
    x = L.Conv2D(6, (2, 3), strides=(2, 1), padding="same", name="rect_strided")(x)
    x = L.Conv2D(6, 3, dilation_rate=2, padding="same", activation="tanh", name="dilated")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same", name="max_same")(x)
    x = L.Conv2D(8, 3, padding="valid", activation="relu", name="valid3")(x)
    x = L.AveragePooling2D(2, name="avg_valid")(x)
    x = L.Flatten()(x)
    outputs = L.Dense(5)(x)
    return randomise(keras.Model(inputs, outputs, name="convs_and_pools"), 1)


def mobile_blocks() -> keras.Model:
    """Depthwise/separable convs, batch norm, element-wise layers, padding and joins."""
    norm = L.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.1, 0.2, 0.3])
    inputs = keras.Input((SIZE, SIZE, 3))
    x = norm(inputs)
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    x = L.Conv2D(8, 3, strides=2, padding="valid", use_bias=False, name="stem")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(6.0, name="relu6")(x)
    skip = x
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Conv2D(8, 1, name="project")(x)
    x = L.Add(name="add")([x, skip])
    y = L.SeparableConv2D(4, 3, padding="same", activation="swish", name="separable")(x)
    z = L.Activation("elu")(x)
    z = L.Conv2D(4, 1)(z)
    x = L.Concatenate(name="concat")([y, z, x])
    x = L.PReLU(shared_axes=[1, 2])(x)
    x = L.LayerNormalization(name="layer_norm")(x)
    x = L.Add(name="add_softmax")([x, L.Softmax(name="softmax")(x)])
    m = L.Multiply()([x, L.Activation("sigmoid")(x)])
    x = L.Maximum()([m, L.Subtract()([x, m])])
    x = L.Dropout(0.5)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", name="dw_strided")(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(5)(x)
    return randomise(keras.Model(inputs, outputs, name="mobile_blocks"), 2)


class Scaled(L.Layer):
    """A custom layer: the map scaled by its own mean (a global op the plan cannot know)."""

    def call(self, x):
        return x * keras.ops.mean(x)


def fallback() -> keras.Model:
    """A squeeze-and-excitation block, a custom layer and attention end the rectangles."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    squeeze = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    excite = L.Dense(8, activation="sigmoid")(squeeze)
    x = L.Multiply(name="excite")([x, excite])
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    x = Scaled(name="custom")(x)
    x = L.Reshape((-1, 8))(x)
    x = L.MultiHeadAttention(2, 4, name="attention")(x, x)
    x = L.GlobalAveragePooling1D()(x)
    outputs = L.Dense(5, activation="softmax")(x)
    return randomise(keras.Model(inputs, outputs, name="fallback"), 3)


def nested() -> keras.Model:
    """A functional base and a Sequential block nested in a functional model."""
    base_in = keras.Input((SIZE, SIZE, 3))
    b = L.Conv2D(8, 3, padding="same", name="b_conv1")(base_in)
    b = L.BatchNormalization(name="b_bn")(b)
    b = L.Activation("relu")(b)
    c = L.Conv2D(8, 3, padding="same", activation="relu", name="b_conv2")(b)
    b = L.Add()([b, c])
    b = L.MaxPooling2D(name="b_pool")(b)
    base = keras.Model(base_in, b, name="base")
    block = keras.Sequential(
        [L.Conv2D(12, 3, strides=2, padding="same", activation="relu"), L.Conv2D(12, 3)],
        name="block",
    )
    inputs = keras.Input((SIZE, SIZE, 3))
    x = L.Rescaling(1 / 255.0)(inputs)
    x = block(base(x))
    x = L.GlobalMaxPooling2D()(x)
    outputs = L.Dense(5)(x)
    return randomise(keras.Model(inputs, outputs, name="nested"), 4)


@pytest.fixture(scope="module")
def models():
    return {
        "convs_and_pools": convs_and_pools(),
        "mobile_blocks": mobile_blocks(),
        "fallback": fallback(),
        "nested": nested(),
    }


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0.0, 1.0, (2, SIZE, SIZE, 3)).astype(np.float32)


def random_windows(seed: int):
    """Random patch and stride pairs (rectangular too), stride <= patch."""
    rng = np.random.default_rng(seed)
    patch = tuple(int(v) for v in rng.integers(1, SIZE // 2 + 1, 2))
    stride = tuple(int(rng.integers(1, p + 1)) for p in patch)
    stride = tuple(max(s, p // 2) for s, p in zip(stride, patch))  # a few dozen windows
    return patch, stride


def assert_same_maps(model, images, patch, stride, baseline="blur"):
    options = dict(patch_size=patch, stride=stride, baseline=baseline, batch_size=37)
    naive = kcv.occlusion_sensitivity(model, images, method="naive", **options)
    fast = kcv.occlusion_sensitivity(model, images, method="incremental", **options)
    # The map is score(original) - mean of window scores: its error is at most the score
    # error, measured against the scores' own scale.
    scale = max(float(np.abs(core_logits(model, images)).max()), 1e-6)
    assert np.abs(fast - naive).max() <= 1e-5 * scale, (patch, stride)
    return naive


EXPECTED_RECTANGLES = {
    "convs_and_pools": {
        "rescaling",
        "same3",
        "rect_strided",
        "dilated",
        "max_same",
        "valid3",
        "avg_same",
    },
    "mobile_blocks": {
        "normalization",
        "pad",
        "stem",
        "bn",
        "relu6",
        "depthwise",
        "leaky_re_lu",
        "project",
        "add",
        "separable",
        "activation",
        "concat",
        "p_re_lu",
        "layer_norm",
        "softmax",
        "add_softmax",
        "multiply",
        "subtract",
        "maximum",
        "dropout",
    },
    "fallback": {"conv1", "conv2"},
    "nested": {"rescaling_1", "b_conv1", "b_bn", "b_conv2", "add_1", "b_pool"},
}


@pytest.mark.parametrize("name", list(EXPECTED_RECTANGLES))
def test_incremental_matches_naive_on_every_layer_kind(models, images, name):
    model = models[name]
    patch, stride = (2, 2), (2, 2)
    plan = plan_for(model, images.shape[1:], patch, stride)
    # Names are unique per process: compare by the layer kinds' own names, prefixes only.
    ran = {n.rsplit("_", 1)[0] if n[-1].isdigit() else n for n in plan.rect_layers}
    wanted = {n.rsplit("_", 1)[0] if n[-1].isdigit() else n for n in EXPECTED_RECTANGLES[name]}
    assert wanted <= ran, sorted(wanted - ran)
    assert_same_maps(model, images, patch, stride)
    # Random windows (seeded per model), a constant baseline.
    assert_same_maps(model, images, *random_windows(len(name)), baseline=0.3)


def test_unsupported_layers_end_the_rectangles_where_they_stand(models):
    plan = plan_for(models["fallback"], (SIZE, SIZE, 3), (4, 4), (4, 4))
    # The squeeze (a global pool) is the first layer on full maps: everything after it
    # (the excitation, the custom layer, attention) runs on full maps.
    assert plan.first_full.startswith("squeeze")
    assert not {"conv3", "custom", "attention"} & set(plan.rect_layers)


def test_nested_base_layers_take_the_incremental_path(models):
    plan = plan_for(models["nested"], (SIZE, SIZE, 3), (3, 3), (3, 3))
    assert {"b_conv1", "b_bn", "b_conv2", "b_pool"} <= set(plan.rect_layers)
    assert takes_incremental(plan, "incremental")


def test_auto_takes_the_naive_path_where_incremental_cannot_pay(models, images):
    model = models["convs_and_pools"]
    small = plan_for(model, images.shape[1:], (2, 2), (2, 2))
    huge = plan_for(model, images.shape[1:], (SIZE, SIZE), (SIZE, SIZE))
    assert small.cost_ratio < AUTO_MAX_RATIO < huge.cost_ratio
    assert takes_incremental(small, "auto") and not takes_incremental(huge, "auto")
    assert not takes_incremental(small, "naive")
    # One window over the whole image: auto's map is the naive one, exactly.
    auto = kcv.occlusion_sensitivity(model, images, patch_size=SIZE, method="auto")
    naive = kcv.occlusion_sensitivity(model, images, patch_size=SIZE, method="naive")
    np.testing.assert_array_equal(auto, naive)


def test_keras_applications_base_nested_in_a_functional_model(images):
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    inputs = keras.Input((32, 32, 3))
    x = L.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, L.Dense(3)(x))
    big = np.random.default_rng(1).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    plan = plan_for(model, big.shape[1:], (8, 8), (8, 8))
    assert {"Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise"} <= set(plan.rect_layers)
    assert any(n.startswith("block_1_pad") for n in plan.rect_layers)
    assert_same_maps(model, big, (8, 8), (8, 8))


@pytest.mark.parametrize("method", ["fast", None, "Incremental"])
def test_a_bad_method_names_the_argument_and_the_choices(tmp_path, images, method):
    model = convs_and_pools()
    with pytest.raises(ValueError, match=r"`method` must be one of \('auto', 'incremental'"):
        kcv.occlusion_sensitivity(model, images, method=method)
    with pytest.raises(ValueError, match=f"Received: method={method!r}"):
        kcv.OcclusionSensitivity(tmp_path, images, method=method)


def test_the_callback_writes_the_same_map_with_either_method(tmp_path, images):
    model = nested()
    weights = [w.copy() for w in model.get_weights()]
    for method in ("naive", "incremental"):
        callback = kcv.OcclusionSensitivity(
            tmp_path / method, images, patch_size=5, stride=3, method=method, on_error="raise"
        )
        callback.set_model(model)
        callback.on_train_begin()
        callback.on_epoch_end(0)
        callback.on_train_end()
    naive = read_runs(tmp_path / "naive")["occlusion_sensitivity"]
    fast = read_runs(tmp_path / "incremental")["occlusion_sensitivity"]
    assert set(naive) == set(fast)
    for i in range(len(images)):
        peak = f"occlusion_sensitivity/image_{i}/max"
        np.testing.assert_allclose(fast[peak]["values"], naive[peak]["values"], rtol=1e-5)
        panel = f"occlusion_sensitivity/image_{i}"
        a, b = (np.asarray(r[panel]["values"][0], np.int16) for r in (fast, naive))
        assert np.abs(a - b).max() <= 1
    for before, after in zip(weights, model.get_weights()):  # nothing the user trains moved
        np.testing.assert_array_equal(before, after)
