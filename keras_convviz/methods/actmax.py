"""Activation maximisation: the input a channel responds to most, found by gradient ascent.

Erhan et al. 2009; the method of Olah et al. 2017, "Feature Visualization" (Distill; the
Lucid/Lucent libraries): the images live in a decorrelated space (a Fourier spectrum scaled
by 1/frequency, then a colour-decorrelation matrix, then a sigmoid into the model's input
range); each step scores a randomly jittered, scaled and rotated copy (transformation
robustness), and Adam climbs the channel's mean activation. All filters of a layer are one
batch, and the whole ascent is one `tf.while_loop` in one compiled function, traced once per
(layer, filters, size) and called again at every snapshot with the model's current weights.
Only the layers up to the target layer run (`ModelGraph.run(..., stop_at=ref)`).

The pure pieces (`fourier_scale`, `colour_sqrt`, `to_images`, `random_affine`,
`affine_sample`, `ascend`) take and return tensors; `ActivationMaximizer` binds them to a
model's layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from keras_convviz.core.graph import PRE_ACTIVATION, Head, LayerRef, ModelGraph
from keras_convviz.core.passes import Core, compile_once, xla_available

STEPS = 128
LEARNING_RATE = 0.05
# Lucid's spectrum decay (1 / frequency) and initial spectrum noise.
DECAY_POWER = 1.0
INIT_STD = 0.01
# A layer with its own activation (a ReLU conv) is climbed on mean(output) + LEAK *
# mean(output before the activation): a channel that is off everywhere at the start (zero
# ReLU gradient) still gets a direction, and once it is on the output term dominates. The
# score reported is the output's mean alone.
LEAK = 0.1
# Adam's moment decays and epsilon (Kingma & Ba 2015; Lucid uses Adam at 0.05).
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-8
# ImageNet's colour-correlation square root (Lucid's `color_correlation_svd_sqrt`), used for
# RGB models when no images give the data's own colours.
IMAGENET_COLOUR_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)


@dataclass(frozen=True)
class Robustness:
    """The random transformations scored at each step (Olah et al. 2017, "transformation
    robustness"): a shift of up to `jitter` pixels, a zoom in `scale`, a rotation of up to
    `rotation` degrees, drawn anew per image and step; edges are mirrored."""

    jitter: float
    scale: tuple[float, float]
    rotation: float


def default_jitter(height: int, width: int) -> float:
    """Lucid shifts 224-pixel images by up to 8 + 4 pixels; about 1/16 of the side here."""
    return float(max(1, round(min(height, width) / 16)))


def fourier_scale(height: int, width: int, decay_power: float = DECAY_POWER) -> np.ndarray:
    """Per-frequency scale of the spectrum: 1/f^decay (the spectrum of natural images),
    times sqrt(h w) so the image has about unit variance whatever its size (Lucid's
    `fft_image`).

    Returns:
        `(height, width // 2 + 1)` float32.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequencies = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay_power
    return (scale * np.sqrt(height * width)).astype(np.float32)


def colour_sqrt(channels: int, images=None, low=None, high=None) -> np.ndarray:
    """The colour-decorrelation matrix: the square root of the channels' covariance, its
    largest column scaled to norm 1 (Lucid's `_linear_decorrelate_color`).

    Args:
        channels: the number of image channels.
        images: `(batch, height, width, channels)` images of the data, or `None`.
        low, high: `(channels,)` the input range the images are scaled by (to [0, 1]).

    Returns:
        `(channels, channels)` float32: from `images` when given (any channel count);
        otherwise ImageNet's for 3 channels and the identity for any other count.
    """
    if images is None:
        matrix = IMAGENET_COLOUR_SQRT if channels == 3 else np.eye(channels, dtype=np.float32)
    else:
        pixels = np.asarray(images, np.float64).reshape(-1, channels)
        span = np.where(high > low, high - low, 1.0)
        covariance = np.atleast_2d(np.cov((pixels - low) / span, rowvar=False))
        values, vectors = np.linalg.eigh(covariance)
        if values.max() <= 1e-12:  # constant images: no colour structure to follow
            return np.eye(channels, dtype=np.float32)
        matrix = vectors @ np.diag(np.sqrt(np.maximum(values, 0.0))) @ vectors.T
    norms = np.linalg.norm(matrix, axis=0)
    return (matrix / max(norms.max(), 1e-12)).astype(np.float32)


def to_images(params: tf.Tensor, scale, size, colour: tf.Tensor, low, high) -> tf.Tensor:
    """Images from their parameters: spectrum -> pixels -> colours -> input range.

    Args:
        params: `(2, filters, channels, height, width // 2 + 1)` float32, the real and
            imaginary parts of each image's spectrum.
        scale: `(height, width // 2 + 1)` float32, `fourier_scale`.
        size: `(height, width)` Python ints (an odd width is not implied by the spectrum).
        colour: `(channels, channels)` float32, `colour_sqrt`.
        low, high: `(channels,)` float32, the model's input range.

    Returns:
        `(filters, height, width, channels)` float32 images in `[low, high]`.
    """
    # The real scale on each part (no complex-to-real cast in the gradient: it warns).
    spectrum = tf.complex(params[0] * scale, params[1] * scale)
    pixels = tf.signal.irfft2d(spectrum, fft_length=list(size))
    pixels = tf.transpose(pixels, (0, 2, 3, 1)) / 4.0  # (filters, h, w, channels)
    decorrelated = tf.einsum("fhwc,dc->fhwd", pixels, colour)
    return low + (high - low) * tf.sigmoid(decorrelated)


def random_affine(
    seed: tf.Tensor, count: int, height: int, width: int, robustness: Robustness
) -> tf.Tensor:
    """`(count, 2, 3)` float32 maps from output pixel `(x, y, 1)` to source pixel `(x, y)`:
    a rotation and zoom about the centre and a shift, drawn per image from a stateless seed.
    """
    draws = tf.random.stateless_uniform((count, 4), seed=seed, minval=-1.0, maxval=1.0)
    angle = draws[:, 0] * (robustness.rotation * math.pi / 180.0)
    low, high = robustness.scale
    zoom = low + (high - low) * 0.5 * (draws[:, 1] + 1.0)
    shift_x, shift_y = draws[:, 2] * robustness.jitter, draws[:, 3] * robustness.jitter
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    # source = R(angle) (p - c) / zoom + c + shift
    row_x = tf.stack([cos, -sin, cx - cos * cx + sin * cy + shift_x], axis=1)
    row_y = tf.stack([sin, cos, cy - sin * cx - cos * cy + shift_y], axis=1)
    return tf.stack([row_x, row_y], axis=1)


def _reflect(coordinate: tf.Tensor, size: int) -> tf.Tensor:
    """Coordinates mirrored into [0, size - 1] (edge pixels not repeated)."""
    if size == 1:
        return tf.zeros_like(coordinate)
    period = 2.0 * (size - 1)
    coordinate = tf.math.floormod(coordinate, period)
    return tf.where(coordinate > size - 1, period - coordinate, coordinate)


def affine_sample(images: tf.Tensor, matrices: tf.Tensor) -> tf.Tensor:
    """Resample each image through its own affine map, bilinearly, edges mirrored.

    A gather with exact gradients (a scatter-add), unlike `ImageProjectiveTransform`, whose
    registered gradient is the inverse warp.

    Args:
        images: `(batch, height, width, channels)` float32, static shape.
        matrices: `(batch, 2, 3)` float32, output pixel `(x, y, 1)` -> source `(x, y)`.

    Returns:
        `(batch, height, width, channels)` float32.
    """
    batch, height, width, channels = (int(d) for d in images.shape)
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=0).astype(np.float32)
    source = tf.einsum("bij,jp->bip", matrices, grid)  # (batch, 2, pixels)
    x = _reflect(source[:, 0], width)
    y = _reflect(source[:, 1], height)
    x0 = tf.clip_by_value(tf.floor(x), 0.0, width - 1.0)
    y0 = tf.clip_by_value(tf.floor(y), 0.0, height - 1.0)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, width - 1), tf.minimum(y0 + 1, height - 1)
    base = (tf.range(batch, dtype=tf.int32) * (height * width))[:, None]
    flat = tf.reshape(images, (batch * height * width, channels))

    def at(yy, xx):
        return tf.gather(flat, base + yy * width + xx)

    top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
    return tf.reshape(top * (1.0 - wy) + bottom * wy, (batch, height, width, channels))


