"""Defaults that fit real architectures: the Grad-CAM layer and the feature-map layers that
keras.applications models get without arguments, and dead channels counted only where a
channel can die (a ReLU's output), never on a linear conv."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from conftest import read_runs

import keras_convviz as kcv
from keras_convviz.core.shared import core_for

# The layers each model gets by default at 64 px: Grad-CAM's and one feature-map layer
# per resolution stage (32x32, 16x16, 8x8, 4x4, 2x2), the last conv before each drop.
CHOICES = {
    "MobileNet": (
        "conv_pw_13_relu",
        ["conv_pw_1", "conv_pw_3", "conv_pw_5", "conv_pw_11", "conv_pw_13"],
    ),
    "EfficientNetV2B0": (
        "top_activation",
        [
            "block1a_project_conv",
            "block2b_project_conv",
            "block4a_expand_conv",
            "block6a_expand_conv",
            "top_conv",
        ],
    ),
    "ResNet50V2": (
        "post_relu",
        [
            "conv1_conv",
            "conv2_block3_1_conv",
            "conv3_block4_1_conv",
            "conv4_block6_1_conv",
            "conv5_block3_3_conv",
        ],
    ),
}
BUILD = {
    "MobileNet": lambda: keras.applications.MobileNet(
        include_top=True, weights=None, input_shape=(64, 64, 3), classes=5
    ),
    "EfficientNetV2B0": lambda: keras.applications.EfficientNetV2B0(
        weights=None, input_shape=(64, 64, 3), classes=5
    ),
    "ResNet50V2": lambda: keras.applications.ResNet50V2(
        weights=None, input_shape=(64, 64, 3), classes=5
    ),
}
PROBE = np.random.default_rng(0).random((2, 64, 64, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def applications():
    """Each model built once for the module (weights=None: no download)."""
    keras.utils.set_random_seed(0)
    return {name: build() for name, build in BUILD.items()}


def _set_up(callback, model) -> list[str]:
    """`on_train_begin` of a callback on `model`; the warnings it gave."""
    callback.set_model(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback.on_train_begin()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_grad_cam_explains_the_last_map_with_spatial_extent(name, applications, tmp_path):
    model = applications[name]
    graph = core_for(model).graph
    cam_layer, _ = CHOICES[name]
    ref = graph.default_cam_layer()
    assert ref.path == cam_layer
    assert graph.extent(ref) == (2, 2)
    # The callback explains the same layer.
    callback = kcv.GradCAM(tmp_path, PROBE)
    said = _set_up(callback, model)
    assert callback._map_needs[0].ref.path == cam_layer
    if name == "MobileNet":
        # Its 1x1 classifier conv after global pooling would give a constant map: passed
        # over, and the warning says so.
        (notice,) = [s for s in said if s.startswith("GradCAM: explains layer")]
        assert f"'{cam_layer}' (2x2)" in notice and "'conv_preds' (1x1)" in notice
        assert "Pass `layer_name` to choose another" in notice
    else:  # nothing that lays out over the input comes after it
        assert not [s for s in said if "explains layer" in s]


def test_the_functional_grad_cam_uses_the_same_default(applications):
    model = applications["MobileNet"]
    by_default = kcv.grad_cam(model, PROBE, class_index=1)
    named = kcv.grad_cam(model, PROBE, class_index=1, layer_name="conv_pw_13_relu")
    np.testing.assert_array_equal(by_default, named)
    assert by_default.shape == (2, 64, 64)


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_feature_maps_show_one_conv_per_resolution_stage(name, applications, tmp_path):
    model = applications[name]
    graph = core_for(model).graph
    _, stages = CHOICES[name]
    maps = kcv.FeatureMaps(tmp_path, PROBE)
    said = _set_up(maps, model)
    shown = [need.ref.path for need in maps._needs]
    assert shown == stages
    sizes = [graph.extent(graph.find(path, "layer_names")) for path in shown]
    assert sizes == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]  # no 1x1 map
    total = len(graph.conv_layers())
    (notice,) = [s for s in said if "conv layers" in s]
    assert notice.startswith(f"FeatureMaps: 5 of the {total} conv layers of model")
    assert str(stages) in notice
    assert "`layer_names`" in notice and f"`max_layers={total}`" in notice
    # Fewer stages allowed than there are: spread evenly, the first and last kept.
    three = kcv.FeatureMaps(tmp_path, PROBE, max_layers=3)
    _set_up(three, model)
    assert [need.ref.path for need in three._needs] == [stages[0], stages[2], stages[4]]


def test_squeeze_excite_convs_are_not_shown(tmp_path):
    """EfficientNet's and MobileNetV3's squeeze-excite convs run on 1x1 maps."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(64, 64, 3), classes=5, include_top=True
    )
    graph = core_for(model).graph
    assert graph.extent(graph.default_cam_layer()) == (2, 2)  # not `logits`
    maps = kcv.FeatureMaps(tmp_path, PROBE)
    _set_up(maps, model)
    shown = [need.ref.path for need in maps._needs]
    assert len(shown) == 5 and not [p for p in shown if "squeeze_excite" in p]
    assert all(min(graph.extent(need.ref)) >= 2 for need in maps._needs)


