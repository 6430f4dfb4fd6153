"""Functional explainers for notebooks and custom loops, on the same compiled core.

Each call is one compiled pass for its needs; repeated calls on the same model and settings
reuse the traced pass (another probe size or class index does not trace again). The maps
are raw: no per-image stretch, so their strength can be compared.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_convviz._args import (
    check_class_index,
    check_filters,
    check_input_range,
    check_layer_name,
    check_layer_names,
    check_maps,
    check_methods,
    check_occlusion_method,
    check_positive_float,
    check_positive_int,
    check_seed,
    check_size,
    make_baseline,
    occlusion_sizes,
    resolve_targets,
    saliency_options,
)
from keras_convviz.core import targets as targets_module
from keras_convviz.core.binding import bind
from keras_convviz.core.needs import Activations, Const, Plan
from keras_convviz.core.probe import make_probe
from keras_convviz.core.shared import core_for
from keras_convviz.methods import actmax
from keras_convviz.methods.cam import CAM_METHODS, Cam
from keras_convviz.methods.faithfulness import SIGMA, STEPS, Faithfulness, GivenMap
from keras_convviz.methods.occlusion import Occlusion
from keras_convviz.methods.perturb import occlusion_baseline
from keras_convviz.methods.saliency import SALIENCY_METHODS, saliency_need


def _setup(model, images, image_input, score_output, scores=True, class_index=None):
    probe = make_probe(images, image_input)
    check_class_index(class_index)
    core = core_for(model)
    bound = bind(
        core.graph, probe, image_input, score_output, scores, "images", class_index=class_index
    )
    return bound.probe, core, bound


def _target(probe, bound, class_index) -> targets_module.Target:
    head = bound.binding.head
    classes = resolve_targets(probe, class_index, head.num_classes, "class_index")
    return targets_module.for_head(head, classes, probe.regions)


def _run(core, bound, needs) -> list[np.ndarray]:
    result = core.run(Plan(needs), bound)
    return [result[need].numpy() for need in needs]


def feature_maps(
    model: keras.Model, images, layer_names: list[str] | None = None, image_input=None
) -> dict[str, np.ndarray]:
    """The activations of conv layers on some images.

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, height, width, channels)` array.
        layer_names: layers by name or nested path. Defaults to `None`: every conv layer
            whose output lays out over the input.
        image_input: for a model with several inputs, the one that takes the images (name or
            position); `images` then gives every input. Defaults to `None`: the only input
            with spatial axes.

    Returns:
        A dict layer path -> `(batch, h, w, channels)` float32 array.
    """
    _, core, bound = _setup(model, images, image_input, None, scores=False)
    graph, geometry = core.graph, bound.binding.geometry
    if layer_names is None:
        refs = graph.conv_layers(geometry)
    else:
        names = check_layer_names(layer_names)
        refs = [graph.find_spatial(name, "layer_names", geometry) for name in names]
    needs = [Activations(ref) for ref in refs]
    return {ref.path: value for ref, value in zip(refs, _run(core, bound, needs))}


def grad_cam(
    model: keras.Model,
    images,
    layer_name: str | None = None,
    class_index: int | None = None,
    method="gradcam",
    batch_size: int = 256,
    image_input=None,
    score_output=None,
):
    """CAM maps (Grad-CAM, Selvaraju et al. 2017, or another method) at the input size, raw.

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, *spatial, channels)` array (images, sequences, volumes), or
            `(images, labels)`.
        layer_name: the layer to explain. Defaults to `None`: the last layer before the
            head whose output keeps at least 2 positions along each spatial axis, after its
            activation (never a 1x1 map; a vision transformer's tokens on their patch grid
            included), as `GradCAM` picks it.
        class_index: int, `"predicted"` or None. Defaults to `None`: the label when given,
            else the predicted class.
        method: one of `"gradcam"`, `"gradcam++"`, `"layercam"`, `"hirescam"`,
            `"eigencam"`, `"scorecam"`, or a list of them (computed in one pass, sharing
            one gradient). Defaults to `"gradcam"`.
        batch_size: masked images per model call for `"scorecam"`. Defaults to `256`.
        image_input: for a model with several inputs, the one that takes the images (name or
            position); `images` then gives every input (`x` as a dict or list, in `(x,)` or
            `(x, labels)`). Defaults to `None`: the only input with spatial axes.
        score_output: for a model with several outputs, the one that holds the class scores
            (name or position). Defaults to `None`: the only (batch, units) output.

    Returns:
        `(batch, *spatial)` float32 array at the input's size, non-negative; for a list of
        methods, a dict method -> such an array.
    """
    methods = check_methods(method, CAM_METHODS)
    batch_size = check_positive_int(batch_size, "batch_size")
    probe, core, bound = _setup(model, images, image_input, score_output, class_index=class_index)
    graph, geometry = core.graph, bound.binding.geometry
    ref = (
        graph.default_cam_layer(geometry, bound.binding.head)
        if check_layer_name(layer_name) is None
        else graph.find_spatial(layer_name, "layer_name", geometry)
    )
    target = _target(probe, bound, class_index)
    layout = graph.layout(ref, geometry)
    maps = _run(core, bound, [Cam(ref, m, target, batch_size, layout) for m in methods])
    return maps[0] if isinstance(method, str) else dict(zip(methods, maps))


def occlusion_sensitivity(
    model: keras.Model,
    images,
    patch_size=None,
    stride=None,
    baseline="blur",
    class_index: int | None = None,
    batch_size: int = 256,
    image_input=None,
    score_output=None,
    method: str = "auto",
) -> np.ndarray:
    """Occlusion sensitivity: score(original) - score(occluded), per position.

    Windows of any rank, as captum's `Occlusion(sliding_window_shapes, strides)`: along a
    sequence's steps, an image's rows and columns, a volume's depth, rows and columns.

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, *spatial, channels)` array (`(batch, steps, channels)`,
            `(batch, height, width, channels)` or `(batch, depth, height, width,
            channels)`), or `(images, labels)`.
        patch_size: int or tuple of ints, one per spatial axis. Defaults to `None`: an
            eighth of the shorter image side (of a sequence's steps), a quarter of each side
            of a volume.
        stride: int or tuple of ints, one per spatial axis, each <= patch_size. Defaults to
            `None`: `patch_size`.
        baseline: what fills the window: `"blur"` (each sample blurred along its spatial
            axes by a Gaussian whose standard deviation is the patch's longest side),
            `"mean"` (the per-channel mean of
            `images`), or a value in the model's input space. Defaults to `"blur"`.
        class_index: int, `"predicted"` or None. Defaults to `None`: the label when given,
            else the predicted class.
        batch_size: occluded images per model call. Defaults to `256`.
        image_input: for a model with several inputs, the one that takes the images (name or
            position); `images` then gives every input (`x` as a dict or list, in `(x,)` or
            `(x, labels)`). Defaults to `None`: the only input with spatial axes.
        score_output: for a model with several outputs, the one that holds the class scores
            (name or position). Defaults to `None`: the only (batch, units) output.
        method: `"auto"`, `"incremental"` or `"naive"`: how the occluded copies are scored.
            `"incremental"` recomputes, layer by layer, only the rectangle each window
            changes (convolutions, pools, batch norm, activations, residual joins) and runs
            the rest on full maps; `"naive"` runs the model on every occluded copy; both
            give the same map up to float rounding. `"auto"` takes the path that a cost
            model (multiply-adds and memory traffic per layer, splicing included) finds
            cheaper. The incremental path serves images only: `"auto"` is naive for
            sequences and volumes, and `"incremental"` is refused for them. Defaults to
            `"auto"`.

    Returns:
        `(batch, *spatial)` float32 array; overlapping windows averaged.
    """
    probe, core, bound = _setup(model, images, image_input, score_output, class_index=class_index)
    patch, stride = occlusion_sizes(probe.image_shape, patch_size, stride)
    method = check_occlusion_method(method, rank=len(patch))
    batch_size = check_positive_int(batch_size, "batch_size")
    need = Occlusion(
        patch,
        stride,
        batch_size,
        _target(probe, bound, class_index),
        occlusion_baseline(baseline, probe),
        method,
    )
    return _run(core, bound, [need])[0]


def saliency(
    model: keras.Model,
    images,
    method="smoothgrad",
    class_index: int | None = None,
    samples: int = 32,
    noise: float = 0.15,
    steps: int = 32,
    baseline=None,
    seed: int = 0,
    batch_size: int = 256,
    image_input=None,
    score_output=None,
):
    """Gradient saliency: raw attributions of the target score to each input value.

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, height, width, channels)` array, or `(images, labels)`.
        method: `"gradient"` (Simonyan et al. 2014: dS/dx), `"gradient_x_input"`
            (x * dS/dx), `"smoothgrad"` (Smilkov et al. 2017: dS/dx averaged over `samples`
            noisy copies, noise standard deviation `noise` x (max - min of the image)),
            `"integrated_gradients"` (Sundararajan et al. 2017: (x - baseline) x the mean
            of dS/dx over `steps` points of the straight path, midpoint rule), or a list of
            them. Defaults to `"smoothgrad"`.
        class_index: int, `"predicted"` or None. Defaults to `None`: the label when given,
            else the predicted class.
        samples: SmoothGrad's noisy copies per image. Defaults to `32`.
        noise: SmoothGrad's noise level. Defaults to `0.15`.
        steps: Integrated Gradients' path points. Defaults to `32`.
        baseline: Integrated Gradients' starting image in the model's input space, a number
            or an array broadcastable to `(height, width, channels)`. Defaults to `None`:
            zeros.
        seed: SmoothGrad's noise seed (the same seed gives the same maps). Defaults to `0`.
        batch_size: inputs scored per model call. Defaults to `256`.
        image_input: for a model with several inputs, the one that takes the images.
        score_output: for a model with several outputs, the one that holds the class scores.

    Returns:
        `(batch, height, width, channels)` float32 array; for a list of methods, a dict
        method -> such an array. Integrated Gradients is complete: its sum over an image
        approaches S(x) - S(baseline) as `steps` grows.
    """
    methods = check_methods(method, SALIENCY_METHODS)
    options = saliency_options(samples, noise, steps, seed, batch_size)
    probe, core, bound = _setup(model, images, image_input, score_output, class_index=class_index)
    target = _target(probe, bound, class_index)
    base = Const(make_baseline(0.0 if baseline is None else baseline, probe))
    values = _run(core, bound, [saliency_need(m, target, base, **options) for m in methods])
    return values[0] if isinstance(method, str) else dict(zip(methods, values))


def faithfulness(
    model: keras.Model,
    images,
    maps,
    class_index: int | None = None,
    steps: int = STEPS,
    baseline=None,
    sigma: float = SIGMA,
    batch_size: int = 256,
    image_input=None,
    score_output=None,
) -> dict[str, np.ndarray]:
    """Deletion and insertion scores of maps (Petsiuk et al. 2018): do they rank first the
    pixels the model uses?

    The pixels of each image are ordered by its map, highest first (ties in row-major
    order). Deletion removes them in that order (sets them to `baseline`), insertion adds
    them to the baseline image, in `steps` equal steps; each curve is the target class's
    probability (softmax, or sigmoid for a single-unit head) against the fraction of pixels
    changed, and the score is its area (trapezoid rule on [0, 1]). Deletion: lower is
    better. Insertion: higher is better. All curve images are scored in one compiled pass,
    `batch_size` at a time.

    Args:
        model: a built Sequential or Functional Keras model.
        images: `(batch, height, width, channels)` array, or `(images, labels)`.
        maps: `(batch, height, width)` (or `(..., 1)`) one map per image at the images'
            size, any method's (ours, e.g. `kcv.grad_cam(...)`, or your own).
        class_index: int, `"predicted"` or None. Defaults to `None`: the label when given,
            else the predicted class.
        steps: int. Points on each curve after the first. Defaults to `16`.
        baseline: what removed pixels become: `None` or `"mean"` (the per-channel mean of
            `images`), `"blur"` (each image blurred by a Gaussian of standard deviation
            `sigma`, as the paper's insertion), or a value in the model's input space.
            Defaults to `None`.
        sigma: float. The blur's standard deviation in pixels. Defaults to `5.0`.
        batch_size: curve images per model call. Defaults to `256`.
        image_input: for a model with several inputs, the one that takes the images (name or
            position). Defaults to `None`: the only input with spatial axes.
        score_output: for a model with several outputs, the one that holds the class scores
            (name or position). Defaults to `None`: the only (batch, units) output.

    Returns:
        `{"deletion": (batch,), "insertion": (batch,)}` float32 areas under the curves.
    """
    probe, core, bound = _setup(model, images, image_input, score_output, class_index=class_index)
    given = GivenMap(Const(check_maps(maps, probe), batched=True))
    need = Faithfulness(
        given,
        _target(probe, bound, class_index),
        steps=check_positive_int(steps, "steps"),
        baseline=occlusion_baseline(baseline, probe),
        sigma=check_positive_float(sigma, "sigma"),
        batch_size=check_positive_int(batch_size, "batch_size"),
    )
    scores = _run(core, bound, [need])[0]
    return {"deletion": scores[:, 0], "insertion": scores[:, 1]}


def activation_maximization(
    model: keras.Model,
    layer_name: str,
    filters=None,
    steps: int = actmax.STEPS,
    size=None,
    seed: int = 0,
    probe=None,
    input_range=None,
    learning_rate: float = actmax.LEARNING_RATE,
    jitter: float | None = None,
    scale: tuple[float, float] = (0.95, 1.05),
    rotation: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """What each filter looks for: the image that maximises its channel's mean activation.

    Feature visualisation as in Olah et al. 2017 ("Feature Visualization", Lucid): each
    image is parameterised by a scaled Fourier spectrum and decorrelated colours, scored
    under random jitter, zoom and rotation, and climbed by Adam; the images of all filters
    are one batch and the whole ascent is one compiled loop (traced once per layer, filters
    and size), running only the layers up to `layer_name`. A layer with its own activation
    (a ReLU conv) is climbed on its output plus a tenth of its output before the
    activation, so a channel that starts off still has a gradient.

    Args:
        model: a built Sequential or Functional Keras model with one image input.
        layer_name: the layer (name or nested path) whose channels to maximise, a layer
            with a `(batch, height, width, channels)` or `(batch, units)` output; or the
            score output (its name, or its final layer's), whose units are then the classes,
            climbed on their scores before a final softmax/sigmoid.
        filters: `None` (every channel), an int (one channel) or a list of channel (or
            class) indices. Defaults to `None`.
        steps: int. Adam steps. Defaults to `128`.
        size: int or `(height, width)`: the image size, needed only where the model's input
            size is free. Defaults to `None`: the model's input size.
        seed: int. The random start and transformations (the same seed gives the same
            images). Defaults to `0`.
        probe: images of the training data `(batch, height, width, channels)` (or `(x, y)`,
            or a `tf.data.Dataset`): the images' range per channel is the range of the
            returned images, and their colour correlations the colour basis. Defaults to
            `None`.
        input_range: `(low, high)`, numbers or one per channel: the values the model's
            input takes, e.g. `(0, 255)`; overrides the probe's. Defaults to `None`: the
            probe's range, else `(0, 1)`.
        learning_rate: float. Adam's step size in the parameter space. Defaults to `0.05`.
        jitter: float. Largest random shift in pixels. Defaults to `None`: about a 16th of
            the shorter side.
        scale: `(low, high)` random zoom. Defaults to `(0.95, 1.05)`.
        rotation: float. Largest random rotation in degrees. Defaults to `5.0`.

    Returns:
        `(images, scores)`: `(filters, height, width, channels)` float32 images in the
        model's input range, one per filter, and `(filters,)` float32 the mean activation
        of each filter's channel over positions on its image (a class's score).

    Example:

    ```python
    images, scores = kcv.activation_maximization(model, "conv3", filters=[0, 1, 2],
                                                 probe=x_val[:64])
    ```
    """
    steps = check_positive_int(steps, "steps")
    seed = check_seed(seed)
    filters = check_filters(filters)
    size = check_size(size)
    input_range = check_input_range(input_range)
    learning_rate = check_positive_float(learning_rate, "learning_rate")
    core = core_for(model)
    ref, head = actmax.resolve_target(core.graph, check_layer_name(layer_name), "layer_name")
    units = actmax.units_of(ref, head)
    filters = actmax.resolve_filters(filters, units, ref, head, "filters")
    size = actmax.resolve_size(core.graph, size)
    robustness = actmax.robustness(size, jitter, scale, rotation)
    images = None if probe is None else make_probe(probe).images
    channels = int(core.graph.input_shapes[0][-1])
    low, high = actmax.resolve_range(input_range, images, channels)
    colour = actmax.colour_sqrt(channels, images, low, high)
    maximizer = actmax.maximizer_for(core, ref, head, filters, size, robustness, learning_rate)
    _, result, scores = maximizer(steps, seed, low, high, colour)
    return result.numpy(), scores.numpy()
