"""Pure-TensorFlow image layer: colour maps, normalisation, layout.

Every function here takes and returns `tf.Tensor`s and uses only TF ops, so
the callbacks can trace them once inside a `tf.function` (possibly on a GPU)
and re-run them every logging step without retracing. Layout decisions
(number of tiles, upsampling factors) are made from *static* shapes with
Python ints; only values flow through the graph.

Images are `(batch, height, width, channels)` float32 tensors in [0, 1] with
1 or 3 channels, ready for `tf.summary.image`.

Non-finite values (NaN/Inf) are never silently clipped or stretched: they are
painted in `INVALID_COLOR` so a diverging model is visible at a glance.

The callbacks trace their renderers with `tf.function(..., autograph=False)`, so
Python `if`/`for`/`while` here may only depend on Python values and static
shapes, never on a tensor's value (use `tf.where`, `tf.maximum`... instead).
"""

from __future__ import annotations

import math

import tensorflow as tf

INVALID_COLOR: tuple[float, float, float] = (1.0, 0.0, 1.0)
"""Marker colour (magenta) for non-finite values."""

DEFAULT_SEQUENTIAL_CMAP = "viridis"
DEFAULT_GRADCAM_CMAP = "turbo"
DEFAULT_DIVERGING_CMAP = "RdBu_r"

# Kernel views: a patch/cell is upsampled at least by `cell`, and further so
# that its shorter side reaches this many pixels; small kernels (1x1, 3x3)
# would otherwise be a few pixels wide and unreadable.
_MIN_PATCH_PX = 16
_MIN_CELL_PX = 8
# Separators between kernel patches are black because the diverging map's
# centre (zero weight) is near-white and would merge with white separators.
_KERNEL_SEPARATOR = 0.0

# Pillow's built-in bitmap font: every glyph is 6 x 11 pixels. Panel text is drawn twice
# that size: TensorBoard shrinks a wide panel to its card (about half), and text must
# still read there.
FONT_HEIGHT, FONT_WIDTH = 11, 6
TEXT_SCALE = 2
# Pixel rows per channel in a sequence's feature strip (`render_feature_strips`).
STRIP_ROW_PX = 6
# The smallest side of the image, overlay and map of a heat-map panel (upsampled to it).
HEATMAP_MIN_SIZE = 160

_LUT_SIZE = 256
_LUT_CACHE: dict[str, tf.Tensor] = {}


# --------------------------------------------------------------------------
# Shape helpers
# --------------------------------------------------------------------------


def _dim(x: tf.Tensor, axis: int) -> int | tf.Tensor:
    """Static size of `axis` when known, else the dynamic one.

    Using Python ints whenever possible keeps the output static shapes fully
    defined, which `tf.summary.image` and downstream layout code rely on.
    """
    size = x.shape[axis]
    return int(size) if size is not None else tf.shape(x)[axis]


def _static_dim(x: tf.Tensor, axis: int, what: str) -> int:
    size = x.shape[axis]
    if size is None:
        raise ValueError(
            f"{what} must have a static size along axis {axis} (layout is decided at "
            f"trace time); got shape {x.shape}."
        )
    return int(size)