def ascend(
    objective,
    params: tf.Tensor,
    steps: tf.Tensor,
    seed: tf.Tensor,
    transformed,
    learning_rate: float,
) -> tf.Tensor:
    """Adam ascent of `sum(objective(transformed(params, step seed)))` in one `tf.while_loop`.

    Args:
        objective: `(filters, h, w, c) images -> (filters,)` what each image maximises.
        params: the starting parameters.
        steps: int32 scalar, the number of steps (a tensor: fewer steps do not retrace).
        seed: int32 scalar; step `t` draws its transformations from `(seed, t + 1)`.
        transformed: `(params, (2,) int32 seed) -> images`: the images, randomly transformed.
        learning_rate: Adam's step size.

    Returns:
        The parameters after `steps` steps.
    """

    def body(step, p, m, v):
        # Only the parameters: the model's weights are read, never differentiated.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(p)
            total = tf.reduce_sum(objective(transformed(p, tf.stack([seed, step + 1]))))
        g = tape.gradient(total, p)
        m = BETA_1 * m + (1.0 - BETA_1) * g
        v = BETA_2 * v + (1.0 - BETA_2) * tf.square(g)
        t = tf.cast(step + 1, tf.float32)
        m_hat = m / (1.0 - tf.pow(BETA_1, t))
        v_hat = v / (1.0 - tf.pow(BETA_2, t))
        p = p + learning_rate * m_hat / (tf.sqrt(v_hat) + EPSILON)
        return step + 1, p, m, v

    zeros = tf.zeros_like(params)
    _, params, _, _ = tf.while_loop(
        lambda step, *_: step < steps,
        body,
        (tf.constant(0, tf.int32), params, zeros, zeros),
        parallel_iterations=1,
    )
    return params


