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
    """Each image blurred by a Gaussian of standard deviation `sigma` pixels.

    Separable, edges mirrored, so a uniform region keeps its value (black stays black).

    Args:
        images: `(batch, height, width, channels)` float32.
        sigma: the standard deviation, in pixels.

    Returns:
        `(batch, height, width, channels)` float32.
    """
    height, width, channels = (int(d) for d in images.shape[1:])  # static, also in a trace
    out = tf.convert_to_tensor(images, tf.float32)
    for axis, size in ((1, height), (2, width)):
        radius = max(0, min(int(np.ceil(3 * sigma)), size - 1))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-6)) ** 2)
        taps = (taps / taps.sum()).astype(np.float32)
        shape = (len(taps), 1) if axis == 1 else (1, len(taps))
        kernel = np.tile(taps.reshape(*shape, 1, 1), (1, 1, channels, 1))
        paddings = [[0, 0], [0, 0], [0, 0], [0, 0]]
        paddings[axis] = [radius, radius]
        padded = tf.pad(out, paddings, mode="SYMMETRIC")
        out = tf.nn.depthwise_conv2d(padded, kernel, strides=[1, 1, 1, 1], padding="VALID")
    return out


def occlusion_baseline(baseline, probe: Probe) -> Const | str:
    """What fills an occluded window, for the `Occlusion` need.

    Args:
        baseline: `"blur"`: each probe image blurred by a Gaussian whose standard
            deviation is the patch size (no new edge or colour: black stays black, white
            stays white), made inside the pass; `"mean"`: the probe's per-channel mean; a
            number or an array broadcastable to `(height, width, channels)`, in the model's
            input space.
        probe: the probe.

    Returns:
        `BLUR` for `"blur"`, else a `(height, width, channels)` `Const`.
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
