"""Every rank the core serves: sequences, volumes and token grids, against known answers.

Hand-weighted 1-D and 3-D models whose Grad-CAM is computed by hand; a token-grid model whose
CAM must equal the 2-D CAM of the same weights laid out as a conv; and the geometry's own
resizing and pictures against TensorFlow's 2-D operations.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_convviz as kcv
from keras_convviz.core import geometry
from keras_convviz.core.shared import core_for

CONV = np.array([[1.0, 0.5], [-1.0, 2.0]], np.float32)  # (in, out) of a 1-wide kernel
DENSE = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.25]], np.float32)


def hand_weighted(rank: int, spatial: tuple[int, ...], pool: bool = False) -> keras.Model:
    """conv of window 1 (2 filters, weights by hand) -> [pool] -> global average -> dense."""
    conv = {1: keras.layers.Conv1D, 3: keras.layers.Conv3D}[rank]
    pooling = {1: keras.layers.MaxPooling1D, 3: keras.layers.MaxPooling3D}[rank]
    average = {1: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling3D}
    inputs = keras.Input((*spatial, 2))
    x = conv(2, 1, use_bias=False, name="conv")(inputs)
    if pool:
        x = pooling(2, name="pool")(x)
    x = average[rank]()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([CONV.reshape((1,) * rank + CONV.shape)])
    model.get_layer("head").set_weights([DENSE, np.array([0.1, -0.2, 0.3], np.float32)])
    return model


def hand_grad_cam(activation: np.ndarray, targets) -> np.ndarray:
    """Grad-CAM of `(n, *spatial, 2)` activations feeding global average -> DENSE: the
    gradient of the score is `DENSE[k, c] / positions` everywhere."""
    positions = np.prod(activation.shape[1:-1])
    alpha = DENSE[:, targets].T / positions  # (n, 2)
    return np.maximum(np.einsum("n...k,nk->n...", activation, alpha), 0.0)


@pytest.mark.parametrize("rank, spatial", [(1, (16,)), (3, (4, 6, 8))])
def test_grad_cam_of_a_sequence_and_a_volume_matches_a_hand_computation(rank, spatial):
    model = hand_weighted(rank, spatial)
    samples = np.random.default_rng(rank).normal(size=(3, *spatial, 2)).astype(np.float32)
    activation = np.einsum("n...i,io->n...o", samples, CONV)
    for class_index in (0, 1, 2):
        got = kcv.grad_cam(model, samples, class_index=class_index)
        expected = hand_grad_cam(activation, np.full(3, class_index))
        assert got.shape == (3, *spatial)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert got.max() > 0
    labels = np.array([2, 0, 1])
    np.testing.assert_allclose(
        kcv.grad_cam(model, (samples, labels)),
        hand_grad_cam(activation, labels),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("rank, spatial", [(1, (16,)), (3, (4, 6, 8))])
def test_a_coarse_layer_is_upsampled_linearly_along_every_axis(rank, spatial):
    model = hand_weighted(rank, spatial, pool=True)
    samples = np.random.default_rng(7).normal(size=(2, *spatial, 2)).astype(np.float32)
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)([samples]).numpy()
    coarse = hand_grad_cam(pooled, [1, 1])
    # Linear resizing with half-pixel centres is separable: resize each axis in turn, as
    # tf.image.resize does for two of them.
    expected = coarse
    for axis, length in enumerate(spatial, start=1):
        expected = np.moveaxis(expected, axis, -1)
        matrix = np.asarray(geometry.bilinear_matrix(length, expected.shape[-1]))
        expected = np.moveaxis(expected @ matrix.T, -1, axis)
    got = kcv.grad_cam(model, samples, layer_name="pool", class_index=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_linear_resizing_equals_tensorflows_bilinear_along_two_axes():
    maps = tf.random.stateless_normal((2, 5, 7), seed=(1, 2))
    expected = tf.image.resize(maps[..., None], (20, 11), method="bilinear")[..., 0]
    # The volume path (separable matrices) on a volume of depth 1.
    got = geometry.Geometry(3).resize(maps[:, None], (1, 20, 11))[:, 0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def token_model(extra_tokens: int = 0):
    """Patch embedding (4x4 patches of a 16x16 image, 6 dims) -> tokens -> token-wise
    Dense -> average over the grid's tokens -> 3 classes; with `extra_tokens`, a class
    token of zeros goes first (and is left out of the average)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 4, strides=4, name="patches")(inputs)
    x = keras.layers.Reshape((16, 6), name="tokens")(x)
    if extra_tokens:
        x = keras.layers.Lambda(
            lambda t: tf.concat([tf.zeros_like(t[:, :extra_tokens]), t], axis=1), name="cls"
        )(x)
    x = keras.layers.Dense(5, activation="relu", name="mix")(x)
    x = keras.layers.Lambda(lambda t: tf.reduce_mean(t[:, extra_tokens:], axis=1))(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs)


