"""Tests for the pure-TensorFlow image layer `keras_convviz._rendering`."""

import math

import matplotlib
import numpy as np
import pytest
import tensorflow as tf

from keras_convviz import _rendering as r

MAGENTA = np.array(r.INVALID_COLOR, dtype=np.float32)


@pytest.fixture
def rng():
    tf.random.set_seed(0)
    return np.random.default_rng(0)


def _np(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _assert_image(img, shape):
    assert img.dtype == tf.float32
    assert tuple(img.shape) == tuple(shape)
    arr = _np(img)
    assert np.all(np.isfinite(arr))
    assert arr.min() >= 0.0 and arr.max() <= 1.0


def _mpl(name, v):
    return np.asarray(matplotlib.colormaps[name](v), dtype=np.float32)[..., :3]


# --------------------------------------------------------------------------
# Colour maps
# --------------------------------------------------------------------------


def test_colormap_table_matches_matplotlib_and_is_cached():
    lut = r.colormap("viridis")
    assert lut.dtype == tf.float32 and tuple(lut.shape) == (256, 3)
    np.testing.assert_allclose(_np(lut), _mpl("viridis", np.arange(256)), atol=1e-7)
    assert r.colormap("viridis") is lut


def test_colormap_requested_first_inside_trace_is_reusable_eagerly():
    name = "cividis"
    r._LUT_CACHE.pop(name, None)

    @tf.function
    def f():
        return r.colormap(name)[0]

    f()
    # Would raise if the cached tensor were a graph tensor from the trace.
    np.testing.assert_allclose(_np(r.colormap(name)[0]), _mpl(name, 0.0), atol=1e-7)


def test_apply_colormap_values_clipping_and_invalid():
    lut = r.colormap("viridis")
    values = tf.constant([[[0.0, 0.5, 1.0, -3.0, 7.0, np.nan, np.inf, -np.inf]]], tf.float32)
    out = r.apply_colormap(values, lut)
    assert out.dtype == tf.float32 and tuple(out.shape) == (1, 1, 8, 3)
    px = _np(out)[0, 0]
    np.testing.assert_allclose(px[:3], _mpl("viridis", [0.0, 0.5, 1.0]), atol=1e-7)
    np.testing.assert_array_equal(px[3], px[0])  # below range clips to the low end
    np.testing.assert_array_equal(px[4], px[2])  # above range clips to the high end
    for i in (5, 6, 7):
        np.testing.assert_array_equal(px[i], MAGENTA)


def test_apply_colormap_matches_matplotlib_lookup(rng):
    v = rng.uniform(0, 1, size=(2, 5, 7)).astype(np.float32)
    out = _np(r.apply_colormap(tf.constant(v), r.colormap("magma")))
    np.testing.assert_allclose(out, _mpl("magma", v), atol=1e-6)


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------


def test_normalize_per_map_min_max_per_map():
    maps = tf.constant([[[1.0, 3.0], [5.0, 2.0]], [[-4.0, -4.0], [0.0, -2.0]]])
    out = _np(r.normalize_per_map(maps, axes=[1, 2]))
    np.testing.assert_allclose(out[0], [[0.0, 0.5], [1.0, 0.25]])
    np.testing.assert_allclose(out[1], [[0.0, 0.0], [1.0, 0.5]])


def test_normalize_per_map_ignores_and_keeps_non_finite():
    maps = tf.constant([[[np.nan, 2.0], [np.inf, 4.0], [-np.inf, 3.0]]], tf.float32)
    out = _np(r.normalize_per_map(maps, axes=[1, 2]))
    np.testing.assert_allclose(out[0, :, 1], [0.0, 1.0, 0.5])
    assert np.isnan(out[0, 0, 0]) and np.isposinf(out[0, 1, 0]) and np.isneginf(out[0, 2, 0])


@pytest.mark.parametrize("value", [0.0, 3.5, -1e30])
def test_normalize_per_map_constant_map_is_zero(value):
    out = _np(r.normalize_per_map(tf.fill([2, 4, 4], value), axes=[1, 2]))
    np.testing.assert_array_equal(out, np.zeros((2, 4, 4), np.float32))


def test_normalize_per_map_all_nan_and_extreme_range():
    all_nan = _np(r.normalize_per_map(tf.fill([1, 2, 2], np.nan), axes=[1, 2]))
    assert np.all(np.isnan(all_nan))
    extreme = tf.constant([[[-3e38, 0.0, 3e38]]], tf.float32)
    np.testing.assert_allclose(_np(r.normalize_per_map(extreme, axes=[1, 2])), [[[0, 0.5, 1]]])


def test_normalize_symmetric():
    v = tf.constant([[-2.0, 0.0, 1.0, 2.0, 4.0, np.nan]])
    out = _np(r.normalize_symmetric(v, 2.0))
    np.testing.assert_allclose(out[0, :5], [0.0, 0.5, 0.75, 1.0, 1.0])
    assert np.isnan(out[0, 5])
    zero_scale = _np(r.normalize_symmetric(tf.constant([[0.0, 0.0], [1.0, -3.0]]), 0.0))
    np.testing.assert_array_equal(zero_scale, np.full((2, 2), 0.5, np.float32))
    # Broadcast per-row scales, one of them 0.
    rows = _np(r.normalize_symmetric(tf.constant([[1.0, -1.0], [0.0, 0.0]]), [[1.0], [0.0]]))
    np.testing.assert_allclose(rows, [[1.0, 0.0], [0.5, 0.5]])


def test_max_abs_finite():
    x = tf.constant([[1.0, -5.0, np.inf], [np.nan, -np.inf, np.nan]])
    assert float(r.max_abs_finite(x)) == 5.0
    per_row = r.max_abs_finite(x, axes=1, keepdims=True)
    assert tuple(per_row.shape) == (2, 1)
    np.testing.assert_array_equal(_np(per_row), [[5.0], [0.0]])
    assert r.max_abs_finite(tf.zeros([3], tf.int32)).dtype == tf.float32


# --------------------------------------------------------------------------
# Display images
# --------------------------------------------------------------------------


def test_display_images_uint8_and_unit_float_look_the_same(rng):
    raw = rng.integers(0, 256, size=(2, 6, 5, 3), dtype=np.uint8)
    raw[:, 0, 0] = (0, 255, 128)  # make both images span the full range
    from_uint8 = r.display_images(tf.constant(raw))
    from_float = r.display_images(tf.constant(raw.astype(np.float32) / 255.0))
    _assert_image(from_uint8, (2, 6, 5, 3))
    np.testing.assert_allclose(_np(from_uint8), _np(from_float), atol=1e-6)
    np.testing.assert_allclose(_np(from_uint8), raw / 255.0, atol=1e-6)


def test_display_images_standardised_input_is_stretched_per_image(rng):
    x = (
        rng.normal(size=(3, 4, 4, 3)).astype(np.float32)
        * np.array([1, 10, 100])[:, None, None, None]
    )
    out = _np(r.display_images(tf.constant(x)))
    assert out.shape == (3, 4, 4, 3)
    np.testing.assert_allclose(out.min(axis=(1, 2, 3)), 0.0)
    np.testing.assert_allclose(out.max(axis=(1, 2, 3)), 1.0)


def test_display_images_channel_handling():
    grey = tf.constant([[[[0.0], [2.0]], [[4.0], [1.0]]]])
    out = _np(r.display_images(grey))
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, :, :, 0], [[0.0, 0.5], [1.0, 0.25]])
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])

    two = _np(r.display_images(tf.constant([[[[0.0, 2.0], [1.0, 0.0]]]])))
    np.testing.assert_allclose(two[0, 0], [[0.0, 1.0, 0.0], [0.5, 0.0, 0.0]])

    four = np.random.default_rng(1).uniform(size=(1, 3, 3, 4)).astype(np.float32)
    four[0, 0, 0, :3] = (0.0, 1.0, 0.5)
    four[..., 3] = 100.0  # ignored channel must not affect the stretch
    np.testing.assert_allclose(_np(r.display_images(tf.constant(four))), four[..., :3], atol=1e-6)