def _check_rank(x: tf.Tensor, ranks: tuple[int, ...], name: str) -> int:
    rank = x.shape.rank
    if rank not in ranks:
        raise ValueError(f"`{name}` must have rank {' or '.join(map(str, ranks))}; got {x.shape}.")
    return rank


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _min_factor(size: int | tf.Tensor, target: int) -> int | tf.Tensor:
    """Smallest integer factor `f >= 1` with `size * f >= target`."""
    if isinstance(size, int):
        return max(1, _ceil_div(target, max(size, 1)))
    size = tf.maximum(size, 1)
    return tf.maximum(1, (target + size - 1) // size)


def _invalid_like(x: tf.Tensor) -> tf.Tensor:
    """`INVALID_COLOR` broadcastable against an RGB tensor like `x`."""
    return tf.constant(INVALID_COLOR, dtype=x.dtype)


# --------------------------------------------------------------------------
# Colour maps
# --------------------------------------------------------------------------


def colormap(name: str) -> tf.Tensor:
    """Returns a matplotlib colour map as a lookup table.

    Matplotlib is only touched the first time a name is requested; the table
    is cached as an eager constant, so using it inside a `tf.function` just
    captures it.

    Args:
        name: Name of a registered matplotlib colour map, e.g. `"viridis"`,
            `"RdBu_r"`.

    Returns:
        Float32 tensor of shape `(256, 3)` with RGB colours in [0, 1].
    """
    lut = _LUT_CACHE.get(name)
    if lut is None:
        import matplotlib
        import numpy as np

        cmap = matplotlib.colormaps[name].resampled(_LUT_SIZE)
        table = np.asarray(cmap(np.arange(_LUT_SIZE))[:, :3], dtype=np.float32)
        # The cache must hold an eager tensor even if the first request comes
        # from inside a trace; a graph tensor would leak into other graphs.
        with tf.init_scope():
            lut = tf.constant(table, dtype=tf.float32)
        _LUT_CACHE[name] = lut
    return lut


def apply_colormap(values: tf.Tensor, lut: tf.Tensor) -> tf.Tensor:
    """Maps scalar values in [0, 1] to colours.

    The index rule matches matplotlib's own (`floor(v * N)`, with 1.0 mapped
    to the last entry), so `apply_colormap(v, colormap(name))` reproduces
    `matplotlib.colormaps[name](v)` exactly. Values outside [0, 1] are
    clipped; non-finite values are painted `INVALID_COLOR`.

    Args:
        values: Float tensor of shape `(batch, height, width)` (any rank
            works; a trailing colour axis is appended).
        lut: Float tensor of shape `(num_colors, 3)`, e.g. from `colormap`.

    Returns:
        Float32 tensor of shape `(batch, height, width, 3)` in [0, 1].
    """
    values = tf.cast(values, tf.float32)
    lut = tf.cast(lut, tf.float32)
    finite = tf.math.is_finite(values)
    clipped = tf.clip_by_value(tf.where(finite, values, 0.0), 0.0, 1.0)
    n = tf.shape(lut)[0]
    index = tf.cast(tf.floor(clipped * tf.cast(n, tf.float32)), tf.int32)
    index = tf.minimum(index, n - 1)
    colors = tf.gather(lut, index)
    return tf.where(finite[..., None], colors, _invalid_like(colors))


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------


def max_abs_finite(
    x: tf.Tensor, axes: int | list[int] | tuple[int, ...] | None = None, keepdims: bool = False
) -> tf.Tensor:
    """Maximum absolute value over the finite entries of `x`.

    Args:
        x: Numeric tensor of any shape.
        axes: Axes to reduce over; `None` reduces over all axes.
        keepdims: Whether to keep reduced axes with size 1.

    Returns:
        Float32 tensor, the reduced maximum of `|x|` over finite entries;
        0 where there are no finite entries.
    """
    x = tf.cast(x, tf.float32)
    magnitude = tf.where(tf.math.is_finite(x), tf.abs(x), 0.0)
    # Clamp at 0: reducing an empty axis yields -inf.
    return tf.maximum(tf.reduce_max(magnitude, axis=axes, keepdims=keepdims), 0.0)


def normalize_per_map(maps: tf.Tensor, axes: int | list[int] | tuple[int, ...]) -> tf.Tensor:
    """Min-max normalises `maps` to [0, 1] independently over `axes`.

    Non-finite entries are ignored when finding the minimum and maximum and
    are passed through unchanged, so `apply_colormap` can mark them. A
    constant map (maximum == minimum, or no finite entry) becomes all 0.

    Args:
        maps: Float tensor, e.g. of shape `(batch, height, width)`.
        axes: Axes forming one map, e.g. `[1, 2]`.

    Returns:
        Float32 tensor of the same shape as `maps`; finite entries in [0, 1].
    """
    maps = tf.cast(maps, tf.float32)
    finite = tf.math.is_finite(maps)
    lo = tf.reduce_min(tf.where(finite, maps, math.inf), axis=axes, keepdims=True)
    hi = tf.reduce_max(tf.where(finite, maps, -math.inf), axis=axes, keepdims=True)
    # Halving before subtracting keeps the range finite even for values near
    # the float32 limits (hi - lo could overflow to inf and give inf/inf).
    span = 0.5 * hi - 0.5 * lo
    valid = span > 0.0
    safe_lo = tf.where(valid, lo, 0.0)
    scaled = (0.5 * maps - 0.5 * safe_lo) / tf.where(valid, span, 1.0)
    scaled = tf.where(valid, tf.clip_by_value(scaled, 0.0, 1.0), 0.0)
    return tf.where(finite, scaled, maps)


def normalize_symmetric(values: tf.Tensor, scale: tf.Tensor | float) -> tf.Tensor:
    """Maps signed values to [0, 1] with 0 at 0.5: `0.5 + 0.5 * values / scale`.

    Results are clipped to [0, 1] (relevant when `scale` is smaller than the
    largest magnitude). Where `scale <= 0` every finite value maps to 0.5.
    Non-finite values are passed through unchanged so `apply_colormap` can
    mark them.

    Args:
        values: Float tensor of any shape.
        scale: Non-negative scale broadcastable to `values`, typically
            `max_abs_finite(values, axes, keepdims=True)`.

    Returns:
        Float32 tensor of the broadcast shape; finite entries in [0, 1].
    """
    values = tf.cast(values, tf.float32)
    scale = tf.cast(scale, tf.float32)
    valid = scale > 0.0
    out = 0.5 + 0.5 * values / tf.where(valid, scale, 1.0)
    out = tf.where(valid, tf.clip_by_value(out, 0.0, 1.0), 0.5)
    return tf.where(tf.math.is_finite(values), out, values)


def map_scale(maps: tf.Tensor, symmetric: bool | tf.Tensor) -> tf.Tensor:
    """Each `(batch, *spatial)` map's own scale, `(batch,)`: its finite `max |v|` when
    symmetric, else its finite maximum (at least 0): what the colour map's top stands for."""
    maps = tf.cast(maps, tf.float32)
    if not isinstance(symmetric, bool):  # a bool tensor: both, one selected (`draw_heatmap_panels`)
        return tf.where(symmetric, map_scale(maps, True), map_scale(maps, False))
    axes = list(range(1, maps.shape.rank))
    if symmetric:
        return max_abs_finite(maps, axes=axes)
    top = tf.reduce_max(tf.where(tf.math.is_finite(maps), maps, -math.inf), axis=axes)
    return tf.maximum(top, 0.0)


def _normalize_by_max(maps: tf.Tensor, axes: list[int], top: tf.Tensor | None = None) -> tf.Tensor:
    """Divides each map by its own finite maximum (or by `top`, broadcastable); a top
    <= 0 gives all 0."""
    finite = tf.math.is_finite(maps)
    if top is None:
        top = tf.reduce_max(tf.where(finite, maps, -math.inf), axis=axes, keepdims=True)
    valid = top > 0.0
    out = maps / tf.where(valid, top, 1.0)
    out = tf.where(valid, tf.clip_by_value(out, 0.0, 1.0), 0.0)
    return tf.where(finite, out, maps)


# --------------------------------------------------------------------------
# Image preparation and resampling
# --------------------------------------------------------------------------


def display_images(images: tf.Tensor) -> tf.Tensor:
    """Converts probe images of any value range to displayable RGB.

    Each image is min-max stretched over all its pixels and displayed
    channels, so what is shown does not depend on the model's own input
    scaling ([0, 1], [0, 255], standardised...). Channel handling: 1 ->
    repeated to grey RGB; 2 -> `(c0, c1, 0)`; 3 -> as is; 4+ -> first 3.
    A constant image becomes 0.5 grey; pixels with any non-finite channel
    become `INVALID_COLOR`.

    Args:
        images: Tensor of shape `(batch, height, width, channels)`, float or
            integer dtype; `channels` must be static.

    Returns:
        Float32 tensor of shape `(batch, height, width, 3)` in [0, 1].
    """
    images = tf.convert_to_tensor(images)
    _check_rank(images, (4,), "images")
    channels = _static_dim(images, 3, "images")
    if channels < 1:
        raise ValueError(f"`images` must have at least one channel; got {images.shape}.")
    x = tf.cast(images, tf.float32)
    x = x[..., :3] if channels > 3 else x
    finite_pixel = tf.reduce_all(tf.math.is_finite(x), axis=-1, keepdims=True)

    finite = tf.math.is_finite(x)
    lo = tf.reduce_min(tf.where(finite, x, math.inf), axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(tf.where(finite, x, -math.inf), axis=[1, 2, 3], keepdims=True)
    span = 0.5 * hi - 0.5 * lo
    valid = span > 0.0
    stretched = (0.5 * x - 0.5 * tf.where(valid, lo, 0.0)) / tf.where(valid, span, 1.0)
    stretched = tf.where(valid, tf.clip_by_value(stretched, 0.0, 1.0), 0.5)

    if channels == 1:
        rgb = tf.tile(stretched, [1, 1, 1, 3])
    elif channels == 2:
        rgb = tf.concat([stretched, tf.zeros_like(stretched[..., :1])], axis=-1)
    else:
        rgb = stretched
    return tf.where(finite_pixel, rgb, _invalid_like(rgb))


def _repeat_hw(images: tf.Tensor, factor: int | tf.Tensor) -> tf.Tensor:
    if isinstance(factor, int) and factor == 1:
        return images
    return tf.repeat(tf.repeat(images, factor, axis=1), factor, axis=2)


def upsample_nearest(images: tf.Tensor, factor: int) -> tf.Tensor:
    """Nearest-neighbour upsampling by an integer factor.

    Every pixel becomes an exact `factor x factor` block, which keeps small
    feature maps and kernels crisp (no interpolation blur).

    Args:
        images: Tensor of shape `(batch, height, width, channels)` (or
            `(batch, height, width)`), any dtype.
        factor: Python int >= 1.

    Returns:
        Tensor of shape `(batch, height * factor, width * factor, channels)`
        (same rank and dtype as `images`).
    """
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"`factor` must be a Python int >= 1; got {factor!r}.")
    images = tf.convert_to_tensor(images)
    _check_rank(images, (3, 4), "images")
    return _repeat_hw(images, factor)


def resize_bilinear(maps: tf.Tensor, size: tuple[int, int] | list[int] | tf.Tensor) -> tf.Tensor:
    """Bilinear resize of maps or images to `size`.

    Args:
        maps: Tensor of shape `(batch, height, width)` or
            `(batch, height, width, channels)`.
        size: Target `(new_height, new_width)`, Python ints or an int tensor.

    Returns:
        Float32 tensor of shape `(batch, new_height, new_width)` or
        `(batch, new_height, new_width, channels)`, same rank as `maps`.
    """
    maps = tf.convert_to_tensor(maps)
    rank = _check_rank(maps, (3, 4), "maps")
    x = tf.cast(maps, tf.float32)
    if rank == 3:
        x = x[..., None]
    out = tf.cast(tf.image.resize(x, size, method="bilinear"), tf.float32)
    return out[..., 0] if rank == 3 else out


def overlay(base_rgb: tf.Tensor, heat_rgb: tf.Tensor, alpha: float | tf.Tensor = 0.5) -> tf.Tensor:
    """Alpha-blends a colour heat map over an image.

    Args:
        base_rgb: Float tensor of shape `(batch, height, width, 3)` in [0, 1].
        heat_rgb: Float tensor of the same shape in [0, 1].
        alpha: Weight of `heat_rgb`, in [0, 1]: a number, or a tensor broadcastable to
            the images (e.g. `(batch, height, width, 1)`, one weight per pixel).

    Returns:
        Float32 tensor of shape `(batch, height, width, 3)` in [0, 1],
        `(1 - alpha) * base_rgb + alpha * heat_rgb`.
    """
    base_rgb = tf.cast(base_rgb, tf.float32)
    heat_rgb = tf.cast(heat_rgb, tf.float32)
    alpha = tf.cast(alpha, tf.float32)
    return tf.clip_by_value((1.0 - alpha) * base_rgb + alpha * heat_rgb, 0.0, 1.0)


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------


def _tile_batch(tiles: tf.Tensor, ncols: int, pad: int, pad_value: float) -> tf.Tensor:
    """Tiles `(batch, n, h, w, c)` into `(batch, H, W, c)`; see `tile`."""
    n = _static_dim(tiles, 1, "tiles")
    if n < 1:
        raise ValueError("Need at least one tile.")
    if not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"`ncols` must be a Python int >= 1; got {ncols!r}.")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"`pad` must be a Python int >= 0; got {pad!r}.")
    rows = _ceil_div(n, ncols)
    k, h, w, c = (_dim(tiles, i) for i in (0, 2, 3, 4))
    fill = tf.cast(pad_value, tiles.dtype)

    if rows * ncols > n:
        blank = tf.fill([k, rows * ncols - n, h, w, c], fill)
        tiles = tf.concat([tiles, blank], axis=1)
    # Pad every tile below and to the right, assemble the grid by a
    # reshape/transpose, then add the missing top and left border once.
    tiles = tf.pad(tiles, [[0, 0], [0, 0], [0, pad], [0, pad], [0, 0]], constant_values=fill)
    grid = tf.reshape(tiles, [k, rows, ncols, h + pad, w + pad, c])
    grid = tf.transpose(grid, [0, 1, 3, 2, 4, 5])
    grid = tf.reshape(grid, [k, rows * (h + pad), ncols * (w + pad), c])
    return tf.pad(grid, [[0, 0], [pad, 0], [pad, 0], [0, 0]], constant_values=fill)


