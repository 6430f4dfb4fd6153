"""The spread of `tests/test_truth_ranks.py`'s numbers over seeds, to set its thresholds.

For each seed of data, initialisation and probe, trains the test's Conv1D and Conv3D
classifiers and prints their accuracy, Grad-CAM pointing game, the random map's share
and the trained/random rank correlation, once with TensorFlow's defaults and once with
`TF_ENABLE_ONEDNN_OPTS=0` (oneDNN's kernels round differently; the variable is read when
TensorFlow is imported, so each setting runs in its own process). The last rows give the
worst seed of each column beside the test's threshold.

Run: python benchmarks/truth_ranks_spread.py [--seeds 5]   (5-15 minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
COLUMNS = ("accuracy", "pointing", "occlusion_pointing", "share", "correlation")


def worker(seeds: int) -> None:
    """Measures every seed in this process and prints one JSON line per (rank, seed)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(TESTS))
    import test_truth_ranks as truth

    for seed in range(seeds):
        for rank in ("1d", "3d"):
            numbers = truth.measure(rank, seed)
            row = {"rank": rank, "seed": seed, **{k: numbers[k] for k in COLUMNS}}
            print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.seeds)
        return
    rows = []
    for onednn in ("default", "0"):
        env = dict(os.environ)
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
        if onednn == "0":
            env["TF_ENABLE_ONEDNN_OPTS"] = "0"
        command = [sys.executable, __file__, "--worker", "--seeds", str(args.seeds)]
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
            for line in process.stdout:
                if line.startswith("{"):
                    rows.append({"onednn": onednn, **json.loads(line)})
                    print(onednn, line.strip(), file=sys.stderr, flush=True)
        if process.returncode:
            raise SystemExit(f"the worker with TF_ENABLE_ONEDNN_OPTS={onednn} failed")
    sys.path.insert(0, str(TESTS))
    from test_truth_ranks import MAX_CORRELATION, MIN_ACCURACY, MIN_LIFT

    print(
        "| rank | TF_ENABLE_ONEDNN_OPTS | seed | accuracy | pointing | occlusion pointing | "
        "share | correlation |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["rank"], r["onednn"], r["seed"])):
        print(
            f"| {r['rank']} | {r['onednn']} | {r['seed']} | {r['accuracy']:.2f} | "
            f"{r['pointing']:.2f} | {r['occlusion_pointing']:.2f} | {r['share']:.2f} | "
            f"{r['correlation']:.2f} |"
        )
    print()
    print(
        "| rank | worst accuracy | worst pointing - share | worst occlusion pointing - share "
        "| worst correlation |"
    )
    print("|---|---|---|---|---|")
    for rank in ("1d", "3d"):
        mine = [r for r in rows if r["rank"] == rank]
        accuracy = min(r["accuracy"] for r in mine)
        lift = min(r["pointing"] - r["share"] for r in mine)
        occlusion = min(r["occlusion_pointing"] - r["share"] for r in mine)
        correlation = max(r["correlation"] for r in mine)
        print(f"| {rank} | {accuracy:.2f} | {lift:.2f} | {occlusion:.2f} | {correlation:.2f} |")
    print(
        f"thresholds: accuracy >= {MIN_ACCURACY}, pointing - share >= {MIN_LIFT}, "
        f"correlation <= {MAX_CORRELATION}"
    )


if __name__ == "__main__":
    main()
