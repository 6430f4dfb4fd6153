"""The `Occlusion` need (Zeiler & Fergus 2014): the score drop when a window is hidden.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.

Each window's occluded copies are scored in the general chunked loop, built whole
(`windows.occluded_chunk`) or, where it pays, recomputed layer by layer on the rectangle the
window changes (`incremental`); the window scores are folded into a map by
`windows.scatter_average`.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from keras_convviz.core.needs import Const, Need
from keras_convviz.core.passes import xla_available
from keras_convviz.methods.occlusion.incremental import (
    IncrementalScorer,
    plan_in_pass,
    takes_incremental,
)
from keras_convviz.methods.occlusion.windows import (
    occluded_chunk,
    occluded_chunk_xla,
    scatter_average,
    window_masks,
    window_starts,
)
from keras_convviz.methods.perturb import BLUR, gaussian_blur


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
            copy; `"incremental"`, only what each window changes, layer by layer (the
            `incremental` module; the same scores up to float rounding); `"auto"`,
            incremental where its estimated cost is at most `AUTO_MAX_RATIO` of the naive
            path's (`takes_incremental`).
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
            plan = plan_in_pass(ctx, tops, lefts, self.patch)
            if takes_incremental(plan, self.method):
                fill = baseline if per_image else baseline[None]
                incremental = IncrementalScorer(plan, fill, len(lefts))
                incremental.prepare()
                scorer = incremental.target_scores(ctx.head)
        scores, _ = ctx.score_in_chunks(
            len(tops) * len(lefts), self.batch_size, build, self.targets, scorer=scorer
        )
        drops = ctx.target_scores(self.targets)[:, None] - scores
        return scatter_average(tf.reshape(drops, (-1, len(tops), len(lefts))), rows_in, cols_in)