def conv_twin(tokens: keras.Model) -> keras.Model:
    """The same weights laid out as a CNN: the token-wise Dense is a 1x1 conv."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 4, strides=4, name="patches")(inputs)
    x = keras.layers.Conv2D(5, 1, activation="relu", name="mix")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    model = keras.Model(inputs, outputs)
    for name in ("patches", "head"):
        model.get_layer(name).set_weights(tokens.get_layer(name).get_weights())
    kernel, bias = tokens.get_layer("mix").get_weights()
    model.get_layer("mix").set_weights([kernel[None, None], bias])
    return model


@pytest.mark.parametrize("extra_tokens", [0, 1])
def test_token_grid_cam_equals_the_2d_cam_of_the_same_weights_as_a_conv(extra_tokens):
    tokens = token_model(extra_tokens)
    twin = conv_twin(tokens)
    images = np.random.default_rng(5).random((3, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(tokens.predict(images, verbose=0), twin.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    graph = core_for(tokens).graph
    layout = graph.layout(graph.find("mix", "layer_name"))
    assert layout.grid == (4, 4) and layout.extra_tokens == extra_tokens
    # The default CAM layer of a token model is its last token layer, not the patch
    # embedding.
    assert graph.default_cam_layer().path == "mix"
    for method in ("gradcam", "gradcam++", "layercam", "eigencam"):
        got = kcv.grad_cam(tokens, images, class_index=2, method=method)
        expected = kcv.grad_cam(twin, images, layer_name="mix", class_index=2, method=method)
        assert got.shape == (3, 16, 16)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        assert expected.max() > 0


def test_pictures_lay_every_rank_out_in_2d():
    sequence = tf.reshape(tf.range(2 * 12 * 3, dtype=tf.float32), (2, 12, 3))
    strip = geometry.Geometry(1).picture(sequence)
    rows = geometry.strip_rows(12, 3)
    assert strip.shape == (2, 3 * rows, 12, 1)
    # Each channel is a band of rows, the steps across.
    np.testing.assert_array_equal(strip[:, rows * 2, :, 0], sequence[:, :, 2])
    maps = geometry.Geometry(1).map_picture(sequence[..., 0], channels=3)
    assert maps.shape == (2, 3 * rows, 12)
    np.testing.assert_array_equal(maps[:, -1], sequence[..., 0])

    volume = tf.random.stateless_uniform((1, 20, 5, 6, 1), seed=(0, 1))
    layout = geometry.Geometry(3)
    picked = layout.slice_indices(20)
    assert len(picked) == geometry.MAX_SLICES and picked[0] == 0 and picked[-1] == 19
    montage = layout.picture(volume)
    # 8 slices of 5 x 6 in 2 rows of 4, a blank line between them.
    assert montage.shape == (1, 2 * 5 + 1, 4 * 6 + 3, 1)
    np.testing.assert_array_equal(montage[:, :5, 7:13], volume[:, picked[1]])
    np.testing.assert_array_equal(montage[:, 6:, 21:], volume[:, picked[7]])
    assert geometry.Geometry(3, slices=3).slice_indices(20) == [0, 10, 19]


def segmenter():
    """conv 1x1 (2 filters, CONV) -> conv 1x1 (3 classes, DENSE) with a per-pixel softmax."""
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(inputs)
    outputs = keras.layers.Conv2D(3, 1, activation="softmax", name="mask")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([CONV[None, None]])
    model.get_layer("mask").set_weights([DENSE[None, None], np.array([0.1, -0.2, 0.3], "f")])
    return model


def test_a_segmentation_target_is_a_class_score_summed_over_the_region():
    # Each sample's map explains the class of its largest labelled region (class 0 is the
    # background): S = sum over the region of that class's score before the softmax.
    model = segmenter()
    rng = np.random.default_rng(4)
    images = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    masks = np.zeros((2, 8, 8), np.int32)
    masks[0, 1:4, 2:7] = 2  # 15 pixels of class 2
    masks[0, 5:7, 0:2] = 1  # 4 of class 1
    masks[1, 4:8, 4:8] = 1  # 16 of class 1
    classes = np.array([2, 1])
    regions = (masks == classes[:, None, None]).astype(np.float32)
    activation = np.einsum("nhwi,io->nhwo", images, CONV)
    # dS/dA_k(p) = DENSE[k, c] inside the region, 0 outside; Grad-CAM's weight is its mean.
    alpha = DENSE[:, classes].T * regions.mean(axis=(1, 2))[:, None]
    expected = np.maximum(np.einsum("nhwk,nk->nhw", activation, alpha), 0.0)
    got = kcv.grad_cam(model, (images, masks), layer_name="conv")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Occlusion with a constant baseline: a window's drop is the region's score inside it.
    logits = np.einsum("nhwk,kc->nhwc", activation, DENSE) + [0.1, -0.2, 0.3]
    filled = np.einsum("k,kc->c", np.full(2, 0.5) @ CONV, DENSE) + [0.1, -0.2, 0.3]
    score = np.stack([logits[i, ..., c] for i, c in enumerate(classes)])
    drop = (score - filled[classes][:, None, None]) * regions
    windows = drop.reshape(2, 4, 2, 4, 2).sum(axis=(2, 4))  # 2x2 windows, stride 2
    expected = np.repeat(np.repeat(windows, 2, axis=1), 2, axis=2)
    got = kcv.occlusion_sensitivity(
        model, (images, masks), patch_size=2, baseline=0.5, method="naive"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def hand_segmentation_cam(images, regions, classes):
    """The segmenter's Grad-CAM at "conv" for each sample's class summed over its region."""
    activation = np.einsum("nhwi,io->nhwo", images, CONV)
    alpha = DENSE[:, classes].T * regions.mean(axis=(1, 2))[:, None]
    return np.maximum(np.einsum("nhwk,nk->nhw", activation, alpha), 0.0)


def test_a_segmentation_explains_a_given_class_or_the_predicted_region():
    model = segmenter()
    rng = np.random.default_rng(4)
    images = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    masks = np.zeros((2, 8, 8), np.int32)
    masks[0, 1:4, 2:7] = 2
    masks[0, 5:7, 0:2] = 1
    masks[1, 4:8, 4:8] = 1
    # An int: that class's labelled region in each mask.
    regions = (masks == 1).astype(np.float32)
    got = kcv.grad_cam(model, (images, masks), layer_name="conv", class_index=1)
    np.testing.assert_allclose(got, hand_segmentation_cam(images, regions, [1, 1]), atol=1e-6)

    # "predicted": the largest region the model predicts other than class 0, whatever the
    # masks say; without masks the default is the same.
    logits = np.einsum("nhwi,io,oc->nhwc", images, CONV, DENSE) + [0.1, -0.2, 0.3]
    predicted = logits.argmax(-1)
    counts = np.stack([np.bincount(p.ravel(), minlength=3) for p in predicted])
    classes = counts[:, 1:].argmax(1) + 1
    assert counts[:, 1:].min() > 0 and (counts[:, 0] > 0).all()  # a real choice
    regions = (predicted == classes[:, None, None]).astype(np.float32)
    expected = hand_segmentation_cam(images, regions, classes)
    for probe, class_index in [
        ((images, masks), "predicted"),
        (images, "predicted"),
        (images, None),
    ]:
        got = kcv.grad_cam(model, probe, layer_name="conv", class_index=class_index)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=str(class_index))
    # An occluded copy is scored over its probe sample's region, not its own prediction's.
    filled = np.einsum("k,kc->c", np.full(2, 0.5) @ CONV, DENSE) + [0.1, -0.2, 0.3]
    score = np.stack([logits[i, ..., c] for i, c in enumerate(classes)])
    drop = (score - filled[classes][:, None, None]) * regions
    windows = drop.reshape(2, 4, 2, 4, 2).sum(axis=(2, 4))
    expected = np.repeat(np.repeat(windows, 2, axis=1), 2, axis=2)
    got = kcv.occlusion_sensitivity(
        model, images, class_index="predicted", patch_size=2, baseline=0.5, method="naive"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # One class of the model's own: where it predicts that class.
    regions = (predicted == 2).astype(np.float32)
    got = kcv.grad_cam(model, images, layer_name="conv", class_index=2)
    np.testing.assert_allclose(got, hand_segmentation_cam(images, regions, [2, 2]), atol=1e-6)


def test_a_segmentation_maps_caption_names_the_class_and_its_regions_size(tmp_path):
    from conftest import read_runs

    from keras_convviz import _rendering

    model = segmenter()
    rng = np.random.default_rng(4)
    images = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    masks = np.zeros((2, 8, 8), np.int32)
    masks[0, 1:4, 2:7] = 2  # 15 of the 64 pixels
    masks[1, 4:8, 4:8] = 1  # 16
    callback = kcv.GradCAM(tmp_path, (images, masks), layer_name="conv", on_error="raise")
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0)
    callback.on_train_end()
    logits = np.einsum("nhwi,io,oc->nhwc", images, CONV, DENSE) + [0.1, -0.2, 0.3]
    runs = read_runs(tmp_path)
    for i, (cls, size) in enumerate([(2, 15), (1, 16)]):
        pred = (logits[i] * (masks[i] == cls)[..., None]).sum(axis=(0, 1)).argmax()
        text = f"class {cls} {size} px ({100 * size / 64:.1f}%)  pred {pred}"
        assert len(text) <= _rendering.CAPTION_CHARS
        codes = np.array([[ord(c) for c in text]])
        ink = 1.0 - _rendering.draw_text(codes, _rendering.TEXT_SCALE)[0].numpy()
        png = runs["layer_cam"][f"layer_cam/conv/image_{i}"]["values"][0]
        rows = png[-_rendering.CAPTION_HEIGHT + 3 : -2, 2 : 2 + ink.shape[1], 0] / 255.0
        np.testing.assert_allclose(rows, ink, atol=1 / 255, err_msg=text)
        # Nothing after it: the line is the whole caption.
        assert rows.shape[1] == ink.shape[1]
        assert (png[-_rendering.CAPTION_HEIGHT :, 2 + ink.shape[1] :] == 255).all()


def test_a_volumes_pictures_show_max_slices_evenly_spaced_depth_slices(tmp_path):
    import zoo
    from conftest import read_runs

    from keras_convviz import _rendering

    aspects = {}
    for max_slices in (None, 4):
        model, x, y = zoo.volume(shape=(8, 16, 16, 1))  # depth 8
        options = {} if max_slices is None else {"max_slices": max_slices}
        log_dir = tmp_path / str(max_slices)
        callback = kcv.ConvViz(
            log_dir,
            (x[:1], y[:1]),
            filter_weights=False,
            occlusion=False,
            health=False,
            on_error="raise",
            **options,
        )
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
        runs = read_runs(log_dir)
        # 8 slices of 16 x 16 (the default): 2 rows of 4; 4 slices: 1 row of 4; a blank
        # line between them.
        rows, columns = (2, 4) if max_slices is None else (1, 4)
        height, width = rows * 17 - 1, columns * 17 - 1
        factor = -(-160 // min(height, width))  # panels upsampled to at least 160 px
        panel = runs["grad_cam"]["grad_cam/conv2/image_0"]["values"][0]
        assert panel.shape == (
            height * factor + _rendering.CAPTION_HEIGHT,
            3 * width * factor + 6 + _rendering.COLOUR_BAR_WIDTH,
            3,
        ), max_slices
        # conv1 keeps the input's depth: each channel's tile is a montage of its slices.
        tiles = runs["feature_maps"]["feature_maps/conv1/image_0"]["values"][0]
        aspects[max_slices] = tiles.shape[1] / tiles.shape[0]
    # Half as many rows of slices, as many across: each tile twice as wide as high.
    assert 1.8 < aspects[4] / aspects[None] < 2.2, aspects


def test_max_slices_is_checked_at_construction(tmp_path):
    import re

    for cls in (kcv.ConvViz, kcv.GradCAM, kcv.FeatureMaps):
        with pytest.raises(
            ValueError, match=re.escape("`max_slices` must be an int >= 1. Received: max_slices=0")
        ):
            cls(tmp_path, np.zeros((1, 4, 4, 4, 1), np.float32), max_slices=0)


def test_a_segmentation_probe_is_checked_and_its_health_is_per_pixel(tmp_path):
    model = segmenter()
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 2)).astype(np.float32)
    masks = rng.integers(0, 3, (8, 8, 8)).astype(np.int32)
    with pytest.raises(ValueError, match=r"integer masks of shape \(2, 8, 8\)"):
        model.fit(x, masks, epochs=1, verbose=0,
                  callbacks=[kcv.ConvViz(tmp_path, (x[:2], masks[:2, :4]))])  # fmt: skip
    # A class the output does not have: the user's argument, refused before epoch 1 (not
    # taken as each sample's label, which would only switch the class kinds off).
    refused = r"`class_index` must be in \[0, 3\) for the model's 3 outputs. Received: class_"
    for callback in (
        kcv.ConvViz(tmp_path, (x[:2], masks[:2]), class_index=7),
        kcv.GradCAM(tmp_path, x[:2], class_index=3),
    ):
        with pytest.raises(ValueError, match=refused):
            model.fit(x, masks, epochs=1, verbose=0, callbacks=[callback])
    model.fit(x, masks, epochs=1, verbose=0, callbacks=[kcv.ConvViz(tmp_path, (x[:2], masks[:2]))])
    from conftest import read_runs

    health = read_runs(tmp_path)["health"]
    predicted = model.predict(x[:2], verbose=0).argmax(-1)
    expected = np.mean(predicted == masks[:2])
    assert health["health/pixel_accuracy"]["values"] == pytest.approx([expected], abs=1e-6)
    assert 0 <= health["health/mean_iou"]["values"][0] <= 1
    assert "health/accuracy" not in health


def test_a_token_layer_is_drawn_on_its_grid_with_each_tokens_norm_first():
    from keras_convviz.callbacks.feature_maps import render_layer

    # A class token, then 4 tokens on a 2x2 grid whose norms grow in reading order while
    # their channel 0 falls.
    tokens = np.zeros((1, 5, 3), np.float32)
    tokens[0, 0] = 100.0  # the class token: left out of the grid
    tokens[0, 1:, 0] = [-1.0, -2.0, -3.0, -4.0]
    layout = geometry.Geometry(2, grid=(2, 2), extra_tokens=1)
    pictures, health, _, _ = render_layer(tf.constant(tokens), 2, None, None, layout.key)
    assert "dead_fraction" not in health
    # Two tiles (the norm, channel 0) of 2x2 tokens, each upsampled to 32x32 px.
    norm_tile = pictures[0, 1:33, 1:33].numpy().astype(float).sum(axis=-1)
    brightness = [norm_tile[r * 16 + 8, c * 16 + 8] for r in range(2) for c in range(2)]
    assert np.argsort(brightness).tolist() == [0, 1, 2, 3]
