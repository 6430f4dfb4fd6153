"""The CAM family and gradient saliency: known answers, and one table of methods for contracts.

Known answers are computed here independently of the package: A and g = dS/dA from a Keras
sub-model and a `tf.GradientTape` over the model's tail written out by hand (scores are the
logits, before the final softmax), and each method's formula applied in numpy.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CountCalls, read_runs, small_cnn, steps_of

import keras_convviz as kcv
from keras_convviz import _rendering, _tags
from keras_convviz.core.shared import core_for
from keras_convviz.methods.saliency import saliency_view

# ---- a hand-weighted model where the CAM variants differ ----------------------------------


def cam_model(between="relu"):
    """conv 3x3 stride 2 (3 channels, linear: the CAM layer A) -> ReLU -> conv 1x1 (4, tanh)
    -> GAP -> dense (3 classes, softmax), every weight set by hand.

    The ReLU and the mixing tanh layer make g = dS/dA vary over positions, in sign too, and
    vanish where A < 0 (so Grad-CAM, HiResCAM and LayerCAM differ); the head has negative
    weights; A is 4x4 on an 8x8 input, so the maps are upsampled. `between` replaces the
    ReLU (e.g. by a smooth activation).
    """
    rng = np.random.default_rng(7)
    inputs = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(3, 3, strides=2, padding="same", name="conv")(inputs)
    x = keras.layers.Activation(between, name="between")(a)
    x = keras.layers.Conv2D(4, 1, activation="tanh", name="mix")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    weights = {
        "conv": [rng.normal(size=(3, 3, 2, 3)), np.array([0.3, -0.2, 0.1])],
        "mix": [rng.normal(size=(1, 1, 3, 4)), rng.normal(scale=0.3, size=4)],
        "head": [
            np.array([[2.0, -1.5, 0.5], [-1.0, 2.5, -0.75], [1.5, 0.5, -2.0], [-0.5, -1.0, 1.25]]),
            np.array([0.1, -0.2, 0.3]),
        ],
    }
    for name, values in weights.items():
        model.get_layer(name).set_weights([np.asarray(v, np.float32) for v in values])
    return model


def cam_tail(model, activation):
    """The logits from the CAM layer's output, written out by hand (no softmax)."""
    mix_w, mix_b = model.get_layer("mix").get_weights()
    head_w, head_b = model.get_layer("head").get_weights()
    between = model.get_layer("between").activation  # e.g. keras.activations.relu
    hidden = tf.tanh(tf.einsum("nhwc,ck->nhwk", between(activation), mix_w[0, 0]) + mix_b)
    return tf.reduce_mean(hidden, axis=(1, 2)) @ head_w + head_b


def activation_and_gradient(model, images, targets):
    """A `(n, h, w, c)` and g = d logit_target / dA, float64, computed outside the package."""
    activation = keras.Model(model.input, model.get_layer("conv").output)(images)
    activation = tf.convert_to_tensor(activation)
    with tf.GradientTape() as tape:
        tape.watch(activation)
        logits = cam_tail(model, activation)
        scores = tf.gather(logits, targets, axis=1, batch_dims=1)
    gradient = tape.gradient(scores, activation)
    # The hand tail is the model: its softmax gives the model's outputs.
    np.testing.assert_allclose(
        tf.nn.softmax(logits).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-6
    )
    return activation.numpy().astype(np.float64), gradient.numpy().astype(np.float64)


def upsample(raw, size):
    """The final ReLU and bilinear upsampling to the input size, as the pass does."""
    cam = np.maximum(raw, 0.0)
    return tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy()


def hand_gradcam(a, g):
    return np.einsum("nhwc,nc->nhw", a, g.mean(axis=(1, 2)))


def hand_gradcam_plus_plus(a, g):
    total = a.sum(axis=(1, 2), keepdims=True)
    denominator = 2 * g**2 + total * g**3
    # Keep away from a vanishing denominator, where float32 and float64 could part ways.
    assert np.all(np.abs(denominator[g != 0]) > 1e-3 * g[g != 0] ** 2)
    alpha = np.where(g != 0, g**2 / np.where(g != 0, denominator, 1.0), 0.0)
    weights = (alpha * np.maximum(g, 0.0)).sum(axis=(1, 2))
    return np.einsum("nhwc,nc->nhw", a, weights)


def hand_layercam(a, g):
    return (np.maximum(g, 0.0) * a).sum(axis=-1)


