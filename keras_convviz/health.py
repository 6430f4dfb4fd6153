"""Health numbers of a layer: pure TensorFlow functions of its activations or its kernel.

They are what a user reads to see a layer go wrong while the pictures still look fine:
channels that died, activations that explode or saturate, weights that stopped moving or
move far too much. Each returns a dict of float32 scalars keyed by the quantity's name,
which is also the last part of its TensorBoard tag (`feature_maps/<layer>/<name>`,
`filter_weights/<layer>/<name>`).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from keras_convviz.core.graph import RECTIFIERS, LayerRef
from keras_convviz.core.needs import Const, Need

# Output ranges of bounded activations, `(low, high)`; `low=None` where the low end is not
# saturation but a dead unit (relu6's 0, counted by `dead_fraction`).
BOUNDED = {
    "sigmoid": (0.0, 1.0),
    "hard_sigmoid": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu6": (None, 6.0),
}
# A bounded activation is saturated within this fraction of its range from a bound (sigmoid:
# below 0.01 or above 0.99, i.e. |pre-activation| > 4.6, where its gradient is below 0.01).
SATURATION = 0.01
# An activation is near zero below this fraction of the layer's largest magnitude.
NEAR_ZERO = 1e-3


def activation_health(
    maps: tf.Tensor, activation: str | None = None, rectified: tf.Tensor | None = None
) -> dict[str, tf.Tensor]:
    """Health numbers of a layer's output on the probe.

    Args:
        maps: `(batch, h, w, channels)` the layer's output.
        activation: the name of the activation whose output `maps` is (`"relu"`,
            `"sigmoid"`, ...; `keras_convviz.core.graph.output_activation`), or `None`.
        rectified: `(batch, h, w, channels)` the output of the ReLU that the layer's
            output flows into (conv -> BatchNormalization -> ReLU;
            `ModelGraph.rectified`), or `None`.

    Returns:
        `dead_fraction`, only where a channel can die (`activation` is `"relu"` or
        `"relu6"`, or `rectified` is given, counted there): channels never above 0 on any
        probe image (a negative value of a linear or leaky output still passes a
        gradient, and is no dead unit); `near_zero_fraction`: values whose magnitude is
        below `NEAR_ZERO` x the layer's largest; `mean`, `std`; `max_activation`: the
        largest magnitude; and for a bounded activation (sigmoid, hard sigmoid, tanh,
        relu6) `saturated_fraction`: values within `SATURATION` of the range from a bound
        (from the output: the same as a threshold on the input before the activation,
        which the fused layer does not expose).
    """
    values = tf.cast(maps, tf.float32)
    magnitude = tf.abs(values)
    peak = tf.reduce_max(magnitude)
    out = {}
    if rectified is None and activation in RECTIFIERS:
        rectified = values
    if rectified is not None:
        rectified = tf.cast(rectified, tf.float32)
        channels = tf.reshape(rectified, (-1, tf.shape(rectified)[-1]))
        channel_peak = tf.reduce_max(channels, axis=0)
        out["dead_fraction"] = tf.reduce_mean(tf.cast(channel_peak <= 0, tf.float32))
    out.update(
        near_zero_fraction=tf.reduce_mean(tf.cast(magnitude <= NEAR_ZERO * peak, tf.float32)),
        mean=tf.reduce_mean(values),
        std=tf.math.reduce_std(values),
        max_activation=peak,
    )
    if activation in BOUNDED:
        low, high = BOUNDED[activation]
        margin = SATURATION * (high - (0.0 if low is None else low))
        saturated = values >= high - margin
        if low is not None:
            saturated |= values <= low + margin
        out["saturated_fraction"] = tf.reduce_mean(tf.cast(saturated, tf.float32))
    return out


def weight_health(kernel: tf.Tensor, previous: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """Health numbers of a kernel.

    Args:
        kernel: the kernel now.
        previous: the kernel at the previous snapshot, or `None` at the first.

    Returns:
        `norm`: its Frobenius norm; with `previous`, `relative_update`: ||W - W_prev|| /
        ||W_prev|| (0 for a frozen layer, and when W_prev is all zeros).
    """
    kernel = tf.cast(kernel, tf.float32)
    out = {"norm": tf.norm(kernel)}
    if previous is not None:
        previous = tf.cast(previous, tf.float32)
        out["relative_update"] = tf.math.divide_no_nan(
            tf.norm(kernel - previous), tf.norm(previous)
        )
    return out


def trains(model, layers) -> list[bool]:
    """Whether training updates each layer's weights: the layer is trainable and so is
    every model it sits in (a frozen base's layers are not, whatever their own flag says)."""
    trained = {id(v) for v in model.trainable_weights}
    return [any(id(v) in trained for v in layer.trainable_weights) for layer in layers]


def map_change(maps: tf.Tensor, previous: tf.Tensor) -> tf.Tensor:
    """How much each image's map changed: 1 - the Pearson correlation of the two maps.

    0: the same picture (up to scale), 1: unrelated, 2: inverted. A constant map has no
    correlation: the change is 0 when both maps are equal, else 1.

    Args:
        maps: `(batch, *spatial)` now.
        previous: `(batch, *spatial)` at the previous snapshot.

    Returns:
        `(batch,)` float32.
    """
    a = tf.reshape(tf.cast(maps, tf.float32), (tf.shape(maps)[0], -1))
    b = tf.reshape(tf.cast(previous, tf.float32), (tf.shape(previous)[0], -1))
    a -= tf.reduce_mean(a, axis=1, keepdims=True)
    b -= tf.reduce_mean(b, axis=1, keepdims=True)
    scale = tf.sqrt(tf.reduce_sum(a * a, axis=1) * tf.reduce_sum(b * b, axis=1))
    correlation = tf.math.divide_no_nan(tf.reduce_sum(a * b, axis=1), scale)
    equal = tf.reduce_all(tf.equal(a, b), axis=1)
    undefined = tf.where(equal, 0.0, 1.0)
    return tf.where(scale > 0, 1.0 - correlation, undefined)


@dataclass(frozen=True)
class LossGradients(Need):
    """The model's compiled loss on the probe and the norm of its gradient with respect to
    each layer's kernel: `(1 + layers,)` float32, from the pass's own forward (without
    layers, the loss alone: no backward pass).

    Attributes:
        refs: the layers (may be empty).
        labels: the probe's labels as the loss expects them (a batched `Const`).
    """

    refs: tuple[LayerRef, ...]
    labels: Const

    def loss_gradients(self):
        return ((self.labels, self.refs),)

    def compute(self, ctx):
        loss, gradients = ctx.loss_gradient(self.labels)
        norms = [tf.norm(gradients[ref.path]) for ref in self.refs]
        return tf.stack([loss, *norms])


@dataclass(frozen=True)
class Segmentation(Need):
    """A segmentation head's pixel accuracy and mean intersection over union on the probe:
    `(2,)` float32, the predicted class of each position (its largest score; one sigmoid
    unit: above 0.5) against the probe's masks. The mean is over the classes present in
    the masks or the prediction.

    Attributes:
        masks: `(batch, *spatial)` int32 class ids (a batched `Const`).
    """

    masks: Const

    def compute(self, ctx):
        output = ctx.model_output
        classes = max(int(output.shape[-1]), 2)
        if output.shape[-1] == 1:
            predicted = tf.cast(output[..., 0] > 0.5, tf.int32)
        else:
            predicted = tf.argmax(output, axis=-1, output_type=tf.int32)
        labels = tf.cast(ctx.const(self.masks), tf.int32)
        accuracy = tf.reduce_mean(tf.cast(predicted == labels, tf.float32))
        axes = tuple(range(predicted.shape.rank))
        p = tf.one_hot(predicted, classes)
        t = tf.one_hot(labels, classes)
        intersection = tf.reduce_sum(p * t, axis=axes)
        union = tf.reduce_sum(tf.maximum(p, t), axis=axes)
        present = union > 0
        iou = tf.math.divide_no_nan(intersection, union)
        mean_iou = tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(present, iou, 0.0)), tf.reduce_sum(tf.cast(present, tf.float32))
        )
        return tf.stack([accuracy, mean_iou])


