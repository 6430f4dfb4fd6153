"""`ModelHealth`: the model's predictions on the probe, as numbers over epochs."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_convviz import _tags, kinds
from keras_convviz.callbacks.maps import MapCallback
from keras_convviz.core.graph import NotServed
from keras_convviz.core.needs import Const, Logits
from keras_convviz.core.passes import compile_once, count_non_finite
from keras_convviz.health import LossGradients, Segmentation, gradient_ratios
from keras_convviz.summary_io import Scalar


class ModelHealth(MapCallback):
    """Writes what the model predicts on the probe: accuracy, confidence, each image's
    target probability, and how many images share the most common prediction.

    Numbers only, from the logits of the shared pass (no extra model call); the alerts of
    `ConvViz` read them (a collapsed classifier predicts one class for every probe image).

    With probe labels, on a single-output model compiled with a loss, it also takes the
    loss on the probe (`health/loss`, from the pass's own forward). With `gradients=True`
    it also takes the loss's gradient with respect to every conv layer's kernel (one more
    backward pass, to the first layer: it about doubles the compute of a snapshot):
    `health/<layer>/gradient_norm`, and `health/<layer>/gradient_ratio`, the layer's norm
    over the largest norm of the layers after it (orders of magnitude below 1 on the early
    layers: vanishing gradients, which the `vanishing_gradients` alert watches).

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
        shared, _ = self._join_targets(model)
        if self._head.regression:
            raise NotServed(
                f"the output {self._head.name!r} is one linear unit, a value with no classes "
                "to score"
            )
        self._labels = None if self.probe.labels is None else tf.constant(self.probe.labels)
        self._render = compile_once(self._compute, autograph=False)
        self._gradients = None
        if _has_plain_loss(model) and self.probe.targets is not None:
            refs = tuple(shared.core.graph.conv_layers()) if self.gradients else ()
            self._gradients = LossGradients(refs, Const(self.probe.targets, batched=True))
        # A segmentation head is judged per position: pixel accuracy and mean IoU.
        self._segmentation = None
        if self._head.dense and self.probe.masks is not None:
            self._segmentation = Segmentation(Const(self.probe.masks, batched=True))
            self._labels = None  # each sample's explained class is no label to score

    def needs(self):
        extra = tuple(n for n in (self._gradients, self._segmentation) if n is not None)
        return (*super().needs(), *extra)

    def _compute(self, logits):
        probabilities = self._head.probabilities(logits)
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        targets = tf.where(self._given_targets < 0, predicted, self._given_targets)
        out = {
            "confidence": tf.reduce_mean(tf.reduce_max(probabilities, axis=-1)),
            "majority_fraction": majority_fraction(predicted),
            "probability": tf.gather(probabilities, targets, axis=1, batch_dims=1),
        }
        if self._labels is not None:
            out["accuracy"] = tf.reduce_mean(tf.cast(predicted == self._labels, tf.float32))
            out["label_majority_fraction"] = majority_fraction(self._labels)
        return out

    def _snapshot(self, epoch, result):
        numbers = self._render(result[Logits()])
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
            ratios = gradient_ratios(norms)
            for i, ref in enumerate(self._gradients.refs):
                items.append(Scalar(_tags.tag(run, ref.path, "gradient_norm"), norms[i]))
                if i < len(ratios):
                    items.append(Scalar(_tags.tag(run, ref.path, "gradient_ratio"), ratios[i]))
            items.append(
                Scalar(_tags.tag(run, _tags.NON_FINITE), count_non_finite(values), sparse=True)
            )
        return items


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
