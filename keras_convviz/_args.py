"""Every argument check, shared by the callbacks and the functional explainers.

Messages follow Keras: they name the argument, say what was expected and echo the value.
What the arguments alone decide is checked at construction; what needs the model (class
ranges, layers) when the model is known, before the first epoch runs.
"""

from __future__ import annotations

import os

import numpy as np

from keras_convviz.core import geometry
from keras_convviz.core.probe import Probe

ON_ERROR = ("warn", "raise")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_log_dir(log_dir) -> str:
    if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
        raise TypeError(f"`log_dir` must be a path. Received: log_dir={log_dir!r}")
    return os.fspath(log_dir)


def check_on_error(on_error) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"`on_error` must be one of {ON_ERROR}. Received: on_error={on_error!r}")
    return on_error


def check_freq(freq, argument: str = "freq") -> int:
    if not _is_int(freq) or freq < 0:
        raise ValueError(
            f"`{argument}` must be a non-negative int (epochs between snapshots; 0 disables). "
            f"Received: {argument}={freq!r}"
        )
    return int(freq)


def check_bool(value, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{argument}` must be True or False. Received: {argument}={value!r}")
    return bool(value)


def check_positive_int(value, argument: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"`{argument}` must be an int >= 1. Received: {argument}={value!r}")
    return int(value)


def check_positive_float(value, argument: str) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 0:
        raise ValueError(f"`{argument}` must be a number > 0. Received: {argument}={value!r}")
    return float(value)


def check_budget(budget, argument: str = "budget") -> float | None:
    ok = isinstance(budget, (int, float, np.integer, np.floating)) and not isinstance(budget, bool)
    if budget is not None and not (ok and 0 < budget <= 1):
        raise ValueError(
            f"`{argument}` must be None or a number in (0, 1] (the largest share of the "
            f"training time that snapshots may hold). Received: {argument}={budget!r}"
        )
    return None if budget is None else float(budget)


def check_seed(seed, argument: str = "seed") -> int:
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"`{argument}` must be a non-negative int. Received: {argument}={seed!r}")
    return int(seed)


def check_layer_names(layer_names, argument: str = "layer_names"):
    if layer_names is None:
        return None
    if isinstance(layer_names, str):
        return [layer_names]
    names = list(layer_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"`{argument}` must be None or a non-empty list of layer names. "
            f"Received: {argument}={layer_names!r}"
        )
    return names


def check_layer_name(layer_name, argument: str = "layer_name"):
    if layer_name is not None and not isinstance(layer_name, str):
        raise TypeError(f"`{argument}` must be a str or None. Received: {argument}={layer_name!r}")
    return layer_name


def check_methods(method, registry, argument: str = "method") -> tuple[str, ...]:
    """One method name or a non-empty list of them, each a key of `registry`."""
    names = [method] if isinstance(method, str) else method
    try:
        names = list(names)
    except TypeError:
        names = None
    if not names or any(not isinstance(n, str) or n not in registry for n in names):
        raise ValueError(
            f"`{argument}` must be one of {sorted(registry)} or a list of them. "
            f"Received: {argument}={method!r}"
        )
    return tuple(dict.fromkeys(names))


def pair(value, argument: str) -> tuple[int, int]:
    """An int or a pair of ints, each >= 1, as `(rows, cols)`."""
    return sizes(value, argument, 2)


def sizes(value, argument: str, rank: int) -> tuple[int, ...]:
    """An int or `rank` ints (one per spatial axis), each >= 1, as a `rank`-tuple."""
    given = (value,) * rank if _is_int(value) else tuple(np.atleast_1d(np.asarray(value, object)))
    if len(given) != rank or not all(_is_int(v) for v in given) or min(given) < 1:
        what = geometry.WINDOW_SIZES.get(rank, f"{rank} positive ints")
        raise ValueError(
            f"`{argument}` must be a positive int or {what}. Received: {argument}={value!r}"
        )
    return tuple(int(v) for v in given)


def occlusion_sizes(image_shape, patch_size, stride) -> tuple[tuple, tuple]:
    """The occlusion window and stride, one length per spatial axis of the probe samples
    `(*spatial, channels)` (`(rows, cols)` for images), checked against the samples.

    `patch_size=None`: the rank's default window (`geometry.default_window`);
    `stride=None` equals the patch.
    """
    spatial = tuple(int(s) for s in image_shape[:-1])
    rank = len(spatial)
    if rank not in geometry.NAMES:
        if patch_size is None and stride is None:
            return (), ()  # the callback switches itself off when the model is known
        raise ValueError(
            "`patch_size` and `stride` need probe samples of 1 to 3 spatial axes "
            "(steps; height, width; depth, height, width) before the channels. Received: "
            f"samples of shape {tuple(image_shape)}, patch_size={patch_size}, stride={stride}"
        )
    if patch_size is None:
        patch_size = geometry.default_window(spatial)
    patch = sizes(patch_size, "patch_size", rank)
    stride = patch if stride is None else sizes(stride, "stride", rank)
    if any(p > s for p, s in zip(patch, spatial)):
        what = geometry.SAMPLES[rank]
        raise ValueError(
            f"`patch_size` must fit in the {'x'.join(map(str, spatial))} probe {what}. "
            f"Received: patch_size={patch_size}"
        )
    if any(s > p for s, p in zip(stride, patch)):
        raise ValueError(
            "`stride` must be at most `patch_size` so every pixel is occluded. "
            f"Received: stride={stride}, patch_size={patch_size}"
        )
    return patch, stride


OCCLUSION_METHODS = ("auto", "incremental", "naive")


def check_occlusion_method(method, argument: str = "method", rank: int = 2) -> str:
    """How occluded copies are scored: `"incremental"` (recompute only what each window
    changes; 2-D windows only), `"naive"` (a forward pass per copy) or `"auto"` (the
    cheaper, by a cost model), for probe samples of `rank` spatial axes."""
    if not isinstance(method, str) or method not in OCCLUSION_METHODS:
        raise ValueError(
            f"`{argument}` must be one of {OCCLUSION_METHODS}: how the occluded copies are "
            f"scored. Received: {argument}={method!r}"
        )
    if method == "incremental" and rank != 2 and rank in geometry.LAYOUTS:
        layout = "(" + geometry.LAYOUTS[rank].split(", ", 1)[1]
        raise ValueError(
            f"`{argument}` must be 'auto' or 'naive' for probe samples {layout}: the "
            "incremental engine recomputes 2-D (height, width) windows only. "
            f"Received: {argument}={method!r}"
        )
    return method


# `class_index` naming each sample's predicted class (a segmentation output's predicted
# region, `core.targets.RegionScore`).
PREDICTED = "predicted"


def check_class_index(class_index, argument: str = "class_index") -> None:
    """Type and sign of `class_index`, before the model is known."""
    resolve_targets(None, class_index, None, argument)


def resolve_targets(probe: Probe | None, class_index, num_classes: int | None, argument: str):
    """Per-image target classes: `-1` means "the predicted class", decided in the graph.

    Args:
        probe: the probe (`None`: check `class_index` alone).
        class_index: `None` (true label when the probe has labels, else predicted class),
            `"predicted"` (the predicted class), or an int class for every image.
        num_classes: the number of score units, for range checks (`None` to skip).
        argument: the argument name used in messages.

    Returns:
        `(batch,)` int32 array (`None` when `probe` is `None`).
    """
    predicted = isinstance(class_index, str) and class_index == PREDICTED
    if class_index is None or predicted:
        if probe is None:
            return None
        if probe.labels is None or predicted:
            return np.full((probe.size,), -1, np.int32)
        targets = probe.labels
        if num_classes is not None and (targets.min() < 0 or targets.max() >= num_classes):
            raise ValueError(
                f"`probe` labels must be class ids in [0, {num_classes}) for the model's "
                f"{num_classes} outputs. Received: labels in [{targets.min()}, {targets.max()}]"
            )
        return targets.astype(np.int32)
    if not _is_int(class_index):
        raise TypeError(
            f"`{argument}` must be None, {PREDICTED!r} or an int class index. "
            f"Received: {argument}={class_index!r}"
        )
    if class_index < 0 and num_classes is None:
        raise ValueError(
            f"`{argument}` must be None, {PREDICTED!r} or a non-negative int class index. "
            f"Received: {argument}={class_index}"
        )
    if num_classes is not None and not 0 <= class_index < num_classes:
        raise ValueError(
            f"`{argument}` must be in [0, {num_classes}) for the model's {num_classes} outputs. "
            f"Received: {argument}={class_index}"
        )
    return None if probe is None else np.full((probe.size,), int(class_index), np.int32)


def make_baseline(baseline, probe: Probe) -> np.ndarray:
    """A baseline sample as a `(*spatial, channels)` float32 array.

    `None` gives the per-channel mean of the probe samples, a value in the model's own input
    space whatever its scaling ([0, 1], [0, 255] or standardised).
    """
    shape = probe.image_shape
    if baseline is None:
        value = probe.images.astype(np.float64).mean(axis=tuple(range(probe.images.ndim - 1)))
    else:
        value = np.asarray(baseline, dtype=np.float64)
    try:
        return np.broadcast_to(value, shape).astype(np.float32)
    except ValueError as error:
        raise ValueError(
            f"`baseline` must be a number or an array broadcastable to the image shape {shape}. "
            f"Received: baseline of shape {np.shape(baseline)}"
        ) from error


def saliency_options(samples, noise, steps, seed, batch_size) -> dict:
    """The sampling options of the saliency methods, checked."""
    return {
        "samples": check_positive_int(samples, "samples"),
        "noise": check_positive_float(noise, "noise"),
        "steps": check_positive_int(steps, "steps"),
        "seed": check_seed(seed),
        "batch_size": check_positive_int(batch_size, "batch_size"),
    }


def check_class_names(class_names, argument: str = "class_names"):
    """None or a list of class names (str), one per score unit (checked once known)."""
    if class_names is None:
        return None
    names = [class_names] if isinstance(class_names, str) else class_names
    try:
        names = list(names)
    except TypeError:
        names = None
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"`{argument}` must be None or a list of class names (str). "
            f"Received: {argument}={class_names!r}"
        )
    return names


def check_class_names_fit(class_names, num_classes: int, argument: str = "class_names"):
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"`{argument}` must name each of the model's {num_classes} classes. "
            f"Received: {len(class_names)} names {class_names[:8]}"
        )


FAITHFULNESS_OPTIONS = ("steps", "baseline", "sigma", "batch_size")


def check_maps(maps, probe: Probe, argument: str = "maps") -> np.ndarray:
    """Maps given for the probe's images: `(batch, height, width)` float32, finite."""
    expected = (probe.size, *probe.image_shape[:2])
    try:
        array = np.asarray(maps, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{argument}` must be an array of shape {expected} (one map per image). "
            f"Received: {type(maps).__name__}"
        ) from error
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.shape != expected:
        hint = ""
        if array.ndim == 4:
            hint = (
                " Reduce attributions over channels first, e.g. np.abs(a).max(-1) for a "
                "gradient, a.sum(-1) for gradient x input."
            )
        raise ValueError(
            f"`{argument}` must have shape {expected}: one (height, width) map per image, at "
            f"the images' size. Received: shape {array.shape}.{hint}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"`{argument}` must be finite. Received: maps with NaN or Inf values")
    return array


def faithfulness_options(faithfulness, argument: str = "faithfulness") -> dict | None:
    """`False`, `True` or a dict of `kcv.faithfulness` options: `None` or the options."""
    if faithfulness is False or faithfulness is None:
        return None
    if faithfulness is True:
        return {}
    if not isinstance(faithfulness, dict) or set(faithfulness) - set(FAITHFULNESS_OPTIONS):
        unknown = (
            sorted(set(faithfulness) - set(FAITHFULNESS_OPTIONS))
            if isinstance(faithfulness, dict)
            else None
        )
        raise ValueError(
            f"`{argument}` must be True, False or a dict of options among "
            f"{list(FAITHFULNESS_OPTIONS)}. Received: {argument}={faithfulness!r}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    options = dict(faithfulness)
    for name in ("steps", "batch_size"):
        if name in options:
            options[name] = check_positive_int(options[name], f"{argument}['{name}']")
    if "sigma" in options:
        options["sigma"] = check_positive_float(options["sigma"], f"{argument}['sigma']")
    return options


SCALES = ("image", "run")


def check_scale(scale, argument: str = "scale") -> str:
    """How pictures are scaled: `"image"` (each on its own) or `"run"` (fixed per map
    across the run: a running maximum)."""
    if scale not in SCALES:
        raise ValueError(f"`{argument}` must be one of {SCALES}. Received: {argument}={scale!r}")
    return scale


def check_input_range(input_range, argument: str = "input_range"):
    """`None` or `(low, high)`, each a number or one per channel, with low < high."""
    if input_range is None:
        return None
    try:
        low, high = (np.asarray(v, np.float64) for v in input_range)
        ok = low.ndim <= 1 and high.ndim <= 1 and np.all(np.isfinite([*low.ravel(), *high.ravel()]))
        ok = ok and bool(np.all(np.broadcast_arrays(low, high)[0] < high))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"`{argument}` must be None or (low, high), numbers or one per channel, with "
            f"low < high: the values the model's input takes. Received: {argument}={input_range!r}"
        )
    return low, high


def check_filters(filters, argument: str = "filters", count: bool = False):
    """`None`, an int (a filter index; with `count`, how many) or a non-empty list of ints."""
    if filters is None or (_is_int(filters) and (filters >= 1 if count else filters >= 0)):
        return filters if filters is None else int(filters)
    if not isinstance(filters, (str, bytes)):
        try:
            values = list(filters)
        except TypeError:
            values = None
        if values and all(_is_int(v) and v >= 0 for v in values):
            return tuple(int(v) for v in values)
    what = "an int >= 1 (the first so many)" if count else "an int >= 0 (one filter)"
    raise ValueError(
        f"`{argument}` must be None, {what} or a non-empty list of filter indices >= 0. "
        f"Received: {argument}={filters!r}"
    )


def check_size(size, argument: str = "size"):
    """`None` or the image size, an int or `(height, width)`."""
    return None if size is None else pair(size, argument)


def check_regions(regions, size: int, spatial, argument: str = "regions") -> np.ndarray | None:
    """Where the object is on each probe sample, as float32 0/1 masks `(batch, *spatial)`.

    Args:
        regions: `None`; masks `(batch, *spatial)` (bool or 0/1; a trailing axis of length
            1 accepted) at the samples' size; or boxes `(batch, 2 * rank)`: the start of
            each spatial axis then its end, in pixels (steps, voxels), starts inclusive and
            ends exclusive (`(y0, x0, y1, x1)` for images, `(start, end)` for sequences,
            `(z0, y0, x0, z1, y1, x1)` for volumes). Where both readings fit (a sequence of
            2 steps) the array is read as masks.
        size: the number of probe samples.
        spatial: the samples' spatial shape `(height, width)` (`(steps,)`, `(depth,
            height, width)`).

    Returns:
        `(batch, *spatial)` float32 masks of 0 and 1, each with at least one 1; `None` for
        `None`.
    """
    if regions is None:
        return None
    spatial = tuple(int(s) for s in spatial)
    rank = len(spatial)
    masks_shape, boxes_shape = (size, *spatial), (size, 2 * rank)
    expected = (
        f"masks of shape {masks_shape} (bool or 0/1, one per probe sample at its size) or "
        f"boxes of shape {boxes_shape} (the start of each spatial axis, then its end, in "
        "pixels)"
    )
    try:
        array = np.asarray(regions)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{argument}` must be {expected}. Received: {type(regions).__name__}"
        ) from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(
            f"`{argument}` must be {expected}. Received: an array of dtype {array.dtype}"
        )
    if array.ndim == rank + 2 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.shape == masks_shape:
        masks = array.astype(np.float32)
        if not np.isin(masks, (0.0, 1.0)).all():
            raise ValueError(
                f"`{argument}` must be masks of 0 and 1 (or bool). Received: masks with "
                f"values from {masks.min():g} to {masks.max():g}"
            )
    elif array.shape == boxes_shape:
        masks = _box_masks(array, spatial, argument)
    else:
        count = (
            "" if array.ndim == 0 else f" ({array.shape[0]} region(s) for {size} probe sample(s))"
        )
        raise ValueError(f"`{argument}` must be {expected}. Received: shape {array.shape}{count}")
    empty = np.flatnonzero(masks.reshape(size, -1).max(axis=1, initial=0.0) == 0)
    if empty.size:
        raise ValueError(
            f"`{argument}` must hold at least one pixel inside each probe sample's region. "
            f"Received: empty regions for probe sample(s) {empty.tolist()}"
        )
    return masks


def _box_masks(boxes: np.ndarray, spatial: tuple, argument: str) -> np.ndarray:
    """Boxes `(batch, 2 * rank)` (starts, then exclusive ends) as 0/1 masks."""
    rank = len(spatial)
    if not np.all(np.isfinite(boxes.astype(np.float64))) or np.any(boxes != np.round(boxes)):
        raise ValueError(
            f"`{argument}` boxes must be whole pixel positions. Received: {boxes.tolist()}"
        )
    boxes = boxes.astype(np.int64)
    starts, ends = boxes[:, :rank], boxes[:, rank:]
    bad = np.flatnonzero(
        (starts < 0).any(1) | (ends > np.array(spatial)).any(1) | (ends <= starts).any(1)
    )
    if bad.size:
        raise ValueError(
            f"`{argument}` boxes must hold 0 <= start < end <= size along each spatial axis "
            f"(size {spatial}; ends exclusive), so no box is empty or outside the samples. "
            f"Received: boxes {boxes[bad].tolist()} for probe sample(s) {bad.tolist()}"
        )
    masks = np.zeros((len(boxes), *spatial), np.float32)
    for i, (start, end) in enumerate(zip(starts, ends)):
        masks[(i, *(slice(s, e) for s, e in zip(start, end)))] = 1.0
    return masks
