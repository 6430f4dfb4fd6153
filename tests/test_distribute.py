"""The callbacks under real `tf.distribute` strategies (no mocks).

- `MirroredStrategy` over 2 logical CPU devices: `model.fit` with `ConvViz` writes the same
  runs, tags and images as a snapshot of the same weights on one device.
- `MultiWorkerMirroredStrategy` with 2 worker processes on 127.0.0.1, both pointed at the same
  `log_dir`: both finish with the same weights, only the chief (worker 0) writes event files,
  and its images match a snapshot of the same weights on one device.

Logical devices and the cluster must be set up before TensorFlow initialises, so distributed
training runs in subprocesses (the scripts below, which import this module for the data and
the callback); the single-device reference runs here, traced while the subprocesses train.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import BETWEEN_SNAPSHOTS, CONVVIZ_RUNS, event_files, read_runs, small_cnn, steps_of

import keras_convviz as kcv
from keras_convviz.callbacks.base import _is_chief

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS_DIR)
RUNS = set(CONVVIZ_RUNS)
INPUT_SHAPE = (16, 16, 3)
EPOCHS = 2
GLOBAL_BATCH = 8
# Reduction order differs between one and several devices, so images may differ by a few
# uint8 levels of float noise, never more.
MAX_LEVEL_DIFF = 3
TIMEOUT_S = 120  # a guard against hangs; both tests take well under a minute


def make_data():
    rng = np.random.default_rng(0)
    x = rng.random((32, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, 4, size=32).astype(np.int32)
    return x, y


def make_callback(log_dir) -> kcv.ConvViz:
    x, y = make_data()
    return kcv.ConvViz(str(log_dir), (x[:4], y[:4]), patch_size=8, on_error="raise", budget=None)


MIRRORED_SCRIPT = """
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np
from conftest import small_cnn
from test_distribute import EPOCHS, GLOBAL_BATCH, INPUT_SHAPE, make_callback, make_data

log_dir, weights_path = sys.argv[1:3]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
with strategy.scope():
    model = small_cnn(input_shape=INPUT_SHAPE)
kernel = model.get_layer("conv_a").kernel.value
assert isinstance(kernel, tf.distribute.DistributedValues), type(kernel)
x, y = make_data()
model.fit(
    x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
    callbacks=[make_callback(log_dir)],
)
np.savez(weights_path, *model.get_weights())
"""

# Keras 3.15 `model.fit` cannot train under MultiWorkerMirroredStrategy with more than one
# worker (keras-team/keras#20585): `_maybe_symbolic_build` hands the (x, y) nest to
# `strategy.reduce`, and the per-step "mean" reduction uses axis=0 on the scalar loss. So each
# worker trains with a custom loop under the strategy and calls the callback hooks the way
# `fit` does: outside the strategy scope, once per epoch.
WORKER_SCRIPT = """
import sys

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
strategy = tf.distribute.MultiWorkerMirroredStrategy(
    communication_options=tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
)

import keras
import numpy as np
from conftest import small_cnn
from test_distribute import EPOCHS, GLOBAL_BATCH, INPUT_SHAPE, make_callback, make_data

log_dir, weights_path = sys.argv[1:3]
assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
with strategy.scope():
    model = small_cnn(input_shape=INPUT_SHAPE)
    optimizer = keras.optimizers.Adam(0.01)
kernel = model.get_layer("conv_a").kernel.value
assert isinstance(kernel, tf.distribute.DistributedValues), type(kernel)

x, y = make_data()
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)
dataset = strategy.experimental_distribute_dataset(dataset)


@tf.function
def train_step(batch):
    def step(images, labels):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(labels, probs)
            loss = tf.reduce_sum(losses) / GLOBAL_BATCH
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return strategy.reduce("SUM", strategy.run(step, args=batch), axis=None)


callback = make_callback(log_dir)
callback.set_model(model)
callback.on_train_begin()
for epoch in range(EPOCHS):
    for batch in dataset:
        train_step(batch)
    callback.on_epoch_end(epoch, {})
callback.on_train_end()
np.savez(weights_path, *model.get_weights())
"""


class Reference:
    """ConvViz snapshots of saved weights on one device, all through one compiled pass."""

    def __init__(self, warm_up_dir):
        self.model = small_cnn(input_shape=INPUT_SHAPE)
        self.initial = self.model.get_weights()
        self._snapshot(warm_up_dir)  # traces the pass; later snapshots reuse it

    def __call__(self, weights_path, log_dir) -> dict:
        with np.load(weights_path) as saved:
            weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        # Training under the strategy moved the weights: not a comparison of untrained models.
        assert any(not np.array_equal(a, b) for a, b in zip(self.initial, weights))
        self.model.set_weights(weights)
        self._snapshot(log_dir)
        return read_runs(log_dir)

    def _snapshot(self, log_dir) -> None:
        callback = make_callback(log_dir)
        callback.set_model(self.model)
        callback.on_train_begin()
        callback.on_epoch_end(EPOCHS - 1)
        callback.on_train_end()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return Reference(tmp_path_factory.mktemp("warm_up"))


def _assert_same_snapshot(distributed: dict, reference: dict) -> None:
    """Same runs and tags, every epoch written, the last epoch's values as on one device."""
    assert set(distributed) == set(reference) == RUNS
    for run, tags in distributed.items():
        # Changes between snapshots have no counterpart in the one-snapshot reference.
        between = {tag for tag in tags if tag.endswith(BETWEEN_SNAPSHOTS)}
        assert set(tags) - between == set(reference[run]), run
        for tag, series in tags.items():
            assert series["steps"] == steps_of(tag, list(range(EPOCHS))), tag
            if tag in between:
                assert all(np.isfinite(series["values"])), tag
                continue
            got = series["values"][-1]
            want = reference[run][tag]["values"][0]
            if series["kind"] == "images":
                assert got.shape == want.shape, tag
                diff = int(np.abs(got.astype(np.int16) - want.astype(np.int16)).max())
                assert diff <= MAX_LEVEL_DIFF, f"{tag}: images differ by {diff} levels"
            else:
                assert got == pytest.approx(want, rel=1e-4, abs=1e-6), tag


