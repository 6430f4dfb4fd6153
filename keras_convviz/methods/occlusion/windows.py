"""Occlusion's windows: where they start, which pixels they cover, the occluded copies of a
chunk and the reducer that folds window scores back into a map.

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


def occluded_chunk(images, image_index, row_index, col_index, rows_in, cols_in, baseline):
    """One chunk of occluded images: image `image_index[i]` with window `i` set to `baseline`.

    Args:
        images: `(batch, height, width, channels)` the unoccluded images.
        image_index: `(chunk,)` int32, which image each occluded copy is made from.
        row_index: `(chunk,)` int32, the window's row among the row starts.
        col_index: `(chunk,)` int32, the window's column among the column starts.
        rows_in: `(n_rows, height)` bool, the pixel rows each window row covers.
        cols_in: `(n_cols, width)` bool, the pixel columns each window column covers.
        baseline: `(height, width, channels)` the occluding values, or `(chunk, height,
            width, channels)` one per occluded copy.

    Returns:
        `(chunk, height, width, channels)` occluded images, dtype of `images`.
    """
    mask = tf.gather(rows_in, row_index)[:, :, None] & tf.gather(cols_in, col_index)[:, None, :]
    return tf.where(mask[..., None], baseline, tf.gather(images, image_index))


# TensorFlow's CPU select kernel costs several copies of the chunk (a quarter to a third of
# the occlusion pass on a small CNN); XLA fuses gather, mask and select into one pass. It
# compiles once per chunk shape: full chunks and the last.
occluded_chunk_xla = tf.function(occluded_chunk, jit_compile=True, autograph=False)


def scatter_average(drops: tf.Tensor, rows_in: tf.Tensor, cols_in: tf.Tensor) -> tf.Tensor:
    """Spread each window's score drop over its pixels, averaged where windows overlap.

    Args:
        drops: `(batch, n_rows, n_cols)` score(original) - score(occluded) per window.
        rows_in: `(n_rows, height)` bool.
        cols_in: `(n_cols, width)` bool.

    Returns:
        `(batch, height, width)` float32 map.
    """
    rows = tf.cast(rows_in, tf.float32)
    cols = tf.cast(cols_in, tf.float32)
    summed = tf.einsum("ay,nab,bx->nyx", rows, drops, cols)
    count = tf.einsum("ay,bx->yx", rows, cols)
    return summed / count
