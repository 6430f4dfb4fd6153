"""Seeded synthetic data sets that know where their evidence is, made without downloads.

`make_shapes`: coloured shapes on cluttered images (2-D); `make_shortcut_shapes`: the same
with a class-specific cue (a coloured corner), and the shapes' masks. `make_sequences`: a
class-specific waveform at a random time in noisy multichannel sequences (1-D).
`make_volumes`: a ball layered along a class-specific axis at a random place in noisy
volumes (3-D). Each returns where the evidence lies (a box, an interval), so tests can
check that a map points at it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CLASS_NAMES = ("circle", "square", "triangle", "cross")

# Object side as a fraction of the image side.
_MIN_SIZE = 0.18
_MAX_SIZE = 0.35
# Cells per side of the colour-noise grid that is upsampled into the background.
_NOISE_GRID = 4
_NUM_LINES = 3
_NUM_SPECKS = 6
_SPECK_SIZE = 2
# Random object colours tried per image; the one farthest from the background under the
# object wins, so contrast is ensured without tying colour to class.
_COLOUR_CANDIDATES = 6


class ShapesData(NamedTuple):
    """Images of shapes with their class and the box around the shape.

    Attributes:
        images: `(n, image_size, image_size, 3)` float32 array in `[0, 1]`.
        labels: `(n,)` int32 array of indices into `CLASS_NAMES`.
        boxes: `(n, 4)` int32 array of `(top, left, bottom, right)` pixel bounds of the
            shape; `top`/`left` are inclusive and `bottom`/`right` exclusive, so
            `images[i, top:bottom, left:right]` holds every pixel of the shape.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray


def make_shapes(n: int, image_size: int = 64, seed: int = 0) -> ShapesData:
    """Makes a seeded data set of coloured shapes on a cluttered background.

    Each image shows one circle, square, triangle or cross (the class, see
    `CLASS_NAMES`) of random size (18-35 % of the image side), position and colour,
    drawn over low-frequency colour noise with a few thin lines and small specks of
    other colours. The object colour is picked far from the background it covers, so
    the object is clearly visible, while colour alone does not tell the class. Classes
    are drawn uniformly at random.

    Args:
        n: Number of images.
        image_size: Height and width of the square images, in pixels (at least 16).
        seed: Seed of the random generator; the same seed gives identical arrays.

    Returns:
        A `ShapesData` tuple `(images, labels, boxes)`.
    """
    images, labels, boxes = _render(n, image_size, seed, draw_objects=True)
    return ShapesData(images, labels, boxes)


def _render(
    n: int, image_size: int, seed: int, draw_objects: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws the data set; with `draw_objects=False` gives the same images without shapes.

    All random numbers are drawn whatever `draw_objects` is, so the background of the
    two variants is identical (which the tests use to locate the object pixels).
    """
    return _render_shapes(n, image_size, seed, draw_objects)[:3]


def _render_shapes(
    n: int, image_size: int, seed: int, draw_objects: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_render`'s images, labels and boxes, and the shapes' boolean masks."""
    if n < 0:
        raise ValueError(f"`n` must be non-negative. Received: n={n}")
    if image_size < 16:
        raise ValueError(f"`image_size` must be at least 16. Received: image_size={image_size}")
    rng = np.random.default_rng(seed)
    size = image_size
    coords = np.arange(size, dtype=np.float32) + 0.5

    images = _background(rng, n, size)
    _draw_lines(rng, images)
    _draw_specks(rng, images)

    labels = rng.integers(0, len(CLASS_NAMES), size=n).astype(np.int32)
    extent = rng.uniform(_MIN_SIZE, _MAX_SIZE, size=n).astype(np.float32) * size
    half = extent / 2
    # Keep the whole shape inside the image: the centre is at least `half` from each edge.
    cy = rng.uniform(0, 1, size=n).astype(np.float32) * (size - 2 * half) + half
    cx = rng.uniform(0, 1, size=n).astype(np.float32) * (size - 2 * half) + half
    candidates = rng.uniform(0, 1, size=(n, _COLOUR_CANDIDATES, 3)).astype(np.float32)

    masks = _shape_masks(labels, cy, cx, half, coords)
    boxes = _mask_boxes(masks)

    area = np.maximum(masks.sum(axis=(1, 2)), 1)[:, None]
    covered = np.einsum("nhw,nhwc->nc", masks.astype(np.float32), images) / area
    distance = np.linalg.norm(candidates - covered[:, None, :], axis=-1)
    colours = candidates[np.arange(n), np.argmax(distance, axis=1)]

    # Grey sensor-like noise keeps flat regions from being trivially uniform; one channel
    # is a third of the cost of colour noise.
    noise = rng.random(size=images.shape[:3] + (1,), dtype=np.float32)
    noise -= 0.5
    noise *= 0.08
    if draw_objects:
        np.copyto(images, colours[:, None, None, :], where=masks[..., None])
    images += noise
    np.clip(images, 0.0, 1.0, out=images)
    return images, labels, boxes, masks


# The shortcut's cue: a small square of a class-specific pure colour in the top-left
# corner, one pixel in, drawn over whatever lies there. A fixed saturated colour is found by
# the first conv layer alone, sooner than any shape, which needs several.
CUE_COLOURS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0))
# Cue side as a fraction of the image side (6 px on 64 px images).
_CUE_SIZE = 0.1


