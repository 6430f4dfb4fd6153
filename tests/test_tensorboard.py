"""A real TensorBoard server reads our logs and serves every snapshot of every image tag."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request

import pytest
from tensorboard import program

import keras_convviz as kcv


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


@pytest.mark.parametrize("epochs", [12])
def test_tensorboard_serves_every_snapshot(tmp_path, model, data, epochs):
    x, y = data
    model.fit(
        x,
        y,
        epochs=epochs,
        verbose=0,
        callbacks=[kcv.ConvViz(tmp_path, (x[:2], y[:2]), patch_size=8)],
    )
    base = serve(tmp_path, epochs)
    runs = {"feature_maps", "filter_weights", "grad_cam", "occlusion_sensitivity"}
    tags = wait_for_tags(base, runs, time.time() + 60)
    assert "grad_cam/conv_b/image_1" in tags["grad_cam"]
    assert "feature_maps/conv_a/image_0" in tags["feature_maps"]
    for run, tag in [
        ("grad_cam", "grad_cam/conv_b/image_1"),
        ("feature_maps", "feature_maps/conv_b/image_0"),
        ("filter_weights", "filter_weights/conv_a"),
        ("occlusion_sensitivity", "occlusion_sensitivity/image_0"),
    ]:
        entries = served_steps(base, run, tag, epochs)
        # More than TensorBoard's default of 10 images per tag, all of them served.
        assert [e["step"] for e in entries] == list(range(epochs)), (run, tag)
        blob = f"{base}/data/plugin/images/individualImage?{entries[-1]['query']}"
        with urllib.request.urlopen(blob, timeout=20) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"


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