def tile(tiles: tf.Tensor, ncols: int, pad: int = 1, pad_value: float = 1.0) -> tf.Tensor:
    """Lays out tiles row-major in a grid with separators.

    Tile `i` sits at row `i // ncols`, column `i % ncols`, with its top-left
    pixel at `(pad + row * (h + pad), pad + col * (w + pad))`. The last row
    is completed with tiles filled with `pad_value`.

    Args:
        tiles: Tensor of shape `(n, height, width, channels)`; `n` must be
            static.
        ncols: Number of grid columns (Python int >= 1).
        pad: Separator width in pixels, around and between tiles.
        pad_value: Value of separators and filler tiles.

    Returns:
        Tensor of shape `(1, rows * height + (rows + 1) * pad,
        ncols * width + (ncols + 1) * pad, channels)` with
        `rows = ceil(n / ncols)`, same dtype as `tiles`.
    """
    tiles = tf.convert_to_tensor(tiles)
    _check_rank(tiles, (4,), "tiles")
    return _tile_batch(tiles[None], ncols, pad, pad_value)


def hstack(images_list: list[tf.Tensor], pad: int = 2, pad_value: float = 1.0) -> tf.Tensor:
    """Places panels of equal height side by side with separators between.

    Args:
        images_list: Non-empty list of tensors of shape
            `(batch, height, width_i, channels)`, same batch, height,
            channels and dtype.
        pad: Separator width in pixels (between panels only).
        pad_value: Separator value.

    Returns:
        Tensor of shape `(batch, height, sum(width_i) + pad * (len - 1),
        channels)`.
    """
    images_list = [tf.convert_to_tensor(x) for x in images_list]
    if not images_list:
        raise ValueError("`images_list` must not be empty.")
    for x in images_list:
        _check_rank(x, (4,), "images_list[i]")
    first = images_list[0]
    parts = [first]
    if pad > 0 and len(images_list) > 1:
        sep = tf.fill(
            [_dim(first, 0), _dim(first, 1), pad, _dim(first, 3)], tf.cast(pad_value, first.dtype)
        )
    for x in images_list[1:]:
        if pad > 0:
            parts.append(sep)
        parts.append(x)
    return tf.concat(parts, axis=2) if len(parts) > 1 else first


