"""Deletion and insertion scores: exact against the definition, right on a known answer, and
written by the callbacks beside their floors.

The definition (issue 11): pixels ordered by the map, highest first, ties in row-major order;
n_k = (k * H * W) // K; deletion image k sets the first n_k pixels to the baseline, insertion
image k sets them to the image on the baseline; p_k the target's probability; AUC by the
trapezoid rule on [0, 1].
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz.methods.perturb import gaussian_blur


def reference_scores(predict, images, maps, targets, steps, baseline):
    """A plain loop over images and curve points: `(deletion, insertion)` AUCs."""
    deletion, insertion = [], []
    for image, heat, target, fill in zip(images, maps, targets, baseline):
        h, w, c = image.shape
        order = np.argsort(-heat.ravel(), kind="stable")
        curves = {"deletion": [], "insertion": []}
        for k in range(steps + 1):
            first = order[: (k * h * w) // steps]
            removed = image.reshape(-1, c).copy()
            removed[first] = fill.reshape(-1, c)[first]
            added = fill.reshape(-1, c).copy()
            added[first] = image.reshape(-1, c)[first]
            for name, picture in (("deletion", removed), ("insertion", added)):
                curves[name].append(predict(picture.reshape(1, h, w, c))[0, target])
        for name, out in (("deletion", deletion), ("insertion", insertion)):
            p = np.asarray(curves[name], np.float64)
            out.append((p.sum() - 0.5 * (p[0] + p[-1])) / steps)
    return np.array(deletion), np.array(insertion)


@pytest.fixture(scope="module")
def setup():
    model = small_cnn(input_shape=(12, 10, 3), num_classes=3, seed=2)
    rng = np.random.default_rng(5)
    images = rng.random((3, 12, 10, 3)).astype(np.float32)
    targets = np.array([2, 0, 1])
    maps = rng.random((3, 12, 10)).astype(np.float32)
    maps[1] = np.round(maps[1] * 3)  # many ties: row-major order decides
    return model, images, targets, maps


@pytest.mark.parametrize("baseline", ["mean", "blur", 0.25])
@pytest.mark.parametrize("batch_size", [7, 256])
def test_scores_equal_a_python_loop(setup, baseline, batch_size):
    # 12 x 10 = 120 pixels in 7 steps: n_k is rounded down, chunks of 7 cross images.
    model, images, targets, maps = setup
    steps = 7
    got = kcv.faithfulness(
        model,
        (images, targets),
        maps,
        steps=steps,
        baseline=baseline,
        sigma=2.0,
        batch_size=batch_size,
    )
    if baseline == "mean":
        fill = np.broadcast_to(images.mean(axis=(0, 1, 2)), images.shape)
    elif baseline == "blur":
        fill = gaussian_blur(images, 2.0).numpy()
    else:
        fill = np.full_like(images, baseline)
    deletion, insertion = reference_scores(
        lambda x: model(x, training=False).numpy(), images, maps, targets, steps, fill
    )
    assert got["deletion"].dtype == np.float32 and got["deletion"].shape == (3,)
    np.testing.assert_allclose(got["deletion"], deletion, atol=1e-4)
    np.testing.assert_allclose(got["insertion"], insertion, atol=1e-4)


@pytest.mark.parametrize("steps", [1, 4])
def test_a_single_sigmoid_unit_scores_its_probability(steps):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    rng = np.random.default_rng(6)
    images = rng.random((2, 8, 8, 1)).astype(np.float32)
    maps = rng.random((2, 8, 8)).astype(np.float32)
    labels = np.array([1, 0])  # class 1: p = sigmoid; class 0: 1 - p

    def predict(x):
        p = model(x, training=False).numpy()
        return np.concatenate([1 - p, p], axis=1)

    got = kcv.faithfulness(model, (images, labels), maps, steps=steps, baseline=0.0)
    deletion, insertion = reference_scores(
        predict, images, maps, labels, steps, np.zeros_like(images)
    )
    np.testing.assert_allclose(got["deletion"], deletion, atol=1e-4)
    np.testing.assert_allclose(got["insertion"], insertion, atol=1e-4)


def region_model():
    """Class 1's score is the sum of the top-left 4 x 4 region; class 0's is 2."""
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Flatten()(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    region = np.zeros((16, 16), np.float32)
    region[:4, :4] = 1.0
    kernel = np.stack([np.zeros(256, np.float32), region.ravel()], axis=1)
    model.get_layer("head").set_weights([kernel, np.array([2.0, 0.0], np.float32)])
    return model, region


def test_a_map_on_the_region_the_model_uses_beats_its_inverse():
    model, region = region_model()
    images = np.random.default_rng(7).uniform(0.2, 1.0, (4, 16, 16, 1)).astype(np.float32)
    on_region = np.broadcast_to(region, (4, 16, 16))
    labelled = (images, np.ones(4, np.int32))
    good = kcv.faithfulness(model, labelled, on_region, baseline=0.0)
    bad = kcv.faithfulness(model, labelled, 1.0 - on_region, baseline=0.0)
    assert (good["deletion"] < bad["deletion"] - 0.1).all(), (good, bad)
    assert (good["insertion"] > bad["insertion"] + 0.1).all(), (good, bad)


def test_bad_maps_are_refused_with_their_shape(setup):
    model, images, targets, maps = setup
    with pytest.raises(ValueError, match=r"`maps` must have shape \(3, 12, 10\).*\(3, 6, 5\)"):
        kcv.faithfulness(model, images, maps[:, ::2, ::2])
    with pytest.raises(ValueError, match=r"Reduce attributions over channels"):
        kcv.faithfulness(model, images, np.stack([maps] * 3, axis=-1))
    with pytest.raises(ValueError, match="`maps` must be finite"):
        kcv.faithfulness(model, images, np.where(maps > 0.5, np.nan, maps))
    with pytest.raises(ValueError, match=r"`steps` must be an int >= 1. Received: steps=0"):
        kcv.faithfulness(model, images, maps, steps=0)
    with pytest.raises(ValueError, match="`baseline` must be one of"):
        kcv.faithfulness(model, images, maps, baseline="zeros")
    with pytest.raises(ValueError, match=r"`faithfulness` must be True, False or a dict"):
        kcv.GradCAM("unused", images, faithfulness={"step": 4})
    with pytest.raises(ValueError, match=r"faithfulness\['steps'\]"):
        kcv.OcclusionSensitivity("unused", images, faithfulness={"steps": -1})


def test_callbacks_write_each_maps_scores_beside_the_floors(tmp_path, setup):
    model, images, targets, _ = setup
    rng = np.random.default_rng(8)
    x = rng.random((24, 12, 10, 3)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    options = {"steps": 5, "baseline": "blur", "sigma": 1.5}
    callback = kcv.ConvViz(
        str(tmp_path),
        (images, targets),
        faithfulness=options,
        saliency={"method": "gradient"},
        on_error="raise",
        budget=None,  # every kind at every epoch
    )
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    labelled = (images, targets)
    grey = images.mean(axis=-1, keepdims=True)
    edges = np.linalg.norm(tf.image.sobel_edges(tf.constant(grey)).numpy()[..., 0, :], axis=-1)
    maps = {
        "grad_cam/conv_b": kcv.grad_cam(model, labelled),
        "occlusion_sensitivity": kcv.occlusion_sensitivity(model, labelled),
        "gradient": np.abs(kcv.saliency(model, labelled, method="gradient")).max(axis=-1),
    }
    edge_scores = kcv.faithfulness(model, labelled, edges, **options)
    for prefix, heat in maps.items():
        run = prefix.split("/")[0]
        own = kcv.faithfulness(model, labelled, heat, **options)
        for curve in ("deletion", "insertion"):
            tag = f"{prefix}/{curve}"
            for where, expected in ((run, own), ("floor_edge", edge_scores)):
                series = runs[where][tag]
                assert series["steps"] == [0, 1], (where, tag)
                # The last snapshot saw the weights fit ended with.
                assert abs(series["values"][-1] - expected[curve].mean()) < 1e-4, (where, tag)
            assert runs["floor_random"][tag]["steps"] == [0, 1]
    # The floors are one computation for every map: the same numbers under every tag.
    random_runs = runs["floor_random"]
    values = {tag: tuple(s["values"]) for tag, s in random_runs.items() if "/" in tag}
    assert len({v for t, v in values.items() if t.endswith("/deletion")}) == 1
    # The random floor is a map like any other: not the edge floor's numbers.
    assert (
        random_runs["gradient/deletion"]["values"]
        != runs["floor_edge"]["gradient/deletion"]["values"]
    )