def test_display_images_constant_and_non_finite():
    const = _np(r.display_images(tf.fill([2, 3, 3, 3], 7.0)))
    np.testing.assert_array_equal(const, np.full((2, 3, 3, 3), 0.5, np.float32))

    x = np.zeros((1, 2, 2, 3), np.float32)
    x[0, 1, 1] = 1.0
    x[0, 0, 1, 2] = np.nan
    x[0, 1, 0, 0] = np.inf
    out = _np(r.display_images(tf.constant(x)))
    np.testing.assert_array_equal(out[0, 0, 1], MAGENTA)
    np.testing.assert_array_equal(out[0, 1, 0], MAGENTA)
    np.testing.assert_array_equal(out[0, 0, 0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[0, 1, 1], [1.0, 1.0, 1.0])


# --------------------------------------------------------------------------
# Resampling, overlay, layout
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (2, 3, 4, 1), (2, 3, 4)])
def test_upsample_nearest_replicates_exactly(rng, shape):
    x = rng.normal(size=shape).astype(np.float32)
    out = r.upsample_nearest(tf.constant(x), 3)
    expected = np.repeat(np.repeat(x, 3, axis=1), 3, axis=2)
    assert tuple(out.shape) == expected.shape
    np.testing.assert_array_equal(_np(out), expected)
    np.testing.assert_array_equal(_np(r.upsample_nearest(tf.constant(x), 1)), x)


