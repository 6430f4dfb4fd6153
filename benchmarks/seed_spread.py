"""Seed spread of the tests whose assertions depend on a training outcome.

For each seed, every quantity such a test asserts on is measured exactly as the test
measures it (the tests' own helpers and training functions, imported from `tests/`), with
oneDNN on (TensorFlow's default) and off (`TF_ENABLE_ONEDNN_OPTS=0`, set in a child
process before TensorFlow is imported). One table per setting: a row per quantity, a column
per seed, the worst seed and the test's threshold beside it.

- truth (tests/test_truth.py): the demo CNN trained by `conftest.train_with_convviz(seed)`;
  accuracy on the probe, the pointing game of Grad-CAM, occlusion and every method against
  random maps, Score-CAM's hits over two trainings (the seed and the next, cyclically)
  against chance, the rank correlation of each method's maps with those of a randomised
  model, the Grad-CAM correlation of the same two trainings, deletion and insertion
  against their floors, and the alerts the healthy training raised;
- actmax (tests/test_activation_maximization.py): activation maximisation on the test's own
  demo CNN, `train_demo(seed)`, and (not asserted) the noise ratios of the same architecture
  at its initial weights;
- strokes (the occlusion-baseline test of tests/test_truth.py): its small CNN on strokes, and
  (not asserted) the mass on ink at the default patch 4 and with the black background itself
  as the fill;
- shortcut (tests/test_shortcut.py): the shortcut model of `conftest.train_shortcut(seed)`
  and the truth tests' model of `conftest.train_with_convviz(seed)` as the clean one; their
  Grad-CAM `in_region` against the floor and each other, the epoch `evidence_off_region`
  fired, and whether the shortcut model follows another class's cue;
- alerts (tests/test_alerts.py): every test that fits a deliberately broken model, run with
  the model's initial weights and the data drawn from the seed (pass or fail).

Run: nice -n 10 python benchmarks/seed_spread.py [--seeds 0,1,2,3,4] [--parts truth,...]
(about 40 minutes per setting for 5 seeds on 2 busy CPU cores, and 18 more for the shortcut
part; the parts run one after another).
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

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("truth", "actmax", "strokes", "shortcut", "alerts")

# (quantity, threshold, "min" when the test asserts value >= threshold, "max" for <=);
# threshold None: measured beside the assertions, not asserted.
# Thresholds relative to another quantity are measured as that difference.
CHECKS = {
    "truth": [
        ("accuracy", 0.8, "min"),
        ("pointing grad_cam", 0.8, "min"),
        ("pointing occlusion", 0.8, "min"),
        ("pointing margin, worst method but Score-CAM (- random)", 0.3, "min"),
        ("pointing score_cam", None, "min"),
        # The fewest hits of 64 (both trainings) that maps peaking at random pixels reach
        # with a chance under 1e-3, on the probe's boxes (`test_truth.chance_of_hits`).
        ("score_cam hits of two trainings (of 64)", 13, "min"),
        ("rank corr. trained/random, worst method", 0.5, "max"),
        ("grad_cam corr. two trainings", 0.3, "min"),
        ("two trainings - trained/random", 0.25, "min"),
        ("faithfulness: worst margin to a floor", 0.0, "min"),
        ("alerts raised", 0, "max"),
    ],
    "actmax": [
        ("conv1 score / best probe image, worst filter", 1.0, "min"),
        ("conv3 score / best probe image, worst filter", 1.0, "min"),
        ("conv1 score / best noise image, worst filter", None, "min"),
        ("conv3 score / best noise image, worst filter", 1.0, "min"),
        ("conv3 score / best noise image, worst filter, initial weights", None, "min"),
        ("conv3 median score / noise mean", None, "min"),
        ("conv3 median score / noise mean, initial weights", None, "min"),
        ("classes climbed to their own class (of 4)", 4, "min"),
    ],
    "strokes": [
        ("accuracy", 0.9, "min"),
        ("occlusion mass on ink, blur", 0.75, "min"),
        ("blur - mean", 0.0, "min"),
        ("occlusion mass on ink, black", None, "min"),
        ("occlusion mass on ink, blur, patch 4", None, "min"),
        ("occlusion mass on ink, black, patch 4", None, "min"),
    ],
    "shortcut": [
        ("shortcut in_region - floor", 0.05, "max"),
        ("clean in_region - floor", 0.15, "min"),
        ("clean / shortcut in_region", 3.0, "min"),
        ("floor, smallest", 0.02, "min"),
        ("floor, largest", 0.12, "max"),
        # 1-based, before the last of the 6 epochs; 99: never fired.
        ("evidence_off_region epoch, shortcut", 5, "max"),
        ("alerts on the clean training", 0, "max"),
        ("other alerts on the shortcut training", None, "max"),
        ("shortcut accuracy, own cue", 0.95, "min"),
        ("another class's cue: follows the cue", 0.9, "min"),
        ("another class's cue: follows the shape", 0.1, "max"),
    ],
    "alerts": [("broken-model tests failed", 0, "max")],
}


def measure_truth(seeds: list[int]) -> dict[int, dict]:
    import keras
    import numpy as np
    import test_truth as tt
    from conftest import read_runs, shapes_probe_data, train_with_convviz

    import keras_convviz as kcv
    from keras_convviz.demo import build_demo_model

    probe = shapes_probe_data()
    labelled = (probe.images, probe.labels)
    keras.utils.set_random_seed(7)
    random_maps = {name: tt.method_map(name, build_demo_model(), labelled) for name in tt.METHODS}
    random_hits = tt.hits(np.random.default_rng(0).random(probe.images.shape[:3]), probe.boxes)
    trained, out = {}, {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as log_dir:
            run = train_with_convviz(seed, log_dir)
            runs = read_runs(log_dir)
        model = trained[seed] = run.model
        accuracy = np.mean(model.predict(probe.images, verbose=0).argmax(1) == probe.labels)
        maps = {name: tt.method_map(name, model, labelled) for name in tt.METHODS}
        pointing = {name: tt.hits(m, probe.boxes, tt.cell_of(name)) for name, m in maps.items()}
        others = {name: rate for name, rate in pointing.items() if name != tt.SCORE_CAM}
        correlation = {
            name: np.mean([tt.rank_correlation(a, b) for a, b in zip(m, random_maps[name])])
            for name, m in maps.items()
        }
        faithful = []
        (cam_tag,) = [t for t in runs["grad_cam"] if t.endswith("/deletion")]
        for prefix in (cam_tag.rsplit("/", 1)[0], "occlusion_sensitivity"):
            own = prefix.split("/")[0]
            for curve, sign in (("deletion", -1), ("insertion", 1)):
                tag = f"{prefix}/{curve}"
                score = {w: runs[w][tag]["values"][-1] for w in (own, "floor_random", "floor_edge")}
                floor = max if sign > 0 else min
                faithful.append(
                    sign * (score[own] - floor(score["floor_random"], score["floor_edge"]))
                )
        out[seed] = {
            "accuracy": accuracy,
            "pointing grad_cam": pointing["cam:gradcam"],
            "pointing occlusion": pointing["occlusion"],
            "pointing margin, worst method but Score-CAM (- random)": min(others.values())
            - random_hits,
            "worst pointing method": min(others, key=others.get),
            "pointing score_cam": pointing[tt.SCORE_CAM],
            "rank corr. trained/random, worst method": max(correlation.values()),
            "worst correlation method": max(correlation, key=correlation.get),
            "grad_cam corr. trained/random": correlation["cam:gradcam"],
            "faithfulness: worst margin to a floor": min(faithful),
            "alerts raised": len(run.alerts),
        }
        print(f"truth seed {seed}: {json.dumps(out[seed], default=float)}", file=sys.stderr)
    # Two trainings: each seed with the next one, cyclically (no extra training).
    for i, seed in enumerate(seeds):
        other = trained[seeds[(i + 1) % len(seeds)]]
        first = kcv.grad_cam(trained[seed], labelled)
        second = kcv.grad_cam(other, labelled)
        pair = np.mean([tt.rank_correlation(a, b) for a, b in zip(first, second)])
        out[seed]["grad_cam corr. two trainings"] = pair
        out[seed]["two trainings - trained/random"] = (
            pair - out[seed]["grad_cam corr. trained/random"]
        )
        out[seed]["score_cam hits of two trainings (of 64)"] = sum(
            round(out[s]["pointing score_cam"] * len(probe.boxes))
            for s in (seed, seeds[(i + 1) % len(seeds)])
        )
    return out


def measure_actmax(seeds: list[int]) -> dict[int, dict]:
    import keras
    import numpy as np
    import test_activation_maximization as tam
    from conftest import core_logits, shapes_probe_data

    import keras_convviz as kcv
    from keras_convviz.demo import build_demo_model

    probe = shapes_probe_data().images

    def climb(model, layer):
        filters = list(range(8))
        _, scores = kcv.activation_maximization(
            model, layer, filters=filters, steps=128, probe=probe
        )
        on_probe = kcv.feature_maps(model, probe, [layer])[layer].mean(axis=(1, 2))[:, filters]
        on_noise = kcv.feature_maps(model, tam.NOISE_64, [layer])[layer].mean(axis=(1, 2))
        on_noise = on_noise[:, filters]
        return {
            "score / best probe image, worst filter": np.min(
                scores / np.maximum(on_probe.max(axis=0), 1e-6)
            ),
            "score / best noise image, worst filter": np.min(
                scores / np.maximum(on_noise.max(axis=0), 1e-6)
            ),
            "median score / noise mean": np.median(
                scores / np.maximum(on_noise.mean(axis=0), 1e-6)
            ),
        }

    out = {}
    for seed in seeds:
        model = tam.train_demo(seed)
        row = {}
        for layer in ("conv1", "conv3"):
            row.update({f"{layer} {k}": float(v) for k, v in climb(model, layer).items()})
        # The same architecture before training: what the noise ratios are without it.
        keras.utils.set_random_seed(seed)
        initial = climb(build_demo_model(), "conv3")
        row.update({f"conv3 {k}, initial weights": float(v) for k, v in initial.items()})
        images, _ = kcv.activation_maximization(model, "predictions", steps=64, probe=probe)
        row["classes climbed to their own class (of 4)"] = int(
            np.sum(core_logits(model, images).argmax(axis=1) == np.arange(4))
        )
        out[seed] = row
        print(f"actmax seed {seed}: {json.dumps(row)}", file=sys.stderr)
    return out


def measure_strokes(seeds: list[int]) -> dict[int, dict]:
    import keras
    import numpy as np
    import test_truth as tt
    from conftest import small_cnn
    from scipy import ndimage

    out = {}
    for seed in seeds:
        # The test's recipe (tests/test_truth.py), its seeds 0 (data) and 0 (model) replaced.
        x, y, _ = tt.strokes(tt.STROKES_TRAIN, seed=2 * seed)
        keras.utils.set_random_seed(seed)
        model = small_cnn(input_shape=(32, 32, 1), seed=seed)
        model.fit(x, y, epochs=tt.STROKES_EPOCHS, batch_size=32, verbose=0)
        images, labels, ink = tt.strokes(32, seed=2 * seed + 1)
        near = np.stack([ndimage.binary_dilation(m, iterations=2) for m in ink])

        def mass_on_ink(
            baseline, patch_size=tt.STROKES_PATCH, sample=(model, images, labels, near)
        ):
            return tt.occlusion_mass_on_ink(*sample, baseline, patch_size)

        blur, mean = mass_on_ink("blur"), mass_on_ink("mean")
        out[seed] = {
            "accuracy": float(np.mean(model.predict(images, verbose=0).argmax(1) == labels)),
            "occlusion mass on ink, blur": blur,
            "blur - mean": blur - mean,
            # The background itself (black) as the fill: what no invented ink gives.
            "occlusion mass on ink, black": mass_on_ink(0.0),
            "occlusion mass on ink, blur, patch 4": mass_on_ink("blur", 4),
            "occlusion mass on ink, black, patch 4": mass_on_ink(0.0, 4),
        }
        print(f"strokes seed {seed}: {json.dumps(out[seed])}", file=sys.stderr)
    return out


def measure_shortcut(seeds: list[int]) -> dict[int, dict]:
    import test_shortcut as ts
    from conftest import train_shortcut, train_with_convviz

    out = {}
    for seed in seeds:
        with (
            tempfile.TemporaryDirectory() as shortcut_dir,
            tempfile.TemporaryDirectory() as clean_dir,
        ):
            shortcut = train_shortcut(seed, shortcut_dir)
            clean = train_with_convviz(seed, clean_dir)
            (share, floor), (clean_share, clean_floor) = map(
                ts.in_region_and_floor, (shortcut, clean)
            )
        fired = [a.epoch for a in shortcut.alerts if a.rule == "evidence_off_region"]
        cue = ts.follows_the_cue(shortcut.model)
        out[seed] = {
            "shortcut in_region - floor": share - floor,
            "clean in_region - floor": clean_share - clean_floor,
            "clean / shortcut in_region": clean_share / max(share, 1e-9),
            "floor, smallest": min(floor, clean_floor),
            "floor, largest": max(floor, clean_floor),
            "evidence_off_region epoch, shortcut": fired[0] if fired else 99,
            "alerts on the clean training": len(clean.alerts),
            "other alerts on the shortcut training": sum(
                a.rule != "evidence_off_region" for a in shortcut.alerts
            ),
            "shortcut accuracy, own cue": float(cue["accuracy"]),
            "another class's cue: follows the cue": float(cue["cue"]),
            "another class's cue: follows the shape": float(cue["shape"]),
            "in_region shortcut / clean": [share, clean_share],
        }
        raised = sorted({f"{a.rule} (epoch {a.epoch})" for a in shortcut.alerts + clean.alerts})
        if raised:
            out[seed]["alerts"] = raised
        print(f"shortcut seed {seed}: {json.dumps(out[seed], default=float)}", file=sys.stderr)
    return out


def measure_alerts(seeds: list[int]) -> dict[int, dict]:
    import inspect
    import warnings

    import numpy as np
    import test_alerts as ta

    tests = {
        name: test
        for name, test in vars(ta).items()
        if name.startswith("test_")
        and list(inspect.signature(test).parameters) == ["tmp_path", "data"]
    }
    plain_cnn = ta.plain_cnn
    out = {}
    for seed in seeds:
        ta.plain_cnn = lambda activation="relu", seed_=seed: plain_cnn(activation, seed=seed_)
        rng = np.random.default_rng(seed)
        data = rng.random((48, 16, 16, 3)).astype(np.float32), rng.integers(0, 3, 48)
        failed = []
        for name, test in tests.items():
            with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    test(Path(tmp), data)
                except AssertionError as error:
                    failed.append(f"{name}: {str(error)[:200]}")
        out[seed] = {"broken-model tests failed": len(failed), "tests run": len(tests)}
        if failed:
            out[seed]["failed"] = failed
        print(f"alerts seed {seed}: {json.dumps(out[seed])}", file=sys.stderr)
    ta.plain_cnn = plain_cnn
    return out


def child(seeds: list[int], parts: list[str], smoke: bool) -> None:
    """Measures in this process (oneDNN as the environment says) and prints JSON."""
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if smoke:  # a minute's run through every line of this script, its numbers meaningless
        import conftest
        import test_truth

        conftest.SHAPES_TRAIN, conftest.SHAPES_EPOCHS = 64, 1
        test_truth.STROKES_TRAIN, test_truth.STROKES_EPOCHS = 64, 1
        conftest.SHORTCUT_TRAIN = 64
    measure = {
        "truth": measure_truth,
        "actmax": measure_actmax,
        "strokes": measure_strokes,
        "shortcut": measure_shortcut,
        "alerts": measure_alerts,
    }
    result = {}
    for part in parts:
        start = time.perf_counter()
        result[part] = measure[part](seeds)
        print(f"{part}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(json.dumps(result, default=float))


def table(result: dict, title: str) -> str:
    lines = [f"### {title}", ""]
    for part, checks in CHECKS.items():
        if part not in result:
            continue
        rows = result[part]
        seeds = sorted(rows, key=int)
        lines.append(f"| {part} | " + " | ".join(f"seed {s}" for s in seeds) + " | worst | test |")
        lines.append("|---" * (len(seeds) + 3) + "|")
        for name, threshold, side in checks:
            values = [rows[s].get(name) for s in seeds]
            if any(v is None for v in values):
                continue
            worst = min(values) if side == "min" else max(values)
            cells = " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
            bound = ">=" if side == "min" else "<="
            test = f"{bound} {threshold}" if threshold is not None else "(not asserted)"
            lines.append(f"| {name} | {cells} | {worst:.2f} | {test} |")
        for seed in seeds:
            for key in ("worst pointing method", "worst correlation method", "failed", "alerts"):
                if key in rows[seed]:
                    lines.append(f"seed {seed} {key}: {rows[seed][key]}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--onednn", default="on,off", help="on, off or on,off")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny trainings: checks the script")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = args.parts.split(",")
    if args.child:
        child(seeds, parts, args.smoke)
        return
    results = {}
    for setting in args.onednn.split(","):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if setting == "on" else "0"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        command = [
            sys.executable,
            __file__,
            "--child",
            "--seeds",
            args.seeds,
            "--parts",
            args.parts,
        ]
        command += ["--smoke"] * args.smoke
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
        results[setting] = json.loads(done.stdout.strip().splitlines()[-1])
        print(table(results[setting], f"oneDNN {setting}"), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
