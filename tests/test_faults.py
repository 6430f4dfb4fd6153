"""Faults during training: a diverged model is shown as such, a killed run keeps its
snapshots, and many snapshots leak nothing."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import weakref

import keras
import numpy as np
import tensorflow as tf
from conftest import CONVVIZ_RUNS, event_files, read_runs, small_cnn, steps_of

import keras_convviz as kcv
from keras_convviz import _rendering
from keras_convviz.core.shared import core_for

MAGENTA = np.array([255, 0, 255], np.uint8)


def snapshot(callback, model, epochs=(0,)):
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in epochs:
        callback.on_epoch_end(epoch)
    callback.on_train_end()


def test_a_diverged_model_is_marked_and_counted(tmp_path, data):
    x, y = data
    model = small_cnn()
    layer = model.get_layer("conv_b")
    # A diverged layer. Without its ReLU, which maps NaN to 0 on CPU and would hide it.
    layer.activation = keras.activations.linear
    layer.kernel.assign(np.full(layer.kernel.shape, np.inf, np.float32))
    snapshot(kcv.ConvViz(tmp_path, (x[:2], y[:2]), patch_size=8, on_error="raise"), model)
    runs = read_runs(tmp_path)
    scalars = {
        tag: v["values"][0]
        for run in runs.values()
        for tag, v in run.items()
        if v["kind"] == "scalars"
    }
    assert scalars["filter_weights/conv_b/non_finite"] == 3 * 3 * 8 * 16
    # A healthy layer writes no non_finite scalar (it would be a flat chart of zeros).
    assert "filter_weights/conv_a/non_finite" not in scalars
    assert "feature_maps/conv_a/non_finite" not in scalars
    assert scalars["feature_maps/conv_b/non_finite"] > 0.5 * 2 * 16 * 16 * 16
    assert scalars["grad_cam/conv_b/non_finite"] > 0
    assert scalars["occlusion_sensitivity/non_finite"] > 0
    # The NaN maps are painted in the marker colour, not stretched into noise.
    for tag in (
        "grad_cam/conv_b/image_0",
        "occlusion_sensitivity/image_0",
        "feature_maps/conv_b/image_0",
        "filter_weights/conv_b",
    ):
        image = runs[tag.split("/")[0]][tag]["values"][0]
        assert np.all(image == MAGENTA, axis=-1).any(), tag
    # The healthy layer still renders normally.
    healthy = runs["feature_maps"]["feature_maps/conv_a/image_0"]["values"][0]
    assert not np.all(healthy == MAGENTA, axis=-1).any()


def test_training_goes_on_through_divergence(tmp_path, data):
    x, y = data
    model = small_cnn()
    model.get_layer("conv_a").kernel.assign(np.full((3, 3, 3, 8), np.inf, np.float32))
    history = model.fit(
        x,
        y,
        epochs=3,
        verbose=0,
        callbacks=[kcv.ConvViz(tmp_path, (x[:2], y[:2]), patch_size=8, budget=None)],
    )
    assert len(history.history["loss"]) == 3
    runs = read_runs(tmp_path)
    assert runs["filter_weights"]["filter_weights/conv_a/non_finite"]["steps"] == [0, 1, 2]
    assert runs["grad_cam"]["grad_cam/conv_b/image_0"]["steps"] == [0, 1, 2]


def test_constant_maps_render_as_constant():
    panel = _rendering.render_heatmap_panel(
        np.zeros((1, 8, 8, 3), np.float32), np.full((1, 8, 8), 3.0, np.float32), symmetric=True
    ).numpy()
    assert np.isfinite(panel).all()
    side = 160  # 8x8 enlarged to the 160-px minimum
    overlay, heat = panel[0, :, side + 2 : 2 * side + 2], panel[0, :, 2 * side + 4 : 3 * side + 4]
    for part in (overlay, heat):
        assert np.ptp(part.reshape(-1, 3), axis=0).max() < 1e-6


TRAIN_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np, keras
    sys.path.insert(0, {tests!r})
    from conftest import small_cnn
    import keras_convviz as kcv

    class Die(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 16)
    model = small_cnn()
    model.fit(x, y, epochs=50, verbose=0,
              callbacks=[kcv.ConvViz({log_dir!r}, (x[:2], y[:2]), patch_size=8, budget=None),
                         Die()])
    """
)


