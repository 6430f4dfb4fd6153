"""What a map explains: one score per probe sample, read from the model's score output.

A `Target` is what pytorch-grad-cam calls a target (`ClassifierOutputTarget`,
`SemanticSegmentationTarget`): a function from the score output to one number per sample.
Every method (the CAM family, saliency, occlusion, faithfulness) explains a target and
never asks which kind it is; the pass takes one backward per target, shared by every need
that explains the same one.

Targets are frozen dataclasses like needs, and a need holds its target as a field: the
arrays a target carries (classes, regions) are `Const`s, lifted into the compiled
function's arguments by the `Plan`, so equal targets share one gradient and another class
does not trace again. Whether a target applies to the score output (`Head`) is decided
here, in `for_head`; a new target type is a class here and a line in `for_head`.

Terms: the head's *scores* are its output before a final softmax/sigmoid, float32, per
position for a dense output (`Head.scores`); a target reads them as *class scores*
`(rows, classes)` (`class_scores`) and picks one class per row (`classes`). The rows are
the probe's samples, or inputs built from them (perturbed copies in the chunked loop),
given by the probe sample each row comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_convviz.core.needs import Const


def pick(values: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """`(rows,)` each row's value at its class column: `tf.gather(values, classes, axis=1,
    batch_dims=1)` as a masked sum, the same numbers (a -0.0 becomes 0.0) and gradient. The
    batched gather's gradient is most of the tracing of Grad-CAM's part of the pass; the
    mask's is one `where` (BENCHMARKS.md, 6)."""
    columns = tf.range(tf.shape(values)[1], dtype=classes.dtype)
    picked = tf.where(columns[None, :] == classes[:, None], values, tf.zeros_like(values))
    return tf.reduce_sum(picked, axis=1)


class Target:
    """One score per row from the head's scores. Subclasses are frozen dataclasses.

    Their methods run while the pass is traced; `ctx` is the pass's `Context` (its
    `const`, the head's `scores` on the probe, and `cached` for what is computed once per
    pass).
    """

    def class_scores(self, ctx, scores: tf.Tensor, rows: tf.Tensor | None = None) -> tf.Tensor:
        """`(rows, classes)` float32 from the head's scores of some rows; `rows`: the probe
        sample of each row, `None` for the probe's own samples."""
        return scores

    def classes(self, ctx) -> tf.Tensor:
        """`(batch,)` int32: the class each probe sample's score is read at."""
        raise NotImplementedError

    def scores(self, ctx, scores: tf.Tensor, rows: tf.Tensor | None = None) -> tf.Tensor:
        """`(rows,)` float32: the target's score of each row (`class_scores` at `classes`)."""
        classes = self.classes(ctx)
        if rows is not None:
            classes = tf.gather(classes, rows)
        return pick(self.class_scores(ctx, scores, rows), classes)

    def region(self, ctx) -> tf.Tensor | None:
        """`(batch, *spatial)` float32 0/1, the positions each probe sample's score sums
        over, or `None` for a target that reads no positions."""
        return None


@dataclass(frozen=True)
class ClassScore(Target):
    """A class's score of a classifier output `(batch, classes)`.

    Attributes:
        given: `(batch,)` int32 class per probe sample, `-1` for the class the model
            predicts on it (a batched `Const`).
    """

    given: Const

    def classes(self, ctx):
        def resolve():
            given = ctx.const(self.given)
            predicted = tf.argmax(ctx.scores, axis=-1, output_type=tf.int32)
            return tf.where(given < 0, predicted, given)

        return ctx.cached((self, "classes"), resolve)


@dataclass(frozen=True)
class Value(Target):
    """A regression output's value: unit `unit` of a `(batch, units)` linear output."""

    unit: int = 0

    def classes(self, ctx):
        return tf.fill(tf.shape(ctx.scores)[:1], self.unit)


@dataclass(frozen=True)
class RegionScore(Target):
    """A class's score summed over a region of each sample, from a per-position output
    `(batch, *spatial, classes)` (segmentation): "why are these positions this class".

    The region is fixed by the probe's own output: perturbed copies of a sample are scored
    over the same positions, so a drop in the score is a drop in the evidence there, not a
    change of region.

    Attributes:
        given: `(batch,)` int32 class per probe sample; `-1`: the class the model predicts
            on the most positions other than class 0 (else 0).
        labelled: `(batch, *spatial)` float32 0/1 region per sample (a labelled mask, a
            batched `Const`), or `None`: the positions where the model predicts the class.
    """

    given: Const
    labelled: Const | None = None

    def classes(self, ctx):
        def resolve():
            given = ctx.const(self.given)
            predicted = _predicted(ctx)
            spatial = tuple(range(1, predicted.shape.rank))
            counts = tf.reduce_sum(tf.one_hot(predicted, ctx.scores.shape[-1]), axis=spatial)
            largest = tf.argmax(counts[:, 1:], axis=-1, output_type=tf.int32) + 1
            largest = tf.where(tf.reduce_max(counts[:, 1:], axis=-1) > 0, largest, 0)
            return tf.where(given < 0, largest, given)

        return ctx.cached((self, "classes"), resolve)

    def region(self, ctx):
        def resolve():
            if self.labelled is not None:
                return tf.cast(ctx.const(self.labelled), tf.float32)
            predicted = _predicted(ctx)
            classes = self.classes(ctx)
            classes = tf.reshape(classes, (-1,) + (1,) * (predicted.shape.rank - 1))
            return tf.cast(tf.equal(predicted, classes), tf.float32)

        return ctx.cached((self, "region"), resolve)

    def class_scores(self, ctx, scores, rows=None):
        region = self.region(ctx)
        if rows is not None:
            region = tf.gather(region, rows)
        axes = tuple(range(1, scores.shape.rank - 1))
        return tf.reduce_sum(scores * tf.stop_gradient(region)[..., None], axis=axes)


def _predicted(ctx) -> tf.Tensor:
    """Each position's predicted class on the probe, from the head's scores (once per
    pass, however many region targets read it)."""
    return ctx.cached("predicted", lambda: tf.argmax(ctx.scores, axis=-1, output_type=tf.int32))


def for_head(head, classes: np.ndarray, regions: np.ndarray | None = None) -> Target:
    """The target a map of a score output explains.

    Args:
        head: the score output (`graph.Head`).
        classes: `(batch,)` int32 class per probe sample, `-1` where the model's own
            prediction decides (`_args.resolve_targets`).
        regions: for a per-position output, `(batch, *spatial)` 0/1 labelled regions
            (`Probe.regions`), or `None` for the predicted ones.
    """
    if head.dense:
        labelled = None if regions is None else Const(regions.astype(np.float32), batched=True)
        return RegionScore(Const(np.asarray(classes, np.int32), batched=True), labelled)
    if head.regression:
        return Value()
    return ClassScore(Const(np.asarray(classes, np.int32), batched=True))
