"""A real TensorBoard server reads our logs and serves every snapshot of every image tag."""

from __future__ import annotations

import json
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from conftest import EPOCHS_12, read_runs, stop_process
from tensorboard import program

import keras_convviz as kcv
from keras_convviz.exports.events import decode_png


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=20) as response:
        return json.loads(response.read())


def wait_for_tags(base: str, runs: set[str], deadline: float) -> dict:
    while time.time() < deadline:
        tags = get(base + "/data/plugin/images/tags")
        if runs <= set(tags):
            return tags
        time.sleep(0.5)
    pytest.fail(f"TensorBoard did not list runs {sorted(runs)} in time")


def serve(log_dir, images: int) -> str:
    """Start a real TensorBoard on `log_dir` keeping `images` samples per tag; its URL."""
    server = program.TensorBoard()
    server.configure(
        argv=[
            None,
            "--logdir",
            str(log_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--samples_per_plugin",
            f"images={images}",
            "--reload_interval",
            "1",
        ]
    )
    return server.launch().rstrip("/")


def served_steps(base: str, run: str, tag: str, expected: int) -> list[dict]:
    """The image entries TensorBoard serves for a tag, once it serves `expected` of them."""
    query = urllib.parse.urlencode({"run": run, "tag": tag, "sample": 0})
    deadline = time.time() + 30
    while True:
        entries = get(f"{base}/data/plugin/images/images?{query}")
        if len(entries) == expected or time.time() > deadline:
            return entries
        time.sleep(0.5)


def start_convviz_tensorboard(log_dir):
    """`convviz tensorboard LOGDIR` on 127.0.0.1 and a free port: the process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_convviz", "tensorboard", str(log_dir)]
        + ["--host", "127.0.0.1", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    printed = []
    deadline = time.time() + 90
    while time.time() < deadline and process.poll() is None:
        try:
            printed.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        found = re.search(r"TensorBoard (http://127\.0\.0\.1:\d+)/", printed[-1])
        if found:  # and the next line, with the flags it set
            printed.append(lines.get(timeout=30))
            return process, found.group(1), "".join(printed)
    process.kill()
    pytest.fail(f"convviz tensorboard printed no address: {printed}")


def test_convviz_tensorboard_serves_every_snapshot_of_every_tag(logs_12_epochs):
    stored = {
        (run, tag): series
        for run, tags in read_runs(logs_12_epochs).items()
        for tag, series in tags.items()
        if series["kind"] == "images"
    }
    assert len(stored) == 10
    process, base, printed = start_convviz_tensorboard(logs_12_epochs)
    try:
        # It says what it set: more than the 12 snapshots, and the plain command.
        assert "--samples_per_plugin images=1000" in printed, printed
        tags = wait_for_tags(base, {run for run, _ in stored}, time.time() + 60)
        assert {(run, tag) for run in tags for tag in tags[run]} == set(stored)
        for (run, tag), series in stored.items():
            entries = served_steps(base, run, tag, EPOCHS_12)
            # More than TensorBoard's default of 10 images per tag, all of them served.
            assert [e["step"] for e in entries] == list(range(EPOCHS_12)), (run, tag)
            for entry, image in zip(entries, series["values"]):
                blob = f"{base}/data/plugin/images/individualImage?{entry['query']}"
                with urllib.request.urlopen(blob, timeout=20) as response:
                    png = response.read()
                assert png[:8] == b"\x89PNG\r\n\x1a\n"
                np.testing.assert_array_equal(decode_png(png), image, f"{tag} {entry['step']}")
    finally:
        stop_process(process)
    assert process.returncode is not None


def test_tensorboard_serves_both_fits_of_one_callback(tmp_path, model, data):
    # The notebook habit: fit, then fit again with the same callbacks. Two GradCAMs on two
    # layers share the run grad_cam; the second fit continues after the first's steps.
    x, y = data
    callbacks = [
        kcv.GradCAM(tmp_path, (x[:2], y[:2]), layer_name="conv_b"),
        kcv.GradCAM(tmp_path, (x[:2], y[:2]), layer_name="conv_a"),
    ]
    model.fit(x, y, epochs=7, verbose=0, callbacks=callbacks)
    model.fit(x, y, epochs=6, verbose=0, callbacks=callbacks)
    base = serve(tmp_path, 100)
    wait_for_tags(base, {"grad_cam"}, time.time() + 60)
    for tag in ("grad_cam/conv_b/image_1", "grad_cam/conv_a/image_0"):
        entries = served_steps(base, "grad_cam", tag, 13)
        assert [e["step"] for e in entries] == list(range(13)), tag


def test_convviz_tensorboard_flags_follow_the_logs(tmp_path):
    import tensorflow as tf

    from keras_convviz._serve import tensorboard_flags

    run = tmp_path / "grad_cam"
    for first in (0, 1100):  # a script run twice: two event files in one run, 1200 steps
        writer = tf.summary.create_file_writer(str(run), filename_suffix=f".{first}")
        with writer.as_default():
            for step in range(first, first + 600):
                tf.summary.image("grad_cam/conv/image_0", np.zeros((1, 2, 2, 1)), step)
        writer.close()
    flags = tensorboard_flags(tmp_path, port=6010, host="127.0.0.1")
    assert flags == [
        "--logdir",
        str(tmp_path),
        "--samples_per_plugin",
        "images=1200",
        "--load_fast=false",
        "--port",
        "6010",
        "--host",
        "127.0.0.1",
    ]
    (run / next(p.name for p in run.iterdir())).unlink()  # one event file, 600 steps
    assert tensorboard_flags(tmp_path) == [
        "--logdir",
        str(tmp_path),
        "--samples_per_plugin",
        "images=1000",
    ]
