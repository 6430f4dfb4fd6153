"""Is a map on the object? Relevance mass inside a region, and the pointing game.

`in_region` (relevance mass accuracy, Arras et al. 2022): the share of a map's positive mass
that lies inside the region. `pointing` (pointing game, Zhang et al. 2016): whether the
map's maximum lies inside. A uniform map scores the region's area share on both, the floor
a map is compared with (`area_share`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_convviz._args import check_regions
from keras_convviz.core.geometry import Geometry


def locate(maps: tf.Tensor, masks: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`in_region` and `pointing` of maps over regions of the same size.

    `in_region` = sum(max(map, 0) * mask) / sum(max(map, 0)): NaN for a map without
    positive mass (all zero, or nowhere above 0), which points nowhere. `pointing` = the
    share of the map's maxima that lie inside: 1 or 0 for a single maximum; where several
    positions tie for the maximum (exactly equal values), the fraction of them inside, so
    a constant map scores the region's area share, as a uniform map does. A map with NaN
    values scores NaN on both.

    Args:
        maps: `(batch, *spatial)` float maps.
        masks: `(batch, *spatial)` float 0/1 regions.

    Returns:
        `(in_region, pointing)`, each `(batch,)` float32.
    """
    maps = tf.cast(maps, tf.float32)
    masks = tf.cast(masks, tf.float32)
    axes = tuple(range(1, maps.shape.rank))
    positive = tf.nn.relu(maps)
    total = tf.reduce_sum(positive, axis=axes)
    inside = tf.reduce_sum(positive * masks, axis=axes)
    nan = tf.fill(tf.shape(total), float("nan"))
    in_region = tf.where(total > 0, inside / tf.where(total > 0, total, 1.0), nan)
    in_region = tf.where(tf.math.is_nan(total), nan, in_region)
    peaks = tf.cast(maps == tf.reduce_max(maps, axis=axes, keepdims=True), tf.float32)
    pointing = tf.reduce_sum(peaks * masks, axis=axes) / tf.reduce_sum(peaks, axis=axes)
    return in_region, pointing


def area_share(masks) -> np.ndarray:
    """`(batch,)` the share of each sample's positions inside its region: what a uniform
    map scores on `in_region` and, by chance, on `pointing`."""
    masks = np.asarray(masks, np.float32)
    return masks.reshape(len(masks), -1).mean(axis=1)


def localization(maps, regions, size=None) -> dict[str, np.ndarray]:
    """How much of each map lies on the object: relevance mass and the pointing game.

    For maps from any explainer (`kcv.grad_cam`, `kcv.occlusion_sensitivity`, a
    channel-reduced `kcv.saliency`, your own). Maps at another size than the regions (a
    CAM map at its layer's resolution) are first resized linearly to the regions' size, as
    the overlays are drawn.

    - `in_region` (relevance mass accuracy, Arras et al. 2022): the map's positive mass
      inside the region over its positive mass everywhere; NaN for a map with no positive
      mass (all zero, or nowhere above 0).
    - `pointing` (pointing game, Zhang et al. 2016): 1 when the map's maximum lies inside
      the region, else 0; where several positions tie for the maximum (exactly equal
      values), the fraction of them inside.

    A uniform (or all-zero) map scores the region's area share on `pointing`, and a uniform
    one on `in_region` too: that share is the floor to compare with.

    Args:
        maps: `(batch, *spatial)` float array, one map per sample, 1 to 3 spatial axes
            (steps; height, width; depth, height, width); a trailing axis of length 1 is
            taken as a channel axis and dropped. Reduce attributions with more channels
            first (e.g. `np.abs(a).max(-1)` for a gradient, `a.sum(-1)` for gradient x
            input).
        regions: where the object is in each sample: masks `(batch, *spatial)` (bool or
            0/1, a trailing axis of length 1 accepted), at the samples' size; or boxes
            `(batch, 2 * rank)`: the start of each spatial axis then its end, in pixels,
            ends exclusive (`(y0, x0, y1, x1)` for images, `(start, end)` for sequences,
            `(z0, y0, x0, z1, y1, x1)` for volumes). Where both readings fit (a sequence of
            2 steps) the array is read as masks.
        size: tuple of ints or None. The samples' spatial size, which boxes are given in.
            Defaults to `None`: the masks' size, or for boxes the maps' size.

    Returns:
        `{"in_region": (batch,), "pointing": (batch,)}` float32 arrays.

    Example:

    ```python
    maps = kcv.grad_cam(model, (x[:8], y[:8]))
    scores = kcv.localization(maps, boxes[:8])  # boxes: (8, 4) as (y0, x0, y1, x1)
    ```
    """
    try:
        array = np.asarray(maps, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TypeError(
            "`maps` must be a float array of shape (batch, *spatial), one map per sample. "
            f"Received: {type(maps).__name__}"
        ) from error
    if array.ndim >= 3 and array.shape[-1] == 1:
        array = array[..., 0]
    rank = array.ndim - 1
    if rank not in (1, 2, 3):
        raise ValueError(
            "`maps` must have shape (batch, *spatial) with 1 to 3 spatial axes (steps; "
            "height, width; depth, height, width). Received: shape "
            f"{np.shape(maps)}"
        )
    if regions is None:
        raise ValueError("`regions` must be masks or boxes, one per map. Received: None")
    spatial = _region_size(np.asarray(regions), rank, size)
    if spatial is None:
        spatial = array.shape[1:]
    if len(spatial) != rank:
        raise ValueError(
            f"`size` must give one length per spatial axis of the maps ({rank}). "
            f"Received: size={size!r}"
        )
    masks = check_regions(regions, len(array), spatial)
    resized = Geometry(rank).resize(tf.constant(array), spatial)
    in_region, pointing = locate(resized, tf.constant(masks))
    return {"in_region": in_region.numpy(), "pointing": pointing.numpy()}


def _region_size(regions, rank: int, size) -> tuple[int, ...] | None:
    """The size the regions are at: `size` when given, else a mask's own size; `None`
    for boxes (the maps' size)."""
    if size is not None:
        values = (size,) if np.ndim(size) == 0 else tuple(size)
        if not all(isinstance(v, (int, np.integer)) and v > 0 for v in values):
            raise ValueError(
                f"`size` must be positive ints, one per spatial axis. Received: size={size!r}"
            )
        return tuple(int(v) for v in values)
    if regions.ndim < 2:
        return None
    boxes = regions.ndim == 2 and regions.shape[1] == 2 * rank
    masks = regions.ndim == rank + 1 or (regions.ndim == rank + 2 and regions.shape[-1] == 1)
    if masks and not boxes:
        return tuple(int(s) for s in regions.shape[1 : rank + 1])
    return None
