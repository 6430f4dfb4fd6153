"""The seed spread behind tests/test_truth_segmentation.py (BENCHMARKS.md, "Segmentation
truth"): a U-Net trained as the test trains it, for seeds 0-4, and its maps' pointing game.

    .venv/bin/python benchmarks/truth_segmentation_spread.py
    TF_ENABLE_ONEDNN_OPTS=0 .venv/bin/python benchmarks/truth_segmentation_spread.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_truth_segmentation as truth  # noqa: E402
import zoo  # noqa: E402

import keras_convviz as kcv  # noqa: E402


def main() -> None:
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")
    columns = "seed oneDNN pixel_accuracy object_recall LayerCAM Grad-CAM occlusion box_share s"
    print("| " + " | ".join(columns.split()) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in range(int(os.environ.get("SEEDS", 5))):
        start = time.perf_counter()
        train, masks = truth.segmentation(truth.N_TRAIN, seed=100 + seed)
        probe, probe_masks = truth.segmentation(32, seed=4242)
        model, _, _ = zoo.unet(size=truth.SIZE, classes=2, seed=seed)
        weights = np.where(masks > 0, 5.0, 1.0).astype(np.float32)
        model.fit(train.images, masks, sample_weight=weights, epochs=truth.EPOCHS,
                  batch_size=16, verbose=0)  # fmt: skip
        predicted = model.predict(probe.images, verbose=0).argmax(-1)
        maps = kcv.grad_cam(model, (probe.images, probe_masks), method=["layercam", "gradcam"])
        occlusion = kcv.occlusion_sensitivity(model, (probe.images, probe_masks), patch_size=4)
        area = np.mean([(b - t) * (r - left) for t, left, b, r in probe.boxes]) / truth.SIZE**2
        row = [
            seed,
            onednn,
            f"{np.mean(predicted == probe_masks):.3f}",
            f"{np.mean(predicted[probe_masks > 0] == 1):.3f}",
            f"{truth.pointing(maps['layercam'], probe.boxes):.3f}",
            f"{truth.pointing(maps['gradcam'], probe.boxes):.3f}",
            f"{truth.pointing(occlusion, probe.boxes):.3f}",
            f"{area:.3f}",
            f"{time.perf_counter() - start:.0f}",
        ]
        print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
