"""What fills a perturbed region: the baselines of the perturbation methods.

Occlusion (`methods.occlusion`) fills its windows with one of these, and the faithfulness
scores (`methods.faithfulness`) delete pixels to the same blurred copy, so both import them
from here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_convviz._args import make_baseline
from keras_convviz.core.needs import Const
from keras_convviz.core.probe import Probe

BASELINES = ("blur", "mean")
# The `Occlusion` need's baseline when each image's blurred copy fills its windows.
BLUR = "blur"


def gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Each sample blurred by a Gaussian of standard deviation `sigma` along every spatial
    axis (steps; height and width; depth, height and width).

    Separable, edges mirrored, so a uniform region keeps its value (black stays black).

    Args:
        images: `(batch, *spatial, channels)` float32.
        sigma: the standard deviation, in positions (pixels).

    Returns:
        `(batch, *spatial, channels)` float32.
    """
    shape = [int(d) for d in images.shape[1:]]  # static, also in a trace
    spatial, channels = shape[:-1], shape[-1]
    out = tf.convert_to_tensor(images, tf.float32)
    for axis, size in enumerate(spatial):
        radius = max(0, min(int(np.ceil(3 * sigma)), size - 1))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-6)) ** 2)
        taps = (taps / taps.sum()).astype(np.float32)
        # One 2-D depthwise convolution per axis, on a view that puts the axis on rows
        # (before the last axis: the axes after it as columns) or, for the last axis, on
        # columns (the axis before it as rows); images are their own view.
        last = axis == len(spatial) - 1
        before, after = spatial[:axis], spatial[axis + 1 :]
        if last:
            view = (-1, before[-1] if before else 1, size, channels)
        else:
            view = (-1, size, int(np.prod(after)), channels)
        kernel_shape = (1, len(taps)) if last else (len(taps), 1)
        kernel = np.tile(taps.reshape(*kernel_shape, 1, 1), (1, 1, channels, 1))
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        paddings[2 if last else 1] = [radius, radius]
        padded = tf.pad(tf.reshape(out, view), paddings, mode="SYMMETRIC")
        out = tf.nn.depthwise_conv2d(padded, kernel, strides=[1, 1, 1, 1], padding="VALID")
    return tf.reshape(out, (-1, *shape))


def occlusion_baseline(baseline, probe: Probe) -> Const | str:
    """What fills an occluded window, for the `Occlusion` need.

    Args:
        baseline: `"blur"`: each probe sample blurred by a Gaussian whose standard
            deviation is the patch's longest side (no new edge or colour: black stays
            black, white stays white), made inside the pass; `"mean"`: the probe's
            per-channel mean; a number or an array broadcastable to a sample
            `(*spatial, channels)`, in the model's input space.
        probe: the probe.

    Returns:
        `BLUR` for `"blur"`, else a `(*spatial, channels)` `Const`.
    """
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(
                f"`baseline` must be one of {BASELINES}, a number or an array. "
                f"Received: baseline={baseline!r}"
            )
        if baseline == "blur":
            return BLUR
        baseline = None
    return Const(make_baseline(baseline, probe))
