"""Every script in examples/ runs (reduced: CONVVIZ_EXAMPLE_QUICK=1) and writes real output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import read_runs
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, cwd: Path) -> str:
    env = {**os.environ, "CONVVIZ_EXAMPLE_QUICK": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def images_of(runs: dict, run: str) -> dict[str, dict]:
    return {t: s for t, s in runs[run].items() if s["kind"] == "images"}


def assert_real(series: dict, steps: list[int], what: str) -> None:
    """Every step there, each picture a real image (not blank, not one flat colour)."""
    assert series["steps"] == steps, what
    for image in series["values"]:
        assert image.ndim == 3 and min(image.shape[:2]) >= 16, (what, image.shape)
        assert image.std() > 5, what


def test_examples_are_all_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CHECKS)


def check_quickstart(tmp_path, printed):
    runs = read_runs(tmp_path / "logs" / "quickstart")
    assert set(runs) == {
        "feature_maps",
        "filter_weights",
        "grad_cam",
        "health",
        "occlusion_sensitivity",
    }
    for run in set(runs) - {"health"}:  # numbers only
        pictures = images_of(runs, run)
        assert pictures, run
        for tag, series in pictures.items():
            assert_real(series, [0], tag)
    assert len(images_of(runs, "occlusion_sensitivity")) == 8  # one per probe image


def check_transfer_learning(tmp_path, printed):
    runs = read_runs(tmp_path / "logs" / "transfer")
    assert set(runs) == {"grad_cam", "layer_cam", "feature_maps"}
    base = printed.split("Grad-CAM on ")[1].split("/")[0]
    assert base.startswith("mobilenetv2")
    for run in ("grad_cam", "layer_cam"):  # a layer inside the nested base
        assert sorted(images_of(runs, run)) == [
            f"{run}/{base}/block_13_expand_relu/image_{i}" for i in range(4)
        ]
        for tag, series in images_of(runs, run).items():
            assert_real(series, [0], tag)
    assert {t.rsplit("/", 1)[0] for t in images_of(runs, "feature_maps")} == {
        f"feature_maps/{base}/Conv1",
        f"feature_maps/{base}/block_6_expand",
    }


def check_custom_training_loop(tmp_path, printed):
    runs = read_runs(tmp_path / "logs" / "custom")
    assert set(runs) == {"explain"}
    pictures = images_of(runs, "explain")
    assert sorted(pictures) == sorted(
        [f"grad_cam/conv2/image_{i}" for i in range(4)] + [f"occlusion/image_{i}" for i in range(4)]
    )
    for tag, series in pictures.items():
        assert_real(series, [0, 1], tag)
        assert series["values"][0].shape[:2] == (64, 128)  # the image beside its overlay
    assert runs["explain"]["loss"]["steps"] == [0, 1]
    assert all(np.isfinite(runs["explain"]["loss"]["values"]))


def check_tensorboard_and_export(tmp_path, printed):
    runs = read_runs(tmp_path / "logs" / "shared")
    assert {"train", "validation", "grad_cam", "feature_maps"} <= set(runs)
    assert runs["train"]["epoch_loss"]["steps"] == [0, 1]  # Keras's own, beside ours
    gif = Image.open(tmp_path / "share" / "gif" / "grad_cam" / "bn4" / "image_0.gif")
    assert gif.n_frames == 2
    stored = runs["grad_cam"]["grad_cam/bn4/image_0"]["values"][-1]
    assert gif.size == (stored.shape[1], stored.shape[0])
    assert (tmp_path / "share" / "sheet" / "grad_cam" / "bn4.png").is_file()
    report = (tmp_path / "share" / "report.html").read_text(encoding="utf-8")
    assert report.count('type="range"') == 10  # 4 + 4 layers, Grad-CAM, occlusion
    assert "Other scalars" in report and "epoch_loss" in report


CHECKS = {
    "quickstart.py": check_quickstart,
    "transfer_learning.py": check_transfer_learning,
    "custom_training_loop.py": check_custom_training_loop,
    "tensorboard_and_export.py": check_tensorboard_and_export,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_runs_and_writes_real_output(name, tmp_path):
    printed = run_example(name, tmp_path)
    CHECKS[name](tmp_path, printed)