# A loss below this is fitted: what float32 and Keras's probability clipping (1e-7) leave
# of a confident, correct prediction, whose gradient is then exactly 0 on every layer.
FITTED_LOSS = 1e-4


def gradient_ratios(norms: tf.Tensor) -> tf.Tensor:
    """Each layer's gradient norm over the largest of the layers after it, `(layers - 1,)`
    (graph order): orders of magnitude below 1 on early layers is a vanishing gradient.
    NaN where there is nothing to compare: the layer itself or every later layer has no
    gradient at all (`no_gradient`), which no ratio describes."""
    count = int(norms.shape[0])
    if count < 2:
        return norms[:0]
    later = tf.stack([tf.reduce_max(norms[i + 1 :]) for i in range(count - 1)])
    defined = (later > 0) & (norms[:-1] > 0)
    return tf.where(defined, tf.math.divide_no_nan(norms[:-1], later), float("nan"))


def no_gradient(loss: tf.Tensor, norms: tf.Tensor) -> tf.Tensor:
    """`(layers,)` 1.0 where no gradient reaches a layer's kernel at all (its norm is
    exactly 0: a layer cut off from the loss by a `stop_gradient`, an unused output, or
    dead ReLUs after it) while the loss still has one to give (another layer's is not 0,
    or the loss is above `FITTED_LOSS`), else 0.0."""
    norms = tf.cast(norms, tf.float32)
    flowing = (tf.reduce_max(norms) > 0) | (tf.cast(loss, tf.float32) > FITTED_LOSS)
    return tf.cast((norms == 0) & flowing, tf.float32)
