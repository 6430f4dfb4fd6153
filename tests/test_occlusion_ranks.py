"""Occlusion of sequences and volumes, against known answers.

Hand-weighted 1-D and 3-D models (conv of window 1 -> global average -> dense) whose window
drops are computed by hand, window by window, in numpy; a bright segment of a sequence that
must dominate its map; the same weights as a sequence and as an image of one row giving the
same map; the blur baseline against scipy; argument errors; and `OcclusionSensitivity`
writing a sequence's maps.
"""

from __future__ import annotations

import itertools
import re
import warnings

import keras
import numpy as np
import pytest
from conftest import read_runs
from test_geometry import CONV, DENSE, hand_weighted

import keras_convviz as kcv
from keras_convviz.methods import perturb


def starts(size: int, patch: int, stride: int) -> list[int]:
    """Window starts along one axis: every `stride`, the last one flush with the far edge."""
    found = list(range(0, size - patch + 1, stride))
    return found if found[-1] + patch == size else [*found, size - patch]


def logits(samples: np.ndarray) -> np.ndarray:
    """The hand-weighted model's scores before its softmax, `(n, 3)`."""
    activation = np.einsum("n...i,io->n...o", samples.astype(np.float64), CONV)
    pooled = activation.reshape(len(samples), -1, 2).mean(axis=1)
    return pooled @ DENSE + np.array([0.1, -0.2, 0.3])


def hand_occlusion(samples, fill, patch, stride, targets) -> np.ndarray:
    """Each window's copy built and scored one by one; each position's map is the mean
    drop of the windows that cover it."""
    n, spatial = len(samples), samples.shape[1:-1]
    summed = np.zeros((n, *spatial))
    count = np.zeros(spatial)
    axes = [starts(s, p, st) for s, p, st in zip(spatial, patch, stride)]
    base = logits(samples)[np.arange(n), targets]
    for corner in itertools.product(*axes):
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch))
        occluded = samples.copy()
        for i in range(n):
            occluded[i][window] = (fill[i] if fill.ndim == samples.ndim else fill)[window]
        drops = base - logits(occluded)[np.arange(n), targets]
        summed[(slice(None), *window)] += drops.reshape((n,) + (1,) * len(spatial))
        count[window] += 1
    return summed / count


CASES = [
    (1, (16,), (5,), (3,)),  # overlapping windows, the last one flush with the end
    (1, (16,), (4,), (4,)),
    (3, (4, 6, 8), (2, 3, 4), (1, 2, 3)),
    (3, (4, 6, 8), (2, 2, 2), (2, 2, 2)),
]


@pytest.mark.parametrize("rank, spatial, patch, stride", CASES)
def test_occlusion_of_a_sequence_and_a_volume_matches_a_hand_computation(
    rank, spatial, patch, stride
):
    model = hand_weighted(rank, spatial)
    samples = np.random.default_rng(rank).normal(size=(3, *spatial, 2)).astype(np.float32)
    labels = np.array([2, 0, 1])
    got = kcv.occlusion_sensitivity(
        model, (samples, labels), patch_size=patch, stride=stride, baseline=0.5, batch_size=7
    )
    expected = hand_occlusion(samples, np.full(samples.shape[1:], 0.5), patch, stride, labels)
    assert got.shape == (3, *spatial) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 0.05  # the drops are not all near zero
    # The probe's per-channel mean fills the windows with "mean".
    mean = samples.mean(axis=tuple(range(rank + 1)))
    np.testing.assert_allclose(
        kcv.occlusion_sensitivity(
            model, (samples, labels), patch_size=patch, stride=stride, baseline="mean"
        ),
        hand_occlusion(samples, np.broadcast_to(mean, samples.shape[1:]), patch, stride, labels),
        atol=1e-4,
        rtol=0,
    )


@pytest.mark.parametrize("shape", [(2, 40, 3), (2, 10, 12, 14, 2)])
@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_the_blur_of_a_sequence_and_a_volume_matches_scipy(shape, sigma):
    from scipy import ndimage

    samples = np.random.default_rng(2).random(shape).astype(np.float32)
    got = perturb.gaussian_blur(samples, sigma).numpy()
    spatial = (0, *[sigma] * (len(shape) - 2), 0)
    expected = ndimage.gaussian_filter(samples, spatial, mode="reflect", truncate=3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    uniform = np.full(shape, 0.25, np.float32)
    np.testing.assert_allclose(perturb.gaussian_blur(uniform, sigma).numpy(), uniform, atol=1e-7)


def test_the_blur_baseline_fills_each_window_with_the_samples_blurred_copy():
    model = hand_weighted(1, (24,))
    samples = np.random.default_rng(5).normal(size=(2, 24, 2)).astype(np.float32)
    labels = np.array([0, 1])
    got = kcv.occlusion_sensitivity(model, (samples, labels), patch_size=3)  # blur: sigma 3
    blurred = perturb.gaussian_blur(samples, 3.0).numpy()
    np.testing.assert_allclose(
        got, hand_occlusion(samples, blurred, (3,), (3,), labels), atol=1e-4, rtol=0
    )


def bright_segment_model(steps: int) -> keras.Model:
    """A detector of bright steps: conv of window 3 (ones) + ReLU -> global max -> dense."""
    inputs = keras.Input((steps, 1))
    x = keras.layers.Conv1D(1, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalMaxPooling1D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([np.ones((3, 1, 1), np.float32), np.zeros(1)])
    model.get_layer("head").set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2)])
    return model