# --------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------


def render_feature_grid(
    activations: tf.Tensor,
    max_channels: int,
    min_tile: int = 32,
    lut: tf.Tensor | None = None,
    channel_range: tuple[tf.Tensor, tf.Tensor] | None = None,
) -> tf.Tensor:
    """Renders each probe image's feature maps as a grid of coloured tiles.

    The first `n = min(channels, max_channels)` channels are shown, each
    min-max normalised over its own spatial extent (a constant channel, e.g.
    a dead ReLU, renders at the dark end of the colour map). Tiles are
    nearest-upsampled by `f = max(1, ceil(min_tile / min(height, width)))`
    and laid out row-major with `ncols = ceil(sqrt(n))` columns and 1-px
    white separators. Non-finite activations are painted `INVALID_COLOR`.

    Args:
        activations: Float tensor of shape `(batch, height, width, channels)`;
            `channels` must be static (and `height`, `width` should be, to
            get static output shapes).
        max_channels: Maximum number of channels shown (Python int >= 1).
        min_tile: Minimum tile side in pixels after upsampling.
        lut: Colour map `(num_colors, 3)`; `None` means `colormap("viridis")`.
        channel_range: `(low, high)`, each `(channels,)`: one range per channel for every
            image (e.g. the running range over a training run, so a channel that fades is
            seen to fade), or `None`: each tile min-max normalised on its own.

    Returns:
        Float32 tensor of shape `(batch, rows * h * f + rows + 1,
        ncols * w * f + ncols + 1, 3)` in [0, 1], with `rows = ceil(n / ncols)`.
    """
    activations = tf.convert_to_tensor(activations)
    _check_rank(activations, (4,), "activations")
    channels = _static_dim(activations, 3, "activations")
    if max_channels < 1:
        raise ValueError(f"`max_channels` must be >= 1; got {max_channels}.")
    if lut is None:
        lut = colormap(DEFAULT_SEQUENTIAL_CMAP)
    n = min(channels, max_channels)
    ncols = math.isqrt(n - 1) + 1 if n > 1 else 1  # ceil(sqrt(n)) without float error
    k, h, w = (_dim(activations, i) for i in (0, 1, 2))

    x = tf.cast(activations[..., :n], tf.float32)
    x = tf.transpose(x, [0, 3, 1, 2])  # (k, n, h, w): one map per channel
    if channel_range is None:
        x = normalize_per_map(x, axes=[2, 3])
    else:
        low, high = (tf.cast(v[:n], tf.float32)[None, :, None, None] for v in channel_range)
        span = high - low
        scaled = tf.clip_by_value(tf.math.divide_no_nan(x - low, span), 0.0, 1.0)
        x = tf.where(tf.math.is_finite(x), tf.where(span > 0, scaled, 0.0), x)
    if isinstance(h, int) and isinstance(w, int):
        factor = _min_factor(min(h, w), min_tile)
    else:
        factor = _min_factor(tf.minimum(tf.shape(x)[2], tf.shape(x)[3]), min_tile)
    # Upsample the scalar maps before colouring: 3x less data to repeat.
    x = _repeat_hw(tf.reshape(x, [-1, h, w]), factor)
    rgb = apply_colormap(x, lut)
    rgb = tf.reshape(rgb, [k, n, h * factor, w * factor, 3])
    return _tile_batch(rgb, ncols, pad=1, pad_value=1.0)


def render_feature_strips(
    activations: tf.Tensor,
    max_channels: int,
    min_width: int = 256,
    lut: tf.Tensor | None = None,
    channel_range: tuple[tf.Tensor, tf.Tensor] | None = None,
) -> tf.Tensor:
    """Renders each probe sample's 1-D feature maps as a channels x steps heat strip.

    One row per channel (the first `n = min(channels, max_channels)`), the steps across,
    each row min-max normalised over its own steps (or by `channel_range`, as in
    `render_feature_grid`). Rows are `STRIP_ROW_PX` pixels high with a 1-px white line
    between them; steps are repeated by `f = ceil(min_width / steps)`.

    Args:
        activations: Float tensor `(batch, steps, channels)`, static steps and channels.
        max_channels: Maximum number of channels shown (Python int >= 1).
        min_width: Minimum strip width in pixels.
        lut: Colour map `(num_colors, 3)`; `None` means `colormap("viridis")`.
        channel_range: `(low, high)`, each `(channels,)`, or `None`.

    Returns:
        Float32 tensor `(batch, n * (STRIP_ROW_PX + 1) + 1, steps * f + 2, 3)` in [0, 1].
    """
    activations = tf.convert_to_tensor(activations)
    _check_rank(activations, (3,), "activations")
    steps = _static_dim(activations, 1, "activations")
    channels = _static_dim(activations, 2, "activations")
    if lut is None:
        lut = colormap(DEFAULT_SEQUENTIAL_CMAP)
    n = min(channels, max_channels)
    x = tf.transpose(tf.cast(activations[..., :n], tf.float32), [0, 2, 1])  # (k, n, steps)
    if channel_range is None:
        x = normalize_per_map(x, axes=[2])
    else:
        low, high = (tf.cast(v[:n], tf.float32)[None, :, None] for v in channel_range)
        span = high - low
        scaled = tf.clip_by_value(tf.math.divide_no_nan(x - low, span), 0.0, 1.0)
        x = tf.where(tf.math.is_finite(x), tf.where(span > 0, scaled, 0.0), x)
    factor = _ceil_div(min_width, steps)
    x = tf.repeat(x, factor, axis=2)
    # One tile per channel, (k, n, STRIP_ROW_PX, width, 3), stacked in one column.
    rows = apply_colormap(tf.repeat(x[:, :, None, :], STRIP_ROW_PX, axis=2), lut)
    return _tile_batch(rows, 1, pad=1, pad_value=1.0)


