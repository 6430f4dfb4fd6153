"""The shared compiled core: traced once, one forward pass per snapshot, nothing changed."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import CONVVIZ_RUNS, core_logits, forget, read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz.core import passes
from keras_convviz.core.graph import activation_name
from keras_convviz.core.shared import core_for
from keras_convviz.methods import perturb
from keras_convviz.methods.occlusion import need as occlusion_need
from keras_convviz.methods.occlusion import windows


def test_traced_once_over_many_epochs(tmp_path, data):
    model = small_cnn()
    x, y = data
    callback = kcv.ConvViz(tmp_path, (x[:4], y[:4]), patch_size=8, budget=None)
    model.fit(x, y, epochs=6, verbose=0, callbacks=[callback])
    core = core_for(model)
    compiled = [*core.passes.values()]
    compiled += [cb._render for cb in callback.callbacks if hasattr(cb, "_render")]
    assert len(core.passes) == 1  # one pass for every callback, occlusion included
    assert [fn.experimental_get_tracing_count() for fn in compiled] == [1] * len(compiled)


def test_layer_pictures_traced_once_per_shape_for_the_process(tmp_path):
    # Feature maps and filters draw each layer through one function for the process, traced
    # per picture (here one per layer: 5 and 7 channels): a fit traces one per layer, its
    # later epochs and a second model with the same shapes none. Filter counts (5, 7) and
    # 36x36 images no other test uses.
    from keras_convviz.callbacks import feature_maps, filter_weights

    def model(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((36, 36, 3))
        x = keras.layers.Conv2D(5, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(7, 3, padding="same", activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        built = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
        built.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return built

    rng = np.random.default_rng(0)
    x = rng.random((8, 36, 36, 3), dtype=np.float32)
    y = rng.integers(0, 3, 8)
    functions = (feature_maps.render_layer, filter_weights.render_kernel)
    counts = [[fn.experimental_get_tracing_count() for fn in functions]]
    for seed in (0, 1):
        callback = kcv.ConvViz(
            tmp_path / str(seed), (x[:2], y[:2]), grad_cam=False, occlusion=False, alerts=False
        )
        model(seed).fit(x, y, epochs=3, verbose=0, callbacks=[callback])
        assert set(read_runs(tmp_path / str(seed))) >= {"feature_maps", "filter_weights"}
        counts.append([fn.experimental_get_tracing_count() for fn in functions])
    assert np.diff(counts, axis=0).tolist() == [[2, 2], [0, 0]]


def test_layers_of_other_sizes_and_depths_share_a_drawing_trace(tmp_path):
    # Four layers of three shapes, each showing 32 relu channels: one feature-map trace
    # (it was one per shape); kernels of four shapes, three pictures (the two deep ones
    # show 32 inputs of 40 filters). 38x38 images and 40/50 channels: no other test's.
    from keras_convviz.callbacks import feature_maps, filter_weights

    keras.utils.set_random_seed(0)
    inputs = keras.Input((38, 38, 3))
    x = keras.layers.Conv2D(40, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(40, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(50, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(40, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((8, 38, 38, 3), dtype=np.float32)
    y = rng.integers(0, 3, 8)
    functions = (feature_maps.render_layer, filter_weights.render_kernel)
    before = [fn.experimental_get_tracing_count() for fn in functions]
    callback = kcv.ConvViz(tmp_path, (x[:2], y[:2]), grad_cam=False, occlusion=False, alerts=False)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    assert len([t for t in runs["feature_maps"] if t.endswith("/image_0")]) == 4
    assert len([t for t in runs["filter_weights"] if t.count("/") == 1]) == 4
    traced = [fn.experimental_get_tracing_count() - b for fn, b in zip(functions, before)]
    assert traced[0] <= 1 and traced[1] <= 3, traced


def test_heat_map_callbacks_share_one_panel_trace(tmp_path):
    # Grad-CAM, occlusion and saliency (unsigned, signed and unsigned maps) draw their
    # panels through one trace; 40x40 images, a shape no other test draws.
    from keras_convviz import _rendering

    rng = np.random.default_rng(0)
    x = rng.random((8, 40, 40, 3), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    before = _rendering._SHARED_PANEL.experimental_get_tracing_count()
    callback = kcv.ConvViz(tmp_path, (x[:3], y[:3]), patch_size=8, saliency=True, budget=None)
    small_cnn(input_shape=(40, 40, 3)).fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    assert {"grad_cam", "occlusion_sensitivity", "smoothgrad"} <= set(read_runs(tmp_path))
    assert _rendering._SHARED_PANEL.experimental_get_tracing_count() == before + 1


class CountInferenceCalls(keras.layers.Layer):
    """Identity layer counting how often the model runs in inference mode (in the graph)."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, inputs, training=False):
        if not training:
            self.calls.assign_add(1.0)
        return inputs


