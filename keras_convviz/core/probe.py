"""Normalise a probe (array | (x, y) | tf.data) into fixed numpy arrays and validate it."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_convviz._warn import user_stacklevel

# Above this many probe images a callback warns: each image is a card per layer and kind.
LARGE_PROBE = 16


@dataclass(frozen=True)
class Probe:
    """A fixed batch of probe samples, with optional labels.

    Attributes:
        images: `(batch, *spatial, channels)` array as the user gave it (dtype kept): images,
            sequences `(batch, steps, channels)` or volumes `(batch, depth, height, width,
            channels)`.
        labels: `(batch,)` int32 class labels, or `None` when the probe has no class labels
            (none given, per-pixel masks, or labels per output not yet matched to the
            model's class-score output: `for_output`).
        inputs: for a model with several inputs, every input array by its key (the input's
            name when the probe was a dict, its position when it was a list), the images
            included; `None` for a plain image array.
        image_key: the key of the images in `inputs` (`None` for a plain image array).
        from_dataset: whether it is the first batch of a `tf.data.Dataset`.
        targets: the labels as given (integer ids or one-hot rows), what the model's loss
            expects, or `None`.
        per_output: labels given per model output, as `fit` takes them (a dict by output
            name, or a list in output order), before `for_output` picks one; else `None`.
    """

    images: np.ndarray
    labels: np.ndarray | None
    key: str = field(default="", compare=False)
    inputs: dict | None = field(default=None, compare=False)
    image_key: str | int | None = field(default=None, compare=False)
    from_dataset: bool = field(default=False, compare=False)
    targets: np.ndarray | None = field(default=None, compare=False)
    per_output: dict | None = field(default=None, compare=False)
    masks: np.ndarray | None = field(default=None, compare=False)
    regions: np.ndarray | None = field(default=None, compare=False)

    def for_head(self, head, class_index=None) -> Probe:
        """This probe's labels for the model output a map explains (a `graph.Head`): that
        output's labels when they were given per output; none for a regression value (its
        labels are no classes). For a segmentation output with labels, also its integer
        `masks` `(batch, *spatial)`, each sample's explained class as `labels` and that
        class's region in the mask as `regions` (float32 0/1, `(batch, *spatial)`): the
        class `class_index`, or for `None` the class with the largest labelled region other
        than class 0 (else 0). With `class_index="predicted"` the masks only: the region is
        the model's prediction, found in the pass (`targets.RegionScore`)."""
        probe = self.for_output(head.name, head.index)
        if head.regression:
            return dataclasses.replace(probe, labels=None)
        if not head.dense or probe.targets is None:
            return probe
        masks = _masks(probe.targets, probe.images.shape[:-1])
        if isinstance(class_index, str):  # "predicted"
            return dataclasses.replace(probe, labels=None, masks=masks)
        if class_index is None:
            classes = np.zeros(probe.size, np.int32)
            for i, mask in enumerate(masks):
                counts = np.bincount(mask.ravel())
                counts[0] = 0
                classes[i] = int(np.argmax(counts)) if counts.any() else 0
        else:
            classes = np.full(probe.size, int(class_index), np.int32)
        regions = (masks == classes.reshape((-1,) + (1,) * (masks.ndim - 1))).astype(np.float32)
        return dataclasses.replace(probe, labels=classes, masks=masks, regions=regions)

    def for_output(self, name: str, index: int) -> Probe:
        """This probe with the labels of one model output (by name, else by position) as
        its labels; the probe itself when it has no labels per output."""
        if self.per_output is None:
            return self
        key = name if name in self.per_output else index
        if key not in self.per_output:
            return dataclasses.replace(self, per_output=None)
        targets = self.per_output[key]
        labels = _labels_to_int(targets, self.size) if _is_class_labels(targets) else None
        return dataclasses.replace(self, labels=labels, targets=targets, per_output=None)

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.images.shape[1:])