class ShortcutShapesData(NamedTuple):
    """Shapes with a cue that may go with the class, and where the shapes are.

    Attributes:
        images: `(n, image_size, image_size, 3)` float32 array in `[0, 1]`.
        labels: `(n,)` int32 array of indices into `CLASS_NAMES` (the shapes' classes).
        boxes: `(n, 4)` int32 `(top, left, bottom, right)` boxes of the shapes, as
            `make_shapes` gives them.
        masks: `(n, image_size, image_size)` bool array: each shape's visible pixels (those
            the cue covers left out).
        cues: `(n,)` int32 array: the class whose cue each image shows, `-1` for none.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    cues: np.ndarray


def make_shortcut_shapes(
    n: int, image_size: int = 64, seed: int = 0, cues="label"
) -> ShortcutShapesData:
    """`make_shapes`'s images with a shortcut: a cue that goes with the class.

    Each image gets a small square of a class-specific pure colour (`CUE_COLOURS`: red,
    green, blue, yellow for circle, square, triangle, cross) in its top-left corner, a
    tenth of the image side. A model trained on them can be right by the cue alone,
    looking nowhere near the shape; `masks` says where the shape is, so
    `kcv.localization` and `ConvViz(regions=...)` can tell.

    Args:
        n: Number of images.
        image_size: Height and width of the square images, in pixels (at least 16).
        seed: Seed; the images are `make_shapes(n, image_size, seed)`'s with the cue drawn
            over them.
        cues: `"label"` (each image shows its own class's cue: the shortcut), `None` (no
            cue: the same images as `make_shapes`, with their masks), or an `(n,)` int
            array of the class whose cue each image shows (`-1`: none), e.g. another
            class's to see whether a model follows the cue or the shape.

    Returns:
        A `ShortcutShapesData` tuple `(images, labels, boxes, masks, cues)`.
    """
    images, labels, boxes, masks = _render_shapes(n, image_size, seed, draw_objects=True)
    if cues is None:
        shown = np.full(n, -1, np.int32)
    elif isinstance(cues, str) and cues == "label":
        shown = labels.copy()
    else:
        shown = np.asarray(cues)
        if shown.shape != (n,) or not np.issubdtype(shown.dtype, np.integer):
            raise ValueError(
                f'`cues` must be "label", None or an int array of shape ({n},). Received: {cues!r}'
            )
        if shown.min(initial=-1) < -1 or shown.max(initial=-1) >= len(CLASS_NAMES):
            raise ValueError(
                f"`cues` must hold classes 0..{len(CLASS_NAMES) - 1} or -1 (none). "
                f"Received: values from {shown.min()} to {shown.max()}"
            )
        shown = shown.astype(np.int32)
    side = max(2, round(_CUE_SIZE * image_size))
    corner = (slice(1, 1 + side), slice(1, 1 + side))
    cued = np.flatnonzero(shown >= 0)
    colours = np.asarray(CUE_COLOURS, np.float32)[shown[cued]]
    images[(cued, *corner)] = colours[:, None, None, :]
    masks[(slice(None), *corner)] = False
    return ShortcutShapesData(images, labels, boxes, masks, shown)


def _background(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Low-frequency colour noise: a coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(0.15, 0.85, size=(n, _NOISE_GRID, _NOISE_GRID, 3)).astype(np.float32)
    # Interpolation weights from grid cells to pixels, shared by both axes.
    positions = (np.arange(size, dtype=np.float32) + 0.5) / size * (_NOISE_GRID - 1)
    lower = np.minimum(positions.astype(np.int64), _NOISE_GRID - 2)
    frac = positions - lower
    weights = np.zeros((size, _NOISE_GRID), dtype=np.float32)
    weights[np.arange(size), lower] = 1 - frac
    weights[np.arange(size), lower + 1] = frac
    # One (pixels x cells) matrix maps each grid to its image, so a single batched matmul
    # does the upsampling and its output is C-contiguous, which the in-place drawing needs.
    kernel = (weights[:, None, :, None] * weights[None, :, None, :]).reshape(size * size, -1)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    np.matmul(kernel, grid.reshape(n, _NOISE_GRID**2, 3), out=images.reshape(n, size * size, 3))
    return images


def _draw_lines(rng: np.random.Generator, images: np.ndarray) -> None:
    """Draws thin straight lines of random colour, angle and position across each image."""
    n, size = images.shape[0], images.shape[1]
    angle = rng.uniform(0, np.pi, size=(n, _NUM_LINES, 1)).astype(np.float32)
    # A point the line passes through, kept away from the edges so the line crosses the image.
    py = rng.uniform(0.15, 0.85, size=(n, _NUM_LINES, 1)).astype(np.float32) * size
    px = rng.uniform(0.15, 0.85, size=(n, _NUM_LINES, 1)).astype(np.float32) * size
    colour = rng.uniform(0, 1, size=(n, _NUM_LINES, 3)).astype(np.float32)
    # Rasterise by sampling points along the line, less than a pixel apart so the line has
    # no gaps: far cheaper than a distance test against every pixel. 1.2 * size reaches the
    # edge from any such point.
    steps = np.arange(-1.2 * size, 1.2 * size, 0.9, dtype=np.float32)
    ys = np.floor(py + steps * np.sin(angle)).astype(np.int32)
    xs = np.floor(px + steps * np.cos(angle)).astype(np.int32)
    valid = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
    image_start = (np.arange(n, dtype=np.int64) * size * size)[:, None, None]
    pixel = (image_start + ys * size + xs)[valid]
    # Boolean indexing keeps (image, line, step) order, so each line's colour repeats once
    # per visible point.
    per_line = valid.reshape(n * _NUM_LINES, steps.size).sum(axis=1)
    images.reshape(-1, 3)[pixel] = np.repeat(colour.reshape(-1, 3), per_line, axis=0)


def _draw_specks(rng: np.random.Generator, images: np.ndarray) -> None:
    """Draws small square specks of random colour at random places."""
    n, size = images.shape[0], images.shape[1]
    top = rng.integers(0, size - _SPECK_SIZE + 1, size=(n, _NUM_SPECKS))
    left = rng.integers(0, size - _SPECK_SIZE + 1, size=(n, _NUM_SPECKS))
    colour = rng.uniform(0, 1, size=(n, _NUM_SPECKS, 3)).astype(np.float32)
    index = np.broadcast_to(np.arange(n)[:, None], top.shape)
    for dy in range(_SPECK_SIZE):
        for dx in range(_SPECK_SIZE):
            images[index, top + dy, left + dx] = colour


def _shape_masks(
    labels: np.ndarray, cy: np.ndarray, cx: np.ndarray, half: np.ndarray, coords: np.ndarray
) -> np.ndarray:
    """Boolean `(n, size, size)` masks of each image's shape, vectorised per class."""
    masks = np.zeros((labels.shape[0], coords.shape[0], coords.shape[0]), dtype=bool)
    for label in range(len(CLASS_NAMES)):
        chosen = np.flatnonzero(labels == label)
        dy = coords[None, :, None] - cy[chosen, None, None]
        dx = coords[None, None, :] - cx[chosen, None, None]
        r = half[chosen, None, None]
        ady, adx = np.abs(dy), np.abs(dx)
        if label == 0:  # circle
            mask = dy * dy + dx * dx <= r * r
        else:
            mask = (ady <= r) & (adx <= r)
            if label == 2:  # triangle, apex up: the half-width grows from 0 to r downwards
                mask &= adx <= (dy + r) / 2
            elif label == 3:  # cross with arms a third of the extent wide
                mask &= (ady <= r / 3) | (adx <= r / 3)
        masks[chosen] = mask
    return masks


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight `(top, left, bottom, right)` boxes of boolean masks (bottom/right exclusive)."""
    size = masks.shape[1]
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    top = np.argmax(rows, axis=1)
    bottom = size - np.argmax(rows[:, ::-1], axis=1)
    left = np.argmax(cols, axis=1)
    right = size - np.argmax(cols[:, ::-1], axis=1)
    return np.stack([top, left, bottom, right], axis=1).astype(np.int32)


SEQUENCE_CLASS_NAMES = ("bump", "slow_wave", "fast_wave", "square_wave")

# Pattern length as a fraction of the steps.
_MIN_LENGTH = 1 / 8
_MAX_LENGTH = 1 / 4
# Cycles per pattern: the frequency scales with the pattern's length, so the slow and the
# fast wave stay apart in cycles per step (1/16-1/8 against 5/32-5/16) whatever the length.
_SLOW_CYCLES = 2.0
_FAST_CYCLES = 5.0
# Between the two: the square wave is told by its sharp edges, not by its frequency.
_SQUARE_CYCLES = 3.0
# Points of the coarse random drift that is linearly upsampled under each channel.
_DRIFT_POINTS = 5
_DRIFT = 0.3
_SEQUENCE_NOISE = 0.1


class SequencesData(NamedTuple):
    """Multichannel sequences with their class and the interval that holds the pattern.

    Attributes:
        sequences: `(n, steps, channels)` float32 array (unbounded, about `[-2, 2]`).
        labels: `(n,)` int32 array of indices into `SEQUENCE_CLASS_NAMES`.
        intervals: `(n, 2)` int32 array of `(start, end)` steps of the pattern, `end`
            exclusive, so `sequences[i, start:end]` holds every step the pattern changed.
    """

    sequences: np.ndarray
    labels: np.ndarray
    intervals: np.ndarray


def make_sequences(n: int, steps: int = 128, channels: int = 3, seed: int = 0) -> SequencesData:
    """Makes a seeded data set of waveforms hidden at a random time in noisy sequences.

    Each sequence holds one pattern (the class, see `SEQUENCE_CLASS_NAMES`): a bump (a
    positive half sine), a slow or a fast wave (2 or 5 cycles of a sine of random phase)
    or a square wave (3 cycles, random phase), each under a half-sine envelope,
    1/8 to 1/4 of the steps long, at a random time. It is added to every channel with a
    random gain (0.5-1), over a slow random drift and white noise, so neither the level
    nor the channel tells the class. Classes are drawn uniformly at random.

    Args:
        n: Number of sequences.
        steps: Length of each sequence (at least 32).
        channels: Channels of each sequence (at least 1).
        seed: Seed of the random generator; the same seed gives identical arrays.

    Returns:
        A `SequencesData` tuple `(sequences, labels, intervals)`.
    """
    return SequencesData(*_render_sequences(n, steps, channels, seed, draw_patterns=True))


def _render_sequences(
    n: int, steps: int, channels: int, seed: int, draw_patterns: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws the sequences; with `draw_patterns=False`, the same sequences without patterns.

    All random numbers are drawn whatever `draw_patterns` is, so the two variants differ
    exactly where a pattern is (which the tests use to locate it).
    """
    _check_count(n)
    if steps < 32:
        raise ValueError(f"`steps` must be at least 32. Received: steps={steps}")
    if channels < 1:
        raise ValueError(f"`channels` must be at least 1. Received: channels={channels}")
    rng = np.random.default_rng(seed)
    drift = rng.uniform(-_DRIFT, _DRIFT, size=(n, _DRIFT_POINTS, channels)).astype(np.float32)
    sequences = np.einsum("sp,npc->nsc", _linear_weights(steps, _DRIFT_POINTS), drift)
    sequences += rng.normal(0, _SEQUENCE_NOISE, size=sequences.shape).astype(np.float32)

    labels = rng.integers(0, len(SEQUENCE_CLASS_NAMES), size=n).astype(np.int32)
    low, high = max(4, round(_MIN_LENGTH * steps)), round(_MAX_LENGTH * steps)
    lengths = rng.integers(low, high + 1, size=n)
    starts = rng.integers(0, steps - lengths + 1)
    phases = rng.uniform(0, 2 * np.pi, size=n)
    gains = rng.uniform(0.5, 1.0, size=(n, channels)).astype(np.float32)
    if draw_patterns:
        for i in range(n):
            pattern = _pattern(int(labels[i]), int(lengths[i]), phases[i])
            sequences[i, starts[i] : starts[i] + lengths[i]] += pattern[:, None] * gains[i]
    intervals = np.stack([starts, starts + lengths], axis=1).astype(np.int32)
    return sequences.astype(np.float32), labels, intervals