def counting_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    counter = CountInferenceCalls(name="counter")
    x = counter(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4)(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, counter


def test_one_forward_pass_per_snapshot_for_several_callbacks(tmp_path, data):
    model, counter = counting_model()
    x, y = data
    probe = (x[:4], y[:4])
    callbacks = [
        kcv.FeatureMaps(tmp_path, probe),
        kcv.GradCAM(tmp_path, probe),
        kcv.GradCAM(tmp_path / "second", probe, layer_name="conv_a"),
        kcv.FilterWeights(tmp_path),
    ]
    model.fit(x, y, epochs=4, verbose=0, callbacks=callbacks)
    assert float(counter.calls.numpy()) == 4.0  # one inference pass per epoch, all callbacks


def test_occlusion_scores_in_chunks_of_batch_size(tmp_path, data):
    model, counter = counting_model()
    x, _ = data
    # 32x32 images, patch 8 stride 8: 16 windows per image, 3 images -> 48 occluded images.
    maps = kcv.occlusion_sensitivity(model, x[:3], patch_size=8, batch_size=20)
    assert maps.shape == (3, 32, 32)
    # one forward on the originals, then ceil(48 / 20) = 3 chunks, in one compiled pass.
    assert float(counter.calls.numpy()) == 4.0


def model_with_batchnorm():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def test_snapshot_leaves_weights_and_batchnorm_statistics_bit_identical(tmp_path):
    model = model_with_batchnorm()
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(6, 16, 16, 3)).astype(np.float32)
    # Compiled and probed with labels: the health numbers take the loss and its gradients.
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [v.numpy().copy() for v in model.variables]
    predictions = model.predict(x, verbose=0)
    labels = np.arange(6) % 3
    # The dropout of 0.5 on feature maps is there to show inference mode, not a bug to name.
    callback = kcv.ConvViz(
        tmp_path, (x, labels), patch_size=4, on_error="raise", alerts={"heavy_dropout": False}
    )
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0)
    callback.on_train_end()
    after = [v.numpy() for v in model.variables]
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert model.get_layer("head").activation is keras.activations.softmax
    np.testing.assert_array_equal(model.predict(x, verbose=0), predictions)
    assert sorted(p.name for p in tmp_path.iterdir()) == CONVVIZ_RUNS
    assert "health/loss" in read_runs(tmp_path)["health"]


def test_scores_are_taken_before_the_final_softmax(data):
    x, _ = data
    model = small_cnn()
    assert activation_name(core_for(model).graph.head().layer) == "softmax"
    features = keras.Model(model.inputs, model.get_layer("gap").output)([x[:5]])
    head = model.get_layer("head")
    expected = features.numpy() @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(core_logits(model, x[:5]), expected, rtol=1e-5, atol=1e-6)


def test_functional_explainers_reuse_the_compiled_core(data):
    x, _ = data
    model = small_cnn()
    for _ in range(3):
        kcv.grad_cam(model, x[:2])
        kcv.grad_cam(model, x[:5])
        kcv.occlusion_sensitivity(model, x[:2], patch_size=8)
    counts = [f.experimental_get_tracing_count() for f in core_for(model).passes.values()]
    assert counts == [1, 1]  # grad_cam and occlusion, each traced once for every call


def numpy_occlusion(model, images, patch, baseline, targets):
    """Occlusion maps the slow, obvious way: every occluded image built in numpy.

    `baseline` is `(height, width, channels)`, or `(n, height, width, channels)` per image.
    """
    n, height, width, _ = images.shape
    tops = windows.window_starts(height, patch, patch)
    lefts = windows.window_starts(width, patch, patch)
    occluded = []
    for i, image in enumerate(images):
        fill = baseline[i] if baseline.ndim == 4 else baseline
        for top in tops:
            for left in lefts:
                copy = image.copy()
                copy[top : top + patch, left : left + patch] = fill[
                    top : top + patch, left : left + patch
                ]
                occluded.append(copy)
    per_image = len(tops) * len(lefts)
    scores = model(np.stack(occluded)).numpy()[np.arange(n * per_image), targets.repeat(per_image)]
    scores = scores.reshape(n, len(tops), len(lefts))
    base = model(images).numpy()[np.arange(n), targets]
    drops = base[:, None, None] - scores
    return np.repeat(np.repeat(drops, patch, axis=1), patch, axis=2)


