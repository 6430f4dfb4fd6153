"""Find the conv layers of a model (nested models too), resolve names, run it with taps.

The model is never rebuilt: `ModelGraph.run` walks the user's own Functional or Sequential
graph and records the outputs of the layers it is asked to watch, descending into nested
models. That is what lets a layer inside a `keras.applications` base be watched from the
outer model without the "Graph disconnected" error of `keras.Model(outer.inputs,
inner_layer.output)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_convviz.core import geometry

# Every Keras convolution; which of them a callback draws depends on whether its output lays
# out over the probe input (`core.geometry`), not on its rank.
CONV_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_POOLING_TYPES = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)
# Layers that mix tokens: past the last of them, a head that reads the class token gets no
# gradient from the other tokens, so token CAMs are taken at the last one's input.
_ATTENTION_TYPES = (
    keras.layers.MultiHeadAttention,
    keras.layers.GroupQueryAttention,
    keras.layers.Attention,
    keras.layers.AdditiveAttention,
)
_SQUASHING = ("softmax", "sigmoid")
# Layers that only rescale what a conv computed: a conv's activation may follow them
# (conv -> BatchNormalization -> ReLU, as ResNet and InceptionV3 build their blocks).
_NORMALISATION_TYPES = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.RMSNormalization,
    keras.layers.UnitNormalization,
)
_ACTIVATION_TYPES = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)
# The activations whose output is exactly 0 wherever their input is below a threshold: a
# channel of theirs that is never above 0 is dead (no gradient reaches its weights).
RECTIFIERS = ("relu", "relu6")
# A map must keep this many positions along each spatial axis to show where: a 1x1 map (a
# classifier conv after global pooling, a squeeze-excite branch) is one number per channel.
MIN_EXTENT = 2


@dataclass(frozen=True)
class LayerRef:
    """A layer of the model, addressed by its path from the top model.

    Attributes:
        path: `"layer"` for a top-level layer, `"inner_model/layer"` for a nested one.
        layer: the layer object itself.
    """

    path: str
    layer: keras.layers.Layer

    @property
    def output_shape(self) -> tuple | None:
        try:
            return tuple(self.layer.output.shape)
        except (AttributeError, ValueError, RuntimeError):
            return None


@dataclass(frozen=True)
class Head:
    """The model output read as scores: what a map's target (`core.targets`) is read from.

    A classifier's output `(batch, classes)` is its class scores; a per-position output
    `(batch, *spatial, classes)` (segmentation) holds them per position, and a target
    reads them over a region (`targets.RegionScore`).

    Attributes:
        index: the output's position in `model.outputs`.
        name: the output's name.
        layer: the layer that produces it (inside nested models too).
        binary: one sigmoid unit, scored as the two classes `[-z, z]`.
        num_classes: the number of scores.
        dense: the output has spatial axes (one set of class scores per position).
    """

    index: int
    name: str
    layer: keras.layers.Layer
    binary: bool
    num_classes: int
    dense: bool = False

    @property
    def regression(self) -> bool:
        """One linear unit: a value, explained as itself (`targets.Value`)."""
        return self.num_classes == 1 and not self.dense

    def scores(self, output: tf.Tensor) -> tf.Tensor:
        """The scores `(batch, *spatial, num_classes)` float32 from the output (before a
        final softmax/sigmoid): a binary unit z as `[-z, z]`."""
        scores = tf.cast(output, tf.float32)
        return tf.concat([-scores, scores], axis=-1) if self.binary else scores

    def output(self, scores: tf.Tensor) -> tf.Tensor:
        """The output as the model computes it (its final softmax or sigmoid applied to
        the `scores`), float32: what its loss is computed on."""
        if self.binary:
            return tf.sigmoid(scores[..., 1:])
        if isinstance(self.layer, keras.layers.Softmax) or activation_name(self.layer) == "softmax":
            return tf.nn.softmax(scores)
        if activation_name(self.layer) == "sigmoid":
            return tf.sigmoid(scores)
        return scores

    def probabilities(self, scores: tf.Tensor) -> tf.Tensor:
        """What the model outputs as probabilities, from class scores `(batch, classes)`.

        A binary head's [-z, z] gives [1 - sigmoid(z), sigmoid(z)]; a sigmoid (multi-label)
        head the sigmoid of each unit; a softmax head, or logits, the softmax.
        """
        if self.binary:
            return tf.nn.softmax(tf.concat([tf.zeros_like(scores[:, 1:]), scores[:, 1:]], -1))
        if activation_name(self.layer) == "sigmoid":
            return tf.sigmoid(scores)
        return tf.nn.softmax(scores)


class NotServed(ValueError):
    """A model that a callback cannot serve with its default arguments (no class scores,
    no layer of the input's layout): the callback switches itself off with one warning and
    training goes on. An argument the user gave that cannot work raises a plain
    `ValueError` instead."""


def check_backend() -> None:
    """Raise unless Keras runs on TensorFlow: the compiled core is a `tf.function`."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "keras_convviz needs the TensorFlow Keras backend (set KERAS_BACKEND=tensorflow "
            f"before importing keras). Received: backend {keras.backend.backend()!r}"
        )


def _is_graph_model(model) -> bool:
    return isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph")


def kernel_variable(layer) -> tf.Variable:
    """The TensorFlow variable of a conv layer's kernel (a separable conv's depthwise
    kernel), for a gradient tape."""
    separable = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
    kernel = layer.depthwise_kernel if isinstance(layer, separable) else layer.kernel
    return getattr(kernel, "value", kernel)  # a Keras variable wraps a tf.Variable


def activation_name(layer) -> str | None:
    """The name of the activation a layer applies (`"relu"`, `"softmax"`, ...), or `None`."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def output_activation(layer) -> str | None:
    """The name of the activation whose output a layer's output is: its own activation
    (`activation_name`), and for a `ReLU` layer `"relu"`, `"relu6"` (`max_value=6`) or
    `"leaky_relu"` (a negative slope), for a `Softmax` layer `"softmax"`."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.negative_slope) != 0.0:
            return "leaky_relu"
        return "relu6" if layer.max_value is not None and float(layer.max_value) == 6.0 else "relu"
    return activation_name(layer)


def rectifies(layer) -> bool:
    """Whether a layer's output is a ReLU's (`relu`, `relu6`, a `ReLU` layer without a
    negative slope): 0 wherever its input is below the threshold, so a channel that is
    never above 0 is dead. Leaky ReLU, ELU, GELU, swish and a linear output go below 0 and
    keep their gradient: a channel of theirs cannot die that way."""
    return output_activation(layer) in RECTIFIERS


def _has_activation(layer) -> bool:
    """Whether a layer applies a non-linearity of its own (an activation layer, or a
    conv's `activation=` other than linear)."""
    if isinstance(layer, _ACTIVATION_TYPES):
        return True
    return activation_name(layer) not in (None, "linear")


class ModelGraph:
    """The layers of a Keras model and a way to run it with some outputs recorded.

    Args:
        model: a built Sequential or Functional `keras.Model` (nested models allowed).
    """

    def __init__(self, model: keras.Model):
        check_backend()
        if not isinstance(model, keras.Model):
            raise TypeError(f"The model must be a `keras.Model`. Received: {type(model).__name__}")
        if not model.built:
            raise ValueError(
                f"The model {model.name!r} is not built yet. Build it (give it an `Input`, "
                "or call it once on data) before it is visualised."
            )
        if not _is_graph_model(model):
            raise TypeError(
                f"keras_convviz cannot reach the layers of the subclassed model {model.name!r} "
                f"({type(model).__name__}). Use a Functional or Sequential model, or call the "
                "functional explainers on a Functional sub-model."
            )
        self.model = model
        self.refs: list[LayerRef] = []
        self._collect(model, prefix="")
        self.input_names = _io_names(model, "_inputs_struct", model.inputs)
        self.output_names = _io_names(model, "_outputs_struct", model.outputs)
        self.input_shapes = [tuple(t.shape) for t in model.inputs]
        self.input_dtypes = [t.dtype for t in model.inputs]
        try:
            self.geometry = geometry.of_sample(self.input_shapes[self.image_input()][1:])
        except ValueError:  # several inputs: known once `image_input` is
            self.geometry = None
        self._layouts: dict[str, geometry.Geometry | None] = {}
        self._cuts: set[str] | None = None

    # ---- inputs and outputs ---------------------------------------------------------------

    def image_input(self, image_input=None) -> int:
        """The position of the image input among the model's inputs.

        Args:
            image_input: the input's name or position. `None` picks the only input, or the
                only 4-D (batch, height, width, channels) input of a multi-input model.
        """
        names, shapes = self.input_names, self.input_shapes
        listed = ", ".join(f"{n!r} {s}" for n, s in zip(names, shapes))
        if image_input is None:
            if len(names) == 1:
                return 0
            spatial = [i for i, s in enumerate(shapes) if geometry.of_sample(s[1:])]
            if len(spatial) == 1:
                return spatial[0]
            raise ValueError(
                f"`image_input` must name the image input of model {self.model.name!r}, which "
                f"has {len(names)} inputs: {listed}. Received: image_input=None"
            )
        index = _position(image_input, names, "image_input", f"inputs: {listed}")
        if geometry.of_sample(shapes[index][1:]) is None:
            raise ValueError(
                "`image_input` must name an input of samples with spatial axes and channels: "
                f"{', '.join(list(geometry.LAYOUTS.values())[:2])} or {geometry.LAYOUTS[3]}. "
                f"Input {names[index]!r} has shape {shapes[index]}. "
                f"Received: image_input={image_input!r}"
            )
        return index

    def head(self, score_output=None, required: bool = True) -> Head | None:
        """The output whose units are the class scores, and how to read it.

        Args:
            score_output: the output's name or position. `None` picks the only output, or
                the only (batch, units) output of a multi-output model.
            required: when False, an unresolvable `None` gives `None` instead of an error
                (feature maps need no scores).
        """
        names = self.output_names
        shapes = [tuple(t.shape) for t in self.model.outputs]
        listed = ", ".join(f"{n!r} {s}" for n, s in zip(names, shapes))
        if score_output is None:
            heads = [i for i, s in enumerate(shapes) if self._scores_classes(i, s)]
            if not heads:  # a segmentation model: its per-position class scores
                heads = [i for i, s in enumerate(shapes) if self._scores_positions(i, s)]
            if len(heads) == 1:
                index = heads[0]
            elif not required:
                return None
            elif len(names) == 1:
                raise NotServed(
                    f"model {self.model.name!r} has no (batch, classes) output to explain: its "
                    f"output {names[0]!r} has shape {shapes[0]}"
                )
            else:
                raise NotServed(
                    f"model {self.model.name!r} has {len(names)} outputs ({listed}), "
                    f"{len(heads)} of which read as class scores (batch, classes): pass "
                    "`score_output` to choose one"
                )
        else:
            index = _position(score_output, names, "score_output", f"outputs: {listed}")
        dense = len(shapes[index]) > 2 and self._scores_positions(index, shapes[index])
        if len(shapes[index]) != 2 and not dense:
            if not required and score_output is None:
                return None
            raise ValueError(
                "keras_convviz needs the scores as one (batch, classes) output"
                f"{' (choose it with `score_output`)' if len(names) > 1 else ''}. Output "
                f"{names[index]!r} of model {self.model.name!r} has shape {shapes[index]}. "
                f"Received: score_output={score_output!r}"
            )
        layer = _final_layer(self.model, index)
        units = int(shapes[index][-1])
        # One sigmoid unit is a binary classifier: its logit z is the evidence for class 1
        # and -z the evidence for class 0, so it is scored as two classes [-z, z].
        binary = units == 1 and activation_name(layer) == "sigmoid"
        return Head(index, names[index], layer, binary, 2 if binary else units, dense)

    def _scores_classes(self, index: int, shape: tuple) -> bool:
        """Whether an output reads as class scores: `(batch, units)` with more than one
        unit, or one sigmoid unit; one linear unit is a regression value."""
        if len(shape) != 2:
            return False
        return shape[-1] != 1 or activation_name(_final_layer(self.model, index)) == "sigmoid"

    def _scores_positions(self, index: int, shape: tuple) -> bool:
        """Whether an output reads as class scores per position over the image input
        (segmentation): `(batch, *spatial, units)` with the input's spatial size."""
        if self.geometry is None or len(shape) != self.geometry.rank + 2:
            return False
        spatial = self.input_shapes[self.image_input()][1:-1]
        if tuple(shape[1:-1]) != tuple(spatial):
            return False
        return shape[-1] != 1 or activation_name(_final_layer(self.model, index)) == "sigmoid"

    # ---- layer index ------------------------------------------------------------------

    def _collect(self, model, prefix: str) -> None:
        for layer in model.layers:
            path = prefix + layer.name
            if isinstance(layer, keras.Model) and _is_graph_model(layer):
                self._collect(layer, prefix=path + "/")
            else:
                self.refs.append(LayerRef(path, layer))

    def layout(self, ref: LayerRef, input_geometry=None) -> geometry.Geometry | None:
        """How a layer's output lays out over the image input (`input_geometry`, by
        default the model's): its rank's geometry, tokens on the patch grid of an earlier
        2-D layer, or `None` (a vector, another rank)."""
        input_geometry = input_geometry or self.geometry
        key = (ref.path, input_geometry)
        if key not in self._layouts:
            grids = []
            for other in self.refs:
                if other is ref:
                    break
                shape = other.output_shape
                if shape is not None and len(shape) == 4 and None not in shape[1:3]:
                    grids.insert(0, (int(shape[1]), int(shape[2])))
            self._layouts[key] = geometry.of_output(ref.output_shape, input_geometry, grids)
        return self._layouts[key]

    def producers(self, ref: LayerRef) -> list[LayerRef]:
        """The layers whose outputs a layer takes as inputs (within its own model)."""
        by_layer = {id(r.layer): r for r in self.refs}
        found = []
        for node in getattr(ref.layer, "_inbound_nodes", ()):
            for tensor in keras.tree.flatten(getattr(node, "input_tensors", ())):
                history = getattr(tensor, "_keras_history", None)
                producer = by_layer.get(id(getattr(history, "operation", None)))
                if producer is not None and producer not in found:
                    found.append(producer)
        return found

    def consumers(self, ref: LayerRef) -> list[LayerRef]:
        """The layers that take a layer's output as an input (within its own model): the
        inverse of `producers`."""
        by_layer = {id(r.layer): r for r in self.refs}
        found = []
        for operation in _consuming_operations(ref.layer):
            consumer = by_layer.get(id(operation))
            if consumer is not None and consumer not in found:
                found.append(consumer)
        return found

    def activated(self, ref: LayerRef) -> LayerRef:
        """The layer whose output is this layer's output after its activation.

        A layer with an activation of its own (a conv with `activation="relu"`, an
        activation layer) is its own. Otherwise the activation layer that its output flows
        into alone, through normalisation layers each of which is the only consumer of the
        one before (conv -> BatchNormalization -> ReLU). A layer with none (a linear
        projection whose output is added to a residual, a model's last layer) is its own.
        """
        if _has_activation(ref.layer):
            return ref
        step = ref
        while True:
            operations = _consuming_operations(step.layer)
            consumers = self.consumers(step)
            # Exactly one consumer, and a layer we know: a second consumer (a residual
            # sum, a functional op such as `x + 3`) also reads the output before it.
            if len(operations) != 1 or len(consumers) != 1:
                return ref
            step = consumers[0]
            if isinstance(step.layer, _ACTIVATION_TYPES):
                return step
            if not isinstance(step.layer, _NORMALISATION_TYPES):
                return ref
            if _has_activation(step.layer):  # a normalisation layer's own activation
                return step

    def rectified(self, ref: LayerRef) -> LayerRef | None:
        """The layer whose output is this layer's output through a ReLU (`activated`, when
        that is of the ReLU family, see `rectifies`), or `None`: where a channel can die."""
        after = self.activated(ref)
        return after if rectifies(after.layer) else None

    def extent(self, ref: LayerRef, input_geometry=None) -> tuple[int | None, ...] | None:
        """The sizes of a layer's output along the spatial axes it lays out on (tokens:
        their patch grid), `None` for a size the model leaves free; `None` when the output
        does not lay out over the input."""
        layout = self.layout(ref, input_geometry)
        if layout is None:
            return None
        if layout.is_tokens:
            return tuple(layout.grid)
        return tuple(None if d is None else int(d) for d in ref.output_shape[1:-1])

    def has_extent(self, ref: LayerRef, input_geometry=None) -> bool:
        """Whether a layer's output lays out over the input with at least `MIN_EXTENT`
        positions along each spatial axis (a size the model leaves free counts as
        enough): a map that can show where."""
        sizes = self.extent(ref, input_geometry)
        return sizes is not None and all(d is None or d >= MIN_EXTENT for d in sizes)

    def stage_layers(self, refs: list[LayerRef], input_geometry=None) -> list[LayerRef] | None:
        """One layer per resolution stage of `refs` (layers in graph order that lay out
        over the input, e.g. `conv_layers`): the last before the resolution drops.

        Layers without `MIN_EXTENT` positions along each axis are left out (a
        squeeze-excite branch's convs run on 1x1 maps). A stage is read from the smallest
        resolution reached so far, so the full-resolution branch of a reduction block
        (InceptionV3) stays in the stage its block reduces to; after the smallest
        resolution (a decoder going back up) from the smallest one still to come. `None`
        where the model leaves a size free: its stages are known only on data.
        """
        refs = [r for r in refs if self.has_extent(r, input_geometry)]
        sizes = [self.extent(r, input_geometry) for r in refs]
        if any(None in s for s in sizes):
            return None
        if not refs:
            return []
        positions = [int(np.prod(s)) for s in sizes]
        lowest = len(positions) - 1 - positions[::-1].index(min(positions))
        stage = list(np.minimum.accumulate(positions[: lowest + 1]))
        stage += list(np.minimum.accumulate(positions[lowest + 1 :][::-1])[::-1])
        return [r for i, r in enumerate(refs) if i + 1 == len(refs) or stage[i + 1] != stage[i]]

    def cuts(self) -> set[str]:
        """Paths of the layers that every path from the layers before them (in graph
        order) to the layers after them passes through: a block's output, not a branch or
        a residual inside it. The model's inputs are sources, not layers before: a second
        input joined late does not make the image branch's layers lose this."""
        if self._cuts is None:
            order = {id(r.layer): i for i, r in enumerate(self.refs)}
            earliest = []
            for ref in self.refs:
                sources = [
                    order[id(p.layer)]
                    for p in self.producers(ref)
                    if not isinstance(p.layer, keras.layers.InputLayer)
                ]
                earliest.append(min(sources, default=len(self.refs)))
            self._cuts = set()
            reach = len(self.refs)  # the earliest layer read by any layer after this one
            for i in range(len(self.refs) - 1, -1, -1):
                if reach >= i:
                    self._cuts.add(self.refs[i].path)
                reach = min(reach, earliest[i])
        return self._cuts

    def token_layers(self, input_geometry=None) -> list[LayerRef]:
        """A vision transformer's block outputs on the patch grid: the last residual sum
        (`Add`) of tokens before each attention layer, and the last one overall; every such
        sum when the model has no attention layer."""
        sums = [
            r
            for r in self.refs
            if isinstance(r.layer, keras.layers.Add)
            and (layout := self.layout(r, input_geometry)) is not None
            and layout.is_tokens
        ]
        attention = [i for i, r in enumerate(self.refs) if isinstance(r.layer, _ATTENTION_TYPES)]
        if not sums or not attention:
            return sums
        order = {r.path: i for i, r in enumerate(self.refs)}
        picked = []
        for index in attention:
            before = [r for r in sums if order[r.path] < index]
            if before and before[-1] not in picked:
                picked.append(before[-1])
        if sums[-1] not in picked:
            picked.append(sums[-1])
        return picked

    def conv_layers(self, input_geometry=None) -> list[LayerRef]:
        """The convolutions whose output lays out over the image input, in graph order."""
        return [
            r
            for r in self.refs
            if isinstance(r.layer, CONV_TYPES)
            and (layout := self.layout(r, input_geometry)) is not None
            and not layout.is_tokens
        ]

    def skipped_convs(self, input_geometry=None) -> list[str]:
        """Paths of the convolutions whose output does not lay out over the image input
        (a 1-D conv inside a model of images), which the views leave out."""
        shown = {r.path for r in self.conv_layers(input_geometry)}
        convs = [r for r in self.refs if isinstance(r.layer, CONV_TYPES)]
        return [r.path for r in convs if r.path not in shown]

    def find(self, name: str, argument: str) -> LayerRef:
        """Resolve a layer by path (`"base/conv"`) or by a plain name that is unique."""
        if not isinstance(name, str):
            raise TypeError(
                f"`{argument}` must name layers by string. Received: {argument}={name!r}"
            )
        matches = [r for r in self.refs if r.path == name]
        if not matches:
            matches = [r for r in self.refs if r.layer.name == name]
        if len(matches) > 1:
            raise ValueError(
                f"`{argument}`: the name {name!r} is used by several nested layers; give its "
                f"path instead, one of {[r.path for r in matches]}. Received: {argument}={name!r}"
            )
        if not matches:
            nested = sorted({r.path.rsplit("/", 1)[0] for r in self.refs if "/" in r.path})
            where = f" Nested models (address their layers as 'model/layer'): {nested}." * bool(
                nested
            )
            raise ValueError(
                f"`{argument}` must name layers of model {self.model.name!r}. No layer is "
                f"called {name!r}. Conv layers: {self._conv_names()}.{where} Received: "
                f"{argument}={name!r}"
            )
        return matches[0]

    def find_spatial(self, name: str, argument: str, input_geometry=None) -> LayerRef:
        """Resolve a layer whose output lays out over the image input."""
        ref = self.find(name, argument)
        if self.layout(ref, input_geometry) is None:
            known = input_geometry or self.geometry
            where = known.describe() if known is not None else "spatial"
            raise ValueError(
                f"`{argument}` must name layers whose output lays out over the {where} input "
                f"(the input's spatial axes, or tokens on a patch grid). Layer {ref.path!r} "
                f"has output shape {ref.output_shape}. Conv layers: {self._conv_names()}. "
                f"Received: {argument}={name!r}"
            )
        return ref

    def _conv_names(self) -> list[str]:
        return [r.path for r in self.conv_layers()]

    def default_cam_layer(self, input_geometry=None, head: Head | None = None) -> LayerRef:
        """The layer a CAM map explains by default (see `cam_layer_choice`)."""
        return self.cam_layer_choice(input_geometry, head)[0]

    def cam_layer_choice(
        self, input_geometry=None, head: Head | None = None
    ) -> tuple[LayerRef, str | None]:
        """The layer a CAM map explains by default, and why, where that is not plainly the
        last layer that lays out over the input.

        A CNN's last layer before the head whose output keeps at least `MIN_EXTENT`
        positions along each spatial axis (pooling layers skipped), after its activation
        (`activated`): its last conv block. A 1x1 map (a classifier conv after global
        pooling, as MobileNet's `conv_preds`) is one number per channel, and a map there is
        constant. For tokens, the input of the last attention layer (a vision transformer's
        last block's first norm, as pytorch-grad-cam advises): after it a head that reads
        the class token sees no other token, and the map there would be empty. A
        segmentation head's own output layer (`head`) is not a candidate: the map explains
        the layers before it.

        Returns:
            `(layer, reason)`: `reason` is one sentence saying which layer and why when
            later layers that lay out over the input were passed over, else `None`.
        """
        candidates = [
            r
            for r in self.refs
            if self.layout(r, input_geometry) is not None
            # The input itself is no layer's view (its map is saliency), and no pass
            # records it.
            and not isinstance(r.layer, (_POOLING_TYPES, keras.layers.InputLayer))
            and (head is None or r.layer is not head.layer)
        ]
        if not candidates:
            raise NotServed(
                f"model {self.model.name!r} has no layer whose output lays out over its "
                "input's spatial axes, so there is nothing for a CAM map to look at"
            )
        wide = [r for r in candidates if self.has_extent(r, input_geometry)]
        if not wide:
            raise NotServed(
                f"model {self.model.name!r} has no layer whose output keeps at least "
                f"{MIN_EXTENT} positions along each of its input's spatial axes, so a CAM map "
                "cannot show where"
            )
        order = {r.path: i for i, r in enumerate(self.refs)}

        def size(ref: LayerRef) -> str:
            return "x".join("?" if d is None else str(d) for d in self.extent(ref, input_geometry))

        if self.layout(candidates[-1], input_geometry).is_tokens:
            attention = [r for r in self.refs if isinstance(r.layer, _ATTENTION_TYPES)]
            if attention:
                fed = [r for r in self.producers(attention[-1]) if r in wide]
                if fed:
                    return fed[-1], (
                        f"explains layer {fed[-1].path!r} (tokens on a {size(fed[-1])} grid), "
                        f"the input of the last attention layer {attention[-1].path!r}: past "
                        "it a head that reads the class token sees no other token"
                    )
        # A block's output, not a branch inside it (InceptionV3's reduction blocks run
        # branches at the old resolution after the block output before them).
        cuts = self.cuts()
        chosen = ([r for r in wide if r.path in cuts] or wide)[-1]
        after = self.activated(chosen)
        if after is not chosen and after in wide:
            chosen = after
        passed = [r for r in candidates if order[r.path] > order[chosen.path]]
        if not passed:
            return chosen, None
        narrow = [r for r in passed if r not in wide]
        later = [r for r in narrow if r.path in cuts] or narrow or passed
        named = ", ".join(f"{r.path!r} ({size(r)})" for r in later[:3])
        named += f" and {len(later) - 3} more" * (len(later) > 3)
        why = (
            f"later ones ({named}) have fewer, where a map is constant"
            if narrow
            else f"the layers after it ({named}) are branches beside it"
        )
        which = "output every path to the head passes through" if chosen.path in cuts else "layer"
        return chosen, (
            f"explains layer {chosen.path!r} ({size(chosen)}), the last {which} with at least "
            f"{MIN_EXTENT} positions along each spatial axis; {why}"
        )

    # ---- running ------------------------------------------------------------------------

    def run(
        self,
        inputs: list,
        taps: dict[str, keras.layers.Layer],
        head: Head | None = None,
        stop_at: LayerRef | None = None,
        wrap=None,
    ):
        """Run the model in inference mode and record the outputs of some layers.

        Args:
            inputs: one tensor per model input, in `model.inputs` order.
            taps: path -> layer to record.
            head: the score output to return, with the values before a final
                softmax/sigmoid (a saturated softmax has near-zero gradients); `None` returns
                no scores.
            stop_at: a layer at which the run stops: the layers after it are not run, and
                `recorded` holds its output (`stop_at.path`) and its output before its own
                activation (`stop_at.path + PRE_ACTIVATION`); no scores are returned.
            wrap: `None`, or `wrap(op, args, kwargs, leaf) -> outputs`, called for every
                leaf operation (nested models are walked into) instead of `leaf(*args,
                **kwargs)`: how incremental occlusion records the graph it replays.

        Returns:
            `(scores, recorded)`: the head's scores (`Head.scores`: `(batch, classes)`,
            per position for a dense head), or `None`, and a dict path -> layer output.
        """
        by_id = {id(layer): path for path, layer in taps.items()}
        recorded: dict[str, tf.Tensor] = {}
        final = head.layer if head is not None else None
        stop = stop_at.layer if stop_at is not None else None

        def call(op, *args, **kwargs):
            if "training" in getattr(op, "_call_context_args", ()):
                kwargs["training"] = False
            if isinstance(op, keras.Model) and _is_graph_model(op):
                out = run_model(op, args[0] if args else kwargs.pop("inputs"))
            elif op is stop:
                pre, out = _call_with_pre_activation(op, args, kwargs)
                recorded[stop_at.path + PRE_ACTIVATION] = pre
                recorded[stop_at.path] = out
                raise _Reached
            else:
                leaf = _bind(_call_without_squashing, op) if op is final else op
                out = leaf(*args, **kwargs) if wrap is None else wrap(op, args, kwargs, leaf)
            if id(op) in by_id:
                recorded[by_id[id(op)]] = out
            return out

        def run_model(model, inputs):
            if isinstance(model, keras.Sequential):
                x = inputs
                for layer in model.layers:
                    x = call(layer, x)
                return x
            flat = model._standardize_inputs(inputs)
            out = model._run_through_graph(flat, operation_fn=lambda op: _bind(call, op))
            return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out

        model = self.model
        try:
            if isinstance(model, keras.Sequential):
                outputs = run_model(model, inputs[0])
            else:
                outputs = run_model(
                    model, keras.tree.pack_sequence_as(model._inputs_struct, inputs)
                )
        except _Reached:
            return None, recorded
        if stop is not None:
            raise ValueError(
                f"Layer {stop_at.path!r} was not reached when running model "
                f"{self.model.name!r} on its image input."
            )
        missing = set(taps) - set(recorded)
        if missing:
            raise ValueError(
                f"Layers {sorted(missing)} were not reached when running model "
                f"{self.model.name!r} on its image input."
            )
        if head is None:
            return None, recorded
        return head.scores(keras.tree.flatten(outputs)[head.index]), recorded


def _io_names(model, struct_name: str, tensors) -> list[str]:
    """Names of a model's inputs or outputs, in `model.inputs`/`model.outputs` order."""
    struct = getattr(model, struct_name, None)
    if isinstance(struct, dict):
        return keras.tree.flatten({key: key for key in struct})
    names = getattr(model, "output_names", None) if struct_name == "_outputs_struct" else None
    if names and len(names) == len(tensors):
        return list(names)
    return [t.name for t in tensors]


def _position(value, names: list[str], argument: str, listed: str) -> int:
    if isinstance(value, str) and value in names:
        return names.index(value)
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if is_int and 0 <= value < len(names):
        return int(value)
    raise ValueError(
        f"`{argument}` must be the name or position of one of the model's {listed}. "
        f"Received: {argument}={value!r}"
    )


def _consuming_operations(layer) -> list:
    """The operations (layers, and functional ops such as `x + 3`) that take a layer's
    output as an input in the graphs it was called in, each once."""
    found = []
    for node in getattr(layer, "_outbound_nodes", ()):
        operation = getattr(node, "operation", None)
        if operation is not None and all(operation is not f for f in found):
            found.append(operation)
    return found


def _final_layer(model, index: int):
    """The layer that produces a model output, inside nested models too."""
    while True:
        if isinstance(model, keras.Sequential):
            layer = model.layers[-1]
        else:
            history = model.outputs[index]._keras_history
            layer, index = history.operation, history.tensor_index
        if isinstance(layer, keras.Model) and _is_graph_model(layer):
            model = layer
            continue
        return layer


def _bind(call, op):
    def bound(*args, **kwargs):
        return call(op, *args, **kwargs)

    return bound


# The key suffix under which `ModelGraph.run(..., stop_at=ref)` records the layer's output
# before its own activation.
PRE_ACTIVATION = ":pre_activation"


class _Reached(Exception):
    """Raised inside `ModelGraph.run` once the `stop_at` layer has run: the rest is skipped."""


def _call_with_pre_activation(layer, args, kwargs):
    """Call a layer, returning `(pre, out)`: its output before its own activation (a conv
    layer's `activation="relu"`) and its output. Layers without one give `(out, out)`.

    The activation is swapped out only while the layer is called (during tracing) and put
    back at once, so the user's model is unchanged.
    """
    activation = getattr(layer, "activation", None)
    if activation is None or activation_name(layer) in (None, "linear"):
        out = layer(*args, **kwargs)
        return out, out
    if isinstance(layer, keras.layers.Activation):
        return args[0], layer(*args, **kwargs)
    try:
        layer.activation = keras.activations.linear
        pre = layer(*args, **kwargs)
    finally:
        layer.activation = activation
    return pre, activation(pre)


def _call_without_squashing(layer, *args, **kwargs):
    """Call the final layer, skipping a softmax/sigmoid it applies.

    This runs only while the compiled pass is being traced; the activation is restored at
    once, so the user's model is unchanged afterwards.
    """
    if isinstance(layer, keras.layers.Softmax):
        return args[0]
    if activation_name(layer) not in _SQUASHING:
        return layer(*args, **kwargs)
    if isinstance(layer, keras.layers.Activation):
        return args[0]
    saved = layer.activation
    try:
        layer.activation = keras.activations.linear
        return layer(*args, **kwargs)
    finally:
        layer.activation = saved