def _pattern(label: int, length: int, phase: float) -> np.ndarray:
    """One class's waveform over `length` steps, sampled at the steps' centres."""
    t = (np.arange(length) + 0.5) / length
    envelope = np.sin(np.pi * t)
    if label == 0:  # bump
        return envelope
    if label == 3:
        return envelope * np.sign(np.sin(2 * np.pi * _SQUARE_CYCLES * t + phase))
    cycles = (_SLOW_CYCLES if label == 1 else _FAST_CYCLES) * t
    return envelope * np.sin(2 * np.pi * cycles + phase)


VOLUME_CLASS_NAMES = ("layers_depth", "layers_height", "layers_width")

# A ball's diameter as a fraction of the volume's side.
_MIN_EXTENT = 0.35
_MAX_EXTENT = 0.55
# Cells per side of the noise grid that is upsampled into the background, and its range.
_VOLUME_GRID = 3
_VOLUME_BACKGROUND = (0.0, 0.2)
_VOLUME_NOISE = 0.05
# Brightness of the dim layers of a ball, relative to its bright ones.
_DIM_LAYER = 0.4


class VolumesData(NamedTuple):
    """Volumes of layered balls with their class and the box around the ball.

    Attributes:
        volumes: `(n, size, size, size, 1)` float32 array in `[0, 1]`, axes
            `(depth, height, width, channels)`.
        labels: `(n,)` int32 array of indices into `VOLUME_CLASS_NAMES`.
        boxes: `(n, 6)` int32 array of `(z0, y0, x0, z1, y1, x1)` voxel bounds of the
            ball, the first three inclusive and the last three exclusive, so
            `volumes[i, z0:z1, y0:y1, x0:x1]` holds every voxel of the ball.
    """

    volumes: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray


