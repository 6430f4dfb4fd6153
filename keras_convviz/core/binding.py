"""How a probe feeds a model: the image input, the other inputs, the score output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_convviz._args import resolve_targets
from keras_convviz.core import geometry
from keras_convviz.core.geometry import Geometry
from keras_convviz.core.graph import Head, ModelGraph
from keras_convviz.core.probe import Probe, check_input_fits, check_probe_fits


@dataclass(frozen=True)
class Binding:
    """How a probe feeds a model: the compiled passes are specialised on it.

    Attributes:
        image_index: the position of the image input in `model.inputs`.
        image_shape: `(*spatial, channels)` of the probe samples.
        extra_specs: `(shape without batch, dtype name)` of each other input, in
            `model.inputs` order; empty for a single-input model.
        head: the output read as class scores, or `None` when no scores are needed.
        slices: the depth slices a volume's pictures show at most (`max_slices`).
    """

    image_index: int
    image_shape: tuple[int, ...]
    extra_specs: tuple[tuple[tuple[int, ...], str], ...]
    head: Head | None
    slices: int = geometry.MAX_SLICES

    @property
    def geometry(self) -> Geometry:
        """The spatial layout of the probe input."""
        return geometry.of_sample(self.image_shape, self.slices)


@dataclass(frozen=True, eq=False)
class Bound:
    """A probe bound to a model: the tensors every compiled pass is called with.

    Attributes:
        binding: the `Binding`.
        images: `(batch, height, width, channels)` float32 images.
        extras: the other model inputs, in `model.inputs` order (fixed for every image
            and every perturbed copy of it).
        probe: the probe with the labels of the output it explains (`Probe.for_head`:
            a segmentation output's masks resolved once).
    """

    binding: Binding
    images: tf.Tensor
    extras: tuple[tf.Tensor, ...]
    probe: Probe


def bind(
    graph: ModelGraph,
    probe: Probe,
    image_input=None,
    score_output=None,
    scores: bool = True,
    argument: str = "probe",
    class_index=None,
    slices: int = geometry.MAX_SLICES,
) -> Bound:
    """Check a probe against the model and say how it feeds the model's inputs.

    Args:
        graph: the resolved model.
        probe: the probe.
        image_input: the model input that takes the images (name or position); `None`
            picks the only input, the probe's own choice, or the only 4-D input.
        score_output: the output that holds the class scores (name or position); `None`
            picks the only output, or the only (batch, units) output.
        scores: whether the scores are needed (Grad-CAM, occlusion); when False an
            ambiguous `score_output=None` means "no scores".
        argument: the name of the probe argument, for messages.
        class_index: what a segmentation output's maps explain (`Probe.for_head`): `None`
            or an int, the labelled region of that class in each sample's mask, or (no
            masks, or `"predicted"`) the region the model predicts at each snapshot
            (`targets.RegionScore`). The binding itself does not depend on it: maps of
            other classes share its passes.
        slices: the depth slices a volume's pictures show at most.
    """
    names = graph.input_names
    if image_input is None and probe.inputs is not None:
        key = probe.image_key
        if (isinstance(key, str) and key in names) or (isinstance(key, int) and key < len(names)):
            image_input = key
    index = graph.image_input(image_input)
    extras = _extra_inputs(graph, probe, index, argument)
    check_probe_fits(probe, graph.input_shapes[index], argument)
    head = graph.head(score_output, required=scores)
    if head is not None:  # the labels (and a segmentation's masks) of the output explained
        # A class the output does not have is refused here, before `for_head` would make it
        # each segmentation sample's label (whose range then only switches kinds off).
        resolve_targets(None, class_index, head.num_classes, "class_index")
        probe = probe.for_head(head, class_index)
    binding = Binding(
        image_index=index,
        image_shape=probe.image_shape,
        extra_specs=tuple((tuple(a.shape[1:]), a.dtype.name) for a in extras),
        head=head,
        slices=slices,
    )
    images = tf.convert_to_tensor(np.asarray(probe.images, dtype=np.float32))
    return Bound(binding, images, tuple(tf.constant(a) for a in extras), probe)


def _extra_inputs(graph: ModelGraph, probe: Probe, index: int, argument: str) -> list:
    """The probe's arrays for the model's other inputs, in `model.inputs` order."""
    names = graph.input_names
    if len(names) == 1:
        if probe.inputs is not None and len(probe.inputs) > 1:
            raise ValueError(
                f"`{argument}` must give the one input of model {graph.model.name!r}. "
                f"Received: {len(probe.inputs)} inputs {list(probe.inputs)}"
            )
        return []
    listed = ", ".join(f"{n!r} {tuple(s)}" for n, s in zip(names, graph.input_shapes))
    if probe.inputs is None:
        raise ValueError(
            f"`{argument}` must give every input of model {graph.model.name!r} ({listed}): "
            "x as a dict keyed by input name or a list in input order, in (x,) or "
            "(x, labels). Received: one image array"
        )
    keys = names if isinstance(probe.image_key, str) else list(range(len(names)))
    missing = [k for k in keys if k not in probe.inputs]
    if missing or len(probe.inputs) != len(names):
        raise ValueError(
            f"`{argument}` must give every input of model {graph.model.name!r} ({listed}), "
            f"by name in a dict or by position in a list. Received: inputs {list(probe.inputs)}"
        )
    if keys[index] != probe.image_key:
        raise ValueError(
            f"`image_input` must be the same input in the model and the probe: the model's "
            f"image input is {names[index]!r} (position {index}), the probe's images are its "
            f"input {probe.image_key!r}. Pass `image_input` to choose."
        )
    extras = []
    for position, key in enumerate(keys):
        if position != index:
            array = probe.inputs[key]
            check_input_fits(array, graph.input_shapes[position], names[position], argument)
            extras.append(array)
    return extras
