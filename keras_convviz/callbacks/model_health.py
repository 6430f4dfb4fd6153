"""`ModelHealth`: the model's predictions on the probe, as numbers over epochs."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_convviz import _tags, kinds
from keras_convviz.callbacks.maps import MapCallback
from keras_convviz.core.graph import NotServed, kernel_variable, output_activation
from keras_convviz.core.needs import Activations, Classes, ClassScores, Const
from keras_convviz.core.passes import compile_once, count_non_finite
from keras_convviz.health import (
    BOUNDED,
    LossGradients,
    Segmentation,
    activation_health,
    gradient_ratios,
    no_gradient,
    trains,
    weight_health,
)
from keras_convviz.summary_io import Scalar


class ModelHealth(MapCallback):
    """Writes what the model predicts on the probe: accuracy, confidence, each image's
    target probability, and how many images share the most common prediction.

    Numbers only, from the logits of the shared pass (no extra model call); the alerts of
    `ConvViz` read them (a collapsed classifier predicts one class for every probe image).

    With probe labels, on a single-output model compiled with a loss, it also takes the
    loss on the probe (`health/loss`, from the pass's own forward). With `gradients=True`
    it also takes the loss's gradient with respect to the kernel of every trainable layer
    (conv, dense, ...; one more backward pass, to the first layer: it about doubles the
    compute of a snapshot): `health/<layer>/gradient_norm`, and
    `health/<layer>/gradient_ratio`, the layer's norm over the largest norm of the
    trainable layers after it in graph order (orders of magnitude below 1 on the early
    layers: vanishing gradients, which the `vanishing_gradients` alert watches). Where no
    gradient reaches a layer at all (its norm is exactly 0: cut off from the loss, or
    behind dead ReLUs) there is no ratio: `health/<layer>/no_gradient` is 1 instead.

    The trainable layers with a kernel that no picture shows (dense layers, and convs
    whose output does not lay out over the input) are watched here, by the same numbers
    as `FeatureMaps` and `FilterWeights` give the conv layers they draw:
    `health/<layer>/max_activation` of the layer's output after its activation (through
    normalisation layers, as `ModelGraph.activated` finds it), `dead_fraction` where that
    activation is a ReLU (relu, relu6; units never above 0 on any probe image),
    `saturated_fraction` where it is a bounded one (sigmoid, tanh, ...; not on the model's
    output, whose confident probabilities are no fault), and from the second snapshot on
    `relative_update`, ||W - W_prev|| / ||W_prev|| of the kernel since the previous one
    (over 65536 evenly spaced weights of a larger kernel, `update_sample`, so a large
    dense head is not copied whole at every snapshot).

    Tags, in the run `log_dir/health`: `health/accuracy` (the fraction of probe images
    predicted as their label; only with labels), `health/confidence` (the mean probability
    of the predicted class), `health/majority_fraction` (the fraction of probe images
    predicted as the most common class; with labels also `health/label_majority_fraction`,
    the same for the labels), `health/image_<i>/probability` (the target's probability).
    Step = epoch - 1 (Keras's "Epoch 1" is step 0).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: images, `(images, labels)` or a `tf.data.Dataset` (first batch).
        class_index: int, `"predicted"` or None. The target class for every image.
            Defaults to `None`: each image's label when the probe has labels, else its
            predicted class.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input, score_output: for models with several inputs or outputs, as for
            `GradCAM`.
        gradients: bool. Also the norms of the loss's gradient per conv layer (needs
            labels and a compiled loss). Defaults to `False`.
    """

    run_name = kinds.HEALTH.run

    def __init__(
        self,
        log_dir,
        probe,
        class_index: int | str | None = None,
        freq: int = 1,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
        gradients: bool = False,
    ):
        super().__init__(
            log_dir, probe, class_index, None, freq, on_error, image_input, score_output
        )
        if not isinstance(gradients, bool):
            raise TypeError(f"`gradients` must be True or False. Received: gradients={gradients!r}")
        self.gradients = gradients

    def _prepare(self, model):
        shared, _ = self._join_target(model)
        if self._head.regression:
            raise NotServed(
                f"the output {self._head.name!r} is one linear unit, a value with no classes "
                "to score"
            )
        self._labels = None if self.probe.labels is None else tf.constant(self.probe.labels)
        self._render = compile_once(self._compute, autograph=False)
        graph = shared.core.graph
        watched = unpictured_layers(graph, shared.bound.binding.geometry)
        trained = trains(model, [ref.layer for ref in watched])
        outputs = {id(t) for t in model.outputs}
        self._units = {}
        for ref, train in zip(watched, trained):
            if not train:
                continue
            after = graph.activated(ref)
            activation = output_activation(after.layer)
            if activation in BOUNDED and id(after.layer.output) in outputs:
                activation = None  # a confident sigmoid output is no saturated layer
            self._units[ref.path] = (ref, Activations(after), activation)
        # The kernels at the last snapshot, for the relative update: kept across `fit`s of
        # the same model, dropped for another model.
        if getattr(self, "_previous_model", None) is not model:
            self._previous = {}
        self._previous_model = model
        self._gradients = None
        if _has_plain_loss(model) and self.probe.targets is not None:
            refs = ()
            if self.gradients:
                convs = graph.conv_layers(shared.bound.binding.geometry)
                kernels = {r.path for r in convs} | set(self._units)
                candidates = [r for r in graph.refs if r.path in kernels]
                refs = tuple(
                    r for r, t in zip(candidates, trains(model, [r.layer for r in candidates])) if t
                )
            self._gradients = LossGradients(refs, Const(self.probe.targets, batched=True))
        # A segmentation head is judged per position: pixel accuracy and mean IoU.
        self._segmentation = None
        if self._head.dense and self.probe.masks is not None:
            self._segmentation = Segmentation(Const(self.probe.masks, batched=True))
            self._labels = None  # each sample's explained class is no label to score

    def needs(self):
        extra = tuple(n for n in (self._gradients, self._segmentation) if n is not None)
        units = tuple(dict.fromkeys(need for _, need, _ in self._units.values()))
        return (*super().needs(), *extra, *units)

    def _capture(self, epoch):
        # The kernels are read now, before the next training step changes them.
        return super()._capture(epoch), {
            path: update_sample(kernel_variable(ref.layer))
            for path, (ref, _, _) in self._units.items()
        }

    def _compute(self, scores, targets):
        probabilities = self._head.probabilities(scores)
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        out = {
            "confidence": tf.reduce_mean(tf.reduce_max(probabilities, axis=-1)),
            "majority_fraction": majority_fraction(predicted),
            "probability": tf.gather(probabilities, targets, axis=1, batch_dims=1),
        }
        if self._labels is not None:
            out["accuracy"] = tf.reduce_mean(tf.cast(predicted == self._labels, tf.float32))
            out["label_majority_fraction"] = majority_fraction(self._labels)
        return out

    def _snapshot(self, epoch, captured):
        result, kernels = captured
        numbers = self._render(result[ClassScores(self._target)], result[Classes(self._target)])
        run = self.run_name
        items = [
            Scalar(_tags.tag(run, name), value)
            for name, value in numbers.items()
            if name != "probability"
        ]
        for i in range(self.probe.size):
            items.append(Scalar(_tags.tag(run, i, "probability"), numbers["probability"][i]))
        if self._segmentation is not None:
            scores = result[self._segmentation]
            items.append(Scalar(_tags.tag(run, "pixel_accuracy"), scores[0]))
            items.append(Scalar(_tags.tag(run, "mean_iou"), scores[1]))
        if self._gradients is not None:
            values = result[self._gradients]
            norms = values[1:]
            items.append(Scalar(_tags.tag(run, "loss"), values[0]))
            ratios = gradient_ratios(norms).numpy()
            cut_off = no_gradient(values[0], norms)
            for i, ref in enumerate(self._gradients.refs):
                items.append(Scalar(_tags.tag(run, ref.path, "gradient_norm"), norms[i]))
                cut = Scalar(_tags.tag(run, ref.path, "no_gradient"), cut_off[i], sparse=True)
                items.append(cut)
                if i < len(ratios) and np.isfinite(ratios[i]):
                    items.append(Scalar(_tags.tag(run, ref.path, "gradient_ratio"), ratios[i]))
            items.append(
                Scalar(_tags.tag(run, _tags.NON_FINITE), count_non_finite(values), sparse=True)
            )
        return items + self._unit_items(result, kernels)

    def _unit_items(self, result, kernels) -> list[Scalar]:
        """The watched layers' numbers (`unpictured_layers`)."""
        run = self.run_name
        items = []
        for path, (_, need, activation) in self._units.items():
            health = activation_health(result[need], activation)
            for name in ("dead_fraction", "saturated_fraction", "max_activation"):
                if name in health:
                    items.append(Scalar(_tags.tag(run, path, name), health[name]))
            before = self._previous.get(path)
            if before is not None and before.shape == kernels[path].shape:
                update = weight_health(kernels[path], before)["relative_update"]
                items.append(Scalar(_tags.tag(run, path, "relative_update"), update))
            self._previous[path] = kernels[path]
        return items


# The most weights of a kernel kept between snapshots for its relative update: a dense
# head can hold 10^8 (VGG16's fc1), which a copy per snapshot would double in memory.
UPDATE_SAMPLE = 1 << 16


def update_sample(kernel) -> tf.Tensor:
    """A copy of `kernel`, or of `UPDATE_SAMPLE` of its weights at most, the same evenly
    spaced ones at every snapshot: ||W - W_prev|| / ||W_prev|| over them estimates the
    kernel's relative update."""
    flat = tf.reshape(tf.convert_to_tensor(kernel), [-1])
    step = -(-int(flat.shape[0]) // UPDATE_SAMPLE)  # ceil: at most UPDATE_SAMPLE kept
    return flat[::step]


def unpictured_layers(graph, geometry=None) -> list:
    """The layers with a kernel whose output no picture shows, in graph order: every one
    but the convs whose output lays out over the input (`ModelGraph.conv_layers`), i.e.
    dense layers, and convs on another rank than the input's."""
    pictured = {ref.path for ref in graph.conv_layers(geometry)}
    return [
        ref
        for ref in graph.refs
        if ref.path not in pictured and isinstance(getattr(ref.layer, "kernel", None), _VARIABLES)
    ]


_VARIABLES = (keras.Variable, tf.Variable)


def _has_plain_loss(model) -> bool:
    """Whether the loss can be read without side effects: one output, compiled with a
    loss, `compute_loss` not overridden (a custom one may update its own trackers)."""
    return (
        len(model.outputs or ()) == 1
        and getattr(model, "_compile_loss", None) is not None
        and type(model).compute_loss is keras.Model.compute_loss
    )


def majority_fraction(classes: tf.Tensor) -> tf.Tensor:
    """The fraction of `(batch,)` class ids equal to the most common one."""
    _, _, counts = tf.unique_with_counts(classes)
    return tf.cast(tf.reduce_max(counts), tf.float32) / tf.cast(tf.size(classes), tf.float32)
