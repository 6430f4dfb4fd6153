"""The synthetic shapes data set: layout, determinism, true boxes and labels, no colour cue."""

from __future__ import annotations

import numpy as np
import pytest

from keras_convviz.datasets import CLASS_NAMES, ShapesData, _render, make_shapes

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
