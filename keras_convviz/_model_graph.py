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
import tensorflow as tf

CONV2D_TYPES = (
    keras.layers.Conv2D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2DTranspose,
)
# Convolutions without a 2-D spatial output: not drawn yet, and never skipped silently.
OTHER_CONV_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.SeparableConv1D,
    keras.layers.DepthwiseConv1D,
)
_POOLING_TYPES = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
)
_SQUASHING = ("softmax", "sigmoid")


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

    @property
    def is_spatial(self) -> bool:
        shape = self.output_shape
        return shape is not None and len(shape) == 4


def check_backend() -> None:
    """Raise unless Keras runs on TensorFlow: the compiled core is a `tf.function`."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "keras_convviz needs the TensorFlow Keras backend (set KERAS_BACKEND=tensorflow "
            f"before importing keras). Received: backend {keras.backend.backend()!r}"
        )


def _is_graph_model(model) -> bool:
    return isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph")


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


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
        self.final_layer = self._final_layer(model)
        if len(model.inputs or []) != 1:
            raise ValueError(
                f"keras_convviz needs a model with one image input. Model {model.name!r} has "
                f"{len(model.inputs or [])} inputs."
            )
        self.input_shape = tuple(model.inputs[0].shape)
        self.input_dtype = model.inputs[0].dtype
        outputs = model.outputs
        if len(outputs) != 1 or len(outputs[0].shape) != 2:
            shapes = [tuple(o.shape) for o in outputs]
            raise ValueError(
                "keras_convviz needs a model whose output is one (batch, classes) tensor of "
                f"scores. Model {model.name!r} has outputs of shapes {shapes}."
            )
        units = int(outputs[0].shape[-1])
        # One sigmoid unit is a binary classifier: its logit z is the evidence for class 1
        # and -z the evidence for class 0, so it is scored as two classes [-z, z].
        self.binary = units == 1 and _activation_name(self.final_layer) == "sigmoid"
        self.num_classes = 2 if self.binary else units

    # ---- layer index ------------------------------------------------------------------

    def _collect(self, model, prefix: str) -> None:
        for layer in model.layers:
            path = prefix + layer.name
            if isinstance(layer, keras.Model) and _is_graph_model(layer):
                self._collect(layer, prefix=path + "/")
            else:
                self.refs.append(LayerRef(path, layer))

    @staticmethod
    def _final_layer(model):
        """The layer that produces the model's (first) output, inside nested models too."""
        while True:
            if isinstance(model, keras.Sequential):
                layer = model.layers[-1]
            else:
                layer = model.outputs[0]._keras_history.operation
            if isinstance(layer, keras.Model) and _is_graph_model(layer):
                model = layer
                continue
            return layer

    @property
    def ends_in_squashing(self) -> bool:
        """True when the score output passes through a final softmax or sigmoid."""
        return isinstance(self.final_layer, keras.layers.Softmax) or (
            _activation_name(self.final_layer) in _SQUASHING
        )

    def conv_layers(self) -> list[LayerRef]:
        """The 2-D convolution layers with a spatial (4-D) output, in graph order."""
        return [r for r in self.refs if isinstance(r.layer, CONV2D_TYPES) and r.is_spatial]

    def skipped_convs(self) -> list[str]:
        """Paths of 1-D and 3-D convolutions, which the 2-D views leave out."""
        return [r.path for r in self.refs if isinstance(r.layer, OTHER_CONV_TYPES)]

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
            raise ValueError(
                f"`{argument}` must name layers of model {self.model.name!r}. No layer is "
                f"called {name!r}. Conv layers: {self._conv_names()}. Received: "
                f"{argument}={name!r}"
            )
        return matches[0]

    def find_spatial(self, name: str, argument: str) -> LayerRef:
        ref = self.find(name, argument)
        if not ref.is_spatial:
            raise ValueError(
                f"`{argument}` must name layers with 4-D (batch, height, width, channels) "
                f"outputs. Layer {ref.path!r} has output shape {ref.output_shape}. Conv layers: "
                f"{self._conv_names()}. Received: {argument}={name!r}"
            )
        return ref

    def _conv_names(self) -> list[str]:
        return [r.path for r in self.conv_layers()]

    def default_cam_layer(self) -> LayerRef:
        """The last layer with a 4-D output before the head, pooling layers skipped."""
        candidates = [
            r for r in self.refs if r.is_spatial and not isinstance(r.layer, _POOLING_TYPES)
        ]
        if not candidates:
            raise ValueError(
                f"Model {self.model.name!r} has no layer with a 4-D (batch, height, width, "
                "channels) output, so there is nothing for Grad-CAM to look at."
            )
        return candidates[-1]

    def scores(self, outputs: tf.Tensor) -> tf.Tensor:
        """Class scores `(batch, num_classes)` in float32 from the model's output."""
        scores = tf.cast(outputs, tf.float32)
        if self.binary:
            scores = tf.concat([-scores, scores], axis=-1)
        return scores

    # ---- running ------------------------------------------------------------------------

    def run(self, images: tf.Tensor, taps: dict[str, keras.layers.Layer], scores: bool = True):
        """Run the model in inference mode and record the outputs of some layers.

        Args:
            images: `(batch, height, width, channels)` model input.
            taps: path -> layer to record.
            scores: when True and the model ends in a softmax/sigmoid, return the values
                before it (a saturated softmax has near-zero gradients).

        Returns:
            `(outputs, recorded)`: the model output `(batch, classes)` and a dict path ->
            layer output.
        """
        by_id = {id(layer): path for path, layer in taps.items()}
        recorded: dict[str, tf.Tensor] = {}

        def call(op, *args, **kwargs):
            if "training" in getattr(op, "_call_context_args", ()):
                kwargs["training"] = False
            if isinstance(op, keras.Model) and _is_graph_model(op):
                out = run_model(op, args[0] if args else kwargs.pop("inputs"))
            elif scores and op is self.final_layer:
                out = _call_without_squashing(op, args, kwargs)
            else:
                out = op(*args, **kwargs)
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

        outputs = run_model(self.model, images)
        missing = set(taps) - set(recorded)
        if missing:
            raise ValueError(
                f"Layers {sorted(missing)} were not reached when running model "
                f"{self.model.name!r} on its image input."
            )
        return outputs, recorded


def _bind(call, op):
    def bound(*args, **kwargs):
        return call(op, *args, **kwargs)

    return bound


def _call_without_squashing(layer, args, kwargs):
    """Call the final layer, skipping a softmax/sigmoid it applies.

    This runs only while the compiled pass is being traced; the activation is restored at
    once, so the user's model is unchanged afterwards.
    """
    if isinstance(layer, keras.layers.Softmax):
        return args[0]
    if _activation_name(layer) not in _SQUASHING:
        return layer(*args, **kwargs)
    if isinstance(layer, keras.layers.Activation):
        return args[0]
    saved = layer.activation
    try:
        layer.activation = keras.activations.linear
        return layer(*args, **kwargs)
    finally:
        layer.activation = saved