@pytest.mark.parametrize("factor", [0, 2.0, True])
def test_upsample_nearest_rejects_bad_factor(factor):
    with pytest.raises(ValueError):
        r.upsample_nearest(tf.zeros([1, 2, 2, 1]), factor)


def test_resize_bilinear_keeps_rank_and_dtype():
    maps = tf.ones([2, 4, 6], tf.float16) * 3
    out = r.resize_bilinear(maps, (8, 12))
    assert out.dtype == tf.float32 and tuple(out.shape) == (2, 8, 12)
    np.testing.assert_allclose(_np(out), 3.0)
    out4 = r.resize_bilinear(tf.zeros([1, 4, 4, 3]), (2, 5))
    assert out4.dtype == tf.float32 and tuple(out4.shape) == (1, 2, 5, 3)
    ramp = r.resize_bilinear(tf.constant([[[0.0, 1.0]]]), (1, 4))
    np.testing.assert_allclose(_np(ramp), [[[0.0, 0.25, 0.75, 1.0]]])


def test_overlay():
    base = tf.fill([1, 2, 2, 3], 0.2)
    heat = tf.fill([1, 2, 2, 3], 1.0)
    np.testing.assert_allclose(_np(r.overlay(base, heat)), 0.6)
    np.testing.assert_allclose(_np(r.overlay(base, heat, alpha=0.25)), 0.4)
    np.testing.assert_allclose(_np(r.overlay(base, heat, alpha=1.0)), 1.0)


@pytest.mark.parametrize("n,ncols,pad", [(5, 3, 1), (4, 2, 2), (1, 1, 1), (3, 4, 0)])
def test_tile_layout_places_tiles_at_expected_offsets(n, ncols, pad):
    h, w, c = 2, 3, 1
    tiles = np.stack([np.full((h, w, c), i + 1, np.float32) for i in range(n)])
    out = r.tile(tf.constant(tiles), ncols=ncols, pad=pad, pad_value=-1.0)
    rows = math.ceil(n / ncols)
    expected_shape = (1, rows * h + (rows + 1) * pad, ncols * w + (ncols + 1) * pad, c)
    assert tuple(out.shape) == expected_shape
    img = _np(out)[0, ..., 0]

    # Rebuild the expected picture tile by tile.
    expected = np.full(expected_shape[1:3], -1.0, np.float32)
    for i in range(n):
        row, col = divmod(i, ncols)
        top, left = pad + row * (h + pad), pad + col * (w + pad)
        expected[top : top + h, left : left + w] = i + 1
    np.testing.assert_array_equal(img, expected)


def test_tile_keeps_dtype_and_channels():
    out = r.tile(tf.zeros([3, 4, 4, 3], tf.uint8), ncols=2, pad=1, pad_value=255)
    assert out.dtype == tf.uint8 and tuple(out.shape) == (1, 11, 11, 3)
    assert _np(out)[0, 0, 0, 0] == 255


def test_hstack():
    a = tf.zeros([2, 3, 4, 3])
    b = tf.fill([2, 3, 5, 3], 0.5)
    out = _np(r.hstack([a, b], pad=2, pad_value=1.0))
    assert out.shape == (2, 3, 11, 3)
    np.testing.assert_array_equal(out[:, :, :4], 0.0)
    np.testing.assert_array_equal(out[:, :, 4:6], 1.0)
    np.testing.assert_array_equal(out[:, :, 6:], 0.5)
    assert tuple(r.hstack([a, a, a], pad=0).shape) == (2, 3, 12, 3)


# --------------------------------------------------------------------------
# Feature grid
# --------------------------------------------------------------------------


def _feature_grid_shape(k, h, w, c, max_channels, min_tile):
    n = min(c, max_channels)
    ncols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / ncols)
    f = max(1, math.ceil(min_tile / min(h, w)))
    return (k, rows * h * f + rows + 1, ncols * w * f + ncols + 1, 3), n, ncols, f


@pytest.mark.parametrize(
    "k,h,w,c,max_channels,min_tile",
    [(2, 8, 8, 10, 16, 32), (1, 5, 7, 64, 16, 32), (3, 40, 40, 3, 16, 32), (1, 1, 1, 2, 8, 32)],
)
def test_render_feature_grid_shape_and_range(rng, k, h, w, c, max_channels, min_tile):
    acts = rng.normal(size=(k, h, w, c)).astype(np.float32)
    out = r.render_feature_grid(tf.constant(acts), max_channels, min_tile=min_tile)
    shape, *_ = _feature_grid_shape(k, h, w, c, max_channels, min_tile)
    _assert_image(out, shape)


