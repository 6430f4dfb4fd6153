"""The CAM family: where the evidence for a class lies in a conv layer.

Each method is a pure TensorFlow function of the layer's output A `(batch, *spatial,
channels)` (any number of spatial axes: steps, height x width, depth x height x width, or
tokens laid out on their patch grid) and what it needs besides (the gradient g = dS/dA of
the target score S, or the scores of the input masked by each channel), returning the map
before the final ReLU and upsampling, `(batch, *spatial)` float32. `CAM_METHODS` lists them;
the `Cam` need runs one on the pass, where dS/dA is taken once per (layer, targets) and
shared by every method on that layer.
A new CAM variant is one function here, one line in `CAM_METHODS` and its kind in `kinds`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from keras_convviz import kinds
from keras_convviz.core.geometry import Geometry, bilinear_matrix
from keras_convviz.core.graph import LayerRef
from keras_convviz.core.needs import Need
from keras_convviz.core.targets import Target


def _spatial_axes(x: tf.Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.shape.rank - 1))


def grad_cam(activation: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2): sum_c mean_hw(g_c) * A_c."""
    weights = tf.reduce_mean(gradient, axis=_spatial_axes(gradient))
    return tf.einsum("b...c,bc->b...", activation, weights)


def grad_cam_plus_plus(activation: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19): sum_c w_c * A_c.

    w_c = sum_hw alpha * relu(g_c), alpha = g_c^2 / (2 g_c^2 + sum_hw(A_c) * g_c^3), with
    alpha = 0 where g_c = 0 (the closed form for an exponential score, as pytorch-grad-cam).
    """
    g2 = tf.square(gradient)
    g3 = g2 * gradient
    axes = _spatial_axes(activation)
    total = tf.reduce_sum(activation, axis=axes, keepdims=True)
    # 0 where the denominator is (always where g_c = 0).
    alpha = tf.math.divide_no_nan(g2, 2.0 * g2 + total * g3)
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradient), axis=axes)
    return tf.einsum("b...c,bc->b...", activation, weights)


def layer_cam(activation: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
    """LayerCAM (Jiang et al. 2021, eq. 4-5): sum_c relu(g_c) * A_c, per position."""
    return tf.reduce_sum(tf.nn.relu(gradient) * activation, axis=-1)


def hires_cam(activation: tf.Tensor, gradient: tf.Tensor) -> tf.Tensor:
    """HiResCAM (Draelos & Carin 2020, eq. 5): sum_c g_c * A_c, per position."""
    return tf.reduce_sum(gradient * activation, axis=-1)


def eigen_cam(activation: tf.Tensor) -> tf.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): A projected on its first principal component.

    The positions are the samples: A `(positions, channels)` is centred over positions and
    projected on its first right singular vector, the top eigenvector of the channels'
    Gram matrix (about 3x faster than an SVD of A). The sign of an eigenvector is
    arbitrary; it is chosen so the map correlates positively with sum_c A_c.
    """
    shape = tf.shape(activation)
    flat = tf.reshape(activation, (shape[0], -1, shape[-1]))
    centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
    _, vectors = tf.linalg.eigh(tf.einsum("bpc,bpd->bcd", centred, centred))
    projection = tf.einsum("bpc,bc->bp", centred, vectors[:, :, -1])
    total = tf.reduce_sum(flat, axis=-1)
    total -= tf.reduce_mean(total, axis=1, keepdims=True)
    sign = tf.where(tf.reduce_sum(projection * total, axis=1, keepdims=True) < 0.0, -1.0, 1.0)
    return tf.reshape(projection * sign, shape[:-1])


def score_cam(activation: tf.Tensor, masked_scores: tf.Tensor) -> tf.Tensor:
    """Score-CAM (Wang et al. 2020, eq. 6-8): sum_c softmax_c(S(x * m_c)) * A_c.

    Args:
        activation: `(batch, *spatial, channels)` A.
        masked_scores: `(batch, channels)` the target score of the image masked by each
            channel's map (`score_cam_inputs`).
    """
    weights = tf.nn.softmax(masked_scores, axis=-1)
    return tf.einsum("b...c,bc->b...", activation, weights)


def score_cam_inputs(images, activation, image_index, channel) -> tf.Tensor:
    """Images masked by one channel's map each: x * m_c (Score-CAM's inputs).

    m_c is A_c upsampled bilinearly to the input size and min-max scaled to [0, 1] on its
    own (per image and channel, as pytorch-grad-cam; a constant channel masks everything).
    Resizing is linear with rows summing to 1, so the scaling is applied to the small map
    with the upsampled map's range, and the mask is upsampled straight into the image's
    `(height, width * channels_in)` layout (the width matrix repeats each column per input
    channel), so masking is one product of equal shapes.

    Args:
        images: `(batch, height, width, channels_in)` the probe images.
        activation: `(batch, h, w, channels)` A.
        image_index: `(chunk,)` int32 which image each masked copy is made from.
        channel: `(chunk,)` int32 which channel of A masks it.

    Returns:
        `(chunk, height, width, channels_in)` masked images.
    """
    maps = tf.gather_nd(
        tf.transpose(activation, (0, 3, 1, 2)), tf.stack([image_index, channel], axis=1)
    )
    shape = tf.shape(images)
    height, width, channels_in = shape[1], shape[2], shape[3]
    rows = bilinear_matrix(height, tf.shape(maps)[1])
    columns = bilinear_matrix(width, tf.shape(maps)[2])
    upsampled = tf.einsum("Hh,bhw,Ww->bHW", rows, maps, columns)
    low = tf.reduce_min(upsampled, axis=(1, 2), keepdims=True)
    high = tf.reduce_max(upsampled, axis=(1, 2), keepdims=True)
    maps = tf.math.divide_no_nan(maps - low, high - low)
    columns = tf.repeat(columns, channels_in, axis=0)  # (width * channels_in, w)
    masks = tf.einsum("Hh,bhw,Ww->bHW", rows, maps, columns)
    chunk = tf.gather(images, image_index)
    flat = tf.reshape(chunk, (-1, height, width * channels_in)) * masks
    return tf.reshape(flat, tf.shape(chunk))


