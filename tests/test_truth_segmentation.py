"""Truth on a trained segmentation model: its maps point at the region they explain.

A U-Net (`zoo.unet`) learns to segment the shapes of `make_shapes` (each shape's box as the
object, class 1, on background, class 0). Each probe sample's maps explain "why is this
region the object" (the region's summed object score); the map's peak must fall inside the
box far more often than a random map's would (the box's area share), and a healthy training
with `ConvViz` watching raises no alert.

Spread over seeds 0-4 (BENCHMARKS.md, "Segmentation truth"; the same with oneDNN on and
off): LayerCAM's pointing game 1.00 for every seed; occlusion's worst 0.75, Grad-CAM's 0.62;
the boxes cover 0.07 of the image; pixel accuracy worst 0.87, object recall 0.49. The
thresholds sit well below the worst seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import zoo

import keras_convviz as kcv
from keras_convviz.datasets import make_shapes

SIZE = 32
N_TRAIN = 600
EPOCHS = 6
ALERTS: list = []


def segmentation(n: int, seed: int):
    data = make_shapes(n, image_size=SIZE, seed=seed)
    masks = np.zeros((n, SIZE, SIZE), np.int32)
    for i, (top, left, bottom, right) in enumerate(data.boxes):
        masks[i, top:bottom, left:right] = 1
    return data, masks


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train, masks = segmentation(N_TRAIN, seed=100)
    probe, probe_masks = segmentation(32, seed=4242)
    model, _, _ = zoo.unet(size=SIZE, classes=2, seed=0)
    watch = kcv.ConvViz(
        tmp_path_factory.mktemp("segmentation"),
        (probe.images[:4], probe_masks[:4]),
        on_alert=ALERTS.append,
        on_error="raise",
        budget=None,  # every kind at every epoch
    )
    # The object is 7 % of the pixels: weighing it 5x keeps the model from settling on
    # "all background".
    weights = np.where(masks > 0, 5.0, 1.0).astype(np.float32)
    model.fit(
        train.images,
        masks,
        sample_weight=weights,
        epochs=EPOCHS,
        batch_size=16,
        verbose=0,
        callbacks=[watch],
    )
    return model, probe, probe_masks


def pointing(maps: np.ndarray, boxes: np.ndarray) -> float:
    inside = []
    for heat, (top, left, bottom, right) in zip(maps, boxes):
        row, col = np.unravel_index(np.argmax(heat), heat.shape)
        inside.append(top <= row < bottom and left <= col < right)
    return float(np.mean(inside))


def test_the_model_segments_the_objects(trained):
    model, probe, masks = trained
    predicted = model.predict(probe.images, verbose=0).argmax(-1)
    assert np.mean(predicted[masks > 0] == 1) > 0.3  # worst seed 0.49
    assert np.mean(predicted == masks) > 0.8


def test_maps_of_the_region_point_inside_it(trained):
    model, probe, masks = trained
    area = np.mean([(b - t) * (r - left) for t, left, b, r in probe.boxes]) / SIZE**2
    assert area < 0.1
    maps = kcv.grad_cam(model, (probe.images, masks), method=["layercam", "gradcam"])
    assert pointing(maps["layercam"], probe.boxes) >= 0.8
    assert pointing(maps["gradcam"], probe.boxes) >= 0.35
    occlusion = kcv.occlusion_sensitivity(model, (probe.images, masks), patch_size=4)
    assert pointing(occlusion, probe.boxes) >= 0.45


def test_a_healthy_segmentation_training_raises_no_alert(trained):
    assert ALERTS == []


def test_maps_of_the_predicted_region_point_inside_what_the_model_predicts(trained):
    # `class_index="predicted"` (no masks needed): each image's region is where the model
    # predicts the object, which on this model spills well outside the boxes (5x weighted
    # object pixels), so the maps must point at the prediction, not at the box. Seed 0:
    # LayerCAM 32 of 32 inside, the predicted regions cover 0.08 of the image.
    model, probe, _ = trained
    predicted = model.predict(probe.images, verbose=0).argmax(-1) == 1
    assert predicted.mean() < 0.2
    maps = kcv.grad_cam(model, probe.images, method="layercam", class_index="predicted")
    peaks = [np.unravel_index(np.argmax(m), m.shape) for m in maps]
    assert np.mean([region[peak] for region, peak in zip(predicted, peaks)]) >= 0.8