def render_heatmap_panel(
    images: tf.Tensor,
    maps: tf.Tensor,
    symmetric: bool | tf.Tensor,
    lut: tf.Tensor | None = None,
    alpha: float = 0.85,
    min_size: int = HEATMAP_MIN_SIZE,
    caption: tf.Tensor | None = None,
    scale: tf.Tensor | None = None,
) -> tf.Tensor:
    """Renders `[display image | overlay | map | colour bar]` panels, with a caption below.

    With `symmetric=False` (e.g. Grad-CAM, non-negative), each map is divided by its own
    maximum (max <= 0 gives all 0; negatives clip to 0); its strength is that fraction.
    With `symmetric=True` (e.g. occlusion score drops, signed), each map is scaled by its
    own `max |v|` so 0 lands on the colour map's centre; its strength is `|v| / max |v|`.
    The overlay draws the heat colours over a grey copy of the image with an opacity of
    `alpha * strength`, so the image shows through where the map is weak and the colours
    are vivid where it is strong; the map is also shown on its own. The colour bar gives
    the raw range of each map (`max` at the top; `0`, or `-max` when symmetric, at the
    bottom). Non-finite map values are painted `INVALID_COLOR`. If `min(height, width) <
    min_size`, the image and map panels are nearest-upsampled by `f = ceil(min_size /
    min(height, width))` (else `f = 1`). Separators are 2 px white.

    Args:
        images: Raw probe images, shape `(batch, height, width, channels)`,
            any value range (see `display_images`).
        maps: Raw float maps of shape `(batch, height, width)`. Maps of a
            different spatial size are bilinearly resized to the images'.
        symmetric: Whether maps are signed (diverging colours) or
            non-negative: a Python bool, or a bool tensor (then `lut` is required).
        lut: Colour map `(num_colors, 3)`; `None` means `colormap("RdBu_r")`
            if `symmetric` else `colormap("turbo")`.
        alpha: Opacity of the heat colours where the map is strongest.
        min_size: Minimum displayed image side in pixels.
        caption: `(batch, length)` int32 ASCII codes of a line of text written under
            each panel (see `caption_codes`), or `None`.
        scale: `(batch,)` what the top of the colour map stands for (at least each map's
            own `map_scale`, e.g. a running maximum over a training run, so a map that
            fades is seen to fade), or `None`: each map's own scale.

    Returns:
        Float32 tensor of shape `(batch, height * f + c, 3 * width * f + 6 +
        COLOUR_BAR_WIDTH, 3)` in [0, 1], with `c = CAPTION_HEIGHT` when there is a
        caption, else 0.
    """
    images = tf.convert_to_tensor(images)
    maps = tf.convert_to_tensor(maps)
    _check_rank(images, (4,), "images")
    _check_rank(maps, (3,), "maps")
    if lut is None:
        if not isinstance(symmetric, bool):
            raise ValueError("`lut` is required when `symmetric` is a tensor.")
        lut = colormap(DEFAULT_DIVERGING_CMAP if symmetric else DEFAULT_GRADCAM_CMAP)

    display = display_images(images)
    maps = _at_image_size(maps, images)
    h, w = _dim(images, 1), _dim(images, 2)
    static_hw = isinstance(h, int) and isinstance(w, int)

    scale = (map_scale(maps, symmetric) if scale is None else tf.cast(scale, tf.float32))[
        :, None, None
    ]
    norm, strength, low = _heat_values(maps, scale, symmetric)
    finite = tf.math.is_finite(maps)[..., None]
    heat = apply_colormap(norm, lut)
    # The heat colours go over a grey copy of the image: over the image's own colours a
    # diverging or rainbow map becomes ambiguous (a blue object under a red map).
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(display))
    opacity = alpha * tf.where(tf.math.is_finite(strength), strength, 0.0)[..., None]
    blended = overlay(grey, heat, opacity)
    blended = tf.where(finite, blended, _invalid_like(blended))

    if static_hw:
        factor = _min_factor(min(h, w), min_size)
    else:
        factor = _min_factor(tf.minimum(tf.shape(images)[1], tf.shape(images)[2]), min_size)
    panels = [_repeat_hw(x, factor) for x in (display, blended, heat)]
    bar = colour_bar(lut, scale[:, 0, 0], low, _dim(panels[0], 1))
    panel = hstack([*panels, bar], pad=2)
    if caption is None:
        return panel
    text = 1.0 - draw_text(caption, TEXT_SCALE)  # black ink on white
    text = tf.pad(text, [[0, 0], [3, 2], [2, 0]], constant_values=1.0)
    width = _dim(panel, 2)
    text_width = _dim(text, 2)
    if isinstance(width, int) and isinstance(text_width, int):
        text = (
            text[:, :, :width]
            if text_width >= width
            else tf.pad(text, [[0, 0], [0, 0], [0, width - text_width]], constant_values=1.0)
        )
    rows = tf.tile(text[..., None], [1, 1, 1, 3])
    return tf.concat([panel, rows], axis=1)


def heatmap_panel_boxes(
    height: int, width: int, min_size: int = HEATMAP_MIN_SIZE
) -> tuple[tuple[int, int, int, int], ...]:
    """Where `render_heatmap_panel` puts the image, the overlay and the map of an image
    `(height, width)` in its panel: `(x, y, width, height)` in the panel's pixels, each.
    The tab draws a region's outline over them (`_tags.REGIONS_PLUGIN`)."""
    factor = _min_factor(min(height, width), min_size)
    w, h = width * factor, height * factor
    return tuple((k * (w + 2), 0, w, h) for k in range(3))


