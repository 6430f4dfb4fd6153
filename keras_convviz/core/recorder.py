"""Recording the model's calls: every leaf call of one run, in call order.

The pass runs the model on the probe once through `ModelGraph.run` with a `Recorder` as its
wrap; the records (references to the layers, their arguments and the tensors in and out) let
a need replay the model on other inputs, or on parts of them, without running it again
(incremental occlusion recomputes only the rectangle each window changes). Recording adds no
op to the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf


@dataclass(eq=False)
class Record:
    """One leaf call of the model on the probe.

    Attributes:
        op: the layer (or Keras operation).
        leaf: what was called (the layer, or the score layer without its squashing).
        args: the positional arguments; kwargs: the keyword arguments (`training=False`).
        inputs: the tensors among them, flattened; outputs: the tensors it returned.
    """

    op: object
    leaf: object
    args: tuple
    kwargs: dict
    inputs: list
    outputs: list


class Recorder:
    """A `ModelGraph.run` wrap that records every leaf call (nested models walked into).

    Args:
        inputs: the tensors the model is run on, one per model input.
    """

    def __init__(self, inputs: list):
        self.inputs = inputs
        self.records: list[Record] = []

    def __call__(self, op, args, kwargs, leaf):
        result = leaf(*args, **kwargs)
        flat_in = [t for t in keras.tree.flatten((args, kwargs)) if tf.is_tensor(t)]
        flat_out = [t for t in keras.tree.flatten(result) if tf.is_tensor(t)]
        self.records.append(Record(op, leaf, args, kwargs, flat_in, flat_out))
        return result
