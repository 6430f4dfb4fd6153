"""keras_convviz benchmarks: against the floor, against the peers, and over training.

    python benchmarks/run.py            # everything, about 12 minutes on 2 cores
    python benchmarks/run.py --quick    # fewer repetitions and sizes, about 4-5 minutes
    python benchmarks/run.py --only occlusion,methods --no-peers
    python benchmarks/run.py --only incremental   # 224x224 models: 12-25 minutes on 2 cores
    python benchmarks/run.py --only zoo   # 8 models' fits: 34 minutes with others busy
    python benchmarks/run.py --only applications --label after   # issue 24's table rows

Prints one table per section and a summary of the targets, and writes every number to
`benchmarks/results.json`. The peers (tf-explain, xplique, tf-keras-vis) are installed the
first time into their own virtual environments under `benchmarks/.peers/` (about a minute
each); a peer that cannot be installed is reported and skipped.

"ours" is always a public call (`kcv.occlusion_sensitivity`, `kcv.grad_cam`,
`kcv.saliency`, `ConvViz`); the "core pass" breakdowns run `core_for(model).run(plan,
bound)` for the plan the public call builds, and the tracing counts read
`core_for(model).passes`. Nothing is monkeypatched.

Every ratio comes from repetitions interleaved in one process (or in rounds alternating
with a peer's process), as the median of the per-repetition ratios after a warm-up, so
drift of the machine cancels. The load average is recorded per section: other processes
on the machine slow every candidate alike but widen the spread.

Each section is one module under `benchmarks/sections/`, named by its `--only` key (TITLES
below gives its number in BENCHMARKS.md); what they share is in `sections/common.py`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # test helpers the sections share (conftest)

import timing  # noqa: E402
import workload  # noqa: E402
from sections import (  # noqa: E402
    actmax,
    applications,
    faithfulness,
    grad_cam,
    incremental,
    memory,
    methods,
    mobilenet,
    occlusion,
    peers,
    resnet,
    scaling,
    snapshot,
    tracing,
    training,
    zoo,
)
from sections.common import QUIET, check, machine, merge_results, table, versions, wait_idle  # noqa: E402

SECTIONS = (
    "occlusion",
    "incremental",
    "grad_cam",
    "peers",
    "methods",
    "faithfulness",
    "snapshot",
    "tracing",
    "memory",
    "training",
    "resnet",
    "mobilenet",
    "scaling",
    "actmax",
    "zoo",
    "applications",
)


# ---- configuration --------------------------------------------------------------------------

# Section 11's models in a full run: tests/zoo.py's five and keras.applications at 64x64.
ZOO_MODELS = [
    "sequence",
    "volume",
    "unet",
    "two_heads",
    "vit",
    "mobilenetv2",
    "resnet50",
    "efficientnetb0",
]


def config(quick: bool) -> dict:
    if quick:
        return {
            "reps": 5,
            "occlusion": [(8, 8, 256), (8, 4, 256), (4, 4, 256), (8, 8, 64)],
            # (model, image size, images, patch, stride, batch_size, reps)
            "incremental": [
                ("cnn", 64, 8, 8, 8, 256, 5),
                ("cnn", 64, 8, 48, 16, 256, 5),
                ("vgg16", 224, 1, 32, 16, 32, 1),
                ("resnet50", 224, 1, 32, 16, 32, 1),
            ],
            "incremental_peers": [],
            "peer_rounds": 5,
            "peer_reps": 1,
            "peer_occlusion": [(8, 8)],
            "method_options": {"samples": 32, "noise": 0.15, "steps": 32, "batch_size": 256},
            "method_floor_small_batch": [],
            "faithfulness_steps": [16, 32],
            "snapshot_reps": 7,
            "memory_patches": [8, 2],
            "train": [{"n_train": 128, "n_val": 32, "epochs": 2, "reps": 3, "all": True}],
            "mobilenet_reps": 5,
            "resnet_reps": 2,
            "scaling_probe": [8, 32],
            "scaling_size": [32, 64, 128],
            "scaling_reps": 5,
            "actmax": {"steps": 64, "reps": 5, "peer_rounds": 3, "n_train": 800, "epochs": 4},
            # The small models and one keras.applications model, fewer samples and fits.
            "zoo": {
                "models": ["sequence", "volume", "unet", "two_heads", "vit", "mobilenetv2"],
                "n_train": 128,
                "epochs": 3,
                "reps": 2,
                "pass_reps": 3,
            },
            "applications": {
                "models": list(applications.MODELS),
                "n_train": 64,
                "epochs": 2,
                "plain_epochs": 2,
                "later_epochs": 3,
                "floor_reps": 3,
                "seeds": [0],
            },
        }
    return {
        "reps": 9,
        "occlusion": [(8, 8, 256), (8, 4, 256), (4, 4, 256), (8, 8, 64)],
        "incremental": [
            ("cnn", 64, 8, 8, 8, 256, 7),
            ("cnn", 64, 8, 8, 4, 256, 7),
            ("cnn", 64, 8, 4, 4, 256, 7),
            ("cnn", 64, 8, 32, 8, 256, 7),
            ("cnn", 64, 8, 32, 32, 256, 7),
            ("cnn", 64, 8, 48, 16, 256, 7),
            ("vgg16", 224, 1, 32, 16, 32, 2),
            ("vgg16", 224, 1, 16, 8, 32, 1),
            ("mobilenetv2", 224, 1, 32, 16, 32, 3),
            ("resnet50", 224, 1, 32, 16, 32, 2),
            ("efficientnetb0", 224, 1, 32, 16, 32, 3),
            ("efficientnetb0", 224, 1, 96, 64, 32, 3),
        ],
        # (peer, model, patch, stride): one round of one call each, after a warm-up call
        "incremental_peers": [("tf-explain", "vgg16", 32, 32), ("xplique", "vgg16", 32, 16)],
        "peer_rounds": 6,
        "peer_reps": 3,
        "peer_occlusion": [(8, 8), (8, 4), (4, 4)],
        "method_options": {"samples": 32, "noise": 0.15, "steps": 32, "batch_size": 256},
        "method_floor_small_batch": ["smoothgrad", "integrated_gradients", "scorecam"],
        "faithfulness_steps": [16, 32],
        "snapshot_reps": 15,
        "memory_patches": [8, 4, 2, 1],
        "train": [
            {"n_train": 800, "n_val": 160, "epochs": 4, "reps": 5, "all": True, "fresh_reps": 4},
            {"n_train": 4000, "n_val": 160, "epochs": 6, "reps": 2},
        ],
        "mobilenet_reps": 7,
        "resnet_reps": 4,
        "scaling_probe": [8, 32, 128],
        "scaling_size": [32, 64, 128, 224],
        "scaling_reps": 5,
        "actmax": {"steps": 128, "reps": 7, "peer_rounds": 3, "n_train": 1600, "epochs": 5},
        # (section 11: ConvViz's defaults on each model, a fit of n_train random samples)
        "zoo": {
            "models": ZOO_MODELS,
            "n_train": 320,
            "epochs": 3,
            "reps": 3,
            "pass_reps": 5,
        },
        # (section 11b, issue 24: keras.applications models' healthy short trainings)
        "applications": {
            "models": list(applications.MODELS),
            "n_train": 64,
            "epochs": 2,
            "plain_epochs": 3,
            "later_epochs": 3,
            "floor_reps": 5,
            "seeds": [0, 1],
        },
    }


# ---- main ------------------------------------------------------------------------------------


# The module under sections/ that measures each section (`--only` takes its name).
RUNNERS = {
    "occlusion": occlusion.run,
    "incremental": incremental.run,
    "grad_cam": grad_cam.run,
    "peers": peers.run,
    "methods": methods.run,
    "faithfulness": faithfulness.run,
    "snapshot": snapshot.run,
    "tracing": tracing.run,
    "memory": memory.run,
    "training": training.run,
    "resnet": resnet.run,
    "mobilenet": mobilenet.run,
    "scaling": scaling.run,
    "actmax": actmax.run,
    "zoo": zoo.run,
    "applications": applications.run,
}

# Each section's number and title in BENCHMARKS.md.
TITLES = {
    "occlusion": "1. Occlusion vs the floor (small CNN, 8 images 64x64)",
    "incremental": "1b. Incremental occlusion below the floor (small CNN; VGG16, "
    "MobileNetV2, ResNet50, EfficientNetB0 at 224x224)",
    "grad_cam": "2. Grad-CAM vs the floor",
    "peers": "3. Peers (same model, weights, images)",
    "methods": "4. The new methods side by side (CAM family, saliency, Score-CAM)",
    "faithfulness": "4b. Deletion and insertion scores vs the floor",
    "snapshot": "5. A full snapshot without occlusion",
    "tracing": "6. Tracing and Python ops",
    "memory": "7. Occlusion memory (peak RSS)",
    "training": "8. Training overhead (demo model)",
    "resnet": "8b. A snapshot on ResNet50 (224x224)",
    "mobilenet": "9a. MobileNetV2 at 128x128",
    "scaling": "9b. Scaling with work",
    "actmax": "10. Activation maximisation: floor, peers, snapshot cost, warm start",
    "zoo": "11. ConvViz's defaults across a zoo of models (sequence, volume, U-Net, two "
    "heads, ViT; keras.applications at 64x64)",
    "applications": "11b. ConvViz's defaults on keras.applications models (issue 24): layers, "
    "cards, alerts on a healthy training, cost ratios",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 3-4 minutes")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the peers (tf-explain, xplique, tf-keras-vis)"
    )
    parser.add_argument("--out", default=str(HERE / "results.json"), help="results file")
    parser.add_argument(
        "--update",
        action="store_true",
        help="replace only the sections run now in an existing results file",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        metavar="CORES",
        help="before each section, wait (up to 10 minutes) until other processes keep "
        "fewer than CORES cores busy",
    )
    parser.add_argument(
        "--train-default-only",
        action="store_true",
        help="section training: only ConvViz's defaults against no callback (the demo's fit "
        "ratio), not the `all`/`actmax` configurations or a fresh process",
    )
    parser.add_argument(
        "--label",
        default=None,
        help="names the rows of the sections that print rows for BENCHMARKS.md's before / "
        "after tables (applications); defaults to the commit",
    )
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    cfg = config(args.quick)
    if args.train_default_only:
        cfg["train"] = [
            {k: v for k, v in spec.items() if k not in ("all", "fresh_reps")}
            for spec in cfg["train"]
        ]
    QUIET["limit"] = args.wait_idle

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    results = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "versions": versions(),
        "load_start": timing.load(),
        "config": {k: v for k, v in cfg.items()},
        "sections": {},
    }
    with tempfile.TemporaryDirectory(prefix="kcv-bench-") as tmp:
        ctx = {
            "model": workload.build_cnn(),
            "images": workload.probe_images(),
            "tmp": tmp,
            "args": args,
            "log": log,
        }
        for name in SECTIONS:
            if name not in only:
                continue
            busy = wait_idle(args.wait_idle, log)
            log(f"[{time.perf_counter() - started:6.0f} s] {TITLES[name]} ...")
            load_before = timing.load()
            meter = timing.CpuMeter()  # a peer's worker counts once reaped, as a child
            section_start = time.perf_counter()
            try:
                result = RUNNERS[name](cfg, ctx)
            except Exception as error:  # noqa: BLE001 - one failing section does not stop the rest
                import traceback

                traceback.print_exc()
                result = {"error": f"{type(error).__name__}: {error}", "targets": []}
            result["seconds"] = round(time.perf_counter() - section_start, 1)
            result["load_before"] = load_before
            result["others_busy_cores_before"] = busy
            result["cpu"] = meter.stop()
            result["load_after"] = timing.load()
            results["sections"][name] = result
            _print_section(name, result)
    results["load_end"] = timing.load()
    results["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    if args.update and out.exists():
        results = merge_results(json.loads(out.read_text()), results, SECTIONS)
    all_targets = [t for s in results["sections"].values() for t in s.get("targets", [])]
    results["summary"] = all_targets
    print("\n## Summary\n")
    print(
        table(
            [{**t, "met": check(t["met"])} for t in all_targets],
            [("what", "measure"), ("value", "value"), ("target", "target"), ("met", "met")],
        )
    )
    print(
        f"\n{results['mode']} run, {results['seconds']:.0f} s; load average at start "
        f"{results['load_start']}, at end {results['load_end']} "
        f"(on {results['machine']['cpus']} CPUs; other processes widen the spread)."
    )
    if results.get("reruns"):
        print(f"sections rerun since: {[r['sections'] for r in results['reruns']]}")
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"numbers written to {args.out}")
    return 0


def _print_section(name: str, result: dict) -> None:
    print(f"\n## {TITLES[name]}\n")
    if "error" in result:
        print(f"FAILED: {result['error']}")
        return
    print(result["table"])
    for note in result.get("notes", []):
        print(f"\n- {note}")
    print(
        f"\n({result['seconds']:.0f} s; load {result['load_before']} -> {result['load_after']}; "
        f"cores busy on average: {result['cpu']}; other processes kept "
        f"{result['others_busy_cores_before']} cores busy just before it)",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
