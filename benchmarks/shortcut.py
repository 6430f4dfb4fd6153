"""Right for the right reasons: does `evidence_off_region` tell a shortcut model from a clean one?

The demo CNN is trained on shapes (`make_shortcut_shapes`) in two ways per seed: with a
class-specific coloured corner that goes with the label in the training data and in the
probe (the shortcut), and without it (clean). `ConvViz` runs at every epoch with the
shapes' masks as `regions`. Per run: Grad-CAM's `in_region` (probe mean) and its floor at
every epoch, the epoch `evidence_off_region` fired (if it did), every other alert, and on
images whose cue belongs to another class, the share of predictions that follow the cue
and the share that follow the shape. Also the cost of the localization numbers: the CPU
time of `MapCallback._region_items` against the whole snapshot's. Results go to
`benchmarks/results_shortcut.json`.

Run: python benchmarks/shortcut.py [--seeds 0 1 2] [--size 64] [--train 4000] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import keras_convviz as kcv
from keras_convviz.callbacks.maps import MapCallback
from keras_convviz.datasets import CLASS_NAMES, make_shortcut_shapes
from keras_convviz.demo import train_demo_model
from keras_convviz.exports.events import read_run

HERE = Path(__file__).resolve().parent
PER_CLASS = 4


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class RegionClock:
    """CPU time inside `MapCallback._region_items` (the localization numbers) and inside
    every map callback's whole `_snapshot`, summed over a training."""

    def __init__(self):
        self.regions = 0.0
        self.snapshots = 0.0

    def __enter__(self):
        self._items, self._snapshot = MapCallback._region_items, kcv.GradCAM._snapshot
        clock = self

        def region_items(callback, *args, **kwargs):
            start = time.process_time()
            try:
                return clock._items(callback, *args, **kwargs)
            finally:
                clock.regions += time.process_time() - start

        def snapshot(callback, *args, **kwargs):
            start = time.process_time()
            try:
                return clock._snapshot(callback, *args, **kwargs)
            finally:
                clock.snapshots += time.process_time() - start

        MapCallback._region_items = region_items
        kcv.GradCAM._snapshot = snapshot
        return self

    def __exit__(self, *exc):
        MapCallback._region_items, kcv.GradCAM._snapshot = self._items, self._snapshot


def probe_of(data) -> np.ndarray:
    return np.concatenate(
        [np.flatnonzero(data.labels == c)[:PER_CLASS] for c in range(len(CLASS_NAMES))]
    )


def scalar_series(log_dir: Path, run: str, tag: str) -> list[float]:
    for series in read_run(str(log_dir), run):
        if series.tag == tag:
            return [float(v) for v in series.values]
    return []


def one_run(shortcut: bool, seed: int, size: int, n_train: int, epochs: int, log_dir: Path):
    cues = "label" if shortcut else None
    train = make_shortcut_shapes(n_train, image_size=size, seed=100 + seed, cues=cues)
    val = make_shortcut_shapes(400, image_size=size, seed=10_000 + seed, cues=cues)
    probe = probe_of(val)
    alerts = []
    convviz = kcv.ConvViz(
        str(log_dir),
        (val.images[probe], val.labels[probe]),
        regions=val.masks[probe],
        occlusion=False,
        on_alert=alerts.append,
        budget=None,
    )
    keras.utils.set_random_seed(seed)
    with RegionClock() as clock:
        cpu = time.process_time()
        model, _ = train_demo_model(train, epochs=epochs, callbacks=[convviz])
        cpu = time.process_time() - cpu
    layer = convviz.callbacks[2]._map_needs[0].ref.path  # GradCAM's layer
    tag = f"grad_cam/{layer}/in_region"
    # Images whose cue is another class's: does the model follow the cue or the shape?
    swapped_cues = (val.labels + 1) % len(CLASS_NAMES)
    swapped = make_shortcut_shapes(400, image_size=size, seed=10_000 + seed, cues=swapped_cues)
    predicted = np.argmax(model.predict(swapped.images, verbose=0), axis=-1)
    fired = [a.epoch for a in alerts if a.rule == "evidence_off_region"]
    return {
        "shortcut": shortcut,
        "seed": seed,
        "val_accuracy": float(
            np.mean(np.argmax(model.predict(val.images, verbose=0), -1) == val.labels)
        ),
        "in_region": scalar_series(log_dir, "grad_cam", tag),
        "floor": scalar_series(log_dir, "floor_uniform", tag),
        "pointing": scalar_series(log_dir, "grad_cam", f"grad_cam/{layer}/pointing"),
        "alert_epoch": min(fired) if fired else None,
        "other_alerts": sorted({a.rule for a in alerts if a.rule != "evidence_off_region"}),
        "swapped_follow_cue": float(np.mean(predicted == swapped_cues)),
        "swapped_follow_shape": float(np.mean(predicted == val.labels)),
        "cpu_seconds": cpu,
        "cpu_region_items": clock.regions,
        "cpu_grad_cam_snapshots": clock.snapshots,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=str(HERE / "results_shortcut.json"))
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        for shortcut in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                row = one_run(shortcut, seed, args.size, args.train, args.epochs, Path(tmp))
            runs.append(row)
            print(
                f"seed {seed} {'shortcut' if shortcut else 'clean   '}: val acc "
                f"{row['val_accuracy']:.2f}, in_region "
                f"{' '.join(f'{v:.2f}' for v in row['in_region'])} (floor "
                f"{row['floor'][0]:.3f}), alert at epoch {row['alert_epoch']}, other alerts "
                f"{row['other_alerts']}; swapped cue: follows cue "
                f"{row['swapped_follow_cue']:.2f}, shape {row['swapped_follow_shape']:.2f}; "
                f"localization CPU {row['cpu_region_items']:.3f} s of "
                f"{row['cpu_grad_cam_snapshots']:.2f} s in Grad-CAM snapshots",
                flush=True,
            )
    out = {
        "cpu": cpu_model(),
        "python": sys.version.split()[0],
        "settings": vars(args),
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