def test_render_feature_grid_tiles_content(rng):
    k, h, w, c = 2, 4, 4, 5
    acts = rng.normal(size=(k, h, w, c)).astype(np.float32)
    acts[1, :, :, 2] = 0.0  # dead channel
    acts[0, 1, 2, 3] = np.nan
    lut = r.colormap("viridis")
    out = _np(r.render_feature_grid(tf.constant(acts), 16, min_tile=10, lut=lut))
    shape, n, ncols, f = _feature_grid_shape(k, h, w, c, 16, 10)
    assert (n, ncols, f) == (5, 3, 3)
    assert out.shape == shape

    def tile_of(img, ch):
        row, col = divmod(ch, ncols)
        top, left = 1 + row * (h * f + 1), 1 + col * (w * f + 1)
        return out[img, top : top + h * f, left : left + w * f]

    # Tile (0, 0): channel 0 of image 0, min-max normalised, nearest upsampled.
    ch0 = acts[0, :, :, 0]
    norm = (ch0 - ch0.min()) / (ch0.max() - ch0.min())
    expected = np.repeat(np.repeat(_np(r.apply_colormap(norm[None], lut))[0], f, 0), f, 1)
    np.testing.assert_allclose(tile_of(0, 0), expected, atol=1e-6)
    # Dead channel: constant dark end of the colour map.
    np.testing.assert_allclose(tile_of(1, 2), np.broadcast_to(_np(lut[0]), (h * f, w * f, 3)))
    # NaN activation: exactly the marker colour over its upsampled block.
    nan_block = tile_of(0, 3)[1 * f : 2 * f, 2 * f : 3 * f]
    np.testing.assert_array_equal(nan_block, np.broadcast_to(MAGENTA, (f, f, 3)))
    assert np.sum(np.all(tile_of(0, 3) == MAGENTA, axis=-1)) == f * f
    # White separators and white filler tile (6th slot of the 2x3 grid).
    np.testing.assert_array_equal(out[:, 0], 1.0)
    np.testing.assert_array_equal(out[:, :, 0], 1.0)
    np.testing.assert_array_equal(tile_of(0, 5), 1.0)


def test_render_feature_grid_dynamic_spatial_shape_matches_eager(rng):
    acts = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    fn = tf.function(
        lambda a: r.render_feature_grid(a, 16, min_tile=16),
        input_signature=[tf.TensorSpec([None, None, None, 4], tf.float32)],
    )
    np.testing.assert_array_equal(
        _np(fn(tf.constant(acts))), _np(r.render_feature_grid(tf.constant(acts), 16, min_tile=16))
    )


# --------------------------------------------------------------------------
# Heat-map panel
# --------------------------------------------------------------------------


def _parts(out, side):
    """The image, overlay and map panels and the colour bar of a heat-map panel."""
    return (
        out[..., :side, :],
        out[..., side + 2 : 2 * side + 2, :],
        out[..., 2 * side + 4 : 3 * side + 4, :],
        out[..., 3 * side + 6 :, :],
    )


@pytest.mark.parametrize(
    "k,h,w,c,min_size,f",
    [(2, 32, 40, 3, 128, 4), (1, 150, 130, 1, 128, 1), (1, 28, 28, 1, 160, 6), (2, 7, 9, 3, 0, 1)],
)
def test_render_heatmap_panel_shape(rng, k, h, w, c, min_size, f):
    images = rng.uniform(0, 255, size=(k, h, w, c)).astype(np.float32)
    maps = rng.normal(size=(k, h, w)).astype(np.float32)
    for symmetric in (False, True):
        out = r.render_heatmap_panel(
            tf.constant(images), tf.constant(maps), symmetric, min_size=min_size
        )
        _assert_image(out, (k, h * f, 3 * w * f + 6 + r.COLOUR_BAR_WIDTH, 3))
        caption = tf.constant(np.full((k, 30), ord("x"), np.int32))
        out = r.render_heatmap_panel(images, maps, symmetric, min_size=min_size, caption=caption)
        _assert_image(out, (k, h * f + r.CAPTION_HEIGHT, 3 * w * f + 6 + r.COLOUR_BAR_WIDTH, 3))


def test_render_heatmap_panel_left_is_display_image_and_separator_white(rng):
    images = rng.uniform(0, 255, size=(2, 16, 16, 3)).astype(np.float32)
    maps = rng.uniform(size=(2, 16, 16)).astype(np.float32)
    out = _np(r.render_heatmap_panel(tf.constant(images), tf.constant(maps), False, min_size=32))
    display = np.repeat(np.repeat(_np(r.display_images(tf.constant(images))), 2, 1), 2, 2)
    np.testing.assert_allclose(out[:, :, :32], display, atol=1e-6)
    np.testing.assert_array_equal(out[:, :, 32:34], 1.0)
    np.testing.assert_array_equal(out[:, :, 66:68], 1.0)


