"""What the alert rules cost: the process CPU time of the set-up checks, the rules on
`fit`'s numbers, the rules over each snapshot's numbers (`Monitor.observe`) and the health
table, against the training's (BENCHMARKS.md, section 13).

The demo CNN on 2000 64x64 shapes, 4 epochs, `ConvViz` at every epoch with its defaults
(alerts on) on 8 probe images. CPU time (`time.process_time`) attributes cost on a machine
shared with other jobs, where wall time would not.

Run: python benchmarks/rules_cost.py   (about 2 minutes on 2 CPU cores)
"""

from __future__ import annotations

import functools
import json
import platform
import tempfile
import time
from pathlib import Path

import keras

import keras_convviz as kcv
from keras_convviz import alerts
from keras_convviz.callbacks.convviz import ConvViz
from keras_convviz.datasets import make_shapes
from keras_convviz.demo import build_demo_model

HERE = Path(__file__).resolve().parent
SPENT: dict[str, float] = {}


def clocked(owner, name: str, label: str) -> None:
    """Wrap `owner.name` to add its CPU time to `SPENT[label]`."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label] = SPENT.get(label, 0.0) + time.process_time() - start

    setattr(owner, name, wrapper)


def main() -> None:
    clocked(ConvViz, "_check_setup", "set-up checks (once)")
    clocked(ConvViz, "_observe_fit", "rules on fit's numbers")
    clocked(alerts.Monitor, "observe", "rules over the snapshots' numbers")
    clocked(ConvViz, "_end_snapshot", "health table (with the rules on fit's numbers' output)")
    keras.utils.set_random_seed(0)
    data = make_shapes(2000, image_size=64, seed=1)
    model = build_demo_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    probe = (data.images[:8], data.labels[:8])
    with tempfile.TemporaryDirectory() as log_dir:
        callback = kcv.ConvViz(log_dir, probe, budget=None)
        start = time.process_time()
        model.fit(
            data.images, data.labels, epochs=4, batch_size=32, verbose=0, callbacks=[callback]
        )
        callback.settle()
        total = time.process_time() - start
    out = {
        "cpu": platform.processor() or platform.machine(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fit_cpu_s": round(total, 2),
        "spent_cpu_s": {k: round(v, 4) for k, v in SPENT.items()},
        "share_of_fit": {k: round(v / total, 5) for k, v in SPENT.items()},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