def hand_hirescam(a, g):
    return (g * a).sum(axis=-1)


def hand_eigencam(a, g):
    del g
    n, h, w, c = a.shape
    maps = []
    for positions in a.reshape(n, h * w, c):
        centred = positions - positions.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        if np.corrcoef(projection, positions.sum(axis=1))[0, 1] < 0:
            projection = -projection
        maps.append(projection.reshape(h, w))
    return np.stack(maps)


def loop_score_cam(model, logits_of, layer, images, targets):
    """Score-CAM the plain way: one masked image at a time, every loop in Python."""
    activation = keras.Model(model.input, model.get_layer(layer).output)(images).numpy()
    size = images.shape[1:3]
    maps = []
    for image, a, target in zip(images, activation, targets):
        scores = []
        for c in range(a.shape[-1]):
            mask = tf.image.resize(a[None, :, :, c, None], size, method="bilinear")[0].numpy()
            low, high = mask.min(), mask.max()
            mask = (mask - low) / (high - low) if high > low else np.zeros_like(mask)
            scores.append(float(logits_of(image[None] * mask)[0, target]))
        weights = np.exp(scores - np.max(scores))
        weights /= weights.sum()
        maps.append(np.einsum("hwc,c->hw", a.astype(np.float64), weights))
    return upsample(np.stack(maps), size)


def cam_model_logits(model):
    conv = keras.Model(model.input, model.get_layer("conv").output)
    return lambda x: cam_tail(model, conv(x)).numpy()


def scaled_error(got, expected):
    """The largest error on maps scaled by their maximum."""
    assert expected.max() > 0, "a map that is zero everywhere tests nothing"
    return np.abs(got - expected).max() / expected.max()


HAND_CAM = {
    "gradcam": hand_gradcam,
    "gradcam++": hand_gradcam_plus_plus,
    "layercam": hand_layercam,
    "hirescam": hand_hirescam,
    "eigencam": hand_eigencam,
    "scorecam": None,  # the Python loop, `loop_score_cam`
}


def test_every_cam_method_has_a_known_answer():
    assert set(HAND_CAM) == set(kcv.CAM_METHODS)


@pytest.mark.parametrize("method", list(kcv.CAM_METHODS))
def test_cam_methods_match_hand_computations(method):
    model = cam_model()
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 8, 8, 2)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])  # per-image targets, through each class's signed weights
    got = kcv.grad_cam(model, (images, labels), layer_name="conv", method=method)
    assert got.shape == (4, 8, 8) and got.dtype == np.float32
    if method == "scorecam":
        expected = loop_score_cam(model, cam_model_logits(model), "conv", images, labels)
    else:
        a, g = activation_and_gradient(model, images, labels)
        assert (g < 0).any() and (g > 0).any() and (g == 0).any()
        expected = upsample(HAND_CAM[method](a, g), (8, 8))
    for i in range(4):
        assert scaled_error(got[i], expected[i]) < 1e-4, (method, i)


def hand_scorecam(a, scores):
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.einsum("nhwc,nc->nhw", a, weights / weights.sum(axis=1, keepdims=True))


@pytest.mark.parametrize("method", list(kcv.CAM_METHODS))
def test_cam_functions_before_the_relu(method):
    """Each registry function on random A, g: the signed map, before ReLU hides its sign.

    Over 64 maps the SVD's arbitrary sign comes out wrong for some (Eigen-CAM's sign rule),
    and g has zeros (Grad-CAM++'s alpha = 0 there).
    """
    rng = np.random.default_rng(8)
    a = rng.normal(0.3, 1.0, size=(64, 4, 4, 3))
    spec = kcv.CAM_METHODS[method]
    if spec.needs == "gradient":
        g = rng.normal(scale=0.05, size=a.shape) * (rng.random(a.shape) > 0.2)
        got = spec.fn(tf.constant(a, tf.float32), tf.constant(g, tf.float32))
        expected = HAND_CAM[method](a, g)
    elif spec.needs == "activation":
        got = spec.fn(tf.constant(a, tf.float32))
        expected = HAND_CAM[method](a, None)
    else:
        scores = rng.normal(scale=2.0, size=(64, 3))
        got = spec.fn(tf.constant(a, tf.float32), tf.constant(scores, tf.float32))
        expected = hand_scorecam(a, scores)
    got = got.numpy()
    assert got.shape == (64, 4, 4) and got.dtype == np.float32
    for i in range(64):
        assert np.abs(got[i] - expected[i]).max() < 1e-4 * np.abs(expected[i]).max(), i


