"""What a pass computes: needs in, a typed result out.

A callback (or a functional explainer) says what it wants from the compiled pass as
`Need` values: the activations of a layer, a CAM map, an occlusion map, a saliency map.
A `Plan` takes the union of several callers' needs; it is also the compile key. The arrays
a need carries (its target's classes and regions, a baseline image) are `Const`s: the plan
lifts them out of the key and feeds them to the compiled function as arguments, so another
class index or another probe of the same shape does not trace again, and needs with equal
targets (`core.targets`) share one gradient.

A need's `compute(ctx)` runs while the pass is traced: it reads what the pass recorded
(`ctx.activation`, `ctx.gradient`, `ctx.scores`) or scores more inputs through the general
chunked loop (`ctx.score_in_chunks`), and returns one tensor. A new method is a new need
(or one registry line, for a CAM variant); the pass itself does not change.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_convviz.core.graph import LayerRef


class Const:
    """An array a need feeds into the pass as an argument (target classes, a baseline image).

    Equal contents compare equal, so two needs with the same targets share one slot and
    one gradient.

    Args:
        value: the array.
        batched: whether its first axis is the probe's batch axis (left free in the
            compiled signature, so probes of any size share one trace).
    """

    __slots__ = ("value", "batched", "_key")

    def __init__(self, value, batched: bool = False):
        value = np.ascontiguousarray(value)
        value.setflags(write=False)
        self.value = value
        self.batched = batched
        digest = hashlib.sha1(value.tobytes()).hexdigest()
        self._key = (value.dtype.str, value.shape, batched, digest)

    def __eq__(self, other):
        return isinstance(other, Const) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        return f"Const(shape={self.value.shape}, dtype={self.value.dtype})"

    def spec(self) -> tf.TensorSpec:
        shape = (None, *self.value.shape[1:]) if self.batched else self.value.shape
        return tf.TensorSpec(shape, tf.as_dtype(self.value.dtype))


@dataclass(frozen=True)
class Slot:
    """Where a `Const` sits among the compiled function's arguments (in a plan's key)."""

    index: int
    spec: tf.TensorSpec


class Need:
    """Something a caller wants from the pass. Subclasses are frozen dataclasses.

    `layers()` names the layers whose outputs the pass must record, `gradients()` the
    `(layer or None for the image input, target)` pairs whose gradient of the target's score
    it must take (once per pair, shared by every need), and `compute(ctx)` makes the value.
    A need may be built on another need's value (a field holding a `Need`, read with
    `ctx.value(...)`): it is computed once per pass however many needs read it.
    """

    def layers(self) -> tuple[LayerRef, ...]:
        return ()

    def gradients(self) -> tuple[tuple[LayerRef | None, object], ...]:
        return ()

    def compute(self, ctx) -> tf.Tensor:
        raise NotImplementedError

    def loss_gradients(self) -> tuple[tuple[Const | Slot, tuple[LayerRef, ...]], ...]:
        """`(labels, layers)` pairs: the pass computes the model's compiled loss on the
        probe for those labels and its gradient with respect to those layers' kernels
        (`ctx.loss_gradient`), from the same forward pass."""
        return ()

    def as_map(self, value: tf.Tensor) -> tf.Tensor:
        """The value as a `(batch, height, width)` map that ranks pixels (for faithfulness)."""
        return value


@dataclass(frozen=True)
class Activations(Need):
    """A layer's output on the probe, float32 `(batch, h, w, channels)`."""

    ref: LayerRef

    def layers(self):
        return (self.ref,)

    def compute(self, ctx):
        return ctx.activation(self.ref)


@dataclass(frozen=True)
class ClassScores(Need):
    """The class scores `(batch, classes)` a target reads (before a final softmax or
    sigmoid; `Target.class_scores`): a classifier's scores, a region's summed ones.

    Attributes:
        target: the target (a `core.targets.Target`).
    """

    target: object

    def compute(self, ctx):
        return ctx.class_scores(self.target)


@dataclass(frozen=True)
class Classes(Need):
    """The class each probe sample's target score is read at (`Target.classes`: the
    given classes, `-1` resolved as the target says): `(batch,)` int32.

    Attributes:
        target: the target (a `core.targets.Target`).
    """

    target: object

    def compute(self, ctx):
        return ctx.classes(self.target)


@dataclass(frozen=True)
class RegionSizes(Need):
    """The positions in each probe sample's region of a target that reads a region
    (`Target.region`): `(batch,)` float32.

    Attributes:
        target: the target (a `core.targets.RegionScore`).
    """

    target: object

    def compute(self, ctx):
        region = self.target.region(ctx)
        return tf.reduce_sum(region, axis=tuple(range(1, region.shape.rank)))


class Plan:
    """The union of some needs, with their `Const`s lifted into arguments.

    Attributes:
        needs: the needs, each once, in the order first given.
        key: the needs with every `Const` replaced by its `Slot`: what the compiled
            function is specialised on (with the binding).
        consts: the lifted arrays, in slot order.
    """

    def __init__(self, needs: Iterable[Need]):
        self.needs = tuple(dict.fromkeys(needs))
        slots: dict[Const, Slot] = {}

        def lift(need: Need) -> Need:
            changes = {}
            for field in dataclasses.fields(need):
                value = getattr(need, field.name)
                if isinstance(value, Const):
                    if value not in slots:
                        slots[value] = Slot(len(slots), value.spec())
                    changes[field.name] = slots[value]
                elif isinstance(value, Need) or _holds_consts(value):
                    # A need built on another need's value, or a target with its arrays.
                    changes[field.name] = lift(value)
            return dataclasses.replace(need, **changes) if changes else need

        self.key = tuple(lift(need) for need in self.needs)
        self.consts = tuple(slots)
        self._fed = None

    def feed(self) -> tuple[tf.Tensor, ...]:
        """The lifted arrays as tensors, made once."""
        if self._fed is None:
            self._fed = tuple(tf.constant(c.value) for c in self.consts)
        return self._fed

    def specs(self) -> tuple[tf.TensorSpec, ...]:
        return tuple(c.spec() for c in self.consts)


def _holds_consts(value) -> bool:
    """Whether a field's value is a dataclass (a target) with `Const` fields to lift."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return False
    return any(isinstance(getattr(value, f.name), Const) for f in dataclasses.fields(value))


class Result:
    """What one pass computed, read by the need that asked for it: `result[need]`."""

    def __init__(self, needs: tuple[Need, ...], values):
        self._values = dict(zip(needs, values))

    def __getitem__(self, need: Need) -> tf.Tensor:
        return self._values[need]

    def __contains__(self, need: Need) -> bool:
        return need in self._values
