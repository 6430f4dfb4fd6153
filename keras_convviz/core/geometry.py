"""The spatial layout of a tensor, for every rank the callbacks serve.

A probe sample and a layer output are `(batch, *spatial, channels)`: 1-D steps (a sequence,
audio features, sensors), 2-D height x width (images), 3-D depth x height x width (video,
CT/MR volumes). A vision transformer's `(batch, tokens, dim)` is laid out on the patch grid
its patch embedding made, after any leading extra tokens (a class token). One `Geometry`
says which; everything that needs the spatial axes (CAM pooling, windows, resizing, the
renderers) asks it instead of assuming `(batch, height, width, channels)`.

Pictures are 2-D: `Geometry.picture` lays a tensor of any rank out as a 2-D
`(batch, height, width, channels)` picture (a sequence as a channels x steps strip, a volume
as a montage of evenly spaced depth slices), so the 2-D renderers draw every rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

# Depth slices a volume's montage shows by default.
MAX_SLICES = 8
# A sequence's strip is drawn about this many times wider than high.
STRIP_ASPECT = 4

NAMES = {1: "steps", 2: "height x width", 3: "depth x height x width"}
LAYOUTS = {1: "(batch, steps, channels)", 2: "(batch, height, width, channels)",
           3: "(batch, depth, height, width, channels)"}  # fmt: skip
# What the samples of each rank are called, and their axes as a window's sizes name them.
SAMPLES = {1: "sequences", 2: "images", 3: "volumes"}
WINDOW_SIZES = {1: "a tuple of 1 positive int (steps)", 2: "a pair of positive ints",
                3: "3 positive ints (depth, rows, columns)"}  # fmt: skip


def default_window(spatial: tuple[int, ...]) -> tuple[int, ...] | int:
    """Occlusion's default window: about 8 windows along a sequence and per side of an
    image (an eighth of the shorter side, square), and 4 per axis of a volume (a quarter of
    each side), so a volume is scored about as many times as an image (at least 1 each)."""
    if len(spatial) == 3:
        return tuple(max(1, side // 4) for side in spatial)
    return max(1, min(spatial) // 8)


@dataclass(frozen=True)
class Geometry:
    """Where the spatial axes of a tensor are.

    Attributes:
        rank: the number of spatial axes (1, 2 or 3) once laid out on its grid.
        grid: for tokens, the patch grid `(rows, columns)`; `None` for a plain tensor.
        extra_tokens: tokens before the grid's (a class token), dropped on the grid.
        slices: depth slices a 3-D picture shows at most.
    """

    rank: int
    grid: tuple[int, int] | None = None
    extra_tokens: int = 0
    slices: int = MAX_SLICES

    @property
    def key(self) -> tuple:
        """The geometry as plain values, `Geometry(*key)` rebuilds it: what a `tf.function`
        takes to trace once per geometry (it keys other objects by identity)."""
        return (self.rank, self.grid, self.extra_tokens, self.slices)

    @property
    def is_tokens(self) -> bool:
        return self.grid is not None

    @property
    def name(self) -> str:
        return "tokens" if self.is_tokens else f"{self.rank}d"

    def on_grid(self, x: tf.Tensor) -> tf.Tensor:
        """`(batch, *spatial, channels)`: tokens dropped of their extra tokens and laid out
        on the patch grid; any other tensor unchanged."""
        if not self.is_tokens:
            return x
        x = x[:, self.extra_tokens :]
        return tf.reshape(x, (-1, *self.grid, x.shape[-1]))

    def resize(self, maps: tf.Tensor, size) -> tf.Tensor:
        """Maps `(batch, *spatial)` resized linearly to `size` (one length per spatial
        axis, half-pixel centres): `tf.image.resize` (bilinear) for 2-D, the same
        interpolation along each axis for the other ranks."""
        size = tuple(int(s) for s in size)
        maps = tf.cast(maps, tf.float32)
        if tuple(maps.shape[1:]) == size:
            return maps
        if self.rank == 2:
            return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]
        for axis, length in enumerate(size, start=1):
            if maps.shape[axis] == length:
                continue
            matrix = bilinear_matrix(length, int(maps.shape[axis]))
            maps = tf.experimental.numpy.moveaxis(maps, axis, -1)
            maps = tf.tensordot(maps, tf.transpose(matrix), axes=1)
            maps = tf.experimental.numpy.moveaxis(maps, -1, axis)
        return maps

    def slice_indices(self, depth: int) -> list[int]:
        """The depth slices a volume's picture shows: at most `slices`, evenly spaced."""
        count = min(depth, self.slices)
        return sorted({int(round(i)) for i in np.linspace(0, depth - 1, count)})

    def picture(self, x: tf.Tensor) -> tf.Tensor:
        """`(batch, *spatial, channels)` (on its grid) as a 2-D picture
        `(batch, height, width, channels)`.

        2-D is unchanged. A sequence becomes a strip: one band of `strip_rows` pixel rows
        per channel, the steps across (`(batch, channels * rows, steps, 1)`), so each
        input channel reads as a row of the picture. A volume becomes a montage of its
        evenly spaced depth slices in reading order, about twice as many across as down,
        one blank line between them.
        """
        if self.rank == 2:
            return x
        if self.rank == 1:
            steps, channels = int(x.shape[1]), int(x.shape[2])
            strip = tf.transpose(x, (0, 2, 1))  # (batch, channels, steps)
            strip = tf.repeat(strip, strip_rows(steps, channels), axis=1)
            return strip[..., None]
        picked = tf.gather(x, self.slice_indices(int(x.shape[1])), axis=1)
        count, height, width = (int(d) for d in picked.shape[1:4])
        rows = max(1, round(math.sqrt(count / 2)))
        columns = math.ceil(count / rows)
        # Blank cells after the last slice, a blank line between cells (zeros: the gaps).
        cells = tf.pad(picked, [[0, 0], [0, rows * columns - count], [0, 1], [0, 1], [0, 0]])
        cells = tf.reshape(cells, (-1, rows, columns, height + 1, width + 1, x.shape[-1]))
        grid = tf.transpose(cells, (0, 1, 3, 2, 4, 5))
        grid = tf.reshape(grid, (-1, rows * (height + 1), columns * (width + 1), x.shape[-1]))
        return grid[:, :-1, :-1]

    def map_picture(self, maps: tf.Tensor, channels: int) -> tf.Tensor:
        """Maps `(batch, *spatial)` at the input's size as `(batch, height, width)`, laid out
        as `picture` lays out an input of `channels` channels, so map and input line up
        pixel for pixel (a sequence's map runs under every channel band of its strip)."""
        if self.rank == 2:
            return maps
        if self.rank == 1:
            steps = int(maps.shape[1])
            return tf.repeat(maps[:, None, :], channels * strip_rows(steps, channels), axis=1)
        return self.picture(maps[..., None])[..., 0]

    def kernel_picture(self, kernel: tf.Tensor) -> tf.Tensor:
        """A conv kernel `(*window, in, out)` as a 2-D kernel `(rows, columns, in, out)`:
        a 1-D window as one row, a 3-D window's depth slices side by side."""
        if self.rank == 1:
            return kernel[None]
        if self.rank == 3:
            depth, rows, columns = kernel.shape[:3]
            moved = tf.transpose(kernel, (1, 0, 2, 3, 4))  # (rows, depth, columns, in, out)
            return tf.reshape(moved, (rows, depth * columns, *kernel.shape[3:]))
        return kernel

    def describe(self) -> str:
        """The layout in words, for messages."""
        if self.is_tokens:
            extra = f" after {self.extra_tokens} extra token(s)" * bool(self.extra_tokens)
            return f"tokens on a {self.grid[0]}x{self.grid[1]} patch grid{extra}"
        return f"{self.rank}-D ({NAMES[self.rank]})"