def test_cam_variants_differ_on_the_hand_weighted_model():
    """Otherwise the known answers above could not tell the methods apart."""
    model = cam_model()
    images = np.random.default_rng(0).normal(size=(4, 8, 8, 2)).astype(np.float32)
    maps = kcv.grad_cam(model, images, layer_name="conv", method=list(kcv.CAM_METHODS))
    names = list(maps)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            scale = max(maps[first].max(), maps[second].max())
            assert np.abs(maps[first] - maps[second]).max() > 1e-2 * scale, (first, second)


@pytest.mark.parametrize("batch_size", [4, 5, 256])
def test_score_cam_equals_a_python_loop(batch_size):
    # 3 images x 8 channels = 24 masked images: chunks of 4, of 5 (the last one partial,
    # chunks crossing image boundaries) and one chunk of all.
    model = small_cnn(input_shape=(12, 12, 3), num_classes=3)
    images = np.random.default_rng(1).random((3, 12, 12, 3)).astype(np.float32)
    targets = np.array([2, 0, 1])
    gap = keras.Model(model.input, model.get_layer("gap").output)
    head_w, head_b = model.get_layer("head").get_weights()

    def logits_of(x):  # the model's scores before its softmax
        return gap(x).numpy() @ head_w + head_b

    got = kcv.grad_cam(
        model, (images, targets), layer_name="conv_a", method="scorecam", batch_size=batch_size
    )
    expected = loop_score_cam(model, logits_of, "conv_a", images, targets)
    for i in range(3):
        assert scaled_error(got[i], expected[i]) < 1e-4, i


@pytest.mark.parametrize("size", [(64, 16), (53, 7), (12, 12), (8, 16), (5, 3)])
def test_bilinear_matrix_resizes_as_tf_image_resize(size):
    # Score-CAM upsamples its masks with two matrix products; they must equal the resize op
    # up and down, at integer and odd scales.
    from keras_convviz.methods.cam import bilinear_matrix

    out, inp = size
    maps = np.random.default_rng(0).normal(size=(2, inp, inp + 2)).astype(np.float32)
    rows, columns = bilinear_matrix(out, inp), bilinear_matrix(out + 3, inp + 2)
    got = np.einsum("Hh,bhw,Ww->bHW", rows.numpy(), maps, columns.numpy())
    expected = tf.image.resize(maps[..., None], (out, out + 3), "bilinear")[..., 0].numpy()
    assert np.abs(got - expected).max() < 1e-5


# ---- gradient saliency --------------------------------------------------------------------


def linear_model():
    """flatten -> dense (3 classes, softmax): the logits are linear in the image."""
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(72, 3)).astype(np.float32)
    model.get_layer("head").set_weights([weights, np.array([0.5, -0.5, 0.0], np.float32)])
    # dS_t/dx = the weight image of class t
    return model, weights.T.reshape(3, 6, 6, 2)


