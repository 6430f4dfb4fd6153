"""The synthetic data sets: layout, determinism, where the evidence is, and true labels.

Shapes (2-D): no colour cue. Sequences (1-D) and volumes (3-D): the pattern changes exactly
the steps / voxels its interval / box names, and its form is the one its label names.
"""

from __future__ import annotations

import numpy as np
import pytest

from keras_convviz.datasets import (
    CLASS_NAMES,
    SEQUENCE_CLASS_NAMES,
    VOLUME_CLASS_NAMES,
    SequencesData,
    ShapesData,
    VolumesData,
    _render,
    _render_sequences,
    _render_volumes,
    make_sequences,
    make_shapes,
    make_volumes,
)

N = 600
SIZE = 64


@pytest.fixture(scope="module")
def shapes() -> ShapesData:
    return make_shapes(N, image_size=SIZE, seed=3)


@pytest.fixture(scope="module")
def object_pixels(shapes) -> np.ndarray:
    """`(n, size, size)` mask of the pixels the shape changed, against a shape-free twin."""
    background, labels, boxes = _render(N, SIZE, 3, draw_objects=False)
    np.testing.assert_array_equal(labels, shapes.labels)
    np.testing.assert_array_equal(boxes, shapes.boxes)
    return np.any(shapes.images != background, axis=-1)


def test_shapes_dtypes_and_ranges(shapes):
    assert isinstance(shapes, ShapesData)
    assert shapes.images.shape == (N, SIZE, SIZE, 3)
    assert shapes.images.dtype == np.float32
    assert shapes.labels.shape == (N,)
    assert shapes.labels.dtype == np.int32
    assert shapes.boxes.shape == (N, 4)
    assert shapes.boxes.dtype == np.int32
    assert shapes.images.min() >= 0.0
    assert shapes.images.max() <= 1.0
    assert set(np.unique(shapes.labels)) == set(range(len(CLASS_NAMES)))
    assert CLASS_NAMES == ("circle", "square", "triangle", "cross")


def test_other_image_size_and_empty():
    small = make_shapes(5, image_size=32, seed=1)
    assert small.images.shape == (5, 32, 32, 3)
    assert np.all(small.boxes[:, 2:] <= 32)
    empty = make_shapes(0)
    assert empty.images.shape == (0, 64, 64, 3)
    assert empty.labels.shape == (0,)
    assert empty.boxes.shape == (0, 4)


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"n": 2, "image_size": 8}])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make_shapes(**kwargs)


