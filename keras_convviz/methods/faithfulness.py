"""Deletion and insertion (Petsiuk et al. 2018, "RISE", sec. 4.1): is a map faithful?

A map that ranks first the pixels the model really uses makes the target's probability
fall fast when those pixels are removed (deletion: a low area under the curve) and rise
fast when they are added back to a blank image (insertion: a high area). For an image x
of H x W pixels, its map m, the target t and K = `steps`:

- the pixels are ordered by m, highest first (a stable sort: ties keep row-major order);
- for k = 0..K, n_k = (k * H * W) // K;
- deletion image k is x with its first n_k pixels (all channels) set to the baseline;
  insertion image k is the baseline with its first n_k pixels set to x;
- p_k is the target's probability on image k (what the model outputs: softmax, sigmoid);
- AUC is the trapezoid rule over p_0..p_K on the unit interval.

Every curve image of every probe image goes through the general chunked loop, `batch_size`
at a time. Two floors put a score in context: a seeded random map and an edge map (Sobel
magnitude of the image); a map that does not beat them explains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from keras_convviz.core.needs import Const, Need
from keras_convviz.core.passes import xla_available
from keras_convviz.core.targets import Target, pick
from keras_convviz.methods.perturb import BLUR, gaussian_blur

STEPS = 16
SIGMA = 5.0  # the blur baseline's standard deviation in pixels (the paper: 5, at 224 px)


def pixel_ranks(maps: tf.Tensor) -> tf.Tensor:
    """Each pixel's place in its map's order, highest first, ties in row-major order.

    Args:
        maps: `(batch, height, width)`.

    Returns:
        `(batch, height, width)` int32: 0 for the pixel ranked first.
    """
    flat = tf.reshape(maps, (tf.shape(maps)[0], -1))
    order = tf.argsort(flat, axis=-1, direction="DESCENDING", stable=True)
    ranks = tf.argsort(order, axis=-1, stable=True)  # the inverse permutation
    return tf.reshape(ranks, tf.shape(maps))


def curve_images(images, ranks, fill, image_index, step, deletion, steps: int) -> tf.Tensor:
    """One chunk of deletion and insertion images.

    Args:
        images: `(batch, height, width, channels)` the probe images.
        ranks: `(batch, height, width)` int32 `pixel_ranks` of their maps.
        fill: `(chunk, height, width, channels)` the baseline of each curve image, or
            `(height, width, channels)` one for all.
        image_index: `(chunk,)` int32 which probe image.
        step: `(chunk,)` int32 k, the point on the curve.
        deletion: `(chunk,)` bool: a deletion image, else an insertion image.
        steps: K.

    Returns:
        `(chunk, height, width, channels)`: deletion image k shows the image except its
        first n_k pixels; insertion image k shows only them.
    """
    pixels = tf.cast(tf.shape(ranks)[1] * tf.shape(ranks)[2], tf.int64)
    count = tf.cast(tf.cast(step, tf.int64) * pixels // steps, tf.int32)
    first = tf.gather(ranks, image_index) < count[:, None, None]
    show_image = tf.not_equal(first, deletion[:, None, None])
    return tf.where(show_image[..., None], tf.gather(images, image_index), fill)


# As for occlusion: XLA fuses gather, mask and select (TensorFlow's CPU select kernel costs
# several copies of the chunk).
curve_images_xla = tf.function(
    curve_images, jit_compile=True, autograph=False, reduce_retracing=True
)


def area_under_curve(probabilities: tf.Tensor) -> tf.Tensor:
    """The trapezoid rule over `(batch, K + 1)` points evenly spread on [0, 1]: `(batch,)`."""
    steps = tf.cast(tf.shape(probabilities)[-1] - 1, probabilities.dtype)
    ends = probabilities[:, 0] + probabilities[:, -1]
    return (tf.reduce_sum(probabilities, axis=-1) - 0.5 * ends) / steps


@dataclass(frozen=True)
class GivenMap(Need):
    """Maps the caller gives, `(batch, height, width)` (the functional `faithfulness`)."""

    maps: Const

    def compute(self, ctx):
        return tf.cast(ctx.const(self.maps), tf.float32)


@dataclass(frozen=True)
class RandomMap(Need):
    """The random floor: uniform noise, `(batch, height, width)`, seeded."""

    seed: int = 0

    def compute(self, ctx):
        return tf.random.stateless_uniform(tf.shape(ctx.images)[:3], seed=(self.seed, 1))


@dataclass(frozen=True)
class EdgeMap(Need):
    """The edge floor: the Sobel gradient magnitude of the grey image, `(batch, h, w)`."""

    def compute(self, ctx):
        grey = tf.reduce_mean(ctx.images, axis=-1, keepdims=True)
        edges = tf.image.sobel_edges(grey)[..., 0, :]  # (batch, h, w, [dy, dx])
        return tf.norm(edges, axis=-1)


# The floors a map is compared with, by name: the run their scores are written to.
FLOORS = {"random": RandomMap(), "edge": EdgeMap()}


@dataclass(frozen=True)
class Faithfulness(Need):
    """Deletion and insertion AUC of another need's map: `(batch, 2)` float32.

    Attributes:
        of: the need whose value is the map (`of.as_map` turns it into `(batch, height,
            width)`: a saliency method's attributions are ranked as they are drawn).
        target: what the map explains (`core.targets`): its probability is scored.
        steps: K, the points on each curve after the first.
        baseline: what removed pixels become: a `(height, width, channels)` `Const`, or
            `BLUR`: each image blurred by a Gaussian of standard deviation `sigma`.
        sigma: the blur's standard deviation in pixels (`BLUR` only).
        batch_size: curve images scored per model call.
    """

    of: Need
    target: Target
    steps: int = STEPS
    baseline: Const | str = BLUR
    sigma: float = SIGMA
    batch_size: int = 256

    def __post_init__(self):
        if self.baseline != BLUR:
            object.__setattr__(self, "sigma", 0.0)  # one need whatever sigma it was given

    def layers(self):
        return self.of.layers()

    def gradients(self):
        return self.of.gradients()

    def compute(self, ctx):
        maps = self.of.as_map(ctx.value(self.of))
        ranks = pixel_ranks(maps)
        if self.baseline == BLUR:
            baseline = gaussian_blur(ctx.images, self.sigma)
        else:
            baseline = ctx.const(self.baseline)
        steps = self.steps
        build_chunk = curve_images_xla if xla_available() else curve_images

        # Both curves start or end on the image itself (deletion k = 0, insertion k = K),
        # whose probability the pass has, and meet at the baseline image (deletion k = K,
        # insertion k = 0): per image, deletion k = 1..K and insertion k = 1..K-1 are scored,
        # 2K - 1 images instead of 2K + 2.
        def build(image_index, j):
            fill = tf.gather(baseline, image_index) if baseline.shape.rank == 4 else baseline
            deletion = j < steps
            step = tf.where(deletion, j + 1, j - steps + 1)
            return build_chunk(ctx.images, ranks, fill, image_index, step, deletion, steps)

        scored, _ = ctx.score_in_chunks(
            2 * steps - 1, self.batch_size, build, self.target, probabilities=True
        )
        classes = ctx.classes(self.target)
        original = pick(ctx.probabilities(self.target), classes)[:, None]
        blank = scored[:, steps - 1 : steps]
        deletion = tf.concat([original, scored[:, :steps]], axis=1)
        insertion = tf.concat([blank, scored[:, steps:], original], axis=1)
        return tf.stack([area_under_curve(deletion), area_under_curve(insertion)], axis=-1)
