"""Regions on the probe: `kcv.localization`'s known answers, the callbacks' `in_region` and
`pointing` scalars beside each map with their uniform floor, and the checks of `regions`."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz import _tags


def _square_masks(n=3, size=4, side=2):
    masks = np.zeros((n, size, size), bool)
    masks[:, :side, :side] = True
    return masks


def test_in_region_and_pointing_known_answers_on_masks_and_boxes():
    maps = np.zeros((4, 4, 4), np.float32)
    maps[0, 1, 1], maps[0, 3, 3] = 3.0, 1.0  # 3 of 4 inside, the peak inside
    maps[1, 0, 0], maps[1, 2, 2] = 1.0, 2.0  # 1 of 3 inside, the peak outside
    maps[2] = -1.0
    maps[2, 0, 1], maps[2, 3, 0] = 2.0, 6.0  # negatives ignored: 2 of 8 inside
    maps[3, 0, 0], maps[3, 3, 3], maps[3, 0, 1] = 5.0, 5.0, 5.0  # 3 tied maxima, 2 inside
    expected_in = [0.75, 1 / 3, 0.25, 2 / 3]
    expected_pointing = [1.0, 0.0, 0.0, 2 / 3]
    for regions in (_square_masks(4), np.tile([0, 0, 2, 2], (4, 1))):
        scores = kcv.localization(maps, regions)
        assert set(scores) == {"in_region", "pointing"}
        np.testing.assert_allclose(scores["in_region"], expected_in, rtol=1e-6)
        np.testing.assert_allclose(scores["pointing"], expected_pointing, rtol=1e-6)
        assert scores["in_region"].dtype == np.float32


def test_a_map_without_positive_mass_has_no_in_region_and_points_at_the_area_share():
    maps = np.stack([np.zeros((4, 4)), -np.ones((4, 4))]).astype(np.float32)
    scores = kcv.localization(maps, _square_masks(2))
    assert np.isnan(scores["in_region"]).all()
    # Every position ties for the maximum: a quarter of them lie inside.
    np.testing.assert_allclose(scores["pointing"], [0.25, 0.25])


def test_a_uniform_map_scores_the_area_share_the_floor():
    from keras_convviz.methods.localization import area_share

    masks = np.zeros((2, 8, 8), bool)
    masks[0, :2, :4] = True  # 8 of 64
    masks[1, 2:6, 2:6] = True  # 16 of 64
    np.testing.assert_allclose(area_share(masks), [0.125, 0.25])
    scores = kcv.localization(np.full((2, 8, 8), 0.3), masks)
    np.testing.assert_allclose(scores["in_region"], [0.125, 0.25], rtol=1e-6)
    np.testing.assert_allclose(scores["pointing"], [0.125, 0.25], rtol=1e-6)


def test_maps_at_their_layers_resolution_are_resized_to_the_regions():
    # A 2x2 CAM-sized map, hot in its top-left cell, over 8x8 images: bilinear resizing
    # (half-pixel centres) keeps the top-left quarter's mass above the other quarters'.
    maps = np.array([[[1.0, 0.0], [0.0, 0.0]]], np.float32)
    masks = np.zeros((1, 8, 8), bool)
    masks[0, :4, :4] = True
    scores = kcv.localization(maps[..., None], masks)
    np.testing.assert_allclose(scores["pointing"], [1.0])
    assert 0.6 < scores["in_region"][0] < 1.0
    # Boxes are in the images' pixels: `size` says how large the images are.
    boxed = kcv.localization(maps, [[0, 0, 4, 4]], size=(8, 8))
    np.testing.assert_allclose(boxed["in_region"], scores["in_region"], rtol=1e-6)


def test_sequences_and_volumes_are_scored_along_their_axes():
    steps = np.array([[0.0, 1.0, 3.0, 0.0, 1.0, 0.0]], np.float32)
    for regions in ([[1, 3]], np.array([[0, 1, 1, 0, 0, 0]], bool)):
        scores = kcv.localization(steps, regions)
        np.testing.assert_allclose(scores["in_region"], [0.8], rtol=1e-6)
        np.testing.assert_allclose(scores["pointing"], [1.0])
    volume = np.zeros((1, 4, 4, 4), np.float32)
    volume[0, 1, 1, 1], volume[0, 3, 3, 3] = 1.0, 3.0
    scores = kcv.localization(volume, [[0, 0, 0, 2, 2, 2]])
    np.testing.assert_allclose(scores["in_region"], [0.25], rtol=1e-6)
    np.testing.assert_allclose(scores["pointing"], [0.0])


@pytest.mark.parametrize(
    "regions, message",
    [
        (np.ones((2, 4, 4)), r"\(2 region\(s\) for 3 probe sample\(s\)\)"),
        (
            np.ones((3, 4, 4, 2)),
            r"masks of shape \(3, 4, 4\).*boxes of shape \(3, 4\).*"
            r"Received: shape \(3, 4, 4, 2\)",
        ),  # fmt: skip
        (np.full((3, 4, 4), 0.5), r"masks of 0 and 1 .*from 0.5 to 0.5"),
        (
            np.concatenate([np.ones((2, 4, 4)), np.zeros((1, 4, 4))]),
            r"empty regions for "
            r"probe sample\(s\) \[2\]",
        ),  # fmt: skip
        (
            [[0, 0, 2, 2], [1, 1, 1, 3], [0, 0, 2, 5]],
            r"0 <= start < end <= size .* "
            r"Received: boxes \[\[1, 1, 1, 3\], \[0, 0, 2, 5\]\] for probe sample\(s\) \[1, 2\]",
        ),
        ("box", r"must be masks .* Received: an array of dtype <U3"),
    ],
)
def test_regions_are_checked_with_the_argument_named(regions, message):
    with pytest.raises((ValueError, TypeError), match=r"`regions` .*" + message):
        kcv.localization(np.ones((3, 4, 4)), regions)


def test_the_callbacks_check_regions_against_the_probe_before_training(tmp_path, data):
    x, y = data
    probe = (x[:2], y[:2])
    with pytest.raises(ValueError, match=r"`regions` must be masks of shape \(2, 32, 32\)"):
        kcv.GradCAM(tmp_path, probe, regions=np.ones((3, 32, 32)))
    with pytest.raises(ValueError, match=r"`regions` .*boxes \[\[0, 0, 40, 8\]\]"):
        kcv.ConvViz(tmp_path, probe, regions=[[0, 0, 8, 8], [0, 0, 40, 8]])
    with pytest.raises(ValueError, match=r"empty regions for probe sample\(s\) \[0\]"):
        kcv.Saliency(
            tmp_path, probe, regions=np.arange(2).reshape(2, 1, 1, 1) * np.ones((32, 32, 1))
        )


def test_every_map_writes_its_localization_beside_a_uniform_floor(tmp_path, data):
    x, y = data
    boxes = np.array([[0, 0, 16, 16], [8, 8, 32, 32]])
    model = small_cnn()
    callbacks = [
        kcv.GradCAM(tmp_path, (x[:2], y[:2]), method=["gradcam", "layercam"], regions=boxes),
        kcv.OcclusionSensitivity(tmp_path, (x[:2], y[:2]), patch_size=8, regions=boxes),
        kcv.Saliency(tmp_path, (x[:2], y[:2]), method="gradient", regions=boxes),
    ]
    model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    runs = read_runs(tmp_path)
    map_tags = [
        ("grad_cam", "conv_b"),
        ("layer_cam", "conv_b"),
        ("occlusion_sensitivity",),
        ("gradient",),
    ]
    floor = runs[_tags.FLOOR_UNIFORM]
    areas = [0.25, 24 * 24 / 32**2]
    expected_floor = {}
    for parts in map_tags:
        written = runs[parts[0]]
        quantities = [_tags.tag(*parts, q) for q in ("in_region", "pointing")]
        per_image = [_tags.tag(*parts, i, "in_region") for i in range(2)]
        for tag in quantities + per_image:
            # Each map's scalars at both epochs, values shares in [0, 1].
            assert written[tag]["steps"] == [0, 1], tag
            assert all(0.0 <= v <= 1.0 for v in written[tag]["values"]), tag
        np.testing.assert_allclose(
            written[quantities[0]]["values"],
            np.mean([written[t]["values"] for t in per_image], axis=0),
            rtol=1e-5,
        )
        for tag in quantities:
            expected_floor[tag] = np.mean(areas)
        for i, tag in enumerate(per_image):
            expected_floor[tag] = areas[i]
    assert set(floor) == set(expected_floor)
    for tag, value in expected_floor.items():
        np.testing.assert_allclose(floor[tag]["values"], [value, value], rtol=1e-6)
        assert floor[tag]["steps"] == [0, 1]


def test_the_callbacks_numbers_are_localizations_of_the_functional_maps(tmp_path, data):
    x, y = data
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 4:20, 2:30] = masks[1, 10:30, 10:20] = True
    model = small_cnn()
    callback = kcv.GradCAM(tmp_path, (x[:2], y[:2]), regions=masks[..., None])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    written = read_runs(tmp_path)["grad_cam"]
    expected = kcv.localization(kcv.grad_cam(model, (x[:2], y[:2])), masks)
    for i in range(2):
        got = written[_tags.tag("grad_cam", "conv_b", i, "in_region")]["values"][0]
        np.testing.assert_allclose(got, expected["in_region"][i], rtol=1e-5)
    got = written[_tags.tag("grad_cam", "conv_b", "pointing")]["values"][0]
    np.testing.assert_allclose(got, expected["pointing"].mean(), rtol=1e-5)