@pytest.mark.parametrize("sigma", [1.5, 4.0])
def test_gaussian_blur_matches_scipy(sigma):
    from scipy import ndimage

    images = np.random.default_rng(1).random((2, 30, 37, 3)).astype(np.float32)
    got = perturb.gaussian_blur(images, sigma).numpy()
    expected = ndimage.gaussian_filter(images, (0, sigma, sigma, 0), mode="reflect", truncate=3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    black = np.zeros((1, 12, 12, 1), np.float32)
    np.testing.assert_array_equal(perturb.gaussian_blur(black, sigma).numpy(), black)


def test_the_default_blur_baseline_fills_each_window_with_its_own_blurred_image(data):
    x, _ = data
    images, targets = x[:3], np.array([1, 0, 2])
    model = small_cnn(final_activation=None)
    got = kcv.occlusion_sensitivity(model, (images, targets), patch_size=8, batch_size=20)
    blurred = perturb.gaussian_blur(images, 8.0).numpy()  # sigma = the patch size
    np.testing.assert_allclose(
        got, numpy_occlusion(model, images, 8, blurred, targets), rtol=1e-5, atol=1e-5
    )


def test_occlusion_matches_a_numpy_reference_and_the_plain_ops(data, monkeypatch):
    x, _ = data
    images = x[:3]
    baseline = np.random.default_rng(4).random((32, 32, 3)).astype(np.float32)
    targets = np.array([0, 2, 3])
    model = small_cnn(final_activation=None)  # logits: the scores the core takes
    # batch_size=20: 48 occluded images in chunks of 20, 20 and a partial 8.
    got = kcv.occlusion_sensitivity(
        model, (images, targets), patch_size=8, baseline=baseline, batch_size=20
    )
    expected = numpy_occlusion(model, images, 8, baseline, targets)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert passes.xla_available()  # so the call above built its chunks with XLA
    # The fallback without XLA gives the same maps bit for bit.
    monkeypatch.setattr(occlusion_need, "xla_available", lambda: False)
    forget(model)
    plain = kcv.occlusion_sensitivity(
        model, (images, targets), patch_size=8, baseline=baseline, batch_size=20
    )
    np.testing.assert_array_equal(got, plain)


XLA_COMPILES = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from conftest import core_logits, small_cnn
    import keras_convviz as kcv
    from keras_convviz.methods.occlusion import windows

    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    model = small_cnn()
    traces = []
    for _ in range(5):  # 48 occluded images per call: chunks of 20, 20 and 8
        kcv.occlusion_sensitivity(model, x, patch_size=8, batch_size=20, method="naive")
        traces.append(windows.occluded_chunk_xla.experimental_get_tracing_count())
    print(traces)
    """
)


def test_occlusion_compiles_once_per_chunk_shape(tmp_path):
    dump = tmp_path / "xla"
    script = tmp_path / "occlude.py"
    script.write_text(XLA_COMPILES.format(tests=os.path.dirname(__file__)))
    env = dict(os.environ, XLA_FLAGS=f"--xla_dump_to={dump}")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "[1, 1, 1, 1, 1]"
    # XLA compiled the chunk builder for two shapes (full chunks and the last one), once each.
    compiled = {p.name.split(".")[1] for p in dump.glob("*occluded_chunk*.before_optimizations*")}
    modules = list(dump.glob("*occluded_chunk*.before_optimizations*"))
    assert len(compiled) == 1 and len(modules) == 2, sorted(p.name for p in dump.iterdir())


def occlusion_graph(images):
    """The graph of the compiled occlusion pass of a fresh small CNN."""
    model = small_cnn()
    kcv.occlusion_sensitivity(model, images, patch_size=8)
    (fn,) = core_for(model).passes.values()
    return fn.get_concrete_function().graph.as_graph_def()


def test_occlusion_graph_runs_no_python(data):
    x, _ = data
    graph = occlusion_graph(x[:2])
    ops = {node.op for node in graph.node}
    ops |= {node.op for f in graph.library.function for node in f.node_def}
    assert {"PyFunc", "EagerPyFunc", "PyFuncStateless"}.isdisjoint(ops)
    assert "Select" in ops or "SelectV2" in ops  # the library was searched too


def test_occlusion_loop_bounds_the_chunks_in_flight(data):
    # The while loop's default keeps up to 10 chunks (images and activations) alive at once.
    x, _ = data
    graph = occlusion_graph(x[:2])
    loops = [node for node in graph.node if node.op in ("While", "StatelessWhile")]
    assert [node.attr["parallel_iterations"].i for node in loops] == [passes.CHUNKS_IN_FLIGHT]
    assert passes.CHUNKS_IN_FLIGHT < 10


def test_many_callbacks_in_one_process_raise_no_retracing_warning(tmp_path):
    # Each instance traces its own functions once; TensorFlow counts traces per code object
    # across instances, and would otherwise warn of "excessive retracing" from the 2nd fit.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    tf.get_logger().addHandler(handler)
    try:
        x = np.random.default_rng(0).random((8, 16, 16, 3)).astype(np.float32)
        y = np.arange(8) % 4
        for i in range(4):
            model = small_cnn(input_shape=(16, 16, 3))
            callback = kcv.ConvViz(tmp_path / str(i), (x[:2], y[:2]), patch_size=8, budget=None)
            model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
            kcv.grad_cam(model, x[:2])
    finally:
        tf.get_logger().removeHandler(handler)
    # Keras's own train step (`TensorFlowTrainer`) is traced again for every new model and
    # may warn too; only warnings about our functions count here.
    ours = [
        line
        for line in stream.getvalue().splitlines()
        if "retracing" in line and "TensorFlowTrainer" not in line
    ]
    assert ours == []
