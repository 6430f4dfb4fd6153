"""Honest scales: with `scale="run"` a map that fades is drawn fading; with `"image"` (the
default) every picture gets its own best contrast."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from conftest import read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz import _rendering


def heat_panel(panel: np.ndarray, width: int) -> np.ndarray:
    """The `map alone` third of a heat-map panel of images `width` wide (no upsampling)."""
    start = 2 * (width + 2)
    return panel[:, :width, start : start + width]


def test_a_given_scale_divides_the_map():
    rng = np.random.default_rng(0)
    images = rng.random((2, 160, 160, 3)).astype(np.float32)
    maps = rng.random((2, 160, 160)).astype(np.float32)
    scale = 2 * maps.max(axis=(1, 2))
    got = _rendering.render_heatmap_panel(images, maps, symmetric=False, scale=scale).numpy()
    lut = _rendering.colormap(_rendering.DEFAULT_GRADCAM_CMAP)
    expected = _rendering.apply_colormap(maps / scale[:, None, None], lut).numpy()
    np.testing.assert_allclose(heat_panel(got, 160), expected, atol=1e-6)
    signed = rng.normal(size=(2, 160, 160)).astype(np.float32)
    scale = 3 * np.abs(signed).max(axis=(1, 2))
    got = _rendering.render_heatmap_panel(images, signed, symmetric=True, scale=scale).numpy()
    lut = _rendering.colormap(_rendering.DEFAULT_DIVERGING_CMAP)
    expected = _rendering.apply_colormap(0.5 + 0.5 * signed / scale[:, None, None], lut).numpy()
    np.testing.assert_allclose(heat_panel(got, 160), expected, atol=1e-6)


def test_feature_grid_with_a_channel_range():
    a = np.random.default_rng(1).random((1, 8, 8, 2)).astype(np.float32)
    low, high = np.zeros(2, np.float32), np.array([2.0, 4.0], np.float32)
    got = _rendering.render_feature_grid(a, 4, channel_range=(low, high)).numpy()
    expected = _rendering.render_feature_grid(
        np.concatenate([a / high, np.ones((1, 8, 8, 1)), np.zeros((1, 8, 8, 1))], -1)[..., :2],
        4,
        channel_range=(low, np.ones(2, np.float32)),
    ).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_run_scale_shows_a_map_fading(tmp_path, data):
    x, y = data
    probe = (x[:2], y[:2])
    cams = {}

    def fit(scale):
        keras.utils.set_random_seed(0)
        model = small_cnn()
        model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")  # frozen

        def weaken(epoch, logs):  # the class evidence drops 10-fold from the second epoch on
            if epoch == 1:
                kernel, bias = model.get_layer("head").get_weights()
                model.get_layer("head").set_weights([kernel * 0.1, bias])

        def record(epoch, logs):
            cams[epoch] = kcv.grad_cam(model, probe)

        callbacks = [
            keras.callbacks.LambdaCallback(on_epoch_begin=weaken),
            kcv.GradCAM(tmp_path / scale, probe, scale=scale),
            keras.callbacks.LambdaCallback(on_epoch_end=record),
        ]
        model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
        return read_runs(tmp_path / scale)["grad_cam"]["grad_cam/conv_b/image_0"]

    images = {scale: fit(scale) for scale in ("image", "run")}
    peak0, peak1 = cams[0][0].max(), cams[1][0].max()
    assert peak1 == np.float32(0.1) * peak0 or abs(peak1 - 0.1 * peak0) < 1e-3 * peak0
    # The first snapshot is the same either way; the second is dimmer with the run's scale.
    np.testing.assert_array_equal(images["image"]["values"][0], images["run"]["values"][0])
    dim, bright = (heat_panel(images[s]["values"][1][None], 160) for s in ("run", "image"))
    lut = _rendering.colormap(_rendering.DEFAULT_GRADCAM_CMAP)
    expected = _rendering.apply_colormap(
        tf.image.resize(cams[1][:1, ..., None] / peak0, (160, 160), "nearest")[..., 0], lut
    )
    expected = tf.image.convert_image_dtype(expected, tf.uint8).numpy()
    assert np.abs(dim.astype(int) - expected.astype(int)).max() <= 1
    assert np.abs(dim.astype(int) - bright.astype(int)).max() > 50  # visibly different