def make_volumes(n: int, size: int = 16, seed: int = 0) -> VolumesData:
    """Makes a seeded data set of layered balls at a random place in noisy volumes.

    Each volume holds one ball of random size (35-55 % of the side), position and
    brightness (0.6-1), made of layers one voxel thick that alternate between bright and
    dim (40 %) along depth, height or width: the class (see `VOLUME_CLASS_NAMES`), like
    the orientation of a tissue's fibres in a scan. It lies over a smooth dark background
    (0-0.2) with noise. Every class has the same shape and mass and a local pattern of its
    own, so no class is told by what is missing; the background stays dark near the faces
    so zero padding adds no edge brighter than the ball's. Classes are drawn uniformly at
    random.

    Args:
        n: Number of volumes.
        size: Depth, height and width of the cubic volumes, in voxels (at least 8).
        seed: Seed of the random generator; the same seed gives identical arrays.

    Returns:
        A `VolumesData` tuple `(volumes, labels, boxes)`.
    """
    return VolumesData(*_render_volumes(n, size, seed, draw_objects=True))


def _render_volumes(
    n: int, size: int, seed: int, draw_objects: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws the volumes; with `draw_objects=False`, the same volumes without balls.

    All random numbers are drawn whatever `draw_objects` is, so the background of the
    two variants is identical (which the tests use to locate the ball's voxels).
    """
    _check_count(n)
    if size < 8:
        raise ValueError(f"`size` must be at least 8. Received: size={size}")
    rng = np.random.default_rng(seed)
    grid = rng.uniform(*_VOLUME_BACKGROUND, size=(n,) + (_VOLUME_GRID,) * 3).astype(np.float32)
    # One (voxels x cells) matrix maps each grid to its volume: one matmul upsamples all.
    w = _linear_weights(size, _VOLUME_GRID)
    kernel = np.einsum("za,yb,xc->zyxabc", w, w, w).reshape(size**3, _VOLUME_GRID**3)
    volumes = (grid.reshape(n, _VOLUME_GRID**3) @ kernel.T).reshape(n, size, size, size)

    labels = rng.integers(0, len(VOLUME_CLASS_NAMES), size=n).astype(np.int32)
    half = rng.uniform(_MIN_EXTENT, _MAX_EXTENT, size=n).astype(np.float32) * size / 2
    # Keep the whole ball inside: the centre is at least `half` from each face.
    centre = rng.uniform(0, 1, size=(n, 3)).astype(np.float32) * (size - 2 * half[:, None])
    centre += half[:, None]
    brightness = rng.uniform(0.6, 1.0, size=n).astype(np.float32)
    noise = rng.uniform(-_VOLUME_NOISE, _VOLUME_NOISE, size=volumes.shape).astype(np.float32)

    masks = _ball_masks(centre, half, size)
    if draw_objects:
        ball = brightness[:, None, None, None] * _layers(labels, size)
        np.copyto(volumes, ball, where=masks)
    volumes += noise
    np.clip(volumes, 0.0, 1.0, out=volumes)
    return volumes[..., None].astype(np.float32), labels, _mask_boxes_3d(masks)


def _ball_masks(centre: np.ndarray, half: np.ndarray, size: int) -> np.ndarray:
    """Boolean `(n, size, size, size)` masks of each volume's ball."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    # (n, 3 axes, size) distances of the voxel centres to the ball's centre, per axis.
    d = (coords[None, None, :] - centre[:, :, None]) ** 2
    r = half[:, None, None, None]
    return d[:, 0, :, None, None] + d[:, 1, None, :, None] + d[:, 2, None, None, :] <= r * r


def _layers(labels: np.ndarray, size: int) -> np.ndarray:
    """`(n, size, size, size)` brightness factors: 1 and `_DIM_LAYER` alternating every
    voxel along the axis the label names, so each class has a local pattern of its own."""
    parity = np.arange(size) % 2 == 0
    layers = np.where(parity, np.float32(1.0), np.float32(_DIM_LAYER))
    along = [layers[:, None, None], layers[None, :, None], layers[None, None, :]]
    return np.stack([np.broadcast_to(a, (size,) * 3) for a in along])[labels]


def _mask_boxes_3d(masks: np.ndarray) -> np.ndarray:
    """Tight `(z0, y0, x0, z1, y1, x1)` boxes of boolean volume masks (ends exclusive)."""
    size = masks.shape[1]
    starts, ends = [], []
    for other in ((2, 3), (1, 3), (1, 2)):
        present = masks.any(axis=other)
        starts.append(np.argmax(present, axis=1))
        ends.append(size - np.argmax(present[:, ::-1], axis=1))
    return np.stack(starts + ends, axis=1).astype(np.int32)


def _linear_weights(length: int, points: int) -> np.ndarray:
    """`(length, points)` weights that interpolate `points` values linearly over `length`
    samples (half-sample centres), as `_background` does for the images."""
    positions = (np.arange(length, dtype=np.float32) + 0.5) / length * (points - 1)
    lower = np.minimum(positions.astype(np.int64), points - 2)
    frac = positions - lower
    weights = np.zeros((length, points), dtype=np.float32)
    weights[np.arange(length), lower] = 1 - frac
    weights[np.arange(length), lower + 1] = frac
    return weights


def _check_count(n: int) -> None:
    if n < 0:
        raise ValueError(f"`n` must be non-negative. Received: n={n}")