def test_render_heatmap_panel_overlay_opacity_follows_the_map(rng):
    images = rng.uniform(size=(1, 4, 4, 3)).astype(np.float32)
    maps = rng.uniform(0.1, 1.0, size=(1, 4, 4)).astype(np.float32)
    lut = r.colormap("viridis")
    out = _np(r.render_heatmap_panel(images, maps, False, lut=lut, alpha=0.8, min_size=0))
    display = _np(r.display_images(tf.constant(images)))
    grey = (display @ np.array([0.2989, 0.587, 0.114], np.float32))[..., None]
    strength = (maps / maps.max())[..., None]
    heat = _np(r.apply_colormap(maps / maps.max(), lut))
    expected = (1 - 0.8 * strength) * grey + 0.8 * strength * heat
    _, overlay, alone, _ = _parts(out, 4)
    np.testing.assert_allclose(overlay, expected, atol=2e-3)
    np.testing.assert_allclose(alone, heat, atol=1e-6)  # the map on its own


def test_render_heatmap_panel_gradcam_scaling():
    lut = r.colormap("viridis")
    images = tf.zeros([2, 2, 2, 3])
    maps = tf.constant([[[0.0, 1.0], [2.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = _np(r.render_heatmap_panel(images, maps, False, lut=lut, min_size=0))
    alone = _parts(out, 2)[2]
    np.testing.assert_allclose(alone[0], _np(r.apply_colormap([[0.0, 0.25], [0.5, 1.0]], lut)))
    np.testing.assert_allclose(alone[1], np.broadcast_to(_np(lut[0]), (2, 2, 3)))
    # An all-zero map leaves the (grey) image untouched in the overlay.
    np.testing.assert_allclose(_parts(out, 2)[1][1], _parts(out, 2)[0][1], atol=1e-3)


def test_render_heatmap_panel_symmetric_centre_blue_red_and_invalid():
    images = tf.zeros([1, 2, 3, 1])
    maps = tf.constant([[[0.0, -2.0, 1.0], [2.0, np.nan, np.inf]]])
    out = _np(r.render_heatmap_panel(images, maps, True, min_size=0))
    _, overlay, right, _ = _parts(out[0], 3)
    np.testing.assert_allclose(right[0, 0], _mpl("RdBu_r", 0.5), atol=1e-7)  # 0 -> centre
    np.testing.assert_allclose(right[0, 1], _mpl("RdBu_r", 0.0), atol=1e-7)
    np.testing.assert_allclose(right[0, 2], _mpl("RdBu_r", 0.75), atol=1e-7)
    np.testing.assert_allclose(right[1, 0], _mpl("RdBu_r", 1.0), atol=1e-7)
    assert right[0, 1, 2] > right[0, 1, 0]  # negative -> blue side
    assert right[1, 0, 0] > right[1, 0, 2]  # positive -> red side
    for part in (overlay, right):
        np.testing.assert_array_equal(part[1, 1], MAGENTA)
        np.testing.assert_array_equal(part[1, 2], MAGENTA)
    image = _parts(out[0], 3)[0]
    np.testing.assert_allclose(overlay[0, 0], image[0, 0], atol=1e-3)  # zero: no colour


def test_render_heatmap_panel_invalid_is_exact_with_blending_and_upsampling():
    maps = np.zeros((1, 4, 4), np.float32)
    maps[0, 0, 0] = np.nan
    out = _np(r.render_heatmap_panel(tf.ones([1, 4, 4, 3]), tf.constant(maps), False, min_size=8))
    np.testing.assert_array_equal(out[0, 0:2, 10:12], np.broadcast_to(MAGENTA, (2, 2, 3)))
    assert np.sum(np.all(out == MAGENTA, axis=-1)) == 8  # 2x2 in the overlay and in the map


def test_render_heatmap_panel_resizes_smaller_maps():
    images = tf.zeros([1, 8, 8, 3])
    out = r.render_heatmap_panel(images, tf.ones([1, 2, 2]), False, min_size=0)
    _assert_image(out, (1, 8, 3 * 8 + 6 + r.COLOUR_BAR_WIDTH, 3))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("with_scale", [False, True])
def test_shared_heatmap_panel_draws_the_same_pixels(rng, symmetric, with_scale):
    # One trace for signed and unsigned maps (`symmetric` a tensor): the same pixels as the
    # panel drawn with `symmetric` a Python bool, smaller maps resized and NaN/Inf included.
    images = tf.constant(rng.normal(size=(3, 12, 12, 3)).astype(np.float32))
    maps = rng.normal(size=(3, 6, 6)).astype(np.float32)
    maps[0, 1, 1], maps[1, 2, 3] = np.nan, -np.inf
    maps = tf.constant(maps)
    caption = r.caption_codes(
        tf.constant([0, 1, 2]), tf.constant([2, 1, 0]), tf.constant([0.5, 0.25, 1.0]),
        tf.constant(np.stack([r.text_codes(n, 4) for n in ("a", "bb", "ccc")])),
    )  # fmt: skip
    scale = tf.constant([4.0, 0.5, 2.0]) if with_scale else None
    direct = r.render_heatmap_panel(images, maps, symmetric, caption=caption, scale=scale)
    shared = r.draw_heatmap_panels(images, maps, symmetric, caption=caption, scale=scale)
    assert shared.dtype == tf.uint8
    np.testing.assert_array_equal(_np(shared), _np(tf.image.convert_image_dtype(direct, tf.uint8)))


def test_shared_heatmap_panel_needs_a_colour_map_for_a_tensor_flag():
    with pytest.raises(ValueError, match="`lut` is required"):
        r.render_heatmap_panel(tf.zeros([1, 4, 4, 3]), tf.zeros([1, 4, 4]), tf.constant(True))


def test_colour_bar_writes_the_raw_range():
    maps = tf.constant([[[0.0, 0.5], [1.25, 2.5]], [[-3.0, 0.0], [0.0, 1.0]]])
    out = _np(r.render_heatmap_panel(tf.zeros([2, 2, 2, 1]), maps, True, min_size=60))
    bar = _parts(out, 60)[3]
    labels = bar[:, :, 12:, 0]  # right of the 10-px bar and a 2-px space, black ink on white
    top = 1.0 - _np(r.draw_text(r.number_codes(tf.constant([2.5, 3.0])), r.TEXT_SCALE))
    bottom = 1.0 - _np(r.draw_text(r.number_codes(tf.constant([-2.5, -3.0])), r.TEXT_SCALE))
    rows = r.FONT_HEIGHT * r.TEXT_SCALE
    np.testing.assert_allclose(labels[:, :rows], top)
    np.testing.assert_allclose(labels[:, -rows:], bottom)
    ramp = bar[0, :, 0]  # the bar runs from the map's top colour down to its bottom colour
    np.testing.assert_allclose(ramp[0], _mpl("RdBu_r", 1.0), atol=1e-7)
    np.testing.assert_allclose(ramp[-1], _mpl("RdBu_r", 0.0), atol=1e-7)


@pytest.mark.parametrize(
    "value,text",
    [
        (0.0, "0.00"),
        (1.5, "1.50"),
        (-1.5, "-1.50"),
        (0.00123, "0.00123"),
        (512.0, "512"),
        (99900.0, "99900"),
        (123456.0, "1.23e+05"),
        (-2.5e-7, "-2.50e-07"),
        (999.6, "1000"),
        (0.05, "0.0500"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
    ],
)
def test_number_codes(value, text):
    codes = _np(r.number_codes(tf.constant([value], tf.float32)))[0]
    assert "".join(map(chr, codes)) == text.rjust(9)


def test_caption_codes_and_text():
    names = np.stack([r.text_codes(n, 6) for n in ("circle", "square", "cross")])
    codes = r.caption_codes(
        tf.constant([0, 2]), tf.constant([1, 2]), tf.constant([0.934, 0.9999]), tf.constant(names)
    )
    lines = ["".join(map(chr, row)) for row in _np(codes)]
    assert lines == ["target circle  pred square 0.93", "target cross   pred cross  1.00"]
    ink = _np(r.draw_text(codes))
    assert ink.shape == (2, r.FONT_HEIGHT, r.FONT_WIDTH * len(lines[0]))
    assert ink[0, :, : r.FONT_WIDTH * 6].max() == 1.0 and ink[0, :, -1].max() == 0.0


def test_a_region_caption_gives_the_class_and_the_regions_size_within_the_narrowest_panel():
    names = tf.constant(["background", "car", "pedestrian"])
    codes = r.region_caption_codes(
        tf.constant([2, 1]), tf.constant([2, 0]), tf.constant([312.0, 0.0]), 4096, names
    )
    lines = ["".join(map(chr, row)) for row in _np(codes)]
    assert lines == [
        "class pedestrian 312 px (7.6%)  pred pedestrian".ljust(r.CAPTION_CHARS),
        "class car 0 px (0.0%)  pred background".ljust(r.CAPTION_CHARS),
    ]
    # The narrowest heat-map panel (min_size=160 on a square image) holds the whole line.
    images = tf.zeros((2, 8, 8, 3))
    panel = r.render_heatmap_panel(images, tf.zeros((2, 8, 8)), False, caption=codes)
    assert panel.shape[2] >= r.FONT_WIDTH * r.TEXT_SCALE * r.CAPTION_CHARS + 2


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,kwargs,expected",
    [
        # Patch layout: p = max(cell, ceil(16 / min(kh, kw))), ncols = ceil(sqrt(nf)).
        ((3, 3, 3, 16), {}, (1, 4 * 18 + 5, 4 * 18 + 5, 3)),
        ((3, 3, 1, 8), {}, (1, 3 * 18 + 4, 3 * 18 + 4, 3)),
        ((7, 7, 3, 4), {}, (1, 2 * 28 + 3, 2 * 28 + 3, 3)),
        ((1, 1, 3, 10), {}, (1, 3 * 16 + 4, 4 * 16 + 5, 3)),
        ((3, 3, 3, 100), {"max_filters": 9}, (1, 3 * 18 + 4, 3 * 18 + 4, 3)),
        # Grid layout: rows = filters, cols = inputs, p = max(cell, ceil(8 / min(kh, kw))).
        ((3, 3, 32, 64), {}, (1, 64 * 12 + 65, 32 * 12 + 33, 3)),
        ((1, 1, 16, 8), {}, (1, 8 * 8 + 9, 16 * 8 + 17, 3)),
        ((5, 5, 64, 128), {}, (1, 64 * 20 + 65, 32 * 20 + 33, 3)),
        ((3, 3, 2, 4), {"cell": 6, "max_inputs": 1}, (1, 4 * 18 + 5, 1 * 18 + 2, 3)),
    ],
)
def test_render_kernels_shapes(rng, shape, kwargs, expected):
    kernel = rng.normal(size=shape).astype(np.float32)
    out = r.render_kernels(tf.constant(kernel), **kwargs)
    _assert_image(out, expected)


@pytest.mark.parametrize(
    "shape,min_px", [((3, 3, 1, 1), 15), ((1, 1, 1, 1), 15), ((1, 1, 8, 1), 8)]
)
def test_render_kernels_single_weight_is_readable(shape, min_px):
    # Whole first patch (patch layout) / first cell (grid layout) at +max.
    kernel = np.zeros(shape, np.float32)
    kernel[:, :, 0, 0] = 1.0
    out = _np(r.render_kernels(tf.constant(kernel)))[0]
    red = np.all(np.isclose(out, _mpl("RdBu_r", 1.0)), axis=-1)
    rows, cols = np.nonzero(red)
    side = rows.max() - rows.min() + 1
    assert side >= min_px and cols.max() - cols.min() + 1 == side and red.sum() == side * side


def test_kernel_scale_is_per_layer_and_ignores_non_finite():
    kernel = np.zeros((3, 3, 4, 2), np.float32)
    kernel[0, 0, 0, 0] = -3.0
    kernel[1, 1, 1, 1] = 0.5
    kernel[2, 2, 2, 1] = np.nan
    scale = r.kernel_scale(tf.Variable(kernel))
    assert scale.dtype == tf.float32 and scale.shape.rank == 0 and float(scale) == 3.0


def test_render_kernels_single_input_diverging_colours():
    kernel = np.zeros((3, 3, 1, 2), np.float32)
    kernel[0, 0, 0, 0] = -2.0
    kernel[0, 1, 0, 0] = 2.0
    kernel[0, 2, 0, 0] = 1.0
    kernel[1, 1, 0, 1] = np.nan
    out = _np(r.render_kernels(tf.constant(kernel)))
    p = 6  # max(4, ceil(16 / 3))
    assert out.shape == (1, 2 + 3 * p, 3 + 2 * 3 * p, 3)

    def weight(f, i, j):
        return out[0, 1 + i * p, 1 + f * (3 * p + 1) + j * p]

    np.testing.assert_allclose(weight(0, 0, 0), _mpl("RdBu_r", 0.0), atol=1e-7)  # -s
    np.testing.assert_allclose(weight(0, 0, 1), _mpl("RdBu_r", 1.0), atol=1e-7)  # +s
    np.testing.assert_allclose(weight(0, 0, 2), _mpl("RdBu_r", 0.75), atol=1e-7)
    np.testing.assert_allclose(weight(0, 2, 2), _mpl("RdBu_r", 0.5), atol=1e-7)  # zero
    neg = weight(0, 0, 0)
    assert neg[2] > neg[0]  # negative weights on the blue side
    pos = weight(0, 0, 1)
    assert pos[0] > pos[2]
    np.testing.assert_array_equal(weight(1, 1, 1), MAGENTA)
    # Black separators, so near-white zero weights stay distinguishable.
    np.testing.assert_array_equal(out[0, 0], 0.0)
    np.testing.assert_array_equal(out[0, :, 1 + 3 * p], 0.0)


def test_render_kernels_rgb_patches_use_one_scale():
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 0] = (4.0, -4.0, 0.0)
    kernel[0, 0, :, 1] = (1.0, 0.0, -2.0)
    out = _np(r.render_kernels(tf.constant(kernel), cell=2))
    p = 16
    assert out.shape == (1, p + 2, 2 * p + 3, 3)
    np.testing.assert_allclose(out[0, 1, 1], [1.0, 0.0, 0.5])
    # Second filter shares the layer scale (4), not its own (2).
    np.testing.assert_allclose(out[0, 1, p + 2], [0.625, 0.5, 0.25])
    np.testing.assert_array_equal(_np(r.render_kernels(tf.zeros([3, 3, 3, 1])))[0, 5, 5], 0.5)


def test_render_kernels_grid_layout_rows_are_filters_cols_are_inputs():
    kh = kw = 1
    cin, cout = 4, 3
    kernel = np.zeros((kh, kw, cin, cout), np.float32)
    kernel[0, 0, 2, 1] = -1.0  # filter 1, input 2
    kernel[0, 0, 0, 2] = 1.0  # filter 2, input 0
    out = _np(r.render_kernels(tf.constant(kernel)))
    p = 8
    assert out.shape == (1, cout * p + cout + 1, cin * p + cin + 1, 3)

    def cell(f, i):
        return out[0, 1 + f * (p + 1) + p // 2, 1 + i * (p + 1) + p // 2]

    np.testing.assert_allclose(cell(1, 2), _mpl("RdBu_r", 0.0), atol=1e-7)
    np.testing.assert_allclose(cell(2, 0), _mpl("RdBu_r", 1.0), atol=1e-7)
    np.testing.assert_allclose(cell(0, 0), _mpl("RdBu_r", 0.5), atol=1e-7)


# --------------------------------------------------------------------------
# Graph mode: traced once, same results as eager
# --------------------------------------------------------------------------


def _renderers():
    return {
        "feature_grid": (
            lambda a: r.render_feature_grid(a, 8),
            lambda g: [g.normal([2, 6, 6, 12])],
        ),
        "heatmap_gradcam": (
            lambda im, m: r.render_heatmap_panel(im, m, False),
            lambda g: [g.uniform([2, 20, 24, 3]) * 255, g.uniform([2, 20, 24])],
        ),
        "heatmap_occlusion": (
            lambda im, m: r.render_heatmap_panel(im, m, True, lut=r.colormap("coolwarm")),
            lambda g: [g.normal([2, 20, 24, 1]), g.normal([2, 20, 24])],
        ),
        "kernels_rgb": (lambda k: r.render_kernels(k), lambda g: [g.normal([3, 3, 3, 16])]),
        "kernels_grey": (lambda k: r.render_kernels(k), lambda g: [g.normal([5, 5, 1, 8])]),
        "kernels_deep": (lambda k: r.render_kernels(k), lambda g: [g.normal([3, 3, 32, 64])]),
        "display": (r.display_images, lambda g: [g.normal([2, 5, 5, 2])]),
        "tile": (lambda t: r.tile(t, 3), lambda g: [g.normal([7, 4, 4, 3])]),
    }


@pytest.mark.parametrize("name", sorted(_renderers()))
def test_renderers_trace_once_in_tf_function(name):
    fn, make_args = _renderers()[name]
    gen = tf.random.Generator.from_seed(0)
    compiled = tf.function(fn)
    for _ in range(2):
        args = make_args(gen)
        out = compiled(*args)
        np.testing.assert_allclose(_np(out), _np(fn(*args)), atol=1e-6)
        assert out.shape.is_fully_defined()
    assert compiled.experimental_get_tracing_count() == 1


def test_kernel_variable_updates_without_retrace():
    var = tf.Variable(tf.zeros([3, 3, 1, 4]))
    compiled = tf.function(lambda: (r.render_kernels(var), r.kernel_scale(var)))
    _, s0 = compiled()
    var.assign(tf.ones([3, 3, 1, 4]) * 2)
    img, s1 = compiled()
    assert float(s0) == 0.0 and float(s1) == 2.0
    np.testing.assert_allclose(_np(img)[0, 1, 1], _mpl("RdBu_r", 1.0), atol=1e-7)
    assert compiled.experimental_get_tracing_count() == 1
