"""Occlusion's windows, of any rank: where they start, which positions they cover, the
occluded copies of a chunk and the reducer that folds window scores back into a map.

Built on the general chunked loop (`Context.score_in_chunks`): `occluded_chunk` builds the
occluded copies of a chunk, `scatter_average` folds the window scores into a map.
Overlapping windows are averaged per pixel, as captum's `Occlusion`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets of occlusion windows along one axis, covering every pixel.

    The last window is aligned with the far edge when the stride does not land on it, so no
    pixel is left without a score.
    """
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def window_masks(starts: list[int], patch: int, size: int) -> tf.Tensor:
    """`(windows, size)` bool: which pixels of one axis each window covers."""
    positions = np.arange(size)[None, :]
    starts_np = np.asarray(starts)[:, None]
    return tf.constant((positions >= starts_np) & (positions < starts_np + patch))


def window_grid(spatial_size, patch, stride) -> tuple[list[list[int]], tuple[tf.Tensor, ...]]:
    """The windows of any rank: per spatial axis, the window starts (`window_starts`) and
    `(windows along the axis, size)` bool masks (`window_masks`). A window is one start
    per axis; windows are numbered in row-major order over the axes (the last axis
    fastest), as `window_index` unravels them."""
    starts = [window_starts(s, p, st) for s, p, st in zip(spatial_size, patch, stride)]
    masks = tuple(window_masks(a, p, s) for a, p, s in zip(starts, patch, spatial_size))
    return starts, masks


def window_index(window: tf.Tensor, counts) -> tuple[tf.Tensor, ...]:
    """Per spatial axis, the index among that axis's starts of the windows numbered
    `window` (row-major over `counts` windows per axis)."""
    indices = []
    for count in reversed(counts[1:]):
        indices.append(window % count)
        window = window // count
    return (window, *reversed(indices))


def occluded_chunk(images, image_index, axis_index, masks, baseline):
    """One chunk of occluded samples: sample `image_index[i]` with window `i` set to
    `baseline`.

    Args:
        images: `(batch, *spatial, channels)` the unoccluded samples.
        image_index: `(chunk,)` int32, which sample each occluded copy is made from.
        axis_index: per spatial axis, `(chunk,)` int32: the window's index among that
            axis's starts (`window_index`).
        masks: per spatial axis, `(windows along the axis, size)` bool: the positions each
            window covers along that axis.
        baseline: `(*spatial, channels)` the occluding values, or `(chunk, *spatial,
            channels)` one per occluded copy.

    Returns:
        `(chunk, *spatial, channels)` occluded samples, dtype of `images`.
    """
    rank = len(masks)
    mask = None
    for axis, (index, axis_masks) in enumerate(zip(axis_index, masks)):
        # `(chunk, size)` spread over the spatial axes: `(chunk, 1, .., size, .., 1)`.
        spread = (slice(None), *(slice(None) if a == axis else None for a in range(rank)))
        covered = tf.gather(axis_masks, index)[spread]
        mask = covered if mask is None else mask & covered
    return tf.where(mask[..., None], baseline, tf.gather(images, image_index))


# TensorFlow's CPU select kernel costs several copies of the chunk (a quarter to a third of
# the occlusion pass on a small CNN); XLA fuses gather, mask and select into one pass. It
# compiles once per chunk shape: full chunks and the last.
occluded_chunk_xla = tf.function(occluded_chunk, jit_compile=True, autograph=False)

_LETTERS = "abcdefgh", "yxzuvw"


def scatter_average(drops: tf.Tensor, *masks: tf.Tensor) -> tf.Tensor:
    """Spread each window's score drop over its positions, averaged where windows overlap.

    Args:
        drops: `(batch, *windows per axis)` score(original) - score(occluded) per window.
        *masks: per spatial axis, `(windows along the axis, size)` bool.

    Returns:
        `(batch, *spatial)` float32 map.
    """
    rank = len(masks)
    windows, positions = _LETTERS[0][:rank], _LETTERS[1][:rank]
    terms = [w + p for w, p in zip(windows, positions)]
    floats = [tf.cast(m, tf.float32) for m in masks]
    # The first axis's masks, the drops, then the other axes' (for images "ay,nab,bx->nyx").
    summed = tf.einsum(
        f"{terms[0]},n{windows},{','.join(terms[1:])}->n{positions}".replace(",->", "->"),
        floats[0],
        drops,
        *floats[1:],
    )
    count = tf.einsum(f"{','.join(terms)}->{positions}", *floats)
    return summed / count
