"""Gradient saliency: which input pixels the target score is sensitive to.

Pure TensorFlow functions for the attributions and for the inputs the sampling methods
score (noisy copies, points on a straight path); the `Saliency` need runs them on the
shared pass: the plain gradient comes from the pass's own backward, noise samples and path
points go through the general chunked loop with input gradients, `batch_size` at a time.
Attributions are raw, `(batch, height, width, channels)` float32, in the input's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from keras_convviz import kinds
from keras_convviz.core.needs import Const, Need
from keras_convviz.core.targets import Target


def gradient(images: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """Vanilla gradient (Simonyan et al. 2014, eq. 2): dS/dx."""
    del images
    return grad


def gradient_x_input(images: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """Gradient x input (Shrikumar et al. 2016): x * dS/dx."""
    return images * grad


def smoothgrad(grad_sum: tf.Tensor, samples: int) -> tf.Tensor:
    """SmoothGrad (Smilkov et al. 2017, eq. 3): the mean of dS/dx over noisy copies of x."""
    return grad_sum / float(samples)


def integrated_gradients(images, baseline, grad_sum: tf.Tensor, steps: int) -> tf.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017, eq. 3): (x - x') * mean_k dS/dx(p_k).

    The path integral by the midpoint rule: p_k = x' + (k + 1/2)/steps * (x - x').
    """
    return (images - baseline) * (grad_sum / float(steps))


def noisy_inputs(images, noise, scale, image_index, sample) -> tf.Tensor:
    """SmoothGrad's inputs: x_i + scale_i * noise_k.

    Args:
        images: `(batch, *spatial, channels)`.
        noise: `(samples, *spatial, channels)` standard normal draws (one per sample,
            shared by the images, so the result does not depend on `batch_size`).
        scale: `(batch,)` the noise's standard deviation per image.
        image_index: `(chunk,)` int32.
        sample: `(chunk,)` int32.
    """
    chunk = tf.gather(images, image_index)
    sigma = tf.reshape(tf.gather(scale, image_index), (-1,) + (1,) * (chunk.shape.rank - 1))
    return chunk + sigma * tf.gather(noise, sample)


def path_inputs(images, baseline, steps: int, image_index, step) -> tf.Tensor:
    """Integrated Gradients' inputs: x' + (k + 1/2)/steps * (x - x')."""
    chunk = tf.gather(images, image_index)
    alpha = (tf.cast(step, tf.float32) + 0.5) / float(steps)
    alpha = tf.reshape(alpha, (-1,) + (1,) * (chunk.shape.rank - 1))
    return baseline + alpha * (chunk - baseline)


@dataclass(frozen=True)
class SaliencyMethod:
    """How a saliency method is drawn and where it is written.

    Attributes:
        run: the TensorBoard run its callback writes (its kind's, in `kinds`).
        signed: drawn signed and summed over channels on a diverging map (the
            input-weighted methods), else as the largest magnitude over channels.
    """

    run: str
    signed: bool


# Keyed by each kind's `method`; a new method is also a kind in `kinds`.
SALIENCY_METHODS: dict[str, SaliencyMethod] = {
    kind.method: SaliencyMethod(kind.run, signed=signed)
    for kind, signed in (
        (kinds.GRADIENT, False),
        (kinds.GRADIENT_X_INPUT, True),
        (kinds.SMOOTHGRAD, False),
        (kinds.INTEGRATED_GRADIENTS, True),
    )
}


@dataclass(frozen=True)
class Saliency(Need):
    """Raw attributions `(batch, height, width, channels)` of one saliency method.

    Attributes:
        method: a key of `SALIENCY_METHODS`.
        target: what the attributions explain (`core.targets`).
        samples: SmoothGrad's noisy copies per image (0 for the other methods).
        noise: SmoothGrad's noise level: standard deviation / (max - min of the image).
        seed: SmoothGrad's noise seed.
        steps: Integrated Gradients' path points (0 for the other methods).
        baseline: Integrated Gradients' baseline x' `(height, width, channels)`, or `None`.
        batch_size: inputs scored per model call.
    """

    method: str
    target: Target
    samples: int = 0
    noise: float = 0.0
    seed: int = 0
    steps: int = 0
    baseline: Const | None = None
    batch_size: int = 0

    def as_map(self, value):
        return saliency_view(self.method, value)[0]

    def gradients(self):
        if self.method in ("gradient", "gradient_x_input"):
            return ((None, self.target),)
        return ()

    def compute(self, ctx):
        images = ctx.images
        if self.method == "gradient":
            return gradient(images, ctx.gradient(None, self.target))
        if self.method == "gradient_x_input":
            return gradient_x_input(images, ctx.gradient(None, self.target))
        if self.method == "smoothgrad":
            shape = (self.samples, *images.shape[1:])
            noise = tf.random.stateless_normal(shape, seed=(self.seed, 0))
            axes = tuple(range(1, images.shape.rank))
            span = tf.reduce_max(images, axis=axes) - tf.reduce_min(images, axis=axes)
            scale = self.noise * span

            def build(image_index, sample):
                return noisy_inputs(images, noise, scale, image_index, sample)

            _, grad_sum = ctx.score_in_chunks(
                self.samples, self.batch_size, build, self.target, gradients=True
            )
            return smoothgrad(grad_sum, self.samples)
        baseline = ctx.const(self.baseline)

        def build(image_index, step):
            return path_inputs(images, baseline, self.steps, image_index, step)

        _, grad_sum = ctx.score_in_chunks(
            self.steps, self.batch_size, build, self.target, gradients=True
        )
        return integrated_gradients(images, baseline, grad_sum, self.steps)


def saliency_need(method: str, target: Target, baseline: Const, **options) -> Saliency:
    """The `Saliency` need of a method, with the options it does not use left at 0.

    Args:
        method: a key of `SALIENCY_METHODS`.
        target: what the attributions explain.
        baseline: Integrated Gradients' baseline `(height, width, channels)`.
        **options: `samples`, `noise`, `seed`, `steps`, `batch_size` (`_args.saliency_options`).
    """
    if method == "smoothgrad":
        keep = ("samples", "noise", "seed", "batch_size")
    elif method == "integrated_gradients":
        keep = ("steps", "batch_size")
    else:
        keep = ()
    kept = {name: options[name] for name in keep}
    if method == "integrated_gradients":
        kept["baseline"] = baseline
    return Saliency(method, target, **kept)


def saliency_view(method: str, attributions: tf.Tensor) -> tuple[tf.Tensor, bool]:
    """The map a saliency method is drawn as: `((batch, height, width), signed)`.

    Signed methods sum over channels (the attribution of the whole pixel); the others show
    the largest magnitude over channels (Simonyan et al. 2014, sec. 3.1).
    """
    if SALIENCY_METHODS[method].signed:
        return tf.reduce_sum(attributions, axis=-1), True
    return tf.reduce_max(tf.abs(attributions), axis=-1), False
