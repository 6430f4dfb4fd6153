"""A seeded synthetic image data set of coloured shapes on clutter, made without downloads."""

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
    return images, labels, boxes


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
