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


def _normalize_by_max(maps: tf.Tensor, axes: list[int]) -> tf.Tensor:
    """Divides each map by its own finite maximum; max <= 0 gives all 0."""
    finite = tf.math.is_finite(maps)
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


def overlay(base_rgb: tf.Tensor, heat_rgb: tf.Tensor, alpha: float = 0.5) -> tf.Tensor:
    """Alpha-blends a colour heat map over an image.

    Args:
        base_rgb: Float tensor of shape `(batch, height, width, 3)` in [0, 1].
        heat_rgb: Float tensor of the same shape in [0, 1].
        alpha: Weight of `heat_rgb`, in [0, 1].

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
    x = normalize_per_map(x, axes=[2, 3])
    if isinstance(h, int) and isinstance(w, int):
        factor = _min_factor(min(h, w), min_tile)
    else:
        factor = _min_factor(tf.minimum(tf.shape(x)[2], tf.shape(x)[3]), min_tile)
    # Upsample the scalar maps before colouring: 3x less data to repeat.
    x = _repeat_hw(tf.reshape(x, [-1, h, w]), factor)
    rgb = apply_colormap(x, lut)
    rgb = tf.reshape(rgb, [k, n, h * factor, w * factor, 3])
    return _tile_batch(rgb, ncols, pad=1, pad_value=1.0)


def render_heatmap_panel(
    images: tf.Tensor,
    maps: tf.Tensor,
    symmetric: bool,
    lut: tf.Tensor | None = None,
    alpha: float = 0.5,
    min_size: int = 128,
) -> tf.Tensor:
    """Renders `[display image | heat-map overlay]` panels.

    With `symmetric=False` (e.g. Grad-CAM, non-negative), each map is divided
    by its own maximum (max <= 0 gives all 0; negatives clip to 0). With
    `symmetric=True` (e.g. occlusion score drops, signed), each map is scaled
    by its own `max |v|` so 0 lands on the colour map's centre. Non-finite
    map values are painted `INVALID_COLOR` in the overlay. If
    `min(height, width) < min_size`, both panels are nearest-upsampled by
    `f = ceil(min_size / min(height, width))` (else `f = 1`); the 2-px white
    separator is not scaled. The overlay is drawn on a grey copy of the image so
    the map's colours read unambiguously.

    Args:
        images: Raw probe images, shape `(batch, height, width, channels)`,
            any value range (see `display_images`).
        maps: Raw float maps of shape `(batch, height, width)`. Maps of a
            different spatial size are bilinearly resized to the images'.
        symmetric: Whether maps are signed (diverging colours) or
            non-negative.
        lut: Colour map `(num_colors, 3)`; `None` means `colormap("RdBu_r")`
            if `symmetric` else `colormap("turbo")`.
        alpha: Weight of the heat colours in the overlay.
        min_size: Minimum displayed image side in pixels.

    Returns:
        Float32 tensor of shape `(batch, height * f, 2 * width * f + 2, 3)` in
        [0, 1].
    """
    images = tf.convert_to_tensor(images)
    maps = tf.convert_to_tensor(maps)
    _check_rank(images, (4,), "images")
    _check_rank(maps, (3,), "maps")
    if lut is None:
        lut = colormap(DEFAULT_DIVERGING_CMAP if symmetric else DEFAULT_GRADCAM_CMAP)

    display = display_images(images)
    maps = tf.cast(maps, tf.float32)
    h, w = _dim(images, 1), _dim(images, 2)
    static_hw = isinstance(h, int) and isinstance(w, int)
    if not (static_hw and tuple(maps.shape[1:3]) == (h, w)):
        maps = resize_bilinear(maps, (h, w) if static_hw else tf.shape(images)[1:3])

    if symmetric:
        norm = normalize_symmetric(maps, max_abs_finite(maps, axes=[1, 2], keepdims=True))
    else:
        norm = _normalize_by_max(maps, axes=[1, 2])
    heat = apply_colormap(norm, lut)
    # The heat colours go over a grey copy of the image: over the image's own colours a
    # diverging or rainbow map becomes ambiguous (a blue object under a red map).
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(display))
    blended = overlay(grey, heat, alpha)
    blended = tf.where(tf.math.is_finite(maps)[..., None], blended, _invalid_like(blended))

    if static_hw:
        factor = _min_factor(min(h, w), min_size)
    else:
        factor = _min_factor(tf.minimum(tf.shape(images)[1], tf.shape(images)[2]), min_size)
    return hstack([_repeat_hw(display, factor), _repeat_hw(blended, factor)], pad=2)


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
    scale = kernel_scale(kernel)
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