def test_activated_walks_through_batch_norm_in_a_nested_base():
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35
    )
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(base(inputs)))
    graph = core_for(keras.Model(inputs, outputs)).graph

    def ref(name):
        return graph.find(f"{base.name}/{name}", "layer_names")

    assert [r.path for r in graph.consumers(ref("block_1_expand"))] == [
        f"{base.name}/block_1_expand_BN"
    ]
    assert graph.producers(ref("block_1_expand_BN")) == [ref("block_1_expand")]
    # expand -> BN -> ReLU6: the ReLU's output; its channels can die.
    assert graph.activated(ref("block_1_expand")) == ref("block_1_expand_relu")
    assert graph.rectified(ref("block_1_expand")) == ref("block_1_expand_relu")
    # The linear projection: its BN feeds the next block and a residual sum.
    assert graph.activated(ref("block_2_project")) == ref("block_2_project")
    assert graph.rectified(ref("block_2_project")) is None
    # A ReLU is its own.
    assert graph.rectified(ref("out_relu")) == ref("out_relu")


def mobilenet_style(seed=0):
    """Two linear bottlenecks: expand conv relu6, depthwise relu6, linear projection (the
    first block with BatchNormalization -> ReLU(6) layers, the second with fused
    activations and a residual sum)."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))

    def conv_bn_relu6(conv, name):
        x = layers.BatchNormalization(name=f"{name}_bn")(conv)
        return layers.ReLU(6.0, name=f"{name}_relu")(x)

    x = conv_bn_relu6(
        layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs), "stem"
    )
    h = conv_bn_relu6(layers.Conv2D(16, 1, use_bias=False, name="b1_expand")(x), "b1_expand")
    h = conv_bn_relu6(
        layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="b1_depthwise")(h),
        "b1_depthwise",
    )
    h = layers.Conv2D(8, 1, use_bias=False, name="b1_project")(h)
    x = layers.BatchNormalization(name="b1_project_bn")(h)
    h = layers.Conv2D(16, 1, activation="relu6", name="b2_expand")(x)
    h = layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="b2_depthwise")(h)
    h = layers.Conv2D(8, 1, use_bias=False, name="b2_project")(h)
    x = layers.Add(name="b2_add")([x, h])
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="head")(x))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    # Its inputs are ReLU6 outputs: with kernels below 0 every output of the projection is
    # below 0, which a linear layer passes on with its gradient (no dead channel).
    (kernel,) = model.get_layer("b2_project").get_weights()
    model.get_layer("b2_project").set_weights([-np.abs(kernel)])
    return model


def inception_style(seed=0, dead=False):
    """InceptionV3's conv2d_bn (Conv2D without bias -> BatchNormalization -> ReLU) beside
    linear 1x1 convs. `dead=True`: one conv_bn's ReLU is below 0 everywhere (a BN bias of
    -1000), so its channels are dead."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))

    def conv_bn(x, filters, size, name, beta=0.0):
        x = layers.Conv2D(filters, size, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(
            scale=False, beta_initializer=keras.initializers.Constant(beta), name=f"{name}_bn"
        )(x)
        return layers.Activation("relu", name=f"{name}_relu")(x)

    # The stem's conv is below 0 everywhere (kernels below 0 on images >= 0), its BN
    # shifts it above 0: the ReLU after it is alive, the conv's sign says nothing.
    x = conv_bn(inputs, 8, 3, "stem", beta=5.0)
    branch_1x1 = layers.Conv2D(8, 1, name="branch_1x1")(x)  # linear
    branch_3x3 = conv_bn(x, 8, 3, "branch_3x3", beta=-1000.0 if dead else 0.0)
    x = layers.Concatenate(name="mixed")([branch_1x1, branch_3x3])
    x = layers.Conv2D(8, 1, name="mixed_project")(x)  # linear
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="head")(x))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    for name in ("stem", "branch_1x1"):
        weights = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([-np.abs(weights[0]), *weights[1:]])
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((48, 16, 16, 3)).astype(np.float32), rng.integers(0, 3, 48)


