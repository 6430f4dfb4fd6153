"""False alarms: healthy trainings with `ConvViz` (alerts on, every epoch) must raise none.

Three healthy trainings, three seeds each:
- the demo (`convviz demo`: the demo CNN with batch norm, 4000 shapes, 6 epochs);
- the README's quickstart model (a Sequential CNN with batch norm, 3000 shapes, 8 epochs);
- the demo CNN on grey shapes (another kind of data: no colour to go by), 6 epochs.
The probe's shapes are given as `regions` (the demo: their masks; the others: their boxes),
so `evidence_off_region` is watched as well. Each alert raised is printed with its rule,
layer, value and epoch. Results go to
`benchmarks/false_alarms.json`.

Run: python benchmarks/false_alarms.py   (about 10 minutes on 2 CPU cores)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import keras_convviz as kcv
from keras_convviz.datasets import make_shapes
from keras_convviz.demo import run_demo

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2)


def count_alerts(log_dir: Path) -> list[str]:
    """Every alert written under `alerts/` (rule and step), from the event files."""
    from tensorboard.backend.event_processing import event_accumulator

    run = log_dir / "alerts"
    if not run.exists():
        return []
    acc = event_accumulator.EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    return [f"{tag} at step {e.step}" for tag in acc.Tags()["tensors"] for e in acc.Tensors(tag)]


def quickstart_model(shape=(64, 64, 3)):
    layers = [keras.Input(shape)]
    for filters, pool in ((16, True), (32, True), (64, False)):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
        ]
        layers += [keras.layers.MaxPooling2D()] if pool else []
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")]
    return keras.Sequential(layers)


def grey_demo_model():
    """The demo CNN, fed grey images (the grey value in all three channels)."""
    from keras_convviz.demo import build_demo_model

    return build_demo_model(64)


def train_with_alerts(build, size: int, grey: bool, seed: int, log_dir: Path, epochs: int):
    keras.utils.set_random_seed(seed)
    train, val = make_shapes(3000, size, seed=seed), make_shapes(300, size, seed=seed + 50)
    x, xv = train.images, val.images
    if grey:
        x = np.repeat(x.mean(-1, keepdims=True), 3, axis=-1)
        xv = np.repeat(xv.mean(-1, keepdims=True), 3, axis=-1)
    model = build()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    alerts = []
    # The shapes' boxes as regions: `evidence_off_region` is watched too.
    convviz = kcv.ConvViz(
        str(log_dir), (xv[:8], val.labels[:8]), regions=val.boxes[:8], on_alert=alerts.append
    )
    history = model.fit(
        x,
        train.labels,
        epochs=epochs,
        validation_data=(xv, val.labels),
        verbose=0,
        callbacks=[convviz],
    )
    return float(history.history["val_accuracy"][-1]), alerts


def main() -> int:
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kcv-false-alarms-") as tmp:
        for seed in SEEDS:
            log_dir = Path(tmp) / f"demo_{seed}"
            result = run_demo(log_dir=str(log_dir), seed=seed, verbose=0)
            rows.append(("demo", seed, result["val_accuracy"], count_alerts(log_dir)))
            print(rows[-1], flush=True)
        for name, build, size, grey, epochs in (
            ("quickstart", quickstart_model, 64, False, 8),
            ("demo CNN, grey", grey_demo_model, 64, True, 6),
        ):
            for seed in SEEDS:
                log_dir = Path(tmp) / f"{name.split(',')[0]}_{len(rows)}_{seed}"
                accuracy, alerts = train_with_alerts(build, size, grey, seed, log_dir, epochs)
                written = count_alerts(log_dir)
                assert len(written) >= len({(a.rule, a.step) for a in alerts})
                described = [
                    f"{a.rule} {a.subject} = {a.value:.3g} at epoch {a.epoch}" for a in alerts
                ]
                rows.append((name, seed, accuracy, described or written))
                print(rows[-1], flush=True)
    total = sum(len(r[3]) for r in rows)
    out = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "keras": keras.__version__,
        "trainings": [
            {"training": r[0], "seed": r[1], "val_accuracy": round(r[2], 3), "alerts": r[3]}
            for r in rows
        ],
        "false_alarms": total,
        "seconds": round(time.perf_counter() - started),
    }
    (HERE / "false_alarms.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{len(rows)} healthy trainings, {total} alerts")
    return 0 if np.isfinite(total) else 1


if __name__ == "__main__":
    sys.exit(main())