def test_a_killed_run_keeps_every_snapshot_written(tmp_path):
    script = tmp_path / "train.py"
    log_dir = tmp_path / "logs"
    tests = os.path.dirname(__file__)
    script.write_text(TRAIN_AND_DIE.format(tests=tests, log_dir=str(log_dir)))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    runs = read_runs(log_dir)
    assert sorted(runs) == CONVVIZ_RUNS
    # The snapshot of the epoch it died in was in flight on the writer thread: it may be
    # lost; every earlier one is on disk.
    for tags in runs.values():
        for tag, record in tags.items():
            assert record["steps"] in (steps_of(tag, [0, 1]), steps_of(tag, [0, 1, 2])), tag


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_fifty_snapshots_leak_nothing(tmp_path, data):
    x, y = data
    model = small_cnn()
    # Snapshots without training between them: the kernels never move, which the alerts
    # would rightly report (stalled_updates); they are not what this test is about.
    callback = kcv.ConvViz(
        tmp_path, (x[:2], y[:2]), patch_size=8, on_error="raise", alerts=False, budget=None
    )
    snapshot(callback, model, epochs=range(5))  # warm up: traces, writers, allocator
    rss, files = rss_bytes(), open_files()
    snapshot(callback, model, epochs=range(5, 55))
    grown = (rss_bytes() - rss) / 2**20
    assert grown < 60, f"process memory grew by {grown:.0f} MiB over 50 snapshots"
    assert open_files() <= files
    compiled = [cb._render for cb in callback.callbacks if hasattr(cb, "_render")]
    compiled += list(core_for(model).passes.values())
    assert [fn.experimental_get_tracing_count() for fn in compiled] == [1] * len(compiled)
    # Two fits of one instance: one event file per run, the same through both fits.
    assert len(event_files(tmp_path)) == 5


def test_an_explained_model_is_freed(data):
    # The core refers back to its model; it must not keep the model alive.
    x, _ = data
    model = small_cnn()
    kcv.grad_cam(model, x[:2])
    kcv.occlusion_sensitivity(model, x[:2], patch_size=8)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_callback_collected_while_tensorflow_traces_leaves_no_writer_ops(tmp_path):
    # The garbage collector may collect a callback at any allocation, e.g. while `fit`
    # traces its tf.data map; releasing its writer then must put no op into that function.
    model = small_cnn(input_shape=(16, 16, 3))
    images = np.zeros((1, 16, 16, 3), np.float32)
    callback = kcv.GradCAM(tmp_path, images)
    snapshot(callback, model)
    gc.collect()
    gc.disable()  # the callback and the model go with the collection inside the trace below
    try:
        callback.cycle = callback
        del callback, model
        dataset = tf.data.Dataset.range(3).map(lambda i: (gc.collect(), i)[1], num_parallel_calls=2)
    finally:
        gc.enable()
    assert list(dataset.as_numpy_iterator()) == [0, 1, 2]
    assert list(dataset.as_numpy_iterator()) == [0, 1, 2]


def test_a_non_finite_count_once_written_goes_on_to_show_recovery(tmp_path, data):
    x, y = data
    model = small_cnn()
    kernel = model.get_layer("conv_b").kernel
    healthy = kernel.numpy()
    callback = kcv.FilterWeights(tmp_path, on_error="raise")
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0)  # healthy: nothing written
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    callback.on_epoch_end(1)
    kernel.assign(healthy)
    callback.on_epoch_end(2)  # healthy again: the zero is written, the chart comes down
    callback.on_train_end()
    series = read_runs(tmp_path)["filter_weights"]["filter_weights/conv_b/non_finite"]
    assert series["steps"] == [1, 2] and series["values"] == [3 * 3 * 8 * 16, 0.0]
    assert "filter_weights/conv_a/non_finite" not in read_runs(tmp_path)["filter_weights"]
