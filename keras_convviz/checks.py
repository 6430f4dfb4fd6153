"""What a training shows before its first step and in the numbers `fit` already computes.

Many classic training bugs (the published benchmarks of DeepLocalize/DeepDiagnosis,
AUTOTRAINER and UMLAUT) are visible in the set-up itself: a softmax over one unit, a loss
that wants probabilities fed unbounded values, 0-255 pixels into a model without rescaling,
a learning rate far off the optimizer's own default, heavy dropout on feature maps, labels
of one class. Others show first in the loss Keras computes anyway: stuck at chance level,
growing by orders of magnitude, NaN.

Both are read as numbers, the way the snapshot rules read the health numbers: `setup_numbers`
at train begin (run `setup`) and `fit_numbers` from the `logs` of each epoch (run `fit`), so
the same `alerts.Rule`s, `Monitor`, alert records and `alerts={rule: False}` switches serve
them. They cost no pass of the model: a look at its layers, its compiled loss and optimizer,
and the probe's values.
"""

from __future__ import annotations

import inspect
import math

import keras
import numpy as np

from keras_convviz import _tags
from keras_convviz.core.graph import CONV_TYPES, _final_layer, output_activation
from keras_convviz.summary_io import Scalar

SETUP_RUN = _tags.SETUP
FIT_RUN = _tags.FIT

# Losses that read the output as probabilities unless `from_logits=True`.
_PROBABILITY_LOSSES = (
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
    "categorical_focal_crossentropy",
    "binary_focal_crossentropy",
)
# Losses that fit values, not classes.
_REGRESSION_LOSSES = (
    "mean_squared_error",
    "mean_absolute_error",
    "mean_squared_logarithmic_error",
    "huber",
    "log_cosh",
)
_ALIASES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "msle": "mean_squared_logarithmic_error",
}
# Layers that bring raw inputs into a model's range before its first weighted layer.
_RESCALING = (
    keras.layers.Rescaling,
    keras.layers.Normalization,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.Lambda,  # unknown arithmetic: assumed to rescale
)
_DROPOUT = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
)
# The numbers each part writes (the rules read them by these names).
SETUP_QUANTITIES = (
    "softmax_units",
    "unbounded_probabilities",
    "softmax_regression_loss",
    "input_max",
    "input_min",
    "input_rescaled",
    "trainable_weights",
    "learning_rate",
    "default_learning_rate",
    "dropout_rate",
    "label_classes",
    "label_max",
    "output_classes",
)
FIT_QUANTITIES = (
    "non_finite",
    "loss",
    "chance_loss",
    "smallest_loss",
    "loss_fell",
    "window_progress",
    "window_rises",
    "val_loss_over_best",
)
# A probe's labels are checked for "one class only" from this many on: four labels of two
# classes are one class one time in eight by chance.
MIN_LABELS_FOR_CLASS_CHECK = 8


def _snake(name: str) -> str:
    out = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return _ALIASES.get(out, out)


