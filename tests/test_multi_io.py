"""Models with several inputs (the image input chosen) and several outputs (the scores chosen)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CONVVIZ_RUNS, read_runs

import keras_convviz as kcv

RUNS = CONVVIZ_RUNS


def image_and_meta_model(extra_image: bool = False):
    """An image branch gated by a tabular branch before a softmax head.

    The meta input scales the image features, so a snapshot that fed it wrong (zeros, or
    another sample's row) gives other maps.
    """
    keras.utils.set_random_seed(0)
    image = keras.Input((12, 12, 3), name="img")
    meta = keras.Input((4,), name="meta")
    h = keras.layers.Conv2D(6, 3, activation="relu", name="conv_a")(image)
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    gate = keras.layers.Dense(8, activation="sigmoid", name="meta_dense")(meta)
    h = keras.layers.Multiply()([h, gate])
    inputs = [meta, image]  # the image is not the first input
    if extra_image:
        mask = keras.Input((12, 12, 1), name="mask")
        h = keras.layers.Concatenate()([h, keras.layers.GlobalAveragePooling2D()(mask)])
        inputs.append(mask)
    scores = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    model = keras.Model(inputs, scores, name="image_and_meta")
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def two_head_model(box_shape=(4,)):
    """One image input, a softmax class head and a regression box head."""
    keras.utils.set_random_seed(0)
    image = keras.Input((12, 12, 3), name="img")
    h = keras.layers.Conv2D(6, 3, activation="relu", name="conv_a")(image)
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(h)
    pooled = keras.layers.GlobalAveragePooling2D()(h)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(pooled)
    if len(box_shape) == 1:
        box = keras.layers.Dense(box_shape[0], name="box")(pooled)
    else:  # a dense-prediction (segmentation-like) output
        box = keras.layers.Conv2D(box_shape[-1], 1, name="box")(h)
    model = keras.Model(image, {"cls": cls, "box": box}, name="two_heads")
    return model


def data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12, 12, 3)).astype(np.float32)
    meta = rng.normal(size=(n, 4)).astype(np.float32) * 3
    y = (np.arange(n) % 3).astype(np.int32)
    return x, meta, y


def test_multi_input_model_trains_with_convviz_and_a_dict_probe(tmp_path):
    x, meta, y = data()
    model = image_and_meta_model()
    callback = kcv.ConvViz(
        tmp_path,
        ({"img": x[:2], "meta": meta[:2]}, y[:2]),
        patch_size=4,
        on_error="raise",
        budget=None,  # every kind at every epoch
    )
    model.fit({"img": x, "meta": meta}, y, epochs=2, batch_size=3, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    assert sorted(runs) == RUNS
    assert "feature_maps/meta_dense/image_0" not in runs["feature_maps"]  # not a conv layer
    for run in set(RUNS) - {"health"}:  # the health run has numbers only
        images = [r for r in runs[run].values() if r["kind"] == "images"]
        assert images and all(r["steps"] == [0, 1] for r in images)
        assert all(value.std() > 0 for r in images for value in r["values"])


def occlusion_by_hand(model, x, meta, targets, patch):
    """score(original) - score(occluded) per window, each occluded copy with its own meta."""
    head = model.get_layer("cls")
    features = keras.Model(model.inputs, head.input)

    def scores(images, metas):
        z = features({"img": images, "meta": metas}).numpy() @ head.kernel.numpy()
        return z + head.bias.numpy()

    base = scores(x, meta)[np.arange(len(x)), targets]
    size = x.shape[1]
    fill = x.mean(axis=(0, 1, 2))
    maps = np.zeros(x.shape[:3], np.float32)
    for top in range(0, size, patch):
        for left in range(0, size, patch):
            occluded = x.copy()
            occluded[:, top : top + patch, left : left + patch] = fill
            drop = base - scores(occluded, meta)[np.arange(len(x)), targets]
            maps[:, top : top + patch, left : left + patch] = drop[:, None, None]
    return maps


def test_multi_input_explainers_feed_each_image_its_own_other_inputs():
    x, meta, y = data(n=4)
    model = image_and_meta_model()
    probe = ({"img": x, "meta": meta}, y)
    got = kcv.occlusion_sensitivity(model, probe, patch_size=4, batch_size=5, baseline="mean")
    np.testing.assert_allclose(got, occlusion_by_hand(model, x, meta, y, 4), rtol=1e-4, atol=1e-5)
    # The meta input matters: the same images with other meta rows give other maps.
    other = kcv.occlusion_sensitivity(
        model, ({"img": x, "meta": meta[::-1]}, y), patch_size=4, baseline="mean"
    )
    assert np.abs(other - got).max() > 1e-3
    # A list in the model's input order (meta first) and the image input by position.
    as_list = kcv.occlusion_sensitivity(
        model, ([meta, x], y), patch_size=4, image_input=1, baseline="mean"
    )
    np.testing.assert_allclose(as_list, got, rtol=1e-5, atol=1e-6)
    cam = kcv.grad_cam(model, probe, layer_name="conv_b")
    cam_list = kcv.grad_cam(model, ([meta, x], y), layer_name="conv_b", image_input="img")
    np.testing.assert_allclose(cam_list, cam, rtol=1e-5, atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices(({"img": x, "meta": meta}, y)).batch(4)
    cam_data = kcv.grad_cam(model, dataset, layer_name="conv_b")
    np.testing.assert_allclose(cam_data, cam, rtol=1e-5, atol=1e-6)
    maps = kcv.feature_maps(model, ({"img": x, "meta": meta},))
    assert sorted(maps) == ["conv_a", "conv_b"]


def test_image_input_chooses_between_several_image_inputs():
    x, meta, y = data(n=2)
    mask = np.ones((2, 12, 12, 1), np.float32)
    model = image_and_meta_model(extra_image=True)
    probe = ({"img": x, "meta": meta, "mask": mask}, y)
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, probe)
    assert "`image_input` must give the key (dict probe) or position (list probe)" in str(
        error.value
    )
    assert "Received: image_input=None" in str(error.value)
    cam = kcv.grad_cam(model, probe, image_input="img", layer_name="conv_b")
    assert cam.shape == (2, 12, 12) and cam.max() > 0
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, probe, image_input="meta")
    assert str(error.value) == (
        "`image_input` must name an input of samples with spatial axes and channels: "
        "(batch, steps, channels), (batch, height, width, channels) or (batch, depth, height, "
        "width, channels). Input 'meta' has shape (None, 4). Received: image_input='meta'"
    )


def test_multi_input_bad_probes_are_named():
    x, meta, y = data(n=2)
    model = image_and_meta_model()
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, (x, y))
    assert str(error.value) == (
        "`images` must give every input of model 'image_and_meta' ('meta' (None, 4), 'img' "
        "(None, 12, 12, 3)): x as a dict keyed by input name or a list in input order, in (x,) "
        "or (x, labels). Received: one image array"
    )
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, ({"img": x},))
    assert "must give every input of model 'image_and_meta'" in str(error.value)
    assert "Received: inputs ['img']" in str(error.value)
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, ({"img": x, "meta": meta[:, :3]},))
    assert str(error.value) == (
        "`images` input 'meta' must match the model input shape (batch, 4). "
        "Received: an array of shape (2, 3)"
    )
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, ({"img": x, "meta": meta[:1]},))
    assert "`probe` inputs must all hold the same number of samples" in str(error.value)
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, ({"img": x, "meta": meta},), image_input="image")
    assert str(error.value) == (
        "`image_input` must be the name or position of one of the model's inputs: 'meta' "
        "(None, 4), 'img' (None, 12, 12, 3). Received: image_input='image'"
    )


def test_callback_errors_for_multi_io_come_before_the_first_epoch(tmp_path):
    x, meta, y = data(n=2)
    model = image_and_meta_model()
    callback = kcv.GradCAM(tmp_path, probe=(x, y))
    callback.set_model(model)
    with pytest.raises(ValueError, match="must give every input of model 'image_and_meta'"):
        callback.on_train_begin()
    # Two outputs that both read as class scores and no `score_output`: the defaults
    # cannot choose, so the callback is off for this training with one warning (never an
    # error that stops `fit`).
    heads = two_head_model()
    callback = kcv.OcclusionSensitivity(tmp_path, probe=x, patch_size=4)
    callback.set_model(heads)
    with pytest.warns(UserWarning) as caught:
        callback.on_train_begin()
    assert [str(w.message) for w in caught] == [
        "OcclusionSensitivity is off for this training: model 'two_heads' has 2 outputs "
        "('box' (None, 4), 'cls' (None, 3)), 2 of which read as class scores (batch, classes): "
        "pass `score_output` to choose one."
    ]
    assert not callback._active


def single_output_twin(model, name):
    """The same layers and weights, with only one of the outputs."""
    return keras.Model(model.inputs, model.get_layer(name).output)


@pytest.mark.parametrize("score_output", ["cls", 1, "box", 0])
def test_score_output_chooses_the_head(score_output):
    x, _, y = data(n=3)
    model = two_head_model()
    name = model.output_names[score_output] if isinstance(score_output, int) else score_output
    twin = single_output_twin(model, name)
    cam = kcv.grad_cam(model, x, class_index=1, score_output=score_output)
    np.testing.assert_allclose(cam, kcv.grad_cam(twin, x, class_index=1), rtol=1e-5, atol=1e-6)
    occ = kcv.occlusion_sensitivity(
        model, x, patch_size=4, class_index=1, score_output=score_output
    )
    expected = kcv.occlusion_sensitivity(twin, x, patch_size=4, class_index=1)
    np.testing.assert_allclose(occ, expected, rtol=1e-5, atol=1e-6)


def test_multi_output_callbacks_write_with_score_output(tmp_path):
    x, _, y = data()
    model = two_head_model()
    model.compile("adam", {"cls": "sparse_categorical_crossentropy", "box": "mse"})
    targets = {"cls": y, "box": np.zeros((len(y), 4), np.float32)}
    only_features = kcv.FeatureMaps(tmp_path / "features", probe=x[:2], on_error="raise")
    convviz = kcv.ConvViz(
        tmp_path / "all",
        (x[:2], y[:2]),
        patch_size=4,
        score_output="cls",
        on_error="raise",
        budget=None,  # every kind at every epoch
    )
    model.fit(x, targets, epochs=2, verbose=0, callbacks=[only_features, convviz])
    assert sorted(read_runs(tmp_path / "all")) == RUNS
    features = read_runs(tmp_path / "features")["feature_maps"]
    assert features["feature_maps/conv_b/image_1"]["steps"] == [0, 1]


def test_score_output_must_be_a_scores_output():
    x, _, _ = data(n=2)
    model = two_head_model(box_shape=(8, 8, 2))
    # The only (batch, units) output is picked without being named.
    np.testing.assert_allclose(
        kcv.grad_cam(model, x, class_index=0, score_output=None),
        kcv.grad_cam(model, x, class_index=0, score_output="cls"),
    )
    with pytest.raises(ValueError) as error:
        kcv.grad_cam(model, x, score_output="box")
    assert str(error.value) == (
        "keras_convviz needs the scores as one (batch, classes) output (choose it with "
        "`score_output`). Output 'box' of model 'two_heads' has shape (None, 8, 8, 2). "
        "Received: score_output='box'"
    )
    with pytest.raises(ValueError) as error:
        kcv.occlusion_sensitivity(model, x, score_output=2)
    assert str(error.value) == (
        "`score_output` must be the name or position of one of the model's outputs: 'box' "
        "(None, 8, 8, 2), 'cls' (None, 3). Received: score_output=2"
    )


def test_feature_maps_need_no_scores_output(tmp_path):
    x, _, _ = data(n=4)
    keras.utils.set_random_seed(0)
    image = keras.Input((12, 12, 3), name="img")
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(image)
    mask = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(h)
    model = keras.Model(image, mask, name="segmenter")
    model.compile("adam", "binary_crossentropy")
    callback = kcv.FeatureMaps(tmp_path, probe=x[:2], on_error="raise")
    model.fit(x, (x[..., :1] > 0.5).astype(np.float32), epochs=2, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)["feature_maps"]
    assert runs["feature_maps/mask/image_1"]["steps"] == [0, 1]
    # A per-pixel output is a segmentation head: without masks, each image's maps explain
    # its whole summed score (one sigmoid unit: the classes [-z, z]).
    maps = kcv.grad_cam(model, x, layer_name="conv_a")
    assert maps.shape == (4, 12, 12) and maps.min() >= 0