def score_cam_inputs_any_rank(images, activation, image_index, channel, layout) -> tf.Tensor:
    """`score_cam_inputs` for inputs of any rank (`layout` the input's `Geometry`): each
    channel's map resized linearly to the input's spatial size, min-max scaled to [0, 1],
    times the input."""
    maps = tf.gather_nd(
        tf.experimental.numpy.moveaxis(activation, -1, 1), tf.stack([image_index, channel], 1)
    )
    maps = layout.resize(maps, images.shape[1:-1])
    axes = tuple(range(1, maps.shape.rank))
    low = tf.reduce_min(maps, axis=axes, keepdims=True)
    high = tf.reduce_max(maps, axis=axes, keepdims=True)
    masks = tf.math.divide_no_nan(maps - low, high - low)
    return tf.gather(images, image_index) * masks[..., None]


@dataclass(frozen=True)
class CamMethod:
    """A CAM method: its map function, what it needs, and the run it writes to.

    Attributes:
        fn: `fn(activation, **needed) -> (batch, h, w)` map before ReLU and upsampling.
        run: the TensorBoard run its callback writes (its kind's, in `kinds`).
        needs: `"gradient"` (dS/dA), `"masked_scores"` (scores of channel-masked
            inputs, scored in chunks) or `"activation"` (A alone).
    """

    fn: Callable[..., tf.Tensor]
    run: str
    needs: str = "gradient"


# Keyed by each kind's `method`; a new method is also a kind in `kinds`.
CAM_METHODS: dict[str, CamMethod] = {
    kinds.GRAD_CAM.method: CamMethod(grad_cam, kinds.GRAD_CAM.run),
    kinds.GRAD_CAM_PLUS_PLUS.method: CamMethod(grad_cam_plus_plus, kinds.GRAD_CAM_PLUS_PLUS.run),
    kinds.LAYER_CAM.method: CamMethod(layer_cam, kinds.LAYER_CAM.run),
    kinds.HIRES_CAM.method: CamMethod(hires_cam, kinds.HIRES_CAM.run),
    kinds.EIGEN_CAM.method: CamMethod(eigen_cam, kinds.EIGEN_CAM.run, needs="activation"),
    kinds.SCORE_CAM.method: CamMethod(score_cam, kinds.SCORE_CAM.run, needs="masked_scores"),
}


@dataclass(frozen=True)
class Cam(Need):
    """A CAM map of one layer at the input size, `(batch, *spatial)` raw, >= 0.

    Attributes:
        ref: the layer.
        method: a key of `CAM_METHODS`.
        target: what the map explains (`core.targets`).
        batch_size: masked images scored per model call (Score-CAM only).
        layout: how the layer's output lays out over the input (`ModelGraph.layout`), e.g.
            tokens on a patch grid; `None`: already on the input's spatial axes.
    """

    ref: LayerRef
    method: str
    target: Target
    batch_size: int = 0
    layout: Geometry | None = None

    def __post_init__(self):
        # Only Score-CAM chunks; any other method's need is the same whatever the size.
        if CAM_METHODS[self.method].needs != "masked_scores":
            object.__setattr__(self, "batch_size", 0)

    def layers(self):
        return (self.ref,)

    def gradients(self):
        if CAM_METHODS[self.method].needs == "gradient":
            return ((self.ref, self.target),)
        return ()

    def compute(self, ctx):
        method = CAM_METHODS[self.method]
        on_grid = self.layout.on_grid if self.layout is not None else (lambda x: x)
        activation = on_grid(ctx.activation(self.ref))
        if method.needs == "gradient":
            raw = method.fn(activation, on_grid(ctx.gradient(self.ref, self.target)))
        elif method.needs == "masked_scores":

            def build(image_index, channel):
                if ctx.geometry.rank == 2:
                    return score_cam_inputs(ctx.images, activation, image_index, channel)
                return score_cam_inputs_any_rank(
                    ctx.images, activation, image_index, channel, ctx.geometry
                )

            scores, _ = ctx.score_in_chunks(
                int(activation.shape[-1]), self.batch_size, build, self.target
            )
            raw = method.fn(activation, scores)
        else:
            raw = method.fn(activation)
        return ctx.geometry.resize(tf.nn.relu(raw), ctx.spatial_size)