def _fit(model, data, log_dir, epochs=2):
    x, y = data
    seen = []
    callback = kcv.ConvViz(
        log_dir, (x[:4], y[:4]), occlusion=False, on_alert=seen.append, on_error="raise"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[callback])
    return seen, read_runs(log_dir)["feature_maps"]


def _with_dead_fraction(written) -> set[str]:
    return {tag.split("/")[1] for tag in written if tag.endswith("/dead_fraction")}


def _dead_fraction(activations) -> float:
    return float(np.mean(activations.max(axis=(0, 1, 2)) <= 0))


@pytest.mark.parametrize(
    ("build", "rectified", "linear"),
    [
        (
            mobilenet_style,
            {"stem", "b1_expand", "b1_depthwise", "b2_expand", "b2_depthwise"},
            {"b1_project", "b2_project"},
        ),
        (inception_style, {"stem", "branch_3x3"}, {"branch_1x1", "mixed_project"}),
    ],
)
def test_no_dead_channel_alert_on_linear_convs(build, rectified, linear, data, tmp_path):
    model = build()
    seen, written = _fit(model, data, tmp_path)
    assert not [a for a in seen if a.rule == "dead_channels"], [a.layer for a in seen]
    # Dead channels are counted where a ReLU is, not on a linear conv ...
    assert _with_dead_fraction(written) == rectified
    for layer in linear:
        assert f"feature_maps/{layer}/max_activation" in written
    # ... and on the ReLU's output, recorded by the same pass, where the ReLU is a layer
    # of its own: the conv's own output (below 0 everywhere for the stem of the
    # Inception-style model) says nothing of it.
    x, _ = data
    for layer in rectified:
        after = core_for(model).graph.rectified(core_for(model).graph.find(layer, "l"))
        output = kcv.feature_maps(model, x[:4], layer_names=[after.path])[after.path]
        value = written[f"feature_maps/{layer}/dead_fraction"]["values"][-1]
        assert value == pytest.approx(_dead_fraction(output)), layer
    if build is inception_style:
        stem = kcv.feature_maps(model, x[:4], layer_names=["stem"])["stem"]
        assert _dead_fraction(stem) == 1.0  # what the old rule would have called dead
        assert written["feature_maps/stem/dead_fraction"]["values"][-1] == 0.0


def test_a_dead_relu_after_batch_norm_still_fires(data, tmp_path):
    """Dead through three snapshots: a ReLU after BatchNormalization is judged in inference
    mode, on moving statistics that lag for the first epochs, so it fires when it stays
    silent (the third snapshot), saying since the first."""
    seen, written = _fit(inception_style(dead=True), data, tmp_path, epochs=3)
    dead = [a for a in seen if a.rule == "dead_channels"]
    assert [a.layer for a in dead] == ["branch_3x3"]
    assert (dead[0].epoch, dead[0].since_epoch) == (3, 1)
    assert dead[0].value == 1.0
    assert dead[0].evidence == "feature_maps/branch_3x3/dead_fraction"