def test_same_seed_gives_identical_arrays():
    first, second = make_shapes(50, seed=7), make_shapes(50, seed=7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_differ():
    first, second = make_shapes(50, seed=7), make_shapes(50, seed=8)
    assert not np.array_equal(first.images, second.images)
    assert not np.array_equal(first.labels, second.labels)
    assert not np.array_equal(first.boxes, second.boxes)


def test_boxes_lie_in_the_image_with_the_documented_size(shapes):
    top, left, bottom, right = shapes.boxes.T
    assert np.all((top >= 0) & (top < bottom) & (bottom <= SIZE))
    assert np.all((left >= 0) & (left < right) & (right <= SIZE))
    # Tight boxes of a shape 18-35 % of the side, give or take the pixel grid.
    for extent in (bottom - top, right - left):
        assert extent.min() >= int(0.18 * SIZE) - 1
        assert extent.max() <= int(np.ceil(0.35 * SIZE)) + 1


def test_object_pixels_fill_their_box_and_nothing_else(shapes, object_pixels):
    for changed, (top, left, bottom, right) in zip(object_pixels, shapes.boxes):
        inside = changed[top:bottom, left:right]
        assert changed.sum() == inside.sum(), "the shape changed pixels outside its box"
        # The box is tight: the shape reaches every side of it.
        assert inside[0].any() and inside[-1].any()
        assert inside[:, 0].any() and inside[:, -1].any()


def test_labels_match_the_drawn_shape(shapes, object_pixels):
    # Share of the box the shape covers: about pi/4 for a circle, all of it for a square,
    # a half for a triangle and 5/9 for a cross of arms a third wide.
    expected = {0: (0.68, 0.9), 1: (0.99, 1.0), 2: (0.45, 0.65), 3: (0.45, 0.68)}
    for changed, label, (top, left, bottom, right) in zip(
        object_pixels, shapes.labels, shapes.boxes
    ):
        fill = changed[top:bottom, left:right].mean()
        low, high = expected[int(label)]
        assert low <= fill <= high, (CLASS_NAMES[label], fill)
    # Only the cross leaves the corners of its box empty while covering the centre row
    # edge to edge, which tells it from the triangle of similar fill.
    for changed, label, (top, left, bottom, right) in zip(
        object_pixels, shapes.labels, shapes.boxes
    ):
        box = changed[top:bottom, left:right]
        middle = box[box.shape[0] // 2]
        if label == 3:
            assert middle.all() and not box[0, 0] and not box[-1, -1]
        if label == 2:
            assert not box[0, 0] and box[-1].all()


def test_objects_stand_out_from_the_background(shapes, object_pixels):
    background, _, _ = _render(N, SIZE, 3, draw_objects=False)
    for image, under, changed in zip(shapes.images, background, object_pixels):
        contrast = np.linalg.norm(image[changed].mean(0) - under[changed].mean(0))
        assert contrast >= 0.25


def test_classes_are_roughly_balanced(shapes):
    counts = np.bincount(shapes.labels, minlength=len(CLASS_NAMES))
    assert counts.min() >= 0.7 * N / len(CLASS_NAMES)
    assert counts.max() <= 1.3 * N / len(CLASS_NAMES)


def test_colour_does_not_tell_the_class(shapes, object_pixels):
    image_colour = shapes.images.mean(axis=(1, 2))
    object_colour = np.stack(
        [image[changed].mean(0) for image, changed in zip(shapes.images, object_pixels)]
    )
    for colour, tolerance in ((image_colour, 0.02), (object_colour, 0.1)):
        means = np.stack([colour[shapes.labels == c].mean(0) for c in range(len(CLASS_NAMES))])
        assert np.abs(means - means.mean(0)).max() <= tolerance
    # A nearest-class-mean classifier on the object's colour is near chance.
    means = np.stack([object_colour[shapes.labels == c].mean(0) for c in range(len(CLASS_NAMES))])
    guess = np.argmin(np.linalg.norm(object_colour[:, None] - means[None], axis=-1), axis=1)
    assert np.mean(guess == shapes.labels) <= 0.4


STEPS, CHANNELS, VOXELS = 128, 3, 16


@pytest.fixture(scope="module")
def sequences() -> SequencesData:
    return make_sequences(N, steps=STEPS, channels=CHANNELS, seed=3)


@pytest.fixture(scope="module")
def patterns(sequences) -> np.ndarray:
    """`(n, steps, channels)`: what the pattern added, against a pattern-free twin."""
    background, labels, intervals = _render_sequences(N, STEPS, CHANNELS, 3, draw_patterns=False)
    np.testing.assert_array_equal(labels, sequences.labels)
    np.testing.assert_array_equal(intervals, sequences.intervals)
    return sequences.sequences - background


@pytest.fixture(scope="module")
def volumes() -> VolumesData:
    return make_volumes(N, size=VOXELS, seed=3)


@pytest.fixture(scope="module")
def ball_voxels(volumes) -> np.ndarray:
    """`(n, size, size, size)` mask of the voxels the ball changed, against a twin."""
    background, labels, boxes = _render_volumes(N, VOXELS, 3, draw_objects=False)
    np.testing.assert_array_equal(labels, volumes.labels)
    np.testing.assert_array_equal(boxes, volumes.boxes)
    return volumes.volumes[..., 0] != background[..., 0]


def test_sequences_dtypes_and_shapes(sequences):
    assert isinstance(sequences, SequencesData)
    assert sequences.sequences.shape == (N, STEPS, CHANNELS)
    assert sequences.sequences.dtype == np.float32
    assert np.all(np.isfinite(sequences.sequences))
    assert sequences.labels.shape == (N,)
    assert sequences.labels.dtype == np.int32
    assert sequences.intervals.shape == (N, 2)
    assert sequences.intervals.dtype == np.int32
    assert SEQUENCE_CLASS_NAMES == ("bump", "slow_wave", "fast_wave", "square_wave")
    other = make_sequences(4, steps=40, channels=1, seed=1)
    assert other.sequences.shape == (4, 40, 1)
    assert np.all(other.intervals[:, 1] <= 40)
    empty = make_sequences(0)
    assert empty.sequences.shape == (0, 128, 3)
    assert empty.intervals.shape == (0, 2)


def test_volumes_dtypes_shapes_and_range(volumes):
    assert isinstance(volumes, VolumesData)
    assert volumes.volumes.shape == (N, VOXELS, VOXELS, VOXELS, 1)
    assert volumes.volumes.dtype == np.float32
    assert volumes.volumes.min() >= 0.0
    assert volumes.volumes.max() <= 1.0
    assert volumes.labels.shape == (N,)
    assert volumes.labels.dtype == np.int32
    assert volumes.boxes.shape == (N, 6)
    assert volumes.boxes.dtype == np.int32
    assert VOLUME_CLASS_NAMES == ("layers_depth", "layers_height", "layers_width")
    other = make_volumes(3, size=8, seed=1)
    assert other.volumes.shape == (3, 8, 8, 8, 1)
    assert np.all(other.boxes[:, 3:] <= 8)
    empty = make_volumes(0)
    assert empty.volumes.shape == (0, 16, 16, 16, 1)
    assert empty.boxes.shape == (0, 6)


@pytest.mark.parametrize(
    "make, kwargs",
    [
        (make_sequences, {"n": -1}),
        (make_sequences, {"n": 2, "steps": 16}),
        (make_sequences, {"n": 2, "channels": 0}),
        (make_volumes, {"n": -1}),
        (make_volumes, {"n": 2, "size": 4}),
    ],
)
def test_sequence_and_volume_invalid_arguments_raise(make, kwargs):
    with pytest.raises(ValueError, match=f"`{list(kwargs)[-1]}`"):
        make(**kwargs)


@pytest.mark.parametrize("make", [make_sequences, make_volumes])
def test_sequences_and_volumes_are_seeded(make):
    first, second, third = make(40, seed=7), make(40, seed=7), make(40, seed=8)
    for a, b, c in zip(first, second, third):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("data", ["sequences", "volumes"])
def test_sequence_and_volume_classes_are_roughly_balanced(data, request):
    labels = request.getfixturevalue(data).labels
    classes = len(SEQUENCE_CLASS_NAMES if data == "sequences" else VOLUME_CLASS_NAMES)
    counts = np.bincount(labels, minlength=classes)
    assert counts.size == classes
    assert counts.min() >= 0.7 * N / classes
    assert counts.max() <= 1.3 * N / classes


def test_intervals_lie_in_the_sequence_with_the_documented_length(sequences):
    start, end = sequences.intervals.T
    assert np.all((start >= 0) & (start < end) & (end <= STEPS))
    assert (end - start).min() == STEPS // 8
    assert (end - start).max() == STEPS // 4


def test_patterns_change_exactly_their_interval(sequences, patterns):
    changed = np.any(patterns != 0, axis=-1)
    for steps, (start, end) in zip(changed, sequences.intervals):
        assert steps[start:end].all()
        assert steps.sum() == end - start


def test_patterns_have_the_form_their_label_names(sequences, patterns):
    # Sign changes of the pattern: none for the bump, about 2 per cycle for the waves of
    # 2 (slow), 3 (square) and 5 (fast) cycles; the square wave alone is flat between its
    # jumps (its size follows the smooth envelope, never a sine).
    expected = {0: (0, 0), 1: (3, 5), 2: (9, 11), 3: (5, 7)}
    for pattern, label, (start, end) in zip(patterns, sequences.labels, sequences.intervals):
        wave = pattern[start:end, 0]
        flips = int(np.sum(np.sign(wave[1:]) != np.sign(wave[:-1])))
        low, high = expected[int(label)]
        assert low <= flips <= high, (SEQUENCE_CLASS_NAMES[label], flips)
        t = (np.arange(end - start) + 0.5) / (end - start)
        ratio = np.abs(wave) / np.sin(np.pi * t)
        flat = np.ptp(ratio) <= 1e-4 * ratio.max()
        assert flat == (label in (0, 3)), SEQUENCE_CLASS_NAMES[label]
    # Every channel carries the pattern with its own positive gain, 0.5 to 1.
    gains = np.abs(patterns).max(axis=1) / np.abs(patterns[..., :1]).max(axis=1)
    assert np.all(gains >= 0.5 - 1e-4) and np.all(gains <= 2 + 1e-4)


def test_boxes_lie_in_the_volume_with_the_documented_size(volumes):
    start, end = volumes.boxes[:, :3], volumes.boxes[:, 3:]
    assert np.all((start >= 0) & (start < end) & (end <= VOXELS))
    extent = end - start
    assert extent.min() >= int(0.35 * VOXELS) - 1
    assert extent.max() <= int(np.ceil(0.55 * VOXELS)) + 1


def test_balls_change_exactly_their_box(volumes, ball_voxels):
    for changed, (z0, y0, x0, z1, y1, x1) in zip(ball_voxels, volumes.boxes):
        inside = changed[z0:z1, y0:y1, x0:x1]
        assert changed.sum() == inside.sum(), "the ball changed voxels outside its box"
        # The box is tight and the ball fills about pi/6 of it.
        for axis in range(3):
            faces = np.moveaxis(inside, axis, 0)
            assert faces[0].any() and faces[-1].any()
        assert 0.35 <= inside.mean() <= 0.8


def test_balls_are_layered_along_the_axis_their_label_names(volumes, ball_voxels):
    # Bright layers on even indices along the labelled axis: the mean over even layers
    # beats the mean over odd ones there by far, and along the other axes barely.
    for volume, changed, label in zip(volumes.volumes[..., 0], ball_voxels, volumes.labels):
        contrast = []
        for axis in range(3):
            even = (np.arange(VOXELS) % 2 == 0).reshape([-1 if a == axis else 1 for a in range(3)])
            contrast.append(volume[changed & even].mean() - volume[changed & ~even].mean())
        assert contrast[label] >= 0.25, (VOLUME_CLASS_NAMES[label], contrast)
        assert max(abs(c) for a, c in enumerate(contrast) if a != label) <= 0.15, contrast


def test_volume_background_stays_dark(volumes, ball_voxels):
    # Darker than the dimmest layer of the dimmest ball, so zero padding makes no edge
    # brighter than the ball's own.
    assert volumes.volumes[..., 0][~ball_voxels].max() <= 0.25


def test_shortcut_shapes_add_a_class_cue_to_the_same_shapes_and_know_their_masks(
    shapes, object_pixels
):
    from keras_convviz.datasets import CUE_COLOURS, make_shortcut_shapes

    clean = make_shortcut_shapes(N, image_size=SIZE, seed=3, cues=None)
    np.testing.assert_array_equal(clean.images, shapes.images)
    np.testing.assert_array_equal(clean.boxes, shapes.boxes)
    assert (clean.cues == -1).all()
    # The masks are the pixels the shape changed (those under the cue's corner left out).
    changed = object_pixels.copy()
    changed[:, 1:7, 1:7] = False
    assert (clean.masks | ~changed).all()  # every changed pixel is in the mask
    cued = make_shortcut_shapes(N, image_size=SIZE, seed=3)
    np.testing.assert_array_equal(cued.cues, shapes.labels)
    corner = cued.images[:, 1:7, 1:7]  # a tenth of 64 px: 6 px, one pixel in
    expected = np.asarray(CUE_COLOURS, np.float32)[shapes.labels][:, None, None, :]
    np.testing.assert_array_equal(corner, np.broadcast_to(expected, corner.shape))
    outside = np.ones((SIZE, SIZE), bool)
    outside[1:7, 1:7] = False
    np.testing.assert_array_equal(cued.images[:, outside], shapes.images[:, outside])
    assert not cued.masks[:, 1:7, 1:7].any()
    other = (shapes.labels + 1) % len(CLASS_NAMES)
    swapped = make_shortcut_shapes(N, image_size=SIZE, seed=3, cues=other)
    np.testing.assert_array_equal(swapped.labels, shapes.labels)
    np.testing.assert_array_equal(swapped.images[:, 3, 3], np.asarray(CUE_COLOURS)[other])
    with pytest.raises(ValueError, match=r"`cues` must hold classes 0..3 or -1"):
        make_shortcut_shapes(4, cues=np.array([0, 1, 2, 4]))
