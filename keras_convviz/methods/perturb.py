"""Occlusion sensitivity (Zeiler & Fergus 2014): the score drop when a window is hidden.

Built on the general chunked loop: `occluded_chunk` builds the occluded copies of a chunk,
`scatter_average` folds the window scores into a map. Overlapping windows are averaged per
pixel, as captum's `Occlusion`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_convviz._args import make_baseline
from keras_convviz.core.incremental import IncrementalScorer, takes_incremental
from keras_convviz.core.needs import Const, Need
from keras_convviz.core.passes import xla_available
from keras_convviz.core.probe import Probe

BASELINES = ("blur", "mean")
# The `Occlusion` need's baseline when each image's blurred copy fills its windows.
BLUR = "blur"


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets of occlusion windows along one axis, covering every pixel.

    The last window is aligned with the far edge when the stride does not land on it, so no
    pixel is left without a score.
    """
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Each image blurred by a Gaussian of standard deviation `sigma` pixels.

    Separable, edges mirrored, so a uniform region keeps its value (black stays black).

    Args:
        images: `(batch, height, width, channels)` float32.
        sigma: the standard deviation, in pixels.

    Returns:
        `(batch, height, width, channels)` float32.
    """
    height, width, channels = (int(d) for d in images.shape[1:])  # static, also in a trace
    out = tf.convert_to_tensor(images, tf.float32)
    for axis, size in ((1, height), (2, width)):
        radius = max(0, min(int(np.ceil(3 * sigma)), size - 1))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-6)) ** 2)
        taps = (taps / taps.sum()).astype(np.float32)
        shape = (len(taps), 1) if axis == 1 else (1, len(taps))
        kernel = np.tile(taps.reshape(*shape, 1, 1), (1, 1, channels, 1))
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        paddings[axis] = [radius, radius]
        padded = tf.pad(out, paddings, mode="SYMMETRIC")
        out = tf.nn.depthwise_conv2d(padded, kernel, strides=[1, 1, 1, 1], padding="VALID")
    return out


def occlusion_baseline(baseline, probe: Probe) -> Const | str:
    """What fills an occluded window, for the `Occlusion` need.

    Args:
        baseline: `"blur"`: each probe image blurred by a Gaussian whose standard
            deviation is the patch size (no new edge or colour: black stays black, white
            stays white), made inside the pass; `"mean"`: the probe's per-channel mean; a
            number or an array broadcastable to `(height, width, channels)`, in the model's
            input space.
        probe: the probe.

    Returns:
        `BLUR` for `"blur"`, else a `(height, width, channels)` `Const`.
    """
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(
                f"`baseline` must be one of {BASELINES}, a number or an array. "
                f"Received: baseline={baseline!r}"
            )
        if baseline == "blur":
            return BLUR
        baseline = None
    return Const(make_baseline(baseline, probe))


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


@dataclass(frozen=True)
class Occlusion(Need):
    """Occlusion-sensitivity maps `(batch, height, width)`: score(original) - score(occluded).

    Attributes:
        patch: `(rows, cols)` of the window.
        stride: `(rows, cols)` between windows.
        batch_size: occluded images scored per model call.
        targets: the target classes (`targets_const`).
        baseline: the occluding values (`occlusion_baseline`): a `(height, width,
            channels)` `Const`, or `BLUR`: each image blurred by a Gaussian whose standard
            deviation is the patch size, computed in the pass.
        method: how the occluded copies are scored: `"naive"`, the model on each built
            copy; `"incremental"`, only what each window changes, layer by layer
            (`keras_convviz.core.incremental`; the same scores up to float rounding);
            `"auto"`, incremental where its estimated cost is at most `AUTO_MAX_RATIO` of
            the naive path's (`takes_incremental`).
    """

    patch: tuple[int, int]
    stride: tuple[int, int]
    batch_size: int
    targets: Const
    baseline: Const | str
    method: str = "auto"

    def compute(self, ctx):
        height, width = ctx.image_size
        tops = window_starts(height, self.patch[0], self.stride[0])
        lefts = window_starts(width, self.patch[1], self.stride[1])
        rows_in = window_masks(tops, self.patch[0], height)
        cols_in = window_masks(lefts, self.patch[1], width)
        if self.baseline == BLUR:
            baseline = gaussian_blur(ctx.images, float(max(self.patch)))
        else:
            baseline = ctx.const(self.baseline)
        build_chunk = occluded_chunk_xla if xla_available() else occluded_chunk

        per_image = baseline.shape.rank == 4

        def build(image_index, window):
            row, col = window // len(lefts), window % len(lefts)
            fill = tf.gather(baseline, image_index) if per_image else baseline
            return build_chunk(ctx.images, image_index, row, col, rows_in, cols_in, fill)

        scorer = None
        if self.method != "naive":
            plan = ctx.incremental_plan(tops, lefts, self.patch)
            if takes_incremental(plan, self.method):
                fill = baseline if per_image else baseline[None]
                incremental = IncrementalScorer(plan, fill, len(lefts))
                incremental.prepare()
                scorer = ctx.incremental_scores(incremental)
        scores, _ = ctx.score_in_chunks(
            len(tops) * len(lefts), self.batch_size, build, self.targets, scorer=scorer
        )
        drops = ctx.target_scores(self.targets)[:, None] - scores
        return scatter_average(tf.reshape(drops, (-1, len(tops), len(lefts))), rows_in, cols_in)