def _to_numpy(value, what: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if tf.is_tensor(value) or hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    try:
        return np.asarray(value)
    except Exception as error:  # noqa: BLE001 - re-raised with the argument named
        raise TypeError(
            f"`probe` {what} must be array-like. Received: {type(value).__name__}"
        ) from error


def _first_batch(dataset: tf.data.Dataset):
    for element in dataset.take(1):
        return element
    raise ValueError("`probe` must hold at least one image. Received: an empty tf.data.Dataset")


def _labels_to_int(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot or scores
        labels = np.argmax(labels, axis=1)
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            "`probe` labels must be integer class ids of shape (batch,) or one-hot of shape "
            f"(batch, classes). Received: labels of shape {labels.shape}"
        )
    if labels.shape[0] != n:
        raise ValueError(
            f"`probe` labels must have one entry per image ({n} images). "
            f"Received: {labels.shape[0]} labels"
        )
    if not np.all(np.isfinite(labels.astype(np.float64))):
        raise ValueError("`probe` labels must be finite. Received: labels containing NaN/Inf")
    return labels.astype(np.int32)


def _masks(labels: np.ndarray, shape: tuple) -> np.ndarray:
    """Segmentation labels as int32 masks of `shape` `(batch, *spatial)`: integer masks
    as they are, `(..., 1)` masks squeezed, one-hot rows `(..., classes)` by their argmax."""
    labels = np.asarray(labels)
    if labels.shape == tuple(shape) + (1,):
        labels = labels[..., 0]
    elif labels.ndim == len(shape) + 1 and labels.shape[:-1] == tuple(shape):
        labels = np.argmax(labels, axis=-1)
    if labels.shape != tuple(shape):
        raise ValueError(
            "`probe` labels of a segmentation output must be integer masks of shape "
            f"{tuple(shape)} (batch, *spatial) or one-hot of shape (batch, *spatial, classes). "
            f"Received: labels of shape {labels.shape}"
        )
    if not np.all(np.isfinite(labels.astype(np.float64))) or labels.min() < 0:
        raise ValueError(
            "`probe` masks must hold class ids >= 0. Received: masks with negative or NaN values"
        )
    return labels.astype(np.int32)


def _is_class_labels(labels: np.ndarray) -> bool:
    """Whether labels are one class per sample: ids `(batch,)`, `(batch, 1)` or one-hot
    rows `(batch, classes)`, not per-position masks."""
    return np.ndim(labels) in (1, 2)


def _per_output(labels, n: int) -> dict | None:
    """Labels given per model output, as `fit` takes them: a dict by output name, or a
    list/tuple of arrays in output order; `None` for one label array."""
    if isinstance(labels, dict):
        items = labels.items()
    elif (
        isinstance(labels, (list, tuple))
        and labels
        and all(np.ndim(v) >= 1 and len(v) == n for v in labels)
        and len({np.shape(v) for v in labels}) > 1
    ):
        items = enumerate(labels)
    else:
        return None
    return {key: _to_numpy(value, f"labels {key!r}") for key, value in items}


def make_probe(probe, image_input=None) -> Probe:
    """Turn the user's `probe` argument into a `Probe`.

    Args:
        probe: an array of images `(batch, height, width, channels)`, a tuple `(x,)` or
            `(x, labels)`, or a `tf.data.Dataset` whose first element is one of those (its
            first batch is used). For a model with several inputs, `x` is a dict keyed by
            input name or a list in the model's input order. Labels are integer class ids
            or one-hot rows.
        image_input: for a multi-input `x`, the key (dict) or position (list) of the
            images; `None` picks the only 4-D array.

    Returns:
        A `Probe` with images as numpy and labels as int32 (or `None`).
    """
    if isinstance(probe, Probe):
        return probe
    if isinstance(probe, (str, bytes, os.PathLike)):
        raise TypeError(
            "`probe` must be a batch of images, an (images, labels) tuple or a "
            f"tf.data.Dataset, not a path. Received: probe={probe!r}. The log directory "
            "comes first: ConvViz(log_dir, probe)."
        )
    if probe is None:
        raise ValueError(
            "`probe` must be a batch of images, an (images, labels) tuple or a tf.data.Dataset. "
            "Received: probe=None"
        )
    from_dataset = isinstance(probe, tf.data.Dataset)
    if from_dataset:
        probe = _first_batch(probe)
    labels = None
    if isinstance(probe, (tuple, list)) and not _looks_like_image_list(probe):
        if len(probe) not in (1, 2, 3):
            raise ValueError(
                "`probe` tuple must be (x,) or (x, labels). "
                f"Received: a tuple of length {len(probe)}"
            )
        x = probe[0]
        labels = probe[1] if len(probe) > 1 else None
    else:
        x = probe
    inputs, image_key = None, None
    if isinstance(x, dict) or (isinstance(x, (tuple, list)) and not _looks_like_image_list(x)):
        inputs = _input_arrays(x)
        image_key = _image_key(inputs, image_input)
        images = inputs[image_key]
    else:
        images = _to_numpy(x, "images")
    _check_images(images, from_dataset)
    targets, per_output = None, None
    if labels is not None:
        per_output = _per_output(labels, images.shape[0])
        if per_output is not None:
            labels = None
        else:
            targets = _to_numpy(labels, "labels")
            labels = _labels_to_int(targets, images.shape[0]) if _is_class_labels(targets) else None
    digest = hashlib.sha1()
    for name, array in sorted((inputs or {"": images}).items(), key=lambda kv: str(kv[0])):
        digest.update(str((name, array.shape, array.dtype.str)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    for name, array in sorted((per_output or {"": targets}).items(), key=lambda kv: str(kv[0])):
        if array is not None:
            digest.update(str((name, array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return Probe(
        images, labels, digest.hexdigest(), inputs, image_key, from_dataset, targets, per_output
    )


def _check_images(images: np.ndarray, from_dataset: bool = False) -> None:
    # Whether an array is one sample or a batch depends on the model's input rank: that
    # is checked against the model (`check_probe_fits`).
    if images.ndim < 2:
        raise ValueError(
            f"`probe` images must be a batch of images. Received: an array of shape {images.shape}"
        )
    if images.shape[0] == 0:
        raise ValueError(
            f"`probe` must hold at least one image. Received: images of shape {images.shape}"
        )
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == np.bool_):
        raise TypeError(f"`probe` images must be numeric. Received: dtype {images.dtype}")
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
        raise ValueError(
            f"`probe` images must be finite. Received: images with {bad} NaN/Inf values"
        )


def _input_arrays(x) -> dict:
    """The arrays of a multi-input probe `x` (dict or list) by key, one batch size."""
    items = x.items() if isinstance(x, dict) else enumerate(x)
    inputs = {key: _to_numpy(value, f"input {key!r}") for key, value in items}
    if not inputs:
        raise ValueError(
            f"`probe` must hold at least one input. Received: an empty {type(x).__name__}"
        )
    sizes = {key: (a.shape[0] if a.ndim else None) for key, a in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(
            "`probe` inputs must all hold the same number of samples. Received: batch sizes "
            f"{sizes}"
        )
    for key, array in inputs.items():
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise ValueError(f"`probe` input {key!r} must be finite. Received: NaN/Inf values")
    return inputs


def _image_key(inputs: dict, image_input):
    if image_input is not None and image_input in inputs and not isinstance(image_input, bool):
        return image_input
    for spatial in ((4,), (3, 4, 5)):  # images first, then sequences and volumes
        candidates = [key for key, array in inputs.items() if array.ndim in spatial]
        if len(candidates) == 1:
            return candidates[0]
    shapes = {key: array.shape for key, array in inputs.items()}
    raise ValueError(
        "`image_input` must give the key (dict probe) or position (list probe) of the images "
        f"among the probe's inputs {shapes}. Received: image_input={image_input!r}"
    )


def _looks_like_image_list(probe) -> bool:
    """True for a plain list of same-shaped image arrays (not an (x, y) tuple)."""
    if not isinstance(probe, list) or len(probe) == 0:
        return False
    first = np.shape(probe[0])
    return len(first) == 3 and all(np.shape(p) == first for p in probe)


def _mismatch(input_shape: tuple, got: tuple) -> str | None:
    """The model input shape as `(batch, ...)` when `got` (no batch axis) does not fit it."""
    expected = tuple(input_shape)[1:]
    fits = len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected, got))
    if fits:
        return None
    return "(batch, " + ", ".join("?" if e is None else str(e) for e in expected) + ")"


def check_probe_fits(probe: Probe, input_shape: tuple, argument: str = "probe") -> None:
    """Raise a clear error when the probe images do not fit the model input.

    Args:
        probe: the probe.
        input_shape: the model's image input shape, batch axis included, `None` for free axes.
        argument: the name used in the message.
    """
    shown = _mismatch(input_shape, probe.image_shape)
    if not shown:
        return
    hint = ""
    if _mismatch(input_shape, tuple(probe.images.shape)) is None:  # one sample, no batch axis
        hint = (
            "; the probe dataset must be batched: use dataset.batch(n), n the number of "
            "probe samples"
            if probe.from_dataset
            else "; that is one sample: for one sample use x[None]"
        )
    raise ValueError(
        f"`{argument}` images must match the model input shape {shown}. "
        f"Received: images of shape {probe.images.shape}{hint}"
    )


def check_input_fits(array: np.ndarray, input_shape: tuple, name: str, argument: str) -> None:
    """Raise a clear error when a probe array does not fit a (non-image) model input."""
    shown = _mismatch(input_shape, tuple(array.shape[1:]))
    if shown:
        raise ValueError(
            f"`{argument}` input {name!r} must match the model input shape {shown}. "
            f"Received: an array of shape {array.shape}"
        )


def warn_large_probe(probe: Probe) -> None:
    """Warn when a probe is so large that its pictures would flood TensorBoard."""
    if probe.size <= LARGE_PROBE:
        return
    hint = (
        "a tf.data probe gives its first batch: take n images with "
        "dataset.unbatch().take(n).batch(n)"
        if probe.from_dataset
        else "e.g. probe=(x_val[:8], y_val[:8])"
    )
    warnings.warn(
        f"The probe holds {probe.size} samples: the callbacks write one picture per probe "
        "sample, layer and kind at every snapshot, which floods TensorBoard with cards. "
        f"{LARGE_PROBE} or fewer images usually tell the story ({hint}).",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
