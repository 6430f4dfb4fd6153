"""Snapshots drawn and written on the writer thread: the same bytes, in order, all on disk."""

import glob
import os
import threading

import keras
import numpy as np
import pytest
from conftest import CONVVIZ_RUNS, small_cnn
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

import keras_convviz as kcv
from keras_convviz.callbacks import background


def event_records(log_dir) -> dict:
    """`{(run, tag, step): bytes}` of every summary value, straight from the event files,
    and each run's tags in the order they were written."""
    records, order = {}, {}
    for path in sorted(glob.glob(os.path.join(log_dir, "*", "events.out.tfevents.*"))):
        run = os.path.basename(os.path.dirname(path))
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                key = (run, value.tag, event.step)
                assert key not in records, f"{key} written twice"
                records[key] = value.tensor.SerializeToString()
                order.setdefault(run, []).append((event.step, value.tag))
    return records, order


def train_with(log_dir, background_on: bool, x, y):
    keras.utils.set_random_seed(0)
    model = small_cnn()
    callback = kcv.ConvViz(str(log_dir), (x[:3], y[:3]), patch_size=8, saliency=True, budget=None)
    for child in callback.callbacks:
        child.background = background_on
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callback])
    return callback


def test_the_writer_thread_writes_the_same_bytes_as_writing_in_place(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 16)
    train_with(tmp_path / "in_place", False, x, y)
    train_with(tmp_path / "writer", True, x, y)
    # When `fit` returns, everything is on disk: nothing is left for the writer thread.
    in_place, in_place_order = event_records(tmp_path / "in_place")
    written, written_order = event_records(tmp_path / "writer")
    runs = {run for run, _, _ in written}
    assert runs >= set(CONVVIZ_RUNS) | {"smoothgrad"}
    images = [key for key in written if "/image_" in key[1] and key[0] != "health"]
    assert len(images) > 20
    assert written.keys() == in_place.keys()
    different = [key for key in written if written[key] != in_place[key]]
    assert not different, different[:5]
    # Each run's events in the same order: steps ascending, tags as written in place.
    assert written_order == in_place_order
    for order in written_order.values():
        steps = [step for step, _ in order]
        assert steps == sorted(steps)


def drawing_threads(tmp_path, background_on) -> tuple[list[str], kcv.GradCAM]:
    """The threads that drew each snapshot of a 3-epoch fit."""
    rng = np.random.default_rng(1)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    threads = []
    callback = kcv.GradCAM(tmp_path, x[:2])
    callback.background = background_on
    drawn = callback._snapshot

    def recording(epoch, captured):
        threads.append(threading.current_thread().name)
        return drawn(epoch, captured)

    callback._snapshot = recording
    small_cnn().fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    return threads, callback


def test_snapshots_are_drawn_off_the_training_thread(tmp_path):
    threads, callback = drawing_threads(tmp_path, True)
    assert threads == ["keras_convviz-writer"] * 3
    assert callback._pending is None  # `on_train_end` waited for the last one


@pytest.mark.parametrize("accelerator", [False, True])
def test_by_default_snapshots_are_drawn_off_thread_only_beside_an_accelerator(
    tmp_path, monkeypatch, accelerator
):
    # Training on the CPU, the writer's work would take its CPU time out of the next epoch.
    monkeypatch.setattr(background, "draw_off_thread", lambda: accelerator)
    threads, _ = drawing_threads(tmp_path, None)
    training = threading.current_thread().name
    assert threads == ["keras_convviz-writer" if accelerator else training] * 3


def test_without_an_accelerator_the_default_draws_in_place():
    import tensorflow as tf

    assert not tf.config.list_logical_devices("GPU")  # the tests run on the CPU
    assert background.draw_off_thread() is False


def test_an_error_on_the_writer_thread_reaches_fit_with_on_error_raise(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    callback = kcv.GradCAM(tmp_path, x[:2], on_error="raise")

    def broken(epoch, captured):
        raise RuntimeError(f"drawing failed at epoch {epoch}")

    callback._snapshot = broken
    epochs = []
    counter = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(epoch))
    with pytest.raises(RuntimeError, match="drawing failed at epoch 0"):
        small_cnn().fit(x, y, epochs=5, verbose=0, callbacks=[callback, counter])
    assert epochs == []  # raised at the epoch that failed, before the next callback ran


def test_the_writer_thread_runs_jobs_in_order_and_ends_when_idle(monkeypatch):
    monkeypatch.setattr(background, "IDLE_SECONDS", 0.05)
    writer = background.WriterThread()
    ran = []
    jobs = [writer.submit(lambda i=i: ran.append(i)) for i in range(50)]
    writer.wait_idle()
    assert ran == list(range(50))
    assert all(job.done() for job in jobs)
    failing = writer.submit(lambda: 1 / 0)
    failing.wait()
    assert isinstance(failing.error, ZeroDivisionError)
    # Idle, the thread ends (so it never keeps the interpreter alive); a new job starts one.
    for _ in range(100):
        if writer._thread is None:
            break
        threading.Event().wait(0.02)
    assert writer._thread is None
    writer.submit(lambda: ran.append("again")).wait()
    assert ran[-1] == "again"


def test_a_callback_with_freq_0_traces_nothing(tmp_path):
    from keras_convviz.core.shared import core_for
    from keras_convviz.methods.occlusion import Occlusion

    rng = np.random.default_rng(3)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    model = small_cnn()
    callback = kcv.ConvViz(tmp_path, (x[:2], y[:2]), occlusion_freq=0)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    (occlusion,) = [c for c in callback.callbacks if isinstance(c, kcv.OcclusionSensitivity)]
    assert not hasattr(occlusion, "_render")  # never prepared, nothing traced
    needs = [need for key in core_for(model).passes for need in key[0]]
    assert needs and not [need for need in needs if isinstance(need, Occlusion)]
    assert not (tmp_path / "occlusion_sensitivity").exists()
