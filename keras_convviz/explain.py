"""Functional explainers for notebooks and custom loops, on the same compiled core.

Repeated calls on the same model and settings reuse the traced passes. The maps are raw:
no per-image stretch, so their strength can be compared.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_convviz._base import check_layer_names, check_positive_int
from keras_convviz._core import core_for, occlusion_geometry
from keras_convviz._probe import make_probe, resolve_targets
from keras_convviz.occlusion_sensitivity import default_patch_size, make_baseline


def _setup(model, images, image_input, score_output, scores=True):
    probe = make_probe(images, image_input)
    core = core_for(model)
    bound = core.bind(probe, image_input, score_output, scores, argument="images")
    return probe, core, bound


def feature_maps(
    model: keras.Model, images, layer_names: list[str] | None = None, image_input=None
) -> dict[str, np.ndarray]:
    """The activations of conv layers on some images.

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, height, width, channels)` array.
        layer_names: layers by name or nested path. Defaults to `None`: every 2-D conv layer.
        image_input: for a model with several inputs, the one that takes the images (name or
            position); `images` then gives every input. Defaults to `None`: the only 4-D input.

    Returns:
        A dict layer path -> `(batch, h, w, channels)` float32 array.
    """
    probe, core, bound = _setup(model, images, image_input, None, scores=False)
    graph = core.graph
    if layer_names is None:
        refs = graph.conv_layers()
    else:
        names = check_layer_names(layer_names)
        refs = [graph.find_spatial(name, "layer_names") for name in names]
    fn = core.snapshot_fn(tuple(refs), (), bound.binding)
    out = fn(bound.images, bound.extras, tf.zeros((0, probe.size), tf.int32))
    return {path: value.numpy() for path, value in out["activations"].items()}


def grad_cam(
    model: keras.Model,
    images,
    layer_name: str | None = None,
    class_index: int | None = None,
    image_input=None,
    score_output=None,
) -> np.ndarray:
    """Grad-CAM maps (Selvaraju et al. 2017) at the input size, raw (not rescaled).

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, height, width, channels)` array, or `(images, labels)`.
        layer_name: the layer to explain. Defaults to `None`: the last layer with a 4-D
            output before the head.
        class_index: int or None. Defaults to `None`: the label when given, else the
            predicted class.
        image_input: for a model with several inputs, the one that takes the images (name or
            position); `images` then gives every input (`x` as a dict or list, in `(x,)` or
            `(x, labels)`). Defaults to `None`: the only 4-D input.
        score_output: for a model with several outputs, the one that holds the class scores
            (name or position). Defaults to `None`: the only (batch, units) output.

    Returns:
        `(batch, height, width)` float32 array.
    """
    probe, core, bound = _setup(model, images, image_input, score_output)
    graph = core.graph
    ref = (
        graph.default_cam_layer()
        if layer_name is None
        else graph.find_spatial(layer_name, "layer_name")
    )
    num_classes = bound.binding.head.num_classes
    targets = resolve_targets(probe, class_index, num_classes, "class_index")
    fn = core.snapshot_fn((), (ref,), bound.binding)
    return fn(bound.images, bound.extras, tf.constant(targets[None, :]))["cams"][0].numpy()


def occlusion_sensitivity(
    model: keras.Model,
    images,
    patch_size=None,
    stride=None,
    baseline=None,
    class_index: int | None = None,
    batch_size: int = 256,
    image_input=None,
    score_output=None,
) -> np.ndarray:
    """Occlusion sensitivity: score(original) - score(occluded), per pixel.

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, height, width, channels)` array, or `(images, labels)`.
        patch_size: int or (int, int). Defaults to `None`: an eighth of the shorter side.
        stride: int or (int, int) <= patch_size. Defaults to `None`: `patch_size`.
        baseline: the occluding value in the model's input space. Defaults to `None`: the
            per-channel mean of `images`.
        class_index: int or None. Defaults to `None`: the label when given, else the
            predicted class.
        batch_size: occluded images per model call. Defaults to `256`.
        image_input: for a model with several inputs, the one that takes the images (name or
            position); `images` then gives every input (`x` as a dict or list, in `(x,)` or
            `(x, labels)`). Defaults to `None`: the only 4-D input.
        score_output: for a model with several outputs, the one that holds the class scores
            (name or position). Defaults to `None`: the only (batch, units) output.

    Returns:
        `(batch, height, width)` float32 array; overlapping windows averaged.
    """
    probe, core, bound = _setup(model, images, image_input, score_output)
    if patch_size is None:
        patch_size = default_patch_size(probe.image_shape)
    patch, stride, _ = occlusion_geometry(probe.image_shape, patch_size, stride)
    batch_size = check_positive_int(batch_size, "batch_size")
    binding = bound.binding
    targets = resolve_targets(probe, class_index, binding.head.num_classes, "class_index")
    forward = core.snapshot_fn((), (), binding)
    logits = forward(bound.images, bound.extras, tf.zeros((0, probe.size), tf.int32))["logits"]
    occlude = core.occlusion_fn(patch, stride, batch_size, binding)
    baseline = tf.constant(make_baseline(baseline, probe))
    return occlude(bound.images, bound.extras, tf.constant(targets), logits, baseline).numpy()