def loss_of(model, index: int, name: str) -> tuple[str | None, bool]:
    """The name of the loss compiled for output `index` (`name`) in snake case, and whether
    it reads logits (`from_logits=True`)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        loss = loss.get(name)
    elif isinstance(loss, (list, tuple)):
        loss = loss[index] if index < len(loss) else None
    if loss is None:
        return None, False
    if isinstance(loss, str):
        return _snake(loss), False
    from_logits = bool(getattr(loss, "from_logits", False))
    kwargs = getattr(loss, "_fn_kwargs", None) or {}
    from_logits = from_logits or bool(kwargs.get("from_logits", False))
    # A `LossFunctionWrapper` is named by its function, another `Loss` by its class.
    label = getattr(getattr(loss, "fn", None), "__name__", None) or type(loss).__name__
    if inspect.isfunction(loss):
        label = loss.__name__
    return _snake(label), from_logits


def _optimizer(model):
    optimizer = getattr(model, "optimizer", None)
    # A mixed-precision LossScaleOptimizer wraps the one that sets the learning rate.
    return getattr(optimizer, "inner_optimizer", optimizer)


def learning_rate(model) -> tuple[float, float] | None:
    """`(current learning rate, the optimizer's own default)`, or `None` when unknown."""
    optimizer = _optimizer(model)
    if optimizer is None:
        return None
    try:
        value = float(np.asarray(keras.ops.convert_to_tensor(optimizer.learning_rate)))
        default = inspect.signature(type(optimizer).__init__).parameters["learning_rate"].default
        return value, float(default)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _before_first_weights(graph) -> list:
    """The layers from the input up to the first conv or dense layer."""
    before = []
    for ref in graph.refs:
        if isinstance(ref.layer, (*CONV_TYPES, keras.layers.Dense)):
            break
        before.append(ref)
    return before


def setup_numbers(graph, probe, head) -> list[Scalar]:
    """The set-up's numbers, read by the `setup` rules (`alerts.RULES`): per output, its
    softmax width and whether its loss and activation disagree; the probe's value range and
    whether a layer rescales it; the learning rate against the optimizer's default; the
    rate of dropout on feature maps; the probe's label classes.

    Args:
        graph: the model's `ModelGraph`.
        probe: the probe (`Probe`), its labels for `head` where known.
        head: the explained output (`graph.Head`) or `None`.
    """
    model = graph.model
    out: list[Scalar] = []

    def number(subject: str, quantity: str, value: float) -> None:
        """`setup/<layer>/<quantity>`, or `setup/<quantity>` for the whole training."""
        assert quantity in SETUP_QUANTITIES, quantity
        out.append(Scalar("/".join(p for p in (SETUP_RUN, subject, quantity) if p), float(value)))

    for index, name in enumerate(graph.output_names):
        layer = _final_layer(model, index)
        path = next((r.path for r in graph.refs if r.layer is layer), layer.name)
        activation = output_activation(layer)
        activation = None if activation == "linear" else activation
        units = int(model.outputs[index].shape[-1])
        loss, from_logits = loss_of(model, index, name)
        if activation == "softmax":
            number(path, "softmax_units", units)
        if loss in _PROBABILITY_LOSSES and not from_logits:
            number(path, "unbounded_probabilities", activation not in ("softmax", "sigmoid"))
        if loss in _REGRESSION_LOSSES and activation == "softmax" and units > 1:
            number(path, "softmax_regression_loss", 1.0)

    images = np.asarray(probe.images)
    if np.issubdtype(images.dtype, np.number) and images.size:
        rescaled = any(isinstance(r.layer, _RESCALING) for r in _before_first_weights(graph))
        number("", "input_max", float(np.max(images)))
        number("", "input_min", float(np.min(images)))
        number("", "input_rescaled", rescaled)

    number("", "trainable_weights", len(model.trainable_weights))
    rate = learning_rate(model)
    if rate is not None:
        number("", "learning_rate", rate[0])
        number("", "default_learning_rate", rate[1])

    for ref in graph.refs:
        if isinstance(ref.layer, _DROPOUT) and graph.layout(ref) is not None:
            number(ref.path, "dropout_rate", float(ref.layer.rate))

    labels = getattr(probe, "labels", None)
    if head is not None and not head.dense and labels is not None:
        labels = np.asarray(labels)
        if labels.size >= MIN_LABELS_FOR_CLASS_CHECK:
            number("", "label_classes", len(np.unique(labels)))
        number("", "label_max", int(labels.max()))
        number("", "output_classes", head.num_classes)
    return out


# The window of epochs the plateau and oscillation rules look back over, and the relative
# change of the loss that counts as progress or as a rise within it (the "non-decreasing
# loss" check of the training-bug detectors uses 5 % over a window of 5).
WINDOW = 5
PROGRESS = 0.05


class FitNumbers:
    """The numbers of `fit`'s `logs` that the `fit` rules read, epoch by epoch.

    `non_finite` (logged numbers that are NaN or infinite), `loss`, `smallest_loss` (before
    this epoch), `chance_loss` (log K of a K-class classifier), `window_progress` (how much
    lower the smallest loss of the last `WINDOW` epochs is than the smallest before them,
    relative), `window_rises` (epochs of the last `WINDOW` whose loss rose by more than
    `PROGRESS` of itself), and with validation data `val_loss_over_best` (the validation
    loss over its best before this epoch) and `loss_fell` (1 when the training loss is at
    its smallest so far).

    Args:
        classes: the number of classes of the explained output when its loss is a
            cross-entropy over them (`None`: no chance level).
    """

    def __init__(self, classes: int | None):
        self.classes = classes
        self._losses: list[float] = []
        self._val_best: float | None = None

    def of(self, logs: dict | None) -> list[Scalar]:
        logs = dict(logs or {})
        out = []

        def number(quantity: str, value: float) -> None:
            assert quantity in FIT_QUANTITIES, quantity
            out.append(Scalar(f"{FIT_RUN}/{quantity}", float(value)))

        values = [float(v) for v in logs.values() if isinstance(v, (int, float, np.number))]
        number("non_finite", sum(not math.isfinite(v) for v in values))
        loss = logs.get("loss")
        if loss is None:
            return out
        loss = float(loss)
        number("loss", loss)
        if self.classes is not None and self.classes > 1:
            number("chance_loss", math.log(self.classes))
        if not math.isfinite(loss):
            return out
        past = self._losses
        if past:
            number("smallest_loss", min(past))
            number("loss_fell", loss < min(past))
        history = [*past, loss]
        if len(history) > WINDOW:
            before, window = min(history[:-WINDOW]), min(history[-WINDOW:])
            number("window_progress", 1 - window / before if before > 0 else 1.0)
            recent = history[-WINDOW - 1 :]
            rises = sum(b > a * (1 + PROGRESS) for a, b in zip(recent, recent[1:]))
            number("window_rises", rises)
        self._losses.append(loss)
        val_loss = logs.get("val_loss")
        if val_loss is not None and math.isfinite(float(val_loss)):
            if self._val_best is not None and self._val_best > 0:
                number("val_loss_over_best", float(val_loss) / self._val_best)
            self._val_best = min(float(val_loss), self._val_best or math.inf)
        return out


def chance_classes(graph, head) -> int | None:
    """K when the explained output is a K-class classifier trained with a cross-entropy
    (its loss at chance level is log K), else `None`."""
    if head is None or head.dense or head.regression:
        return None
    loss, _ = loss_of(graph.model, head.index, head.name)
    if loss not in _PROBABILITY_LOSSES:
        return None
    if head.binary or loss in ("binary_crossentropy", "binary_focal_crossentropy"):
        return 2 if head.binary else None  # multi-label sigmoid units: no single chance level
    return head.num_classes