@pytest.mark.parametrize("baseline", ["blur", 0.0])
def test_a_bright_segment_dominates_the_map_of_a_sequence(baseline):
    steps, segment = 64, slice(24, 32)
    model = bright_segment_model(steps)
    samples = np.random.default_rng(0).random((2, steps, 1)).astype(np.float32) * 0.1
    samples[0, segment] += 1.0
    samples[1, 40:48] += 1.0  # the other sample's segment elsewhere
    maps = kcv.occlusion_sensitivity(model, samples, baseline=baseline, class_index=0)
    assert maps.shape == (2, steps)
    for sample, where in ((0, segment), (1, slice(40, 48))):
        inside = np.zeros(steps, bool)
        inside[where] = True
        got = maps[sample]
        # Default windows: an eighth of the steps (8), aligned with the segments.
        assert got[inside].min() > 1.0
        assert np.abs(got[~inside]).max() < 0.1 * got[inside].min()


def test_a_sequence_and_an_image_of_one_row_have_the_same_map():
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(3, 2, 4)).astype(np.float32)
    dense = rng.normal(size=(4, 3)).astype(np.float32)

    def build(shape, conv, pool, kernel_shape):
        inputs = keras.Input(shape)
        x = conv(4, kernel_shape, padding="same", activation="relu", name="conv")(inputs)
        outputs = keras.layers.Dense(3, name="head")(pool()(x))
        model = keras.Model(inputs, outputs)
        model.get_layer("conv").set_weights([kernel.reshape(kernel_shape + (2, 4)), np.zeros(4)])
        model.get_layer("head").set_weights([dense, np.zeros(3)])
        return model

    sequence = build((20, 2), keras.layers.Conv1D, keras.layers.GlobalAveragePooling1D, (3,))
    image = build((1, 20, 2), keras.layers.Conv2D, keras.layers.GlobalAveragePooling2D, (1, 3))
    samples = rng.normal(size=(2, 20, 2)).astype(np.float32)
    for baseline in ("blur", "mean"):
        along_steps = kcv.occlusion_sensitivity(
            sequence, samples, patch_size=4, stride=2, baseline=baseline, class_index=1
        )
        along_width = kcv.occlusion_sensitivity(
            image,
            samples[:, None],
            patch_size=(1, 4),
            stride=(1, 2),
            baseline=baseline,
            class_index=1,
            method="naive",
        )
        np.testing.assert_allclose(along_steps, along_width[:, 0], atol=1e-5, rtol=1e-5)
        assert np.abs(along_steps).max() > 0.01


SEQUENCE = np.zeros((2, 16, 2), np.float32)
VOLUME = np.zeros((2, 4, 6, 8, 2), np.float32)


@pytest.mark.parametrize(
    "samples, kwargs, message",
    [
        (
            SEQUENCE,
            {"patch_size": (3, 3)},
            "`patch_size` must be a positive int or a tuple of 1 positive int (steps). "
            "Received: patch_size=(3, 3)",
        ),
        (
            VOLUME,
            {"stride": (1, 2)},
            "`stride` must be a positive int or 3 positive ints (depth, rows, columns). "
            "Received: stride=(1, 2)",
        ),
        (
            SEQUENCE,
            {"patch_size": 17},
            "`patch_size` must fit in the 16 probe sequences. Received: patch_size=17",
        ),
        (
            VOLUME,
            {"patch_size": (2, 7, 2)},
            "`patch_size` must fit in the 4x6x8 probe volumes. Received: patch_size=(2, 7, 2)",
        ),
        (
            VOLUME,
            {"patch_size": 2, "stride": (1, 3, 1)},
            "`stride` must be at most `patch_size` so every pixel is occluded. "
            "Received: stride=(1, 3, 1), patch_size=2",
        ),
        (
            SEQUENCE,
            {"method": "incremental"},
            "`method` must be 'auto' or 'naive' for probe samples (steps, channels): the "
            "incremental engine recomputes 2-D (height, width) windows only. "
            "Received: method='incremental'",
        ),
        (
            VOLUME,
            {"method": "incremental"},
            "`method` must be 'auto' or 'naive' for probe samples (depth, height, width, channels)",
        ),
    ],
)
def test_windows_that_do_not_fit_the_rank_are_refused_naming_the_argument(
    samples, kwargs, message, tmp_path
):
    model = hand_weighted(samples.ndim - 2, samples.shape[1:-1])
    with pytest.raises(ValueError, match=re.escape(message)):
        kcv.occlusion_sensitivity(model, samples, **kwargs)
    # The callback refuses them when made, before any training.
    with pytest.raises(ValueError, match=re.escape(message)):
        kcv.OcclusionSensitivity(tmp_path, samples, **kwargs)


def test_occlusion_sensitivity_writes_a_sequences_maps(tmp_path):
    model = hand_weighted(1, (16,))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 16, 2)).astype(np.float32)
    y = rng.integers(0, 3, 8).astype(np.int32)
    probe = (x[:2], y[:2])
    callback = kcv.OcclusionSensitivity(tmp_path, probe, patch_size=4, stride=2, baseline=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # served: no warning that switches it off
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    written = read_runs(tmp_path)["occlusion_sensitivity"]
    maps = kcv.occlusion_sensitivity(model, probe, patch_size=4, stride=2, baseline=0.0)
    for i in range(2):
        peak = written[f"occlusion_sensitivity/image_{i}/max"]["values"][0]
        np.testing.assert_allclose(peak, maps[i].max(), rtol=1e-5)
        picture = written[f"occlusion_sensitivity/image_{i}"]["values"][0]
        assert picture.ndim == 3 and picture.shape[-1] == 3 and picture.std() > 0