def _start(tmp_path, name: str, script: str, args, **extra_env) -> subprocess.Popen:
    """Start `script` in a fresh Python with the package and tests/ importable."""
    path = tmp_path / f"{name}.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # gRPC on loopback
    env.update(PYTHONPATH=os.pathsep.join([ROOT, TESTS_DIR]), TF_CPP_MIN_LOG_LEVEL="2", **extra_env)
    with open(tmp_path / f"{name}.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, str(path), *map(str, args)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _finish(tmp_path, processes: dict) -> None:
    """Wait for every process; assert all exited 0.

    Kills whatever still runs at the timeout, or 10 s after another process failed (a worker
    left alone in a collective would wait forever).
    """
    deadline, failed_at = time.monotonic() + TIMEOUT_S, None
    try:
        while True:
            codes = {name: p.poll() for name, p in processes.items()}
            if all(code is not None for code in codes.values()):
                break
            if failed_at is None and any(code not in (None, 0) for code in codes.values()):
                failed_at = time.monotonic()
            now = time.monotonic()
            if now > deadline or (failed_at is not None and now > failed_at + 10):
                break
            time.sleep(0.2)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    if any(code != 0 for code in codes.values()):
        logs = "\n".join(
            f"--- {name} (exit {code}) ---\n{(tmp_path / f'{name}.log').read_text()[-5000:]}"
            for name, code in codes.items()
        )
        pytest.fail(f"subprocesses did not all exit 0 (None: killed): {codes}\n{logs}")


def _run_names(files) -> list[str]:
    """The runs of the event files; `alerts` left out: a model trained two epochs on random
    labels may rightly be told it predicts one class for everything."""
    names = sorted(os.path.basename(os.path.dirname(f)) for f in files)
    return [name for name in names if name != "alerts"]


def test_mirrored_strategy_writes_the_single_device_images(tmp_path, request):
    log_dir, weights = tmp_path / "logs", tmp_path / "weights.npz"
    process = _start(tmp_path, "mirrored", MIRRORED_SCRIPT, [log_dir, weights])
    reference = request.getfixturevalue("reference")  # traced while the subprocess trains
    _finish(tmp_path, {"mirrored": process})

    assert _run_names(event_files(log_dir)) == sorted(RUNS)  # one event file per run
    _assert_same_snapshot(read_runs(log_dir), reference(weights, tmp_path / "single"))


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_multi_worker_only_the_chief_writes(tmp_path, request):
    log_dir = tmp_path / "logs"  # the same log_dir for both workers
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = {}
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers[f"worker_{index}"] = _start(
            tmp_path,
            f"worker_{index}",
            WORKER_SCRIPT,
            [log_dir, tmp_path / f"weights_{index}.npz"],
            TF_CONFIG=json.dumps(tf_config),
        )
    reference = request.getfixturevalue("reference")
    _finish(tmp_path, workers)

    # Synchronous training: both workers end with the same weights.
    with np.load(tmp_path / "weights_0.npz") as w0, np.load(tmp_path / "weights_1.npz") as w1:
        assert w0.files == w1.files
        for name in w0.files:
            np.testing.assert_allclose(w0[name], w1[name], rtol=1e-5, atol=1e-6)

    # Only the chief wrote: TensorFlow names event files events.out.tfevents.<time>.<host>.
    # <pid>.<n>.v2, and every file carries worker 0's pid, one file per run.
    files = event_files(log_dir)
    pids = [int(re.search(r"\.(\d+)\.\d+\.v2$", f).group(1)) for f in files]
    assert workers["worker_1"].pid not in pids, f"worker 1 (not the chief) wrote: {files}"
    assert set(pids) == {workers["worker_0"].pid}, files
    assert _run_names(files) == sorted(RUNS)

    chief = reference(tmp_path / "weights_0.npz", tmp_path / "single")
    _assert_same_snapshot(read_runs(log_dir), chief)


def _tf_config(task_type, index=0, chief=False) -> str:
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    if chief:
        cluster["chief"] = ["127.0.0.1:3"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        pytest.param(None, True, id="no-TF_CONFIG"),
        pytest.param(_tf_config("worker", 0), True, id="worker-0"),
        pytest.param(_tf_config("worker", 1), False, id="worker-1"),
        pytest.param(_tf_config("chief", 0, chief=True), True, id="chief"),
        pytest.param(_tf_config("worker", 0, chief=True), False, id="worker-0-beside-a-chief"),
        pytest.param(_tf_config("evaluator", 0), False, id="evaluator"),
        # A malformed TF_CONFIG names no cluster to defer to.
        pytest.param("{not json", True, id="malformed"),
    ],
)
def test_is_chief_outside_the_strategy_scope_follows_tf_config(monkeypatch, tf_config, chief):
    """Keras calls callbacks outside the strategy scope, where only TF_CONFIG tells the role."""
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert _is_chief() is chief
