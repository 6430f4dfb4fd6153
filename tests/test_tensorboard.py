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
    server = program.TensorBoard()
    server.configure(
        argv=[
            None,
            "--logdir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--samples_per_plugin",
            f"images={epochs}",
            "--reload_interval",
            "1",
        ]
    )
    base = server.launch().rstrip("/")
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
        query = urllib.parse.urlencode({"run": run, "tag": tag, "sample": 0})
        deadline = time.time() + 30
        while True:
            entries = get(f"{base}/data/plugin/images/images?{query}")
            if len(entries) == epochs or time.time() > deadline:
                break
            time.sleep(0.5)
        # More than TensorBoard's default of 10 images per tag, all of them served.
        assert [e["step"] for e in entries] == list(range(epochs)), (run, tag)
        blob = f"{base}/data/plugin/images/individualImage?{entries[-1]['query']}"
        with urllib.request.urlopen(blob, timeout=20) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
