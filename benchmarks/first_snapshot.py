"""How long the first snapshot takes, in fresh processes: tracing, compiling, first write.

    python benchmarks/first_snapshot.py [--runs 3] [--compare DIR]

The first snapshot of a callback traces every compiled function (the shared pass, the
occlusion pass, each callback's render function and PNG encoder) and XLA-compiles the
occlusion chunk builder; later snapshots only run them. Each run is a fresh Python process
that builds the benchmark CNN, attaches `ConvViz(log_dir, probe)` (all four callbacks) and
times `on_train_begin`, the first `on_epoch_end` and the second one. With `--compare DIR`,
`DIR` is another copy of the repository (e.g. `git archive <commit> | tar -x -C DIR`); its
runs alternate with this checkout's and the ratio is the median of per-pair ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent


def worker() -> dict:
    sys.path.insert(0, str(HERE))
    import workload

    import keras_convviz as kcv

    model, images = workload.build_cnn(), workload.probe_images()
    model(images[:1])
    with tempfile.TemporaryDirectory() as log_dir:
        callback = kcv.ConvViz(log_dir, probe=images)
        callback.set_model(model)
        times = {}
        start = time.perf_counter()
        callback.on_train_begin()
        times["train_begin_s"] = time.perf_counter() - start
        for epoch, name in ((0, "first_snapshot_s"), (1, "second_snapshot_s")):
            start = time.perf_counter()
            callback.on_epoch_end(epoch)
            times[name] = time.perf_counter() - start
        callback.on_train_end()
    return {"package": kcv.__file__, **{k: round(v, 3) for k, v in times.items()}}


def run(root: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, __file__, "--worker"], capture_output=True, text=True, env=env, cwd=root
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another copy of the repository")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker()))
        return
    sys.path.insert(0, str(HERE))
    import timing

    roots = {"this checkout": HERE.parent}
    if args.compare is not None:
        roots["compare"] = args.compare.resolve()
    results = {name: [] for name in roots}
    for index in range(args.runs):
        order = list(roots) if index % 2 == 0 else list(roots)[::-1]
        for name in order:
            results[name].append(run(roots[name]))
    keys = ("train_begin_s", "first_snapshot_s", "second_snapshot_s")
    print(f"ConvViz on the benchmark CNN, median of {args.runs} fresh processes, seconds\n")
    print("| package | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, rows in results.items():
        medians = [timing.median([r[k] for r in rows]) for k in keys]
        print(
            f"| {name} ({rows[0]['package']}) | " + " | ".join(f"{m:.2f}" for m in medians) + " |"
        )
    if args.compare is not None:
        first = [r["first_snapshot_s"] for r in results["this checkout"]]
        other = [r["first_snapshot_s"] for r in results["compare"]]
        print(f"\nfirst snapshot, this checkout / compare: {timing.paired_ratio(first, other):.2f}")
    print(f"load average {timing.load()} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
