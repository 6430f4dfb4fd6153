"""Train the model zoo beyond image classifiers and screenshot each in the ConvViz tab (not
run in CI; for the README's pictures of a sequence, a volume, a segmentation and a ViT).

    .venv/bin/python scripts/zoo_screenshots.py logs/zoo docs

Each model of `tests/zoo.py` trains a few epochs on synthetic data with a known answer
(`keras_convviz.datasets`: a pattern in a noisy sequence, an object in a noisy volume,
shapes on clutter with their boxes as object masks) under `ConvViz` with its defaults,
into `LOGDIR/<model>`; then `scripts/screenshot_tab.py` photographs the ConvViz tab on the
model's CAM run into `OUT/tensorboard_convviz_<model>.png`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import zoo  # noqa: E402

import keras_convviz as kcv  # noqa: E402
from keras_convviz import datasets  # noqa: E402


def shape_masks(data) -> np.ndarray:
    """Each shape's box as its segmentation mask: 1 (object) inside, 0 (background) outside,
    as `tests/test_truth_segmentation.py` trains it."""
    size = data.images.shape[1]
    masks = np.zeros((len(data.labels), size, size), np.int32)
    for i, (top, left, bottom, right) in enumerate(data.boxes):
        masks[i, top:bottom, left:right] = 1
    return masks


def sequence():
    train = datasets.make_sequences(1200, steps=128, channels=3, seed=0)
    probe = datasets.make_sequences(6, steps=128, channels=3, seed=99)
    model = zoo.sequence(steps=128, classes=int(train.labels.max()) + 1)[0]
    return model, train.sequences, train.labels, probe.sequences, probe.labels, "grad_cam", 8


def volume():
    train = datasets.make_volumes(800, size=16, seed=0)
    probe = datasets.make_volumes(6, size=16, seed=99)
    model = zoo.volume(shape=(16, 16, 16, 1), classes=int(train.labels.max()) + 1)[0]
    return model, train.volumes, train.labels, probe.volumes, probe.labels, "grad_cam", 8


def segmentation():
    train = datasets.make_shapes(1500, image_size=32, seed=0)
    probe = datasets.make_shapes(6, image_size=32, seed=99)
    model = zoo.unet(size=32, classes=2)[0]
    return model, train.images, shape_masks(train), probe.images, shape_masks(probe), "layer_cam", 8


def vit():
    # 4-pixel patches (an 8x8 grid): a ViT needs more data than this to learn from 8-pixel
    # ones.
    train = datasets.make_shapes(3000, image_size=32, seed=0)
    probe = datasets.make_shapes(6, image_size=32, seed=99)
    model = zoo.vit(size=32, patch=4, dim=32, classes=len(datasets.CLASS_NAMES))[0]
    return model, train.images, train.labels, probe.images, probe.labels, "grad_cam", 15


# `name -> () -> (model, x, y, probe x, probe y, the CAM run to show, epochs)`.
MODELS = {"sequence": sequence, "volume": volume, "segmentation": segmentation, "vit": vit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    parser.add_argument("out")
    parser.add_argument("--only", default=None, help="comma-separated model names")
    args = parser.parse_args()
    wanted = None if args.only is None else set(args.only.split(","))
    for name, make in MODELS.items():
        if wanted is not None and name not in wanted:
            continue
        model, x, y, px, py, cam, epochs = make()
        log_dir = Path(args.logdir) / name
        # A segmentation's object is 7 % of the pixels: weighed 5x, as the truth test does.
        weights = np.where(y > 0, 5.0, 1.0).astype("float32") if y.ndim > 1 else None
        model.fit(
            x,
            y,
            sample_weight=weights,
            epochs=epochs,
            batch_size=32,
            verbose=2,
            callbacks=[kcv.ConvViz(log_dir, (px, py))],
        )
        out = Path(args.out) / f"tensorboard_convviz_{name}.png"
        subprocess.run(
            [sys.executable, str(HERE / "screenshot_tab.py"), str(log_dir), str(out),
             "--kind", cam, "--size", "1500x900"],
            check=True,
        )  # fmt: skip
        print(f"{name}: {out}")


if __name__ == "__main__":
    main()
