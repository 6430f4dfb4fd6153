"""The `Occlusion` need (Zeiler & Fergus 2014): the score drop when a window is hidden.

Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.

Each window's occluded copies are scored in the general chunked loop, built whole
(`windows.occluded_chunk`) or, where it pays, recomputed layer by layer on the rectangle the
window changes (`incremental`); the window scores are folded into a map by
`windows.scatter_average`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf

from keras_convviz.core.needs import Const, Need
from keras_convviz.core.passes import xla_available
from keras_convviz.core.targets import Target
from keras_convviz.methods.occlusion.incremental import (
    IncrementalScorer,
    plan_in_pass,
    takes_incremental,
)
from keras_convviz.methods.occlusion.windows import (
    occluded_chunk,
    occluded_chunk_xla,
    scatter_average,
    window_grid,
    window_index,
)
from keras_convviz.methods.perturb import BLUR, gaussian_blur


@dataclass(frozen=True)
class Occlusion(Need):
    """Occlusion-sensitivity maps `(batch, *spatial)`: score(original) - score(occluded).

    Windows of any rank, as captum's `Occlusion(sliding_window_shapes, strides)`: along a
    sequence's steps, an image's rows and columns, a volume's depth, rows and columns.

    Attributes:
        patch: the window's length per spatial axis (`(rows, cols)` for images).
        stride: the step between windows per spatial axis.
        batch_size: occluded samples scored per model call.
        target: what the maps explain (`core.targets`).
        baseline: the occluding values (`occlusion_baseline`): a `(*spatial, channels)`
            `Const`, or `BLUR`: each sample blurred by a Gaussian whose standard deviation
            is the patch's longest side, computed in the pass.
        method: how the occluded copies are scored: `"naive"`, the model on each built
            copy; `"incremental"`, only what each window changes, layer by layer (the
            `incremental` module; the same scores up to float rounding); `"auto"`,
            incremental where its estimated cost is at most `AUTO_MAX_RATIO` of the naive
            path's (`takes_incremental`). The incremental engine recomputes 2-D windows
            only: sequences and volumes are scored the naive way (`check_occlusion_method`
            refuses `"incremental"` for them).
    """

    patch: tuple[int, ...]
    stride: tuple[int, ...]
    batch_size: int
    target: Target
    baseline: Const | str
    method: str = "auto"

    def compute(self, ctx):
        spatial = ctx.spatial_size
        starts, masks = window_grid(spatial, self.patch, self.stride)
        counts = [len(a) for a in starts]
        if self.baseline == BLUR:
            baseline = gaussian_blur(ctx.images, float(max(self.patch)))
        else:
            baseline = ctx.const(self.baseline)
        build_chunk = occluded_chunk_xla if xla_available() else occluded_chunk

        per_image = baseline.shape.rank == ctx.images.shape.rank

        def build(image_index, window):
            fill = tf.gather(baseline, image_index) if per_image else baseline
            axis_index = window_index(window, counts)
            return build_chunk(ctx.images, image_index, axis_index, masks, fill)

        scorer = None
        if self.method != "naive" and len(spatial) == 2:  # the engine's windows are 2-D
            tops, lefts = starts
            plan = plan_in_pass(ctx, tops, lefts, self.patch)
            if takes_incremental(plan, self.method):
                fill = baseline if per_image else baseline[None]
                incremental = IncrementalScorer(plan, fill, len(lefts))
                incremental.prepare()

                def scorer(image_index, window):
                    return ctx.head.scores(incremental.output(image_index, window))

        scores, _ = ctx.score_in_chunks(
            math.prod(counts), self.batch_size, build, self.target, scorer=scorer
        )
        drops = ctx.target_scores(self.target)[:, None] - scores
        return scatter_average(tf.reshape(drops, (-1, *counts)), *masks)
