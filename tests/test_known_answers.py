"""Known answers on hand-weighted tiny models, and the functional API against the callbacks."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from conftest import read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz import _rendering


def hand_weighted_model(size=8, pool=False):
    """conv 1x1 (2 filters, weights set by hand) -> [pool] -> GAP -> dense (3 classes)."""
    inputs = keras.Input((size, size, 2))
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inputs)
    if pool:
        x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([np.array([[[[1.0, 0.5], [-1.0, 2.0]]]], np.float32)])
    dense = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.25]], np.float32)
    model.get_layer("head").set_weights([dense, np.array([0.1, -0.2, 0.3], np.float32)])
    return model, dense


def hand_grad_cam(images, conv_weights, dense, targets):
    activation = np.einsum("nhwi,io->nhwo", images, conv_weights)  # (n, h, w, 2)
    hw = activation.shape[1] * activation.shape[2]
    # S = sum_k dense[k, c] * mean_hw(A_k) + b  =>  dS/dA_k(h, w) = dense[k, c] / hw
    alpha = dense[:, targets].T / hw  # (n, 2), mean over h, w of a constant gradient
    return np.maximum(np.einsum("nhwk,nk->nhw", activation, alpha), 0.0)


def test_grad_cam_matches_a_hand_computation():
    model, dense = hand_weighted_model()
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 8, 8, 2)).astype(np.float32)
    conv_weights = model.get_layer("conv").get_weights()[0][0, 0]
    for class_index in (0, 1, 2):
        got = kcv.grad_cam(model, images, layer_name="conv", class_index=class_index)
        expected = hand_grad_cam(images, conv_weights, dense, np.full(4, class_index))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert got.max() > 0
    # Labels give per-image targets.
    labels = np.array([2, 0, 1, 1])
    got = kcv.grad_cam(model, (images, labels), layer_name="conv")
    np.testing.assert_allclose(
        got, hand_grad_cam(images, conv_weights, dense, labels), rtol=1e-5, atol=1e-6
    )


def test_grad_cam_upsamples_a_coarse_layer_bilinearly():
    model, dense = hand_weighted_model(pool=True)
    images = np.random.default_rng(1).normal(size=(2, 8, 8, 2)).astype(np.float32)
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)([images]).numpy()
    alpha = dense[:, [1, 1]].T / 16.0
    coarse = np.maximum(np.einsum("nhwk,nk->nhw", pooled, alpha), 0.0)
    expected = tf.image.resize(coarse[..., None], (8, 8), method="bilinear")[..., 0].numpy()
    got = kcv.grad_cam(model, images, layer_name="pool", class_index=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_default_grad_cam_target_is_the_predicted_class():
    model, dense = hand_weighted_model()
    images = np.random.default_rng(2).normal(size=(5, 8, 8, 2)).astype(np.float32)
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    conv_weights = model.get_layer("conv").get_weights()[0][0, 0]
    np.testing.assert_allclose(
        kcv.grad_cam(model, images, layer_name="conv"),
        hand_grad_cam(images, conv_weights, dense, predicted),
        rtol=1e-5,
        atol=1e-6,
    )


def bright_region_model():
    """Score of class 1 = mean brightness seen through a 3x3 box filter; class 0 = its negative."""
    inputs = keras.Input((24, 24, 1))
    x = keras.layers.Conv2D(1, 3, padding="same", use_bias=False, activation="relu", name="box")(
        inputs
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("box").set_weights([np.ones((3, 3, 1, 1), np.float32) / 9])
    model.get_layer("head").set_weights(
        [np.array([[-1.0, 1.0]], np.float32), np.zeros(2, np.float32)]
    )
    return model


def test_occlusion_over_a_known_bright_region_dominates_the_map():
    images = np.zeros((2, 24, 24, 1), np.float32)
    images[0, 4:10, 12:20] = 1.0
    images[1, 16:22, 2:8] = 1.0
    boxes = [(slice(4, 10), slice(12, 20)), (slice(16, 22), slice(2, 8))]
    model = bright_region_model()
    for stride in (4, 2):
        maps = kcv.occlusion_sensitivity(
            model, images, patch_size=4, stride=stride, baseline=0.0, class_index=1
        )
        assert maps.shape == (2, 24, 24)
        for i, box in enumerate(boxes):
            inside = np.zeros((24, 24), bool)
            inside[box] = True
            # Grow the box by the patch size: windows overlapping the bright region score too.
            grown = np.zeros((24, 24), bool)
            grown[
                max(box[0].start - 3, 0) : box[0].stop + 3,
                max(box[1].start - 3, 0) : box[1].stop + 3,
            ] = True
            row, col = np.unravel_index(np.argmax(maps[i]), maps[i].shape)
            assert inside[row, col]
            positive = np.clip(maps[i], 0, None)
            assert positive[grown].sum() >= 0.99 * positive.sum()
            assert np.abs(maps[i][~grown]).max() < 1e-6


def test_occlusion_map_is_the_score_drop():
    """With one window covering the whole image, the map is score(x) - score(baseline)."""
    model = bright_region_model()
    images = np.random.default_rng(3).random((3, 24, 24, 1)).astype(np.float32)
    maps = kcv.occlusion_sensitivity(model, images, patch_size=24, baseline=0.25, class_index=1)
    logits = model(images).numpy()[:, 1]
    baseline_logit = model(np.full((1, 24, 24, 1), 0.25, np.float32)).numpy()[0, 1]
    for i in range(3):
        np.testing.assert_allclose(maps[i], logits[i] - baseline_logit, rtol=1e-5, atol=1e-6)


def test_feature_maps_equal_submodel_outputs(data):
    x, _ = data
    model = small_cnn()
    got = kcv.feature_maps(model, x[:4])
    assert list(got) == ["conv_a", "conv_b"]
    submodel = keras.Model(model.inputs, [model.get_layer(n).output for n in got])
    for value, expected in zip(got.values(), submodel([x[:4]])):
        np.testing.assert_allclose(value, expected.numpy(), rtol=1e-6, atol=1e-6)


def test_functional_api_and_callbacks_agree(tmp_path, data):
    x, y = data
    model = small_cnn()
    probe = (x[:3], y[:3])
    callbacks = [
        kcv.GradCAM(tmp_path, probe),
        kcv.OcclusionSensitivity(tmp_path, probe, patch_size=8),
        kcv.FeatureMaps(tmp_path, probe, layer_names=["conv_b"]),
    ]
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    for callback in callbacks:
        callback.on_epoch_end(0)
    for callback in callbacks:
        callback.on_train_end()
    runs = read_runs(tmp_path)

    cams = kcv.grad_cam(model, probe)
    occlusion = kcv.occlusion_sensitivity(model, probe, patch_size=8)
    activations = kcv.feature_maps(model, x[:3], layer_names=["conv_b"])["conv_b"]
    expected = {
        "grad_cam/conv_b/image_{}": _rendering.render_heatmap_panel(x[:3], cams, symmetric=False),
        "occlusion_sensitivity/image_{}": _rendering.render_heatmap_panel(
            x[:3], occlusion, symmetric=True
        ),
        "feature_maps/conv_b/image_{}": _rendering.render_feature_grid(activations, 32),
    }
    merged = {tag: v for run in runs.values() for tag, v in run.items()}
    for pattern, rendered in expected.items():
        rendered = tf.image.convert_image_dtype(rendered, tf.uint8).numpy()
        for i in range(3):
            # The panel above the caption line (tests/test_callbacks.py checks the caption).
            written = merged[pattern.format(i)]["values"][0][: rendered.shape[1]]
            assert np.abs(written.astype(int) - rendered[i].astype(int)).max() <= 1
    for i in range(3):
        assert np.isclose(
            merged[f"grad_cam/conv_b/image_{i}/max"]["values"][0], cams[i].max(), rtol=1e-5
        )
        assert np.isclose(
            merged[f"occlusion_sensitivity/image_{i}/max"]["values"][0],
            occlusion[i].max(),
            rtol=1e-5,
        )