class ActivationMaximizer:
    """The compiled ascent for one layer, filter set and image size of a model.

    Made once (`maximizer_for`) and called at every snapshot: the model's weights are read
    when it runs, and the steps, seed, input range, colour matrix and starting parameters are
    arguments, so none of them traces again.

    Args:
        graph: the resolved model (one image input).
        ref: the layer whose channels are maximised.
        head: the score output when `ref` is it (the filters are then classes, climbed on
            their scores before a final softmax/sigmoid), else `None`.
        filters: the channels (or classes), one image each.
        size: `(height, width)` of the images.
        channels: the image channels.
        robustness: the random transformations.
        learning_rate: Adam's step size.
    """

    def __init__(
        self,
        graph: ModelGraph,
        ref: LayerRef,
        head: Head | None,
        filters: tuple[int, ...],
        size: tuple[int, int],
        channels: int,
        robustness: Robustness,
        learning_rate: float,
    ):
        self.graph, self.ref, self.head = graph, ref, head
        self.filters = filters
        self.size = size
        self.channels = channels
        self.robustness = robustness
        self.learning_rate = learning_rate
        self.shape = (2, len(filters), channels, size[0], size[1] // 2 + 1)
        self._scale = tf.constant(fourier_scale(*size))
        units = head.num_classes if head is not None else int(ref.output_shape[-1])
        self._select = tf.one_hot(list(filters), units, dtype=tf.float32)
        self._dtype = graph.input_dtypes[0]
        # The image side of a step (spectrum -> pixels -> colours -> transformations) is many
        # small ops on a few hundred kilobytes; XLA fuses them (forward and backward), which
        # halved its cost on 2 CPU cores (BENCHMARKS.md, 10). The model side stays as it is.
        self._image_side = (
            tf.function(self._transformed, jit_compile=True, autograph=False)
            if xla_available()
            else self._transformed
        )
        # No AutoGraph: the ascent is one explicit `tf.while_loop`.
        self.compiled = compile_once(
            self._run,
            input_signature=[
                tf.TensorSpec(self.shape, tf.float32),
                tf.TensorSpec((), tf.int32),
                tf.TensorSpec((), tf.int32),
                tf.TensorSpec((channels,), tf.float32),
                tf.TensorSpec((channels,), tf.float32),
                tf.TensorSpec((channels, channels), tf.float32),
            ],
            autograph=False,
        )

    def initial(self, seed: int) -> tf.Tensor:
        """Lucid's start: a small random spectrum (a grey image with faint noise)."""
        return INIT_STD * tf.random.stateless_normal(self.shape, seed=[seed, 0])

    def measure(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(objective, score)`, each `(filters,)`: what the ascent climbs and the mean of
        each filter's channel over positions (a class's score for the score output)."""
        x = tf.cast(images, self._dtype) if self._dtype else images
        if self.head is not None:
            logits, _ = self.graph.run([x], {}, self.head)
            score = tf.reduce_sum(logits * self._select, axis=-1)
            return score, score
        _, recorded = self.graph.run([x], {}, None, stop_at=self.ref)
        out = recorded[self.ref.path]
        pre = recorded[self.ref.path + PRE_ACTIVATION]

        def channel_means(value):
            value = tf.cast(value, tf.float32)
            if value.shape.rank > 2:
                value = tf.reduce_mean(value, axis=list(range(1, value.shape.rank - 1)))
            return tf.reduce_sum(value * self._select, axis=-1)

        score = channel_means(out)
        if pre is out:
            return score, score
        return score + LEAK * channel_means(pre), score

    def _transformed(self, params, seed, colour, low, high):
        """The images, each randomly shifted, zoomed and rotated (per image and step)."""
        images = to_images(params, self._scale, self.size, colour, low, high)
        matrices = random_affine(seed, len(self.filters), *self.size, self.robustness)
        return affine_sample(images, matrices)

    def _run(self, params, steps, seed, low, high, colour):
        params = ascend(
            lambda images: self.measure(images)[0],
            params,
            steps,
            seed,
            lambda p, step_seed: self._image_side(p, step_seed, colour, low, high),
            self.learning_rate,
        )
        images = to_images(params, self._scale, self.size, colour, low, high)
        return params, images, self.measure(images)[1]

    def __call__(self, steps: int, seed: int, low, high, colour, start=None):
        """`(params, images, scores)` after `steps` steps from `start` (the parameters a
        previous call returned: a warm start) or from the seed's random start."""
        params = self.initial(seed) if start is None else start
        return self.compiled(
            params,
            tf.constant(steps, tf.int32),
            tf.constant(seed, tf.int32),
            tf.constant(low, tf.float32),
            tf.constant(high, tf.float32),
            tf.constant(colour, tf.float32),
        )


def maximizer_for(
    core: Core, ref: LayerRef, head: Head | None, filters, size, robustness, learning_rate: float
) -> ActivationMaximizer:
    """The `ActivationMaximizer` of a model for these settings, made once per model."""
    cache = core.__dict__.setdefault("activation_maximizers", {})
    channels = int(core.graph.input_shapes[0][-1])
    key = (ref.path, head, tuple(filters), tuple(size), channels, robustness, learning_rate)
    found = cache.get(key)
    if found is None:
        found = ActivationMaximizer(
            core.graph,
            ref,
            head,
            tuple(filters),
            tuple(size),
            channels,
            robustness,
            learning_rate,
        )
        cache[key] = found
    return found


def resolve_target(graph: ModelGraph, name: str, argument: str) -> tuple[LayerRef, Head | None]:
    """The layer named (or the score output, whose units are then the classes)."""
    if len(graph.input_names) != 1 or len(graph.input_shapes[0]) != 4:
        listed = ", ".join(f"{n!r} {s}" for n, s in zip(graph.input_names, graph.input_shapes))
        raise ValueError(
            "Activation maximisation needs a model with one (batch, height, width, channels) "
            f"image input. Model {graph.model.name!r} has inputs: {listed}."
        )
    head = graph.head(None, required=False)
    if head is not None and head.dense:  # a per-position output is climbed as a layer
        head = None
    if head is not None and name == head.name:
        return _ref_of(graph, head.layer), head
    ref = graph.find(name, argument)
    if head is not None and ref.layer is head.layer:
        return ref, head
    shape = ref.output_shape
    if shape is None or len(shape) not in (2, 4) or shape[-1] is None:
        raise ValueError(
            f"`{argument}` must name a layer with a (batch, height, width, channels) or "
            f"(batch, units) output, or the score output. Layer {ref.path!r} has output shape "
            f"{shape}. Received: {argument}={name!r}"
        )
    return ref, None


def _ref_of(graph: ModelGraph, layer) -> LayerRef:
    return next(r for r in graph.refs if r.layer is layer)


def units_of(ref: LayerRef, head: Head | None) -> int:
    return head.num_classes if head is not None else int(ref.output_shape[-1])


def resolve_filters(
    filters, units: int, ref: LayerRef, head: Head | None, argument: str, count: bool = False
) -> tuple[int, ...]:
    """The filter (or class) indices: `None` all, an int one (with `count`, the first so
    many), a list those; each must exist."""
    if filters is None:
        return tuple(range(units))
    if isinstance(filters, int):
        filters = tuple(range(min(filters, units))) if count else (filters,)
    bad = [f for f in filters if f >= units]
    if bad:
        what = f"classes of the score output {head.name!r}" if head else f"channels of {ref.path!r}"
        raise ValueError(
            f"`{argument}` must be indices of the {units} {what}, in [0, {units}). "
            f"Received: {argument}={list(filters) if len(filters) > 1 else filters[0]!r}"
        )
    return tuple(filters)


def resolve_size(graph: ModelGraph, size, argument: str = "size") -> tuple[int, int]:
    """The image size: the model input's, or `size` where the input's is free."""
    _, height, width, channels = graph.input_shapes[0]
    if channels is None:
        raise ValueError(
            f"Activation maximisation needs the number of image channels. Model "
            f"{graph.model.name!r} has input shape {graph.input_shapes[0]}."
        )
    if size is None:
        if height is None or width is None:
            raise ValueError(
                f"`{argument}` must give the image size (height, width): the input of model "
                f"{graph.model.name!r} has shape {graph.input_shapes[0]}. Received: "
                f"{argument}=None"
            )
        return int(height), int(width)
    if (height is not None and size[0] != height) or (width is not None and size[1] != width):
        raise ValueError(
            f"`{argument}` must match the model's input size ({height}, {width}). "
            f"Received: {argument}={size}"
        )
    return size


def resolve_range(input_range, images, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """`(low, high)`, each `(channels,)` float32: the argument's, else each channel's range
    over `images` (the training data's range, from the probe), else [0, 1]."""
    if input_range is not None:
        low, high = input_range
        if any(np.size(v) not in (1, channels) for v in input_range):
            raise ValueError(
                f"`input_range` must give one (low, high) pair or one value per channel of "
                f"the model's {channels}-channel input. Received: input_range="
                f"({low.tolist()}, {high.tolist()})"
            )
    elif images is not None:
        values = np.asarray(images, np.float64).reshape(-1, channels)
        low, high = values.min(axis=0), values.max(axis=0)
    else:
        low, high = 0.0, 1.0
    return (
        np.broadcast_to(np.asarray(low, np.float32), (channels,)).copy(),
        np.broadcast_to(np.asarray(high, np.float32), (channels,)).copy(),
    )


def robustness(size, jitter, scale, rotation) -> Robustness:
    """The transformations, checked; `jitter=None` is `default_jitter(size)`."""
    from keras_convviz._args import check_positive_float

    jitter = default_jitter(*size) if jitter is None else float(jitter)
    if not np.isfinite(jitter) or jitter < 0:
        raise ValueError(f"`jitter` must be a number >= 0 (pixels). Received: jitter={jitter!r}")
    try:
        low, high = (float(v) for v in scale)
        ok = 0 < low <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"`scale` must be (low, high) zoom factors with 0 < low <= high. Received: "
            f"scale={scale!r}"
        )
    rotation = 0.0 if rotation == 0 else check_positive_float(rotation, "rotation")
    return Robustness(jitter, (low, high), rotation)