def of_sample(sample_shape, slices: int = MAX_SLICES) -> Geometry | None:
    """The geometry of one input sample `(*spatial, channels)`, `None` when it has no
    spatial axis or more than 3; a volume's pictures show at most `slices` depth slices."""
    rank = len(tuple(sample_shape)) - 1
    return Geometry(rank, slices=slices) if rank in NAMES else None


def of_output(shape, input_geometry: Geometry | None, grids=()) -> Geometry | None:
    """The geometry of a layer output `(batch, ...)` in a model whose input has
    `input_geometry`: the input's rank, or tokens on one of `grids` (the 2-D grids
    `(rows, columns)` of the layers before it, latest first); `None` when it cannot be
    laid out over the input (a vector, another rank)."""
    if shape is None or input_geometry is None:
        return None
    rank = len(shape) - 2
    if rank == input_geometry.rank:
        return Geometry(rank, slices=input_geometry.slices)
    if input_geometry.rank == 2 and rank == 1 and shape[1] is not None:
        for rows, columns in grids:
            extra = int(shape[1]) - rows * columns
            if 0 <= extra <= 2 and rows * columns > 1:
                return Geometry(2, grid=(rows, columns), extra_tokens=extra)
    return None


def bilinear_matrix(out_size, in_size) -> tf.Tensor:
    """The `(out_size, in_size)` matrix of 1-D bilinear resizing with half-pixel centres.

    `R @ v` equals `tf.image.resize` (bilinear, no antialias) of a 1-D signal `v`, so a map
    resizes as `R_h @ map @ R_w^T`: two small matrix products instead of the resize kernel.
    """
    out_size, in_size = tf.cast(out_size, tf.int32), tf.cast(in_size, tf.int32)
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    position = (tf.range(out_size, dtype=tf.float32) + 0.5) * scale - 0.5
    position = tf.clip_by_value(position, 0.0, tf.cast(in_size - 1, tf.float32))
    low = tf.floor(position)
    frac = (position - low)[:, None]
    low = tf.cast(low, tf.int32)
    high = tf.minimum(low + 1, in_size - 1)
    return tf.one_hot(low, in_size) * (1.0 - frac) + tf.one_hot(high, in_size) * frac


def strip_rows(steps: int, channels: int) -> int:
    """Pixel rows per channel band of a sequence's strip: the strip about `STRIP_ASPECT`
    times wider than high, at least 2 rows per channel."""
    return max(2, math.ceil(steps / (STRIP_ASPECT * max(channels, 1))))
