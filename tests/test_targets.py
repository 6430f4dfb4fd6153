"""Targets as objects (`core.targets`): what a map explains is a need's field, so maps of
other classes share the pass, and a new kind of target is explained by every method
unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CountCalls

import keras_convviz as kcv
from keras_convviz.core import targets
from keras_convviz.core.binding import bind
from keras_convviz.core.needs import Const, Plan
from keras_convviz.core.probe import make_probe
from keras_convviz.core.shared import core_for
from keras_convviz.methods.cam import Cam
from keras_convviz.methods.occlusion import Occlusion

CONV = np.array([[1.0, 0.5], [-1.0, 2.0]], np.float32)  # (in, out) of a 1x1 kernel
DENSE = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.25]], np.float32)
BIAS = np.array([0.1, -0.2, 0.3], np.float32)


def counted(dense: bool):
    """input -> counter -> conv 1x1 (CONV) -> [segmentation: conv 1x1 (DENSE), softmax per
    pixel | classifier: GAP -> dense (DENSE), softmax]. The counter sees every forward and
    every backward to the input side of "conv"."""
    inputs = keras.Input((8, 8, 2))
    counter = CountCalls(name="counter")
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")(counter(inputs))
    if dense:
        outputs = keras.layers.Conv2D(3, 1, activation="softmax", name="head")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([CONV[None, None]])
    head = DENSE[None, None] if dense else DENSE
    model.get_layer("head").set_weights([head, BIAS])
    return model, counter


@pytest.mark.parametrize("dense", [False, True], ids=["classifier", "segmentation"])
def test_maps_of_other_classes_share_one_forward_and_take_one_backward_each(tmp_path, dense):
    model, counter = counted(dense)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    callbacks = [
        kcv.GradCAM(
            tmp_path / str(c), images, "conv", class_index=c, method="gradcam", on_error="raise"
        )
        for c in (1, 2)
    ]
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    counter.forward.assign(0.0)
    for epoch in range(2):
        for callback in callbacks:
            callback.on_epoch_end(epoch)
    shared = callbacks[0]._shared
    assert callbacks[1]._shared is shared
    result = shared.result(1)  # the last snapshot's, cached
    for callback in callbacks:
        callback.on_train_end()
    # One pass per snapshot for both callbacks: one forward of the model on the probe, one
    # backward per class explained.
    passes = list(core_for(model).passes.values())
    assert [fn.experimental_get_tracing_count() for fn in passes] == [1]
    assert counter.forward.numpy() == 2
    assert counter.backward.numpy() == 2 * 2
    # Each callback's maps are its own class's (the functional explainer's, alone).
    for c, callback in zip((1, 2), callbacks):
        (need,) = callback._map_needs
        expected = kcv.grad_cam(model, images, layer_name="conv", class_index=c)
        np.testing.assert_allclose(result[need].numpy(), expected, rtol=1e-5, atol=1e-6)
    maps = [result[c._map_needs[0]].numpy() for c in callbacks]
    assert np.abs(maps[0] - maps[1]).max() > 1e-3  # two classes, two different maps


@dataclass(frozen=True)
class Margin(targets.Target):
    """A target the package does not have: class `a`'s score minus class `b`'s ("why a
    rather than b"), one column."""

    a: int
    b: int

    def class_scores(self, ctx, scores, rows=None):
        return scores[:, self.a : self.a + 1] - scores[:, self.b : self.b + 1]

    def classes(self, ctx):
        return tf.zeros(tf.shape(ctx.scores)[:1], tf.int32)


def test_a_new_kind_of_target_is_explained_by_every_method_unchanged():
    model, _ = counted(dense=False)
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 8, 8, 2)).astype(np.float32)
    core = core_for(model)
    bound = bind(core.graph, make_probe(images))
    target = Margin(1, 0)
    ref = core.graph.find("conv", "layer_name")
    cam = Cam(ref, "gradcam", target)
    occlusion = Occlusion((4, 4), (4, 4), 64, target, Const(np.zeros((8, 8, 2), np.float32)))
    result = core.run(Plan([cam, occlusion]), bound)
    # S = mean over positions of A @ (W[:, a] - W[:, b]) + bias difference, so dS/dA_k is
    # (W[k, a] - W[k, b]) / 64 everywhere: Grad-CAM = relu(A @ (W[:, a] - W[:, b]) / 64).
    activation = np.einsum("nhwi,io->nhwo", images, CONV)
    weights = DENSE[:, 1] - DENSE[:, 0]
    expected = np.maximum(activation @ weights / 64.0, 0.0)
    np.testing.assert_allclose(result[cam].numpy(), expected, rtol=1e-5, atol=1e-6)
    # Occluding a 4x4 window with zeros removes its 16 positions' share of the mean.
    share = (activation @ weights).reshape(2, 2, 4, 2, 4).sum(axis=(2, 4)) / 64.0
    expected = np.repeat(np.repeat(share, 4, axis=1), 4, axis=2)
    np.testing.assert_allclose(result[occlusion].numpy(), expected, rtol=1e-4, atol=1e-5)
