"""Activation maximisation: known optima on hand-set kernels, a strong optimum on a trained
model, reproducibility, one trace, only the layers up to the target, and the callback's
event files read back."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import core_logits, read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz.core.shared import core_for
from keras_convviz.datasets import make_shapes
from keras_convviz.demo import train_demo_model

NOISE = np.random.default_rng(0).random((32, 32, 32, 3), dtype=np.float32)
NOISE_64 = np.random.default_rng(0).random((16, 64, 64, 3), dtype=np.float32)


def conv_model(kernel, bias, channels, size=32, name="unit"):
    inputs = keras.Input((size, size, channels))
    outputs = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], activation="relu", name=name)(
        inputs
    )
    model = keras.Model(inputs, outputs)
    model.get_layer(name).set_weights([kernel, np.asarray(bias, np.float32)])
    return model


def channel_means(model, images) -> np.ndarray:
    return np.asarray(model(images)).mean(axis=(1, 2))


def test_vertical_edge_kernel_prefers_vertical_stripes():
    # A 5x5 vertical-edge detector (dark left, bright right); the bias makes it selective,
    # as a trained detector is: random noise rarely drives it.
    kernel = np.tile(np.array([-1, -1, 0, 1, 1], np.float32), (5, 1))[:, :, None, None]
    model = conv_model(kernel, [-2.0], channels=1)
    images, scores = kcv.activation_maximization(model, "unit", steps=128)
    assert images.shape == (1, 32, 32, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    # Vertical stripes: the image varies along x, so its energy lies at horizontal
    # frequencies (|fx| > |fy|).
    image = images[0, :, :, 0]
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    fy, fx = np.abs(np.fft.fftfreq(32))[:, None], np.abs(np.fft.fftfreq(32))[None, :]
    horizontal, vertical = power[fx > fy].sum(), power[fy > fx].sum()
    assert horizontal > 2 * vertical, (horizontal, vertical)
    noise = channel_means(model, NOISE[..., :1])[:, 0].mean()
    assert scores[0] >= 10 * noise, (scores, noise)
    # The score is the channel's mean activation on the returned image.
    np.testing.assert_allclose(scores, channel_means(model, images)[:, 0], rtol=1e-4, atol=1e-6)


def test_colour_opponent_kernel_prefers_its_colour():
    # 1x1 kernels: red minus the others, green minus the others, blue minus the others.
    kernel = (2 * np.eye(3, dtype=np.float32) - 1)[None, None]
    model = conv_model(kernel, [-0.5] * 3, channels=3)
    # Data whose colours are uncorrelated (uniform noise): the colour basis is near the
    # identity, so no colour is favoured by the parameterisation.
    images, scores = kcv.activation_maximization(model, "unit", steps=128, probe=NOISE)
    means = images.mean(axis=(1, 2))  # (filters, channels)
    for f in range(3):  # the preferred colour dominates each image
        assert means[f, f] > 2 * np.delete(means[f], f).max(), means
    noise = channel_means(model, NOISE).mean(axis=0)
    assert np.all(scores >= 10 * noise), (scores, noise)


def test_same_seed_same_images_and_one_trace():
    model = small_cnn()
    first = kcv.activation_maximization(model, "conv_b", filters=[0, 3], steps=8, seed=1)
    again = kcv.activation_maximization(model, "conv_b", filters=[0, 3], steps=8, seed=1)
    other = kcv.activation_maximization(model, "conv_b", filters=[0, 3], steps=5, seed=2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert np.abs(first[0] - other[0]).max() > 1e-3
    # Other steps and seeds reuse the one trace of (layer, filters, size).
    (maximizer,) = core_for(model).__dict__["activation_maximizers"].values()
    assert maximizer.compiled.experimental_get_tracing_count() == 1


def _scopes(maximizer) -> set[str]:
    graph = maximizer.compiled.get_concrete_function().graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    return {node.name.split("/")[0] for node in nodes}


def test_only_the_layers_up_to_the_target_run():
    model = small_cnn()
    for layer, present, absent in (
        ("conv_a", ["conv_a"], ["conv_b", "head"]),
        ("conv_b", ["conv_a", "conv_b"], ["head"]),
    ):
        kcv.activation_maximization(model, layer, filters=[0], steps=1)
        maximizer = next(
            m for k, m in core_for(model).__dict__["activation_maximizers"].items() if k[0] == layer
        )
        scopes = _scopes(maximizer)
        for name in present:
            assert any(s.startswith(name) for s in scopes), (layer, name)
        for name in absent:
            assert not any(s.startswith(name) for s in scopes), (layer, name)


def test_nested_model_layer():
    base = small_cnn(input_shape=(24, 24, 3))
    inputs = keras.Input((24, 24, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="outer_head")(base(inputs)))
    images, scores = kcv.activation_maximization(outer, "small_cnn/conv_b", [1, 2], steps=4)
    assert images.shape == (2, 24, 24, 3) and scores.shape == (2,)


@pytest.mark.parametrize(
    ("channels", "input_range", "probe_range"),
    [
        (1, (0.0, 255.0), None),  # grey, [0, 255]
        (3, None, None),  # RGB, [0, 1] by default
        (4, None, (-2.0, 3.0)),  # 4 channels, standardised data: the probe's range
    ],
)
def test_channel_counts_and_input_ranges(channels, input_range, probe_range):
    model = small_cnn(input_shape=(16, 16, channels))
    probe = None
    if probe_range is not None:
        rng = np.random.default_rng(1)
        probe = rng.uniform(*probe_range, (8, 16, 16, channels)).astype(np.float32)
    images, scores = kcv.activation_maximization(
        model, "conv_a", filters=[0, 1, 2], steps=16, probe=probe, input_range=input_range
    )
    low, high = input_range or (probe_range or (0.0, 1.0))
    assert images.shape == (3, 16, 16, channels) and images.dtype == np.float32
    assert low <= images.min() and images.max() <= high
    # The images use the range (not a sliver of it).
    assert images.max() - images.min() > 0.3 * (high - low)
    assert np.all(np.isfinite(scores))


def test_a_model_with_two_inputs_is_refused_by_name():
    image, extra = keras.Input((16, 16, 3), name="image"), keras.Input((2,), name="extra")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(image))
    model = keras.Model([image, extra], keras.layers.Concatenate()([x, extra]))
    with pytest.raises(ValueError, match="one \\(batch, height, width, channels\\) image input"):
        kcv.activation_maximization(model, "conv", steps=1)


def test_argument_errors_name_the_argument():
    model = small_cnn()
    cases = [
        (dict(layer_name="nope"), "`layer_name` must name layers"),
        (dict(layer_name="conv_b", filters=[16]), "`filters` must be indices of the 16"),
        (dict(layer_name="conv_b", filters=-1), "`filters` must be None"),
        (dict(layer_name="conv_b", size=20), "`size` must match the model's input size"),
        (dict(layer_name="conv_b", input_range=(1, 0)), "`input_range` must be None or"),
        (dict(layer_name="conv_b", input_range=([0, 0], [1, 1])), "`input_range` must give one"),
        (dict(layer_name="conv_b", steps=0), "`steps` must be an int >= 1"),
        (dict(layer_name="gap", filters=[0]), None),  # a (batch, units) layer is fine
    ]
    for kwargs, message in cases:
        if message is None:
            kcv.activation_maximization(model, steps=1, **kwargs)
            continue
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            kcv.activation_maximization(model, **{"steps": 1, **kwargs})


# ---- the trained demo model ---------------------------------------------------------------


def train_demo(seed: int) -> keras.Model:
    """The demo CNN these tests climb: 4 epochs on 1000 shapes drawn with `seed`."""
    keras.utils.set_random_seed(seed)
    return train_demo_model(make_shapes(1000, seed=seed), epochs=4, batch_size=16)[0]


@pytest.fixture(scope="module")
def demo():
    return train_demo(0), make_shapes(32, seed=4242).images


def test_trained_filters_beat_every_probe_and_noise_image(demo):
    """Seed spread (BENCHMARKS.md): over the best probe image worst 1.49 (conv1), over the
    best noise image worst 2.15 (conv3), vs 1."""
    model, probe = demo
    for layer in ("conv1", "conv3"):
        filters = list(range(8))
        images, scores = kcv.activation_maximization(
            model, layer, filters=filters, steps=128, probe=probe
        )
        on_probe = kcv.feature_maps(model, probe, [layer])[layer].mean(axis=(1, 2))[:, filters]
        assert np.all(scores > on_probe.max(axis=0)), (layer, scores, on_probe.max(axis=0))
        if layer == "conv3":
            # Uniform noise (every frequency and colour at full contrast) drives some of
            # the deeper layer's filters up to 4x harder than any probe image; the climbed
            # image must beat the strongest noise image too. (Not a multiple of the noise
            # mean: that ratio counts the filters that noise leaves silent, and the same
            # filters of a randomly initialised model reach 3-28x; BENCHMARKS.md.)
            on_noise = kcv.feature_maps(model, NOISE_64, [layer])[layer].mean(axis=(1, 2))
            print(
                layer, "score / best noise image:", np.round(scores / on_noise.max(0)[filters], 1)
            )
            assert np.all(scores > on_noise[:, filters].max(axis=0)), (layer, scores)
        # In the probe's range, as the training data.
        assert probe.min() <= images.min() and images.max() <= probe.max()


def test_score_output_filters_are_classes(demo):
    """Seed spread (BENCHMARKS.md): 4 of 4 classes, every seed."""
    model, probe = demo
    # "predictions" ends in a softmax: each class is climbed on its score before it.
    images, scores = kcv.activation_maximization(model, "predictions", steps=64, probe=probe)
    assert images.shape == (4, 64, 64, 3)
    logits = core_logits(model, images)
    np.testing.assert_allclose(scores, np.diag(logits), rtol=1e-4, atol=1e-4)
    # What the model takes each class to look like, it takes for that class.
    assert list(logits.argmax(axis=1)) == [0, 1, 2, 3]


def test_callback_writes_a_grid_per_layer_and_the_scores(tmp_path, data):
    x, y = data
    model = small_cnn()
    callback = kcv.ActivationMaximization(
        tmp_path, filters=3, steps=4, probe=x[:8], warm_start=True, warm_steps=2
    )
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    assert list(runs) == ["activation_maximization"]
    tags = runs["activation_maximization"]
    expected = {
        f"activation_maximization/{layer}{suffix}"
        for layer in ("conv_a", "conv_b")
        for suffix in ("", "/filter_0", "/filter_1", "/filter_2")
    }
    assert set(tags) == expected
    grid = tags["activation_maximization/conv_b"]
    assert grid["kind"] == "images" and grid["steps"] == [0, 1, 2]
    # 3 tiles of 32x32 upsampled to 64, two columns, 1-pixel separators.
    assert grid["values"][0].shape == (2 * 64 + 3, 2 * 64 + 3, 3)
    assert tags["activation_maximization/conv_b/filter_2"]["steps"] == [0, 1, 2]
    # Warm starts reuse the one trace per layer.
    for maximizer, _ in callback._layers.values():
        assert maximizer.compiled.experimental_get_tracing_count() == 1


def test_callback_checks_layers_before_training(tmp_path, data):
    x, y = data
    callback = kcv.ActivationMaximization(tmp_path, layer_names=["nope"])
    with pytest.raises(ValueError, match="`layer_names` must name layers"):
        small_cnn().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    with pytest.raises(ValueError, match="`filters` must be None, an int >= 1"):
        kcv.ActivationMaximization(tmp_path, filters=0)


def test_convviz_leaves_it_off_unless_asked(tmp_path, data):
    x, y = data
    convviz = kcv.ConvViz(
        tmp_path,
        (x[:2], y[:2]),
        activation_maximization={"filters": 2, "steps": 2, "layer_names": ["conv_b"]},
        feature_maps=False,
        filter_weights=False,
        grad_cam=False,
        occlusion=False,
        health=False,
    )
    small_cnn().fit(x, y, epochs=1, verbose=0, callbacks=[convviz])
    assert set(read_runs(tmp_path)["activation_maximization"]) == {
        "activation_maximization/conv_b",
        "activation_maximization/conv_b/filter_0",
        "activation_maximization/conv_b/filter_1",
    }
    assert not any(
        isinstance(c, kcv.ActivationMaximization)
        for c in kcv.ConvViz(tmp_path / "default", x[:2]).callbacks
    )
