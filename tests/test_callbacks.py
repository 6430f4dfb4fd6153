"""Callback plumbing: ConvViz forwards every hook and every child argument; runs and steps."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import event_files, read_runs, small_cnn

import keras_convviz as kcv


def probe_of(data, n=2):
    x, y = data
    return x[:n], y[:n]


class EpochBegins(kcv.FeatureMaps):
    """A FeatureMaps that also counts the epoch-begin hook (ConvViz must forward it)."""

    begun: list

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)


def test_convviz_children_take_their_own_arguments(tmp_path, data):
    callback = kcv.ConvViz(
        tmp_path,
        probe_of(data),
        patch_size=8,
        feature_maps=False,
        filter_weights={"max_filters": 4, "max_inputs": 2},
        grad_cam={"method": ["gradcam", "layercam"], "layer_name": "conv_a"},
        occlusion={"stride": 4, "batch_size": 7, "baseline": 0.0},
        saliency={"method": "gradient"},
        budget=None,  # every kind at every epoch
    )
    names = [type(c).__name__ for c in callback.callbacks]
    assert names == ["FilterWeights", "GradCAM", "OcclusionSensitivity", "Saliency", "ModelHealth"]
    weights, cam, occlusion, saliency, _ = callback.callbacks
    assert (weights.max_filters, weights.max_inputs) == (4, 2)
    assert cam.methods == ("gradcam", "layercam") and cam.layer_name == "conv_a"
    assert (occlusion.patch_size, occlusion.stride, occlusion.batch_size) == ((8, 8), (4, 4), 7)
    assert np.all(occlusion.baseline == 0.0)
    assert saliency.methods == ("gradient",)
    small_cnn().fit(*data, epochs=1, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    assert sorted(runs) == [
        "filter_weights",
        "grad_cam",
        "gradient",
        "health",
        "layer_cam",
        "occlusion_sensitivity",
    ]
    assert "grad_cam/conv_a/image_1" in runs["grad_cam"]
    assert "layer_cam/conv_a/image_1" in runs["layer_cam"]


def test_convviz_forwards_every_hook_a_child_implements(tmp_path, data):
    from keras_convviz.callbacks.convviz import _install_hooks

    callback = kcv.ConvViz(tmp_path, probe_of(data), occlusion=False)
    child = EpochBegins(tmp_path / "extra", probe_of(data))
    child.begun = []
    callback.callbacks.append(child)  # a child with a hook none of the others has
    _install_hooks(callback)
    small_cnn().fit(*data, epochs=3, verbose=0, callbacks=[callback])
    assert child.begun == [0, 1, 2]
    assert sorted(read_runs(tmp_path / "extra")) == ["feature_maps"]
    # No batch-level hook is forwarded: Keras keeps its asynchronous training loop.
    for hook in ("on_train_batch_end", "on_batch_end", "on_test_batch_end"):
        assert getattr(getattr(callback, hook), "_is_default", False), hook


def test_convviz_rejects_unknown_child_arguments(tmp_path, data):
    with pytest.raises(TypeError, match=re.escape("`occlusion` must hold arguments of")):
        kcv.ConvViz(tmp_path, probe_of(data), occlusion={"strid": 4})
    with pytest.raises(TypeError, match=re.escape("Received unknown: ['strid']")):
        kcv.ConvViz(tmp_path, probe_of(data), occlusion={"strid": 4})
    with pytest.raises(
        TypeError,
        match=re.escape(
            "`saliency` must be True, False or a dict of Saliency arguments. "
            "Received: saliency='smoothgrad'"
        ),
    ):
        kcv.ConvViz(tmp_path, probe_of(data), saliency="smoothgrad")
    # A child's own check names its argument.
    with pytest.raises(ValueError, match=re.escape("Received: stride=(16, 16)")):
        kcv.ConvViz(tmp_path, probe_of(data), patch_size=8, occlusion={"stride": 16})


def test_a_later_fit_continues_the_steps_in_one_event_file(tmp_path, data):
    x, y = data
    model = small_cnn()
    callback = kcv.FeatureMaps(tmp_path, probe_of(data), layer_names=["conv_a"], freq=2)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])  # steps 0, 2
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])  # epochs 0-2 -> steps 3-5
    model.fit(x, y, epochs=10, initial_epoch=8, verbose=0, callbacks=[callback])  # ahead: 8
    steps = read_runs(tmp_path)["feature_maps"]["feature_maps/conv_a/image_0"]["steps"]
    assert steps == [0, 2, 3, 5, 8]
    assert len(event_files(tmp_path)) == 1


def test_moving_a_callback_to_another_model_warns(tmp_path, data):
    x, y = data
    callback = kcv.FilterWeights(tmp_path)
    small_cnn().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    with pytest.warns(UserWarning, match="its history mixes both models"):
        small_cnn(seed=1).fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    steps = read_runs(tmp_path)["filter_weights"]["filter_weights/conv_a"]["steps"]
    assert steps == [0, 1]


def test_two_callbacks_writing_one_tag_are_refused(tmp_path, data):
    x, y = data
    first = kcv.GradCAM(tmp_path, probe_of(data), class_index=0, on_error="raise")
    second = kcv.GradCAM(tmp_path, probe_of(data), class_index=1, on_error="raise")
    with pytest.raises(ValueError, match="Two callbacks write the tag 'grad_cam/conv_b/"):
        small_cnn().fit(x, y, epochs=1, verbose=0, callbacks=[first, second])


def test_each_map_is_captioned_with_its_target_prediction_and_probability(tmp_path, data):
    from keras_convviz import _rendering

    x, y = data
    model = small_cnn()
    names = ["circle", "square", "triangle", "cross"]
    probe = (x[:3], np.array([2, 0, 3]))
    callbacks = [
        kcv.GradCAM(tmp_path, probe, class_names=names, on_error="raise"),
        kcv.OcclusionSensitivity(tmp_path, x[:3], patch_size=8, class_names=names),
        kcv.Saliency(tmp_path, probe, method="gradient", class_index=1),
    ]
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
        callback.on_epoch_end(0)
        callback.on_train_end()
    probabilities = model.predict(x[:3], verbose=0)
    predicted = probabilities.argmax(1)
    runs = read_runs(tmp_path)

    def caption(target, i, labels, width):
        text = (
            f"target {labels[target]:<{width}}  pred {labels[predicted[i]]:<{width}} "
            f"{probabilities[i, predicted[i]]:.2f}"
        )
        codes = np.array([[ord(c) for c in text]])
        return 1.0 - _rendering.draw_text(codes, _rendering.TEXT_SCALE)[0].numpy()

    expected = {
        "grad_cam/conv_b/image_{}": lambda i: caption([2, 0, 3][i], i, names, 8),
        "occlusion_sensitivity/image_{}": lambda i: caption(predicted[i], i, names, 8),
        "gradient/image_{}": lambda i: caption(1, i, [str(c) for c in range(4)], 1),
    }
    for pattern, make in expected.items():
        for i in range(3):
            tag = pattern.format(i)
            png = runs[tag.split("/")[0]][tag]["values"][0]
            text = make(i)
            rows = png[-_rendering.CAPTION_HEIGHT + 3 : -2, 2 : 2 + text.shape[1], 0] / 255.0
            np.testing.assert_allclose(rows, text, atol=1 / 255, err_msg=tag)


def test_class_names_must_name_every_class(tmp_path, data):
    x, y = data
    with pytest.raises(ValueError, match=re.escape("`class_names` must be None or a list")):
        kcv.GradCAM(tmp_path, x[:2], class_names=[1, 2])
    callback = kcv.GradCAM(tmp_path, x[:2], class_names=["a", "b"], on_error="raise")
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`class_names` must name each of the model's 4 classes. Received: 2 names ['a', 'b']"
        ),
    ):
        small_cnn().fit(x, y, epochs=1, verbose=0, callbacks=[callback])


def test_grid_writes_one_picture_per_layer_with_every_probe_image(tmp_path, data):
    x, y = data
    model = small_cnn()
    probe = (x[:3], y[:3])
    kwargs = {"patch_size": 8, "on_error": "raise"}
    model.fit(
        x, y, epochs=1, verbose=0, callbacks=[kcv.ConvViz(tmp_path / "cards", probe, **kwargs)]
    )
    model.fit(
        x,
        y,
        epochs=1,
        verbose=0,
        callbacks=[kcv.ConvViz(tmp_path / "grid", probe, grid=True, **kwargs)],
    )
    cards, grid = read_runs(tmp_path / "cards"), read_runs(tmp_path / "grid")
    assert sorted(grid["grad_cam"]) == ["grad_cam/conv_b/all_images"] + [
        f"grad_cam/conv_b/image_{i}/max" for i in range(3)
    ]
    assert set(grid["feature_maps"]) >= {"feature_maps/conv_a/all_images"}
    assert not any(t.rsplit("/", 1)[-1] == "image_0" for run in grid.values() for t in run)
    # The grid is the per-image cards, one below the other with 4-px white gaps. The model
    # trained one more epoch before the grid run, so compare shapes and the gaps.
    card = cards["grad_cam"]["grad_cam/conv_b/image_0"]["values"][0]
    picture = grid["grad_cam"]["grad_cam/conv_b/all_images"]["values"][0]
    assert picture.shape == (3 * card.shape[0] + 8, card.shape[1], 3)
    assert (picture[card.shape[0] : card.shape[0] + 4] == 255).all()
    assert grid["filter_weights"].keys() == cards["filter_weights"].keys()  # not per image


def test_a_new_callback_on_the_same_log_dir_continues_the_run(tmp_path, data):
    # The notebook habit: the cell that makes the callback runs again before the next fit,
    # while the old callback may still be alive.
    x, y = data
    model = small_cnn()
    first = kcv.GradCAM(tmp_path, probe_of(data))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[first])
    second = kcv.GradCAM(tmp_path, probe_of(data))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[second])
    steps = read_runs(tmp_path)["grad_cam"]["grad_cam/conv_b/image_0"]["steps"]
    assert steps == [0, 1, 2, 3, 4]
    assert len(event_files(tmp_path)) == 1
    assert first is not second  # both alive: the first one's training is over