def test_gradient_smoothgrad_and_integrated_gradients_are_exact_on_a_linear_model():
    model, weight_images = linear_model()
    rng = np.random.default_rng(4)
    images = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
    labels = np.array([2, 0, 1])
    expected = weight_images[labels]
    got = kcv.saliency(
        model,
        (images, labels),
        method=["gradient", "smoothgrad", "gradient_x_input", "integrated_gradients"],
        samples=8,
        batch_size=5,
    )
    for values in got.values():
        assert values.shape == images.shape and values.dtype == np.float32
    np.testing.assert_allclose(got["gradient"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["smoothgrad"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["gradient_x_input"], images * expected, rtol=1e-5, atol=1e-6)
    # the default baseline is zeros: (x - 0) * gradient
    np.testing.assert_allclose(got["integrated_gradients"], images * expected, rtol=1e-5, atol=1e-6)
    baseline = rng.normal(size=(6, 6, 2)).astype(np.float32)
    for given in (0.25, baseline):
        ig = kcv.saliency(
            model, (images, labels), method="integrated_gradients", baseline=given, steps=4
        )
        np.testing.assert_allclose(ig, (images - given) * expected, rtol=1e-5, atol=1e-5)
    # no labels: each image's predicted class (of the clean image)
    predicted = model(images).numpy().argmax(axis=1)
    np.testing.assert_allclose(
        kcv.saliency(model, images, method="gradient"),
        weight_images[predicted],
        rtol=1e-5,
        atol=1e-6,
    )
    # class_index: one class for every image
    np.testing.assert_allclose(
        kcv.saliency(model, images, method="gradient", class_index=1),
        np.broadcast_to(weight_images[1], images.shape),
        rtol=1e-5,
        atol=1e-6,
    )


def input_gradient(model, images, targets):
    """dS/dx of the logits of the cam model, by hand."""
    conv = keras.Model(model.input, model.get_layer("conv").output)
    images = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = cam_tail(model, conv(images))
        scores = tf.gather(logits, targets, axis=1, batch_dims=1)
    return tape.gradient(scores, images).numpy(), scores.numpy()


def test_gradient_and_gradient_x_input_on_a_non_linear_model():
    model = cam_model()
    images = np.random.default_rng(5).normal(size=(3, 8, 8, 2)).astype(np.float32)
    labels = np.array([1, 2, 0])
    expected, _ = input_gradient(model, images, labels)
    got = kcv.saliency(model, (images, labels), method=["gradient", "gradient_x_input"])
    np.testing.assert_allclose(got["gradient"], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["gradient_x_input"], images * got["gradient"], rtol=1e-6)


def test_integrated_gradients_is_the_midpoint_rule_by_hand():
    model = cam_model()  # ReLU kinks on the path: the rule's own error is not small here
    images = np.random.default_rng(6).normal(size=(3, 8, 8, 2)).astype(np.float32)
    labels = np.array([0, 1, 2])
    baseline = np.random.default_rng(7).normal(size=(8, 8, 2)).astype(np.float32)
    steps = 16
    got = kcv.saliency(
        model, (images, labels), method="integrated_gradients", steps=steps, baseline=baseline
    )
    alphas = (np.arange(steps) + 0.5) / steps
    points = baseline + alphas[:, None, None, None, None] * (images - baseline)  # (k, n, ...)
    gradients, _ = input_gradient(model, points.reshape(-1, 8, 8, 2), np.tile(labels, steps))
    expected = (images - baseline) * gradients.reshape(points.shape).mean(axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("given", [None, 0.5])
def test_integrated_gradients_is_complete_on_a_non_linear_model(given):
    model = cam_model(between="softplus")  # smooth: the midpoint rule converges fast
    images = np.random.default_rng(6).normal(size=(4, 8, 8, 2)).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    baseline = np.full_like(images, 0.0 if given is None else given)
    _, scores = input_gradient(model, images, labels)
    _, base_scores = input_gradient(model, baseline, labels)
    difference = scores - base_scores
    assert np.abs(difference).min() > 0.05  # a difference worth attributing

    def error(steps):
        ig = kcv.saliency(
            model, (images, labels), method="integrated_gradients", steps=steps, baseline=given
        )
        return np.abs(ig.sum(axis=(1, 2, 3)) - difference) / np.abs(difference)

    assert error(64).max() < 0.01
    assert error(2).max() > 0.01  # the model is not linear along the path


def test_smoothgrad_is_seeded_and_independent_of_batch_size():
    model = cam_model()
    images = np.random.default_rng(7).normal(size=(3, 8, 8, 2)).astype(np.float32)
    labels = np.array([2, 1, 0])

    def smoothgrad(seed, batch_size):
        return kcv.saliency(
            model, (images, labels), samples=8, seed=seed, batch_size=batch_size, noise=0.2
        )

    first = smoothgrad(0, 256)
    np.testing.assert_array_equal(smoothgrad(0, 256), first)  # reproducible
    other = smoothgrad(1, 256)
    assert np.abs(other - first).max() > 1e-3 * np.abs(first).max()  # another seed
    # 24 noisy inputs in chunks of 5 (the last one partial, chunks crossing images) or 8.
    for batch_size in (5, 8):
        np.testing.assert_allclose(smoothgrad(0, batch_size), first, rtol=1e-5, atol=1e-6)
    # not the plain gradient: the noise is there
    gradient = kcv.saliency(model, (images, labels), method="gradient")
    assert np.abs(first - gradient).max() > 1e-3 * np.abs(gradient).max()
    # an image's map does not depend on the other images of the batch
    alone = kcv.saliency(model, (images[1:2], labels[1:2]), samples=8, seed=0, noise=0.2)
    np.testing.assert_allclose(alone, first[1:2], rtol=1e-5, atol=1e-6)


def test_smoothgrad_noise_is_a_fraction_of_each_images_range():
    """S = sum x^3: where x = 0, the mean gradient over noisy copies is 3 sigma^2 mean(n^2)."""
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(keras.layers.Multiply()([inputs, inputs, inputs]))
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("head").set_weights([np.ones((16, 2), np.float32), np.zeros(2, np.float32)])
    image = np.zeros((4, 4, 1), np.float32)
    image[:2] = 1.0  # range 1; the lower half is 0
    images = np.stack([image, 2.0 * image])  # ranges 1 and 2
    got = kcv.saliency(model, images, samples=2048, noise=0.2, class_index=0, batch_size=1024)
    at_zero = got[:, 2:].mean(axis=(1, 2, 3))
    # sigma = 0.2 x range; mean(n^2) over 2048 x 8 draws is 1 within 5 % (4 standard errors).
    np.testing.assert_allclose(at_zero[0], 3 * 0.2**2, rtol=0.05)
    # the same draws serve both images: the ratio is exactly (2 / 1)^2
    np.testing.assert_allclose(at_zero[1] / at_zero[0], 4.0, rtol=1e-5)


# ---- one table of methods drives the contract tests ---------------------------------------

METHODS = [("cam", m) for m in kcv.CAM_METHODS] + [("saliency", m) for m in kcv.SALIENCY_METHODS]
METHOD_IDS = [m for _, m in METHODS]
REGISTRIES = {"cam": kcv.CAM_METHODS, "saliency": kcv.SALIENCY_METHODS}
EPOCHS = 3
PROBE_SIZE = 2
CAM_LAYER = "conv_b"  # small_cnn's default CAM layer
# Small sampling settings keep the callbacks fast; `batch_size=3` splits the samples in
# chunks, a partial one last.
SALIENCY_OPTIONS = {"samples": 4, "steps": 4, "batch_size": 3}


def make_callback(kind, method, log_dir, probe):
    if kind == "cam":
        return kcv.GradCAM(log_dir, probe, method=method, batch_size=5, on_error="raise")
    return kcv.Saliency(log_dir, probe, method=method, on_error="raise", **SALIENCY_OPTIONS)


def explain(kind, method, model, probe):
    if kind == "cam":
        return kcv.grad_cam(model, probe, method=method, batch_size=5)
    return kcv.saliency(model, probe, method=method, **SALIENCY_OPTIONS)


def run_of(kind, method):
    return _tags.cam_run(method) if kind == "cam" else _tags.saliency_run(method)


def tag_of(kind, method, *parts):
    """A tag of a method's run: CAM tags name the layer, saliency tags do not."""
    run = run_of(kind, method)
    return _tags.tag(run, CAM_LAYER, *parts) if kind == "cam" else _tags.tag(run, *parts)


def expected_tags(kind, method):
    images = {tag_of(kind, method, i) for i in range(PROBE_SIZE)}
    # No non_finite scalar: it is written only once it is non-zero (a healthy run).
    scalars = {tag_of(kind, method, i, "max") for i in range(PROBE_SIZE)}
    if kind == "cam":  # how much each map changed since the previous snapshot
        scalars |= {tag_of(kind, method, i, "change") for i in range(PROBE_SIZE)}
    return images, scalars


@pytest.fixture(scope="module", params=METHODS, ids=METHOD_IDS)
def fitted(request, tmp_path_factory):
    """A small CNN fitted for a few epochs with one method's callback."""
    kind, method = request.param
    log_dir = tmp_path_factory.mktemp(re.sub(r"\W", "_", method))
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 3), dtype=np.float32)
    y = (np.arange(8) % 4).astype(np.int32)
    model = small_cnn(input_shape=(16, 16, 3))
    probe = (x[:PROBE_SIZE], y[:PROBE_SIZE])
    callback = make_callback(kind, method, log_dir, probe)
    model.fit(x, y, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[callback])
    compiled = [*core_for(model).passes.values(), callback._render]
    traces = [fn.experimental_get_tracing_count() for fn in compiled]
    return kind, method, model, probe, traces, read_runs(log_dir)


def test_callback_writes_exactly_its_tags(fitted):
    kind, method, *_, runs = fitted
    run = run_of(kind, method)
    assert run == REGISTRIES[kind][method].run
    assert list(runs) == [run]
    images, scalars = expected_tags(kind, method)
    assert set(runs[run]) == images | scalars
    for tag, series in runs[run].items():
        assert series["steps"] == steps_of(tag, list(range(EPOCHS))), tag
        assert series["kind"] == ("images" if tag in images else "scalars"), tag
        if tag in images:
            for image in series["values"]:
                assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
        else:
            assert all(np.isfinite(v) and v >= 0 for v in series["values"])


def test_callback_traces_once_over_epochs(fitted):
    # one compiled pass and the callback's `_render`, each traced once for every epoch
    traces = fitted[4]
    assert traces == [1, 1]


def test_functional_result_equals_what_the_callback_wrote(fitted):
    kind, method, model, probe, _, runs = fitted
    images = probe[0]
    values = explain(kind, method, model, probe)
    if kind == "cam":
        maps, signed = values, False
        rendered = _rendering.render_heatmap_panel(
            images, maps, symmetric=False, lut=_rendering.colormap(_rendering.DEFAULT_GRADCAM_CMAP)
        )
    else:
        maps, signed = saliency_view(method, values)
        maps = maps.numpy()
        rendered = _rendering.render_heatmap_panel(images, maps, symmetric=signed)
    rendered = tf.image.convert_image_dtype(rendered, tf.uint8).numpy()
    written = runs[run_of(kind, method)]
    for i in range(PROBE_SIZE):
        # the last epoch's snapshot: the weights the model has now
        png = written[tag_of(kind, method, i)]["values"][-1]
        png = png[: rendered.shape[1]]  # above the caption line (checked in test_callbacks)
        assert png.shape == rendered[i].shape
        assert np.abs(png.astype(int) - rendered[i].astype(int)).max() <= 1, i
        peak = written[tag_of(kind, method, i, "max")]["values"][-1]
        expected_peak = np.abs(maps[i]).max() if signed else maps[i].max()
        assert peak > 0
        np.testing.assert_allclose(peak, expected_peak, rtol=1e-5)


def bad_method_message(registry, value):
    return (
        f"`method` must be one of {sorted(registry)} or a list of them. Received: method={value!r}"
    )


@pytest.mark.parametrize("kind", ["cam", "saliency"])
@pytest.mark.parametrize("value", ["grad-cam", ["gradient", "nope"], [], 3])
def test_a_bad_method_is_named_with_the_valid_ones(kind, value, tmp_path):
    expected = bad_method_message(REGISTRIES[kind], value)
    images = np.zeros((1, 16, 16, 3), np.float32)
    with pytest.raises(ValueError) as raised:
        if kind == "cam":
            kcv.GradCAM(tmp_path, images, method=value)
        else:
            kcv.Saliency(tmp_path, images, method=value)
    assert str(raised.value) == expected
    model = small_cnn(input_shape=(16, 16, 3))
    with pytest.raises(ValueError) as raised:
        explain(kind, value, model, images)
    assert str(raised.value) == expected
    assert not any(tmp_path.iterdir())


# ---- several CAM methods share one pass and one gradient ----------------------------------


def test_several_cam_methods_share_one_pass_and_one_gradient(tmp_path):
    # Score-CAM scores its masked images on more forward passes, by design.
    methods = [m for m, spec in kcv.CAM_METHODS.items() if spec.needs != "masked_scores"]
    assert len(methods) >= 4
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    counter = CountCalls(name="counter")
    x = counter(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(x)
    after = CountCalls(name="after")  # between the CAM layer and the head: dS/dA crosses it
    x = keras.layers.GlobalAveragePooling2D()(after(x))
    outputs = keras.layers.Dense(4)(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x_train = rng.random((8, 16, 16, 3), dtype=np.float32)
    y_train = (np.arange(8) % 4).astype(np.int32)
    probe = (x_train[:2], y_train[:2])
    callback = kcv.GradCAM(tmp_path, probe, layer_name="conv_b", method=methods, on_error="raise")
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=8, verbose=0, callbacks=[callback])
    assert float(counter.forward.numpy()) == EPOCHS  # one inference pass per epoch
    assert float(after.backward.numpy()) == EPOCHS  # one gradient dS/dA per epoch
    runs = read_runs(tmp_path)
    assert sorted(runs) == sorted(_tags.cam_run(m) for m in methods)  # one run each
    for method in methods:
        run = _tags.cam_run(method)
        tags = {_tags.tag(run, "conv_b", i) for i in range(2)}
        tags |= {_tags.tag(run, "conv_b", i, q) for i in range(2) for q in ("max", "change")}
        assert set(runs[run]) == tags
    assert [fn.experimental_get_tracing_count() for fn in core_for(model).passes.values()] == [1]