def _at_image_size(maps: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """Float32 `(batch, height, width)` maps at the images' size (bilinearly resized when
    they are not, or when the size is only known at run time)."""
    maps = tf.cast(maps, tf.float32)
    h, w = _dim(images, 1), _dim(images, 2)
    static_hw = isinstance(h, int) and isinstance(w, int)
    if not (static_hw and tuple(maps.shape[1:3]) == (h, w)):
        maps = resize_bilinear(maps, (h, w) if static_hw else tf.shape(images)[1:3])
    return maps


def _heat_values(maps: tf.Tensor, scale: tf.Tensor, symmetric: bool | tf.Tensor) -> tuple:
    """A heat map's colour-map positions, its strength (the overlay's opacity) and the value
    at the colour bar's bottom; `symmetric` a Python bool, or a bool tensor (both computed,
    one selected: the same values)."""
    if not isinstance(symmetric, bool):
        signed, positive = _heat_values(maps, scale, True), _heat_values(maps, scale, False)
        return tuple(tf.where(symmetric, a, b) for a, b in zip(signed, positive))
    if symmetric:
        norm = normalize_symmetric(maps, scale)
        return norm, tf.abs(2.0 * norm - 1.0), -scale[:, 0, 0]
    norm = _normalize_by_max(maps, axes=[1, 2], top=scale)
    return norm, norm, tf.zeros_like(scale[:, 0, 0])


# One compiled panel for every callback and method that draws heat maps on the same probe
# (Grad-CAM and the CAM family, occlusion, saliency), signed or not, and for later fits in
# the process: `symmetric` and the colour map are arguments, not trace constants. Called
# from Python, not from inside each callback's function, so it is traced and optimised
# once, not once per caller.
_SHARED_PANEL = tf.function(
    lambda images, maps, lut, symmetric, caption, scale: tf.image.convert_image_dtype(
        render_heatmap_panel(images, maps, symmetric, lut=lut, caption=caption, scale=scale),
        tf.uint8,
    ),
    autograph=False,
)


def draw_heatmap_panels(
    images: tf.Tensor,
    maps: tf.Tensor,
    symmetric: bool,
    caption: tf.Tensor | None = None,
    scale: tf.Tensor | None = None,
) -> tf.Tensor:
    """`render_heatmap_panel` with its default colour maps as uint8 pixels, through one
    compiled function shared by every caller whose images, caption and scale have the same
    shapes (the maps are resized to the images first, as it does). The same pixels."""
    images = tf.convert_to_tensor(images)
    maps = tf.convert_to_tensor(maps)
    _check_rank(maps, (3,), "maps")
    maps = _at_image_size(maps, images)
    lut = colormap(DEFAULT_DIVERGING_CMAP if symmetric else DEFAULT_GRADCAM_CMAP)
    return _SHARED_PANEL(images, maps, lut, tf.constant(symmetric), caption, scale)


COLOUR_BAR_WIDTH = 10 + 2 + 9 * FONT_WIDTH * TEXT_SCALE
CAPTION_HEIGHT = FONT_HEIGHT * TEXT_SCALE + 5


def colour_bar(lut: tf.Tensor, high: tf.Tensor, low: tf.Tensor, height: int) -> tf.Tensor:
    """A vertical colour bar with its raw range written beside it.

    Args:
        lut: the colour map `(num_colors, 3)`; its last colour at the top.
        high: `(batch,)` the value at the top.
        low: `(batch,)` the value at the bottom.
        height: Python int, the bar's height in pixels.

    Returns:
        `(batch, height, COLOUR_BAR_WIDTH, 3)` float32 in [0, 1] on white.
    """
    batch = _dim(high, 0)
    ramp = tf.linspace(1.0, 0.0, height)
    bar = tf.tile(apply_colormap(ramp, lut)[None, :, None, :], [batch, 1, 10, 1])
    text_width = 9 * FONT_WIDTH * TEXT_SCALE
    labels = tf.ones([batch, height, text_width], tf.float32)
    # Both numbers in one pass of the (long) number formatting.
    both = tf.concat([tf.cast(high, tf.float32), tf.cast(low, tf.float32)], axis=0)
    top, bottom = tf.split(1.0 - draw_text(number_codes(both), TEXT_SCALE), 2)
    gap = max(height - 2 * FONT_HEIGHT * TEXT_SCALE, 0)
    column = tf.concat([top, tf.ones([batch, gap, text_width]), bottom], axis=1)[:, :height]
    labels = tf.minimum(labels, column)
    labels = tf.tile(labels[..., None], [1, 1, 1, 3])
    space = tf.ones([batch, height, 2, 3])
    return tf.concat([bar, space, labels], axis=2)


def caption_codes(
    targets: tf.Tensor, predicted: tf.Tensor, probability: tf.Tensor, names: tf.Tensor
) -> tf.Tensor:
    """`"target <name>  pred <name> 0.93"` as ASCII codes, one line per image.

    Args:
        targets: `(batch,)` int32 the class the map explains.
        predicted: `(batch,)` int32 the predicted class.
        probability: `(batch,)` float the predicted class's probability.
        names: `(classes, name_length)` int32 codes of each class's name (`text_codes`).

    Returns:
        `(batch, 19 + 2 * name_length)` int32 codes.
    """
    batch = tf.shape(targets)[0]

    def const(text):
        return tf.tile(_codes_of(text)[None, :], [batch, 1])

    hundredths = tf.cast(tf.round(tf.clip_by_value(probability, 0.0, 1.0) * 100.0), tf.int32)
    whole = hundredths // 100
    digits = tf.stack(
        [48 + whole, tf.fill([batch], 46), 48 + (hundredths // 10) % 10, 48 + hundredths % 10],
        axis=1,
    )
    digits = tf.where((whole > 0)[:, None], _codes_of("1.00")[None, :], digits)
    return tf.concat(
        [
            const("target "),
            tf.gather(names, targets),
            const("  pred "),
            tf.gather(names, predicted),
            const(" "),
            digits,
        ],
        axis=1,
    )


# Characters a caption line holds on the narrowest heat-map panel (`render_heatmap_panel`
# with its default `min_size=160`: three 160 px panels, separators and the colour bar).
CAPTION_CHARS = (3 * 160 + 3 * 2 + COLOUR_BAR_WIDTH) // (FONT_WIDTH * TEXT_SCALE)


def region_caption_codes(
    targets: tf.Tensor,
    predicted: tf.Tensor,
    sizes: tf.Tensor,
    total: int,
    names: tf.Tensor,
    length: int = CAPTION_CHARS,
) -> tf.Tensor:
    """`"class <name> 312 px (7.6%)  pred <name>"` as ASCII codes, one line per image: the
    caption of a segmentation map, which explains a class over a region of the image.

    Args:
        targets: `(batch,)` int32 the class the map explains.
        predicted: `(batch,)` int32 the class the model's scores summed over the region
            favour.
        sizes: `(batch,)` float the region's size in positions (pixels, steps, voxels).
        total: Python int, the positions of one image.
        names: `(classes,)` string tensor of each class's name (printable ASCII).
        length: characters per line: cut, or padded with spaces.

    Returns:
        `(batch, length)` int32 codes.
    """
    sizes = tf.cast(sizes, tf.float32)
    percent = tf.strings.as_string(100.0 * sizes / float(total), precision=1)
    text = tf.strings.join(
        [
            "class ",
            tf.gather(names, targets),
            " ",
            tf.strings.as_string(tf.cast(tf.round(sizes), tf.int64)),
            " px (",
            percent,
            "%)  pred ",
            tf.gather(names, predicted),
        ]
    )
    codes = tf.strings.unicode_decode(text, "UTF-8")
    return tf.cast(codes.to_tensor(default_value=32, shape=[None, length]), tf.int32)


def kernel_scale(kernel: tf.Tensor) -> tf.Tensor:
    """Symmetric colour scale of a conv kernel, as used by `render_kernels`.

    Log it next to the image: the picture alone only shows relative weights.

    Args:
        kernel: Tensor of shape `(kernel_h, kernel_w, in_channels,
            out_channels)` (or a variable).

    Returns:
        Float32 scalar, `max |w|` over the finite weights (0 if none).
    """
    return max_abs_finite(tf.convert_to_tensor(kernel), axes=None)


def render_kernels(
    kernel: tf.Tensor,
    max_filters: int = 64,
    max_inputs: int = 32,
    cell: int = 4,
    lut: tf.Tensor | None = None,
    scale: tf.Tensor | None = None,
) -> tf.Tensor:
    """Renders a conv kernel with one symmetric colour scale for the layer.

    With `s = kernel_scale(kernel)`, weights map to `0.5 + 0.5 * w / s`
    (zero weight at the centre). Two layouts, with `nf = min(out_channels,
    max_filters)` and `kh, kw` the kernel size:

    - `in_channels` in (1, 3): one patch per output filter in a grid with
      `ncols = ceil(sqrt(nf))`. 3 inputs -> RGB patch (grey = zero weight);
      1 input -> diverging colour map (blue negative, red positive). Patches
      are upsampled by `p = max(cell, ceil(16 / min(kh, kw)))`.
    - otherwise: one row per output filter and one column per input channel
      (`ni = min(in_channels, max_inputs)`), each cell a `kh x kw` slice on the
      diverging colour map upsampled by `p = max(cell, ceil(8 / min(kh, kw)))`.

    Separators are 1 px and black (the diverging centre is near-white).
    Non-finite weights are painted `INVALID_COLOR`.

    Args:
        kernel: Tensor or variable of shape `(kernel_h, kernel_w,
            in_channels, out_channels)`, fully static.
        max_filters: Maximum number of output filters shown.
        max_inputs: Maximum number of input channels shown (deep layout).
        cell: Minimum upsampling factor per weight.
        lut: Diverging colour map; `None` means `colormap("RdBu_r")`.
        scale: The colour scale, or `None`: `kernel_scale(kernel)` (give the whole
            layer's when `kernel` is the part of it shown).

    Returns:
        Float32 tensor of shape `(1, rows * kh * p + rows + 1,
        ncols * kw * p + ncols + 1, 3)` in [0, 1]; `rows = ceil(nf / ncols)`
        for the patch layout, `rows = nf, ncols = ni` for the deep layout.
    """
    kernel = tf.cast(tf.convert_to_tensor(kernel), tf.float32)
    _check_rank(kernel, (4,), "kernel")
    kh, kw, cin, cout = (_static_dim(kernel, i, "kernel") for i in range(4))
    if lut is None:
        lut = colormap(DEFAULT_DIVERGING_CMAP)
    nf = min(cout, max_filters)
    scale = kernel_scale(kernel) if scale is None else tf.cast(scale, tf.float32)
    # One scale for the whole layer, so filters can be compared with each
    # other (a per-filter stretch would make dead filters look lively).
    norm = normalize_symmetric(kernel[..., :nf], scale)  # (kh, kw, cin, nf)

    if cin in (1, 3):
        factor = max(cell, _ceil_div(_MIN_PATCH_PX, min(kh, kw)))
        patches = tf.transpose(norm, [3, 0, 1, 2])  # (nf, kh, kw, cin)
        if cin == 3:
            finite = tf.reduce_all(tf.math.is_finite(patches), axis=-1, keepdims=True)
            rgb = tf.where(finite, patches, _invalid_like(patches))
        else:
            rgb = apply_colormap(patches[..., 0], lut)
        ncols = math.isqrt(nf - 1) + 1 if nf > 1 else 1
        return tile(_repeat_hw(rgb, factor), ncols, pad=1, pad_value=_KERNEL_SEPARATOR)

    ni = min(cin, max_inputs)
    factor = max(cell, _ceil_div(_MIN_CELL_PX, min(kh, kw)))
    cells = tf.transpose(norm[:, :, :ni, :], [3, 2, 0, 1])  # (nf, ni, kh, kw)
    cells = tf.reshape(cells, [nf * ni, kh, kw])
    rgb = apply_colormap(_repeat_hw(cells, factor), lut)
    return tile(rgb, ncols=ni, pad=1, pad_value=_KERNEL_SEPARATOR)


# --------------------------------------------------------------------------
# Text: a 6x11 bitmap font, drawn by gathering glyphs (no Python per image)
# --------------------------------------------------------------------------

_FONT_CACHE: list[tf.Tensor] = []


def font() -> tf.Tensor:
    """The glyphs of ASCII 0-127 as ink coverage, `(128, 11, 6)` float32 in [0, 1].

    Pillow's built-in bitmap font, rasterised once and cached as an eager constant.
    """
    if not _FONT_CACHE:
        import numpy as np
        from PIL import Image, ImageDraw, ImageFont

        bitmap_font = ImageFont.load_default_imagefont()
        glyphs = np.zeros((128, FONT_HEIGHT, FONT_WIDTH), np.float32)
        for code in range(32, 127):
            canvas = Image.new("L", (FONT_WIDTH, FONT_HEIGHT), 0)
            ImageDraw.Draw(canvas).text((0, 0), chr(code), fill=255, font=bitmap_font)
            glyphs[code] = np.asarray(canvas, np.float32) / 255.0
        with tf.init_scope():
            _FONT_CACHE.append(tf.constant(glyphs))
    return _FONT_CACHE[0]


def text_codes(text: str, width: int):
    """A string as `(width,)` int32 ASCII codes, cut or padded with spaces (host side)."""
    import numpy as np

    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:width]
    return np.frombuffer(clean.ljust(width).encode("ascii"), np.uint8).astype(np.int32)


def draw_text(codes: tf.Tensor, scale: int = 1) -> tf.Tensor:
    """Ink coverage of lines of text.

    Args:
        codes: `(batch, length)` int32 ASCII codes.
        scale: Python int, nearest-neighbour enlargement.

    Returns:
        `(batch, 11 * scale, 6 * length * scale)` float32 in [0, 1].
    """
    glyphs = tf.gather(font(), tf.clip_by_value(codes, 0, 127))  # (b, n, 11, 6)
    batch, length = _dim(codes, 0), _dim(codes, 1)
    ink = tf.reshape(tf.transpose(glyphs, (0, 2, 1, 3)), (batch, FONT_HEIGHT, -1))
    if isinstance(length, int):
        ink = tf.ensure_shape(ink, (None, FONT_HEIGHT, FONT_WIDTH * length))
    return _repeat_hw(ink, scale)


def _codes_of(text: str) -> tf.Tensor:
    return tf.constant([ord(c) for c in text], tf.int32)


def number_codes(values: tf.Tensor, width: int = 9) -> tf.Tensor:
    """Numbers as right-aligned text with 3 significant digits, in TF ops.

    Fixed point from 0.00100 to 99900 (`"0.00123"`, `"1.50"`, `"512"`), else scientific
    (`"1.23e-05"`); `"nan"`, `"inf"` and `"-inf"` for non-finite values.

    Args:
        values: `(batch,)` float.
        width: characters per number (>= 9 fits every case).

    Returns:
        `(batch, width)` int32 ASCII codes.
    """
    x = tf.cast(values, tf.float64)
    finite = tf.math.is_finite(x)
    a = tf.abs(tf.where(finite, x, tf.zeros_like(x)))
    zero = tf.equal(a, 0.0)
    exponent = tf.floor(tf.math.log(tf.where(zero, tf.ones_like(a), a)) / math.log(10.0))
    mantissa = tf.round(a * tf.pow(tf.constant(10.0, tf.float64), 2.0 - exponent))
    carry = mantissa >= 1000.0  # 999.6 rounds up a decade
    exponent = tf.where(carry, exponent + 1.0, exponent)
    mantissa = tf.where(carry, tf.round(mantissa / 10.0), mantissa)
    mantissa = tf.where(zero, tf.zeros_like(mantissa), mantissa)
    exponent = tf.where(zero, tf.zeros_like(exponent), exponent)
    negative = tf.logical_and(x < 0, tf.logical_not(zero))

    # Fixed point: the integer n with `decimals` digits after the point.
    decimals = tf.cast(tf.clip_by_value(2.0 - exponent, 0.0, 5.0), tf.int64)
    n = tf.cast(
        mantissa * tf.pow(tf.constant(10.0, tf.float64), tf.maximum(exponent - 2.0, 0.0)),
        tf.int64,
    )
    j = tf.range(width, dtype=tf.int64)[None, :]  # position from the right
    k = decimals[:, None]
    n_ = n[:, None]
    after = tf.logical_and(k > 0, j < k)
    point = tf.logical_and(k > 0, tf.equal(j, k))
    i = j - tf.where(k > 0, k + 1, 0)  # position within the integer part
    integer = n_ // tf.pow(tf.constant(10, tf.int64), k)
    power = tf.pow(tf.constant(10, tf.int64), tf.maximum(i, 0))
    in_integer = tf.logical_and(i >= 0, tf.logical_or(tf.equal(i, 0), integer >= power))
    digit_after = (n_ // tf.pow(tf.constant(10, tf.int64), j)) % 10
    digit_integer = (integer // power) % 10
    # The sign sits just left of the leading digit.
    leading = tf.reduce_sum(tf.cast(in_integer, tf.int64), axis=1, keepdims=True) + tf.where(
        k > 0, k + 1, 0
    )
    sign = tf.logical_and(negative[:, None], tf.equal(j, leading))
    blank = tf.where(sign, _int64(45), _int64(32))
    fixed = tf.where(
        after,
        48 + digit_after,
        tf.where(point, _int64(46), tf.where(in_integer, 48 + digit_integer, blank)),
    )
    fixed = tf.reverse(tf.cast(fixed, tf.int32), axis=[1])

    # Scientific: [-]d.dde[+-]XX, right-aligned.
    m = tf.cast(mantissa, tf.int64)
    e = tf.cast(tf.abs(exponent), tf.int64)
    science = tf.stack(
        [
            tf.fill(tf.shape(m), tf.constant(32, tf.int64)),
            48 + m // 100,
            tf.fill(tf.shape(m), tf.constant(46, tf.int64)),
            48 + (m // 10) % 10,
            48 + m % 10,
            tf.fill(tf.shape(m), tf.constant(101, tf.int64)),
            tf.where(exponent < 0, _int64(45), _int64(43)),
            48 + (e // 10) % 10,
            48 + e % 10,
        ],
        axis=1,
    )
    science = tf.where(negative[:, None] & (tf.range(9)[None, :] == 0), _int64(45), science)
    science = tf.cast(science, tf.int32)
    science = tf.concat([tf.fill([tf.shape(m)[0], max(width - 9, 0)], 32), science], axis=1)
    science = science[:, -width:]

    use_fixed = tf.logical_and(exponent >= -3.0, exponent <= 4.0)
    out = tf.where(use_fixed[:, None], fixed, science)
    special = tf.where(
        tf.math.is_nan(x)[:, None],
        _right(_codes_of("nan"), width),
        tf.where(
            (x < 0)[:, None], _right(_codes_of("-inf"), width), _right(_codes_of("inf"), width)
        ),
    )
    return tf.where(finite[:, None], out, special)


def _int64(value: int) -> tf.Tensor:
    return tf.constant(value, tf.int64)


def _right(codes: tf.Tensor, width: int) -> tf.Tensor:
    """`(1, width)` codes right-aligned with spaces."""
    pad = width - int(codes.shape[0])
    return tf.concat([tf.fill([pad], 32), codes], axis=0)[None, :]
