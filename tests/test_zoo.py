"""The models people train beyond image classifiers, each with `ConvViz`'s defaults.

Every model of `zoo` trains with `ConvViz(log_dir, probe=(x[:2], y[:2]))` (labels exactly as
`fit` takes them) and nothing else: `fit` runs, what the defaults can serve writes its
pictures, and what they cannot is switched off with one warning that says what and why.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zoo
from conftest import read_runs

import keras_convviz as kcv
from keras_convviz import kinds

ALL = ["feature_maps", "filter_weights", "grad_cam", "health", "occlusion_sensitivity"]
# A segmentation output's maps are LayerCAM's (`GradCAM`'s `method`).
SEGMENTATION = sorted({*ALL, "layer_cam"} - {"grad_cam"})
# What each model writes with the defaults, the layer its CAM explains, and the children
# switched off (named in the one warning).
EXPECTED = {
    "sequence": (ALL, "conv2", []),
    "volume": (ALL, "conv2", []),
    "unet": (SEGMENTATION, "up_conv", []),
    "two_heads": (ALL, "conv2", []),
    "vit": (ALL, "block1_norm1", []),
}


def _first(labels, n):
    if isinstance(labels, dict):
        return {key: value[:n] for key, value in labels.items()}
    return labels[:n]


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_model_trains_with_the_defaults_and_shows_what_it_can(name, tmp_path):
    model, x, y = zoo.MODELS[name]()
    runs, cam_layer, off = EXPECTED[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            x,
            y,
            epochs=2,
            batch_size=8,
            verbose=0,
            callbacks=[kcv.ConvViz(tmp_path, (x[:2], _first(y, 2)), on_error="raise")],
        )
    partial = [w for w in caught if "serves this model in part" in str(w.message)]
    if off:
        assert len(partial) == 1, [str(w.message) for w in caught]
        message = str(partial[0].message)
        for child in off:
            assert child in message
    else:
        assert not partial, str(partial[0].message)

    written = read_runs(tmp_path)
    assert sorted(written) == runs
    for run in runs:
        pictures = {t: v for t, v in written[run].items() if v["kind"] == "images"}
        assert bool(pictures) == (run != "health"), run
        # The costly kinds (occlusion) run at the first snapshot, and later as the cost
        # budget admits: on these tiny epochs, not at the second.
        expected = [0] if kinds.get(run).costly else [0, 1]
        for tag, series in pictures.items():
            assert series["steps"] == expected, tag
            picture = series["values"][-1]
            assert picture.ndim == 3 and picture.shape[-1] == 3, tag
            assert picture.std() > 0, f"{tag} is one flat colour"
    cam = "layer_cam" if "layer_cam" in runs else "grad_cam"
    maps = {t for t in written[cam] if t.endswith("/max")}
    assert maps == {f"{cam}/{cam_layer}/image_{i}/max" for i in range(2)}
    peaks = [written[cam][t]["values"][-1] for t in maps]
    assert max(peaks) > 0, "the CAM map is empty"


def test_a_vision_transformer_shows_its_blocks_on_the_patch_grid(tmp_path):
    model, x, y = zoo.vit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kcv.ConvViz(tmp_path, (x[:2], y[:2]))])
    layers = {t.split("/")[1] for t in read_runs(tmp_path)["feature_maps"]}
    # The patch embedding and each block's output (the residual stream before the next
    # block's attention, and the last one).
    assert layers == {"patch_embed", "block0_out", "block1_out"}


def test_one_sample_without_a_batch_axis_gets_the_hint_for_its_rank(tmp_path):
    model, x, y = zoo.sequence()
    callback = kcv.ConvViz(tmp_path, x[0])  # one (steps, channels) sequence
    with pytest.raises(ValueError, match=r"one sample: for one sample use x\[None\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    # A batch of the wrong length is told what the model takes, without that hint.
    callback = kcv.ConvViz(tmp_path, x[:2, :32])
    with pytest.raises(ValueError, match=r"\(batch, 64, 3\)") as error:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert "x[None]" not in str(error.value)


def test_labels_per_output_pick_the_class_head_of_a_two_head_model():
    model, x, y = zoo.two_heads()
    maps = kcv.grad_cam(model, (x[:3], _first(y, 3)))
    by_label = kcv.grad_cam(model, x[:3], class_index=None)
    assert maps.shape == (3, 32, 32)
    # The labels of the class head are the targets (not the predicted classes).
    for i, label in enumerate(y["label"][:3]):
        expected = kcv.grad_cam(model, x[i : i + 1], class_index=int(label))
        np.testing.assert_allclose(maps[i : i + 1], expected, rtol=1e-5, atol=1e-6)
    assert by_label.shape == maps.shape


def test_a_large_probe_is_told_once_and_only_once_it_fits(tmp_path):
    model, x, y = zoo.sequence()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        callback = kcv.ConvViz(tmp_path, (x, y))  # 16 sequences: not flagged
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
        big = np.concatenate([x, x])
        callback = kcv.ConvViz(tmp_path / "big", (big, np.concatenate([y, y])))
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    told = [str(w.message) for w in caught if "The probe holds" in str(w.message)]
    assert len(told) == 1 and told[0].startswith("The probe holds 32 samples")


def test_the_kinds_registry_decides_which_ranks_a_child_draws(tmp_path, monkeypatch):
    import dataclasses

    from keras_convviz import kinds

    model, x, y = zoo.sequence()
    two_d = dataclasses.replace(kinds.GRAD_CAM, ranks=(kinds.RANK_2D,))
    monkeypatch.setitem(kinds.KINDS, kinds.GRAD_CAM.run, two_d)
    with pytest.warns(UserWarning, match=r"GradCAM: Grad-CAM cannot draw the 1-D \(steps\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kcv.ConvViz(tmp_path, (x[:2], y[:2]))])
    assert "grad_cam" not in read_runs(tmp_path)


@pytest.mark.parametrize("name", ["sequence", "volume"])
def test_every_child_and_option_draws_a_sequence_and_a_volume(name, tmp_path):
    model, x, y = zoo.MODELS[name]()
    callback = kcv.ConvViz(
        tmp_path,
        (x[:2], y[:2]),
        scale="run",
        saliency={"method": ["gradient", "smoothgrad"], "samples": 4},
        grad_cam={"method": ["gradcam", "scorecam", "eigencam"]},
        on_error="raise",
        budget=None,  # every kind at every epoch, the second's running scale included
    )
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    for run in ("grad_cam", "score_cam", "eigen_cam", "gradient", "smoothgrad"):
        pictures = [v for v in runs[run].values() if v["kind"] == "images"]
        assert len(pictures) == 2 and all(p["steps"] == [0, 1] for p in pictures), run


def test_a_regression_head_is_explained_as_its_value(tmp_path):
    import keras
    import tensorflow as tf

    model, x, y = zoo.two_heads()
    # Grad-CAM of the value: the gradient of the unit itself (one linear unit, no classes).
    maps = kcv.grad_cam(model, (x[:3], _first(y, 3)), score_output="value", layer_name="conv2")
    encode = keras.Model(model.inputs, model.get_layer("conv2").output)
    activation = encode(x[:3])
    with tf.GradientTape() as tape:
        tape.watch(activation)
        pooled = tf.reduce_mean(activation, axis=(1, 2))
        value = tf.reduce_sum(model.get_layer("value")(pooled))
    gradient = tape.gradient(value, activation).numpy()
    weights = gradient.mean(axis=(1, 2))
    expected = np.maximum(np.einsum("nhwc,nc->nhw", activation.numpy(), weights), 0)
    expected = tf.image.resize(expected[..., None], (32, 32))[..., 0].numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-6)
    # In ConvViz the health numbers, which need classes, are off; the maps are written.
    with pytest.warns(UserWarning, match="ModelHealth: the output 'value' is one linear unit"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[
            kcv.ConvViz(tmp_path, (x[:2], _first(y, 2)), score_output="value")])  # fmt: skip
    assert {"grad_cam", "occlusion_sensitivity"} <= set(read_runs(tmp_path))
    assert "health" not in read_runs(tmp_path)


def test_a_transformers_token_layers_raise_no_dead_channel_alarm(tmp_path):
    model, x, y = zoo.vit()
    alerts = []
    callback = kcv.ConvViz(tmp_path, (x[:2], y[:2]), on_alert=alerts.append)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    written = read_runs(tmp_path)["feature_maps"]
    assert "feature_maps/block1_out/max_activation" in written
    assert "feature_maps/block1_out/dead_fraction" not in written
    # The patch embedding is a linear conv: its negative values are no dead channels.
    assert "feature_maps/patch_embed/max_activation" in written
    assert "feature_maps/patch_embed/dead_fraction" not in written
    assert not [a for a in alerts if a.rule == "dead_channels" and "block" in a.layer]


def test_a_unet_explains_its_predicted_regions_and_captions_their_size(tmp_path):
    from keras_convviz import _rendering

    model, x, y = zoo.unet()
    callback = kcv.ConvViz(
        tmp_path, (x[:2], y[:2]), class_index="predicted", on_error="raise", occlusion=False
    )
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[callback])
    # Every child binds alike: one pass serves them all.
    assert len(model.__dict__["_keras_convviz_shared"]) == 1
    runs = read_runs(tmp_path)
    predicted = model.predict(x[:2], verbose=0).argmax(-1)
    for i in range(2):
        counts = np.bincount(predicted[i].ravel(), minlength=3)
        cls = int(counts[1:].argmax()) + 1
        size = int(counts[cls])
        text = f"class {cls} {size} px ({100 * size / predicted[i].size:.1f}%)  pred {cls}"
        ink = 1.0 - _rendering.draw_text(np.array([[ord(c) for c in text]]), 2)[0].numpy()
        png = runs["layer_cam"][f"layer_cam/up_conv/image_{i}"]["values"][0]
        rows = png[-_rendering.CAPTION_HEIGHT + 3 : -2, 2 : 2 + ink.shape[1], 0] / 255.0
        np.testing.assert_allclose(rows, ink, atol=1 / 255, err_msg=text)
