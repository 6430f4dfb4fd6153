"""Section 11 of BENCHMARKS.md (`--only zoo`): `ConvViz`'s defaults across a zoo of models.

The five models of `tests/zoo.py` (a Conv1D sequence classifier, a Conv3D volume classifier,
a U-Net, two heads, a small ViT) and `keras.applications` models at 64x64, each with
`ConvViz(log_dir, probe=(x[:4], y[:4]))` and nothing else: what a snapshot writes, its
compiled pass against one forward and backward pass, the time it holds the training thread,
and what it adds to a `fit` of a few hundred random samples.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf
import timing
from conftest import forget

import keras_convviz as kcv
from keras_convviz.core.needs import Plan
from keras_convviz.core.shared import _SHARED_ATTRIBUTE
from keras_convviz.exports.events import find_runs, read_run

from .common import ROOT, quietly, table, target
from .training import EpochClock, pass_runs


def _load_test_zoo():
    """tests/zoo.py, the builders the tests train with `ConvViz`, loaded from its file so the
    benchmark measures the same models without putting tests/ on the import path."""
    spec = importlib.util.spec_from_file_location("zoo", ROOT / "tests" / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


test_zoo = _load_test_zoo()

PROBE = 4
BATCH = 32


def _applications(builder, size: int = 64, classes: int = 10):
    def build(seed: int = 0):
        keras.utils.set_random_seed(seed)
        model = builder(weights=None, input_shape=(size, size, 3), classes=classes)
        model.compile("adam", "sparse_categorical_crossentropy")
        rng = np.random.default_rng(seed)
        x = rng.random((test_zoo.N, size, size, 3), dtype=np.float32)
        y = rng.integers(0, classes, test_zoo.N).astype(np.int32)
        return model, x, y

    return build


# name -> (builder of `(compiled model, x, y)`, what it is)
MODELS = {
    **{name: (build, f"tests/zoo.py {name}()") for name, build in test_zoo.MODELS.items()},
    "mobilenetv2": (_applications(keras.applications.MobileNetV2), "MobileNetV2 64px"),
    "resnet50": (_applications(keras.applications.ResNet50), "ResNet50 64px"),
    "efficientnetb0": (_applications(keras.applications.EfficientNetB0), "EfficientNetB0 64px"),
    "convnexttiny": (_applications(keras.applications.ConvNeXtTiny), "ConvNeXtTiny 64px"),
}


def _like(values, n: int, rng):
    """`n` random samples shaped and typed as the builder's (integer labels drawn below
    their largest, floats from the builder's range): the builders make 16, an epoch more."""
    if isinstance(values, dict):
        return {key: _like(value, n, rng) for key, value in values.items()}
    shape = (n, *values.shape[1:])
    if np.issubdtype(values.dtype, np.integer):
        return rng.integers(0, int(values.max()) + 1, shape).astype(values.dtype)
    if values.min() < 0:
        return rng.normal(size=shape).astype(values.dtype)
    return rng.random(shape, dtype=np.float32).astype(values.dtype)


def _first(values, n: int):
    if isinstance(values, dict):
        return {key: value[:n] for key, value in values.items()}
    return values[:n]


def _backward_floor(model: keras.Model):
    """One compiled forward + backward pass to the input on a batch: the gradient of a fixed
    random weighting of every output (a class score, a mask, a regression value alike)."""
    rng = np.random.default_rng(0)
    weights = [
        tf.constant(rng.random((1, *(int(d) for d in out.shape[1:])), dtype=np.float32))
        for out in model.outputs
    ]

    @tf.function(autograph=False)  # no Python control flow to convert
    def floor(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = tf.nest.flatten(model(x, training=False))
            score = tf.add_n(
                [tf.reduce_sum(tf.cast(o, tf.float32) * w) for o, w in zip(outputs, weights)]
            )
        return tape.gradient(score, x)

    return floor


def _without_occlusion(model, convviz):
    """The shared pass of the last fit without occlusion's needs (the snapshot of section 5,
    `occlusion_freq=0`), as a call; `None` where occlusion was off."""
    occlusion = [
        child
        for child in convviz.callbacks
        if isinstance(child, kcv.OcclusionSensitivity) and not child.not_served
    ]
    passes = list(model.__dict__.get(_SHARED_ATTRIBUTE, {}).values())
    if not occlusion or len(passes) != 1:
        return None
    shared = passes[0]
    plan = max(shared._plans.values(), key=lambda plan: len(plan.needs))
    dropped = set(occlusion[0].needs())
    needs = tuple(need for need in plan.needs if need not in dropped)
    if len(needs) == len(plan.needs):
        return None
    plan = Plan(needs)
    return functools.partial(shared.core.run, plan, shared.bound)


def _ms_or_none(times: dict, key: str):
    return round(timing.median(times[key]) * 1e3, 2) if key in times else None


def _written(log_dir: str) -> dict:
    """Per step, the PNG images and scalars of every run under `log_dir` (text summaries,
    the alerts and the health table, are not counted)."""
    counts: dict[int, dict] = {}
    runs = find_runs(log_dir)
    for run in runs:
        for series in read_run(log_dir, run):
            for step, value in zip(series.steps, series.values):
                into = counts.setdefault(step, {"images": 0, "scalars": 0})
                if series.kind == "images":
                    into["images"] += len(value)
                else:
                    into["scalars"] += 1
    return {"runs": runs, "steps": counts}


def _measure(name: str, spec: dict, ctx) -> dict:
    build, label = MODELS[name]
    model, x0, y0 = build()
    rng = np.random.default_rng(1)
    x, y = _like(x0, spec["n_train"], rng), _like(y0, spec["n_train"], rng)
    probe = (x[:PROBE], _first(y, PROBE))
    epochs = spec["epochs"]
    records = {"none": [], "convviz": []}
    last = {}

    def fit(with_convviz: bool, epochs: int = epochs) -> None:
        clock, mark = EpochClock(), EpochClock()
        callbacks = [clock]
        if with_convviz:
            # A new core and shared pass each time, so every fit's first snapshot traces
            # its pass, as on a model fitted with ConvViz for the first time.
            forget(model)
            log_dir = tempfile.mkdtemp(dir=ctx["tmp"], prefix=f"zoo_{name}_")
            convviz = kcv.ConvViz(log_dir, probe=probe)
            callbacks += [convviz, mark]
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(
                x, y, epochs=epochs, batch_size=BATCH, verbose=0, shuffle=True, callbacks=callbacks
            )
        record = {
            "fit": (mark if with_convviz else clock).train_end - start,
            "epochs": [e - b for b, e in zip(clock.begin, clock.end)],
            "snapshots": [m - e for e, m in zip(clock.end, mark.end)],
        }
        records["convviz" if with_convviz else "none"].append(record)
        if with_convviz:
            last.update(convviz=convviz, log_dir=log_dir, warnings=[str(w.message) for w in caught])

    # Warm-up: Keras traces its train step (kept by the model for every later fit), and
    # what keras_convviz traces once per process (drawing per layer shape) is traced.
    fit(False, epochs=1)
    fit(True, epochs=1)
    for key in records:
        records[key].clear()
    for rep in range(spec["reps"]):
        for with_convviz in (False, True) if rep % 2 == 0 else (True, False):
            fit(with_convviz)

    # The compiled pass of the last fit's snapshots, interleaved with the floor.
    convviz = last["convviz"]
    runs = pass_runs(model, convviz)
    floor = _backward_floor(model)
    probe_x = tf.constant(x[:PROBE])
    floor(probe_x)
    candidates = {
        "pass": lambda: [run() for run in runs],
        "floor": lambda: floor(probe_x).numpy(),
    }
    without_occlusion = _without_occlusion(model, convviz)
    if without_occlusion is not None:
        candidates["pass_no_occlusion"] = without_occlusion
    times = timing.interleave(candidates, spec["pass_reps"])
    written = _written(last["log_dir"])
    later = written["steps"].get(epochs - 1, {"images": 0, "scalars": 0})
    first = written["steps"].get(0, {"images": 0, "scalars": 0})
    with_, without = records["convviz"], records["none"]
    epoch_s = timing.median([e for r in without for e in r["epochs"]])
    # The second snapshot of a fit may wait for the first one's drawing (traced by each new
    # callback on the writer thread): later = the third snapshot on.
    held = timing.median([s for r in with_ for s in r["snapshots"][2:]])
    pass_s = timing.median(times["pass"])
    row = {
        "model": name,
        "what": label,
        "params": model.count_params(),
        "input": "x".join(str(int(d)) for d in model.inputs[0].shape[1:]),
        "n_train": spec["n_train"],
        "epochs": epochs,
        "runs": [r for r in written["runs"] if r not in ("alerts",)],
        "off": [type(c).__name__ for c in convviz.callbacks if c.not_served],
        "warnings": last["warnings"],
        "pictures": later["images"],
        "scalars": later["scalars"],
        "first_pictures": first["images"],
        "first_scalars": first["scalars"],
        "pass_ms": round(pass_s * 1e3, 2),
        "floor_ms": round(timing.median(times["floor"]) * 1e3, 2),
        "pass_vs_floor": round(timing.paired_ratio(times["pass"], times["floor"]), 2),
        "pass_no_occlusion_ms": _ms_or_none(times, "pass_no_occlusion"),
        "no_occlusion_vs_floor": (
            round(timing.paired_ratio(times["pass_no_occlusion"], times["floor"]), 2)
            if "pass_no_occlusion" in times
            else None
        ),
        "epoch_s": round(epoch_s, 3),
        "first_held_s": round(timing.median([r["snapshots"][0] for r in with_]), 3),
        "held_s": round(held, 4),
        "held_vs_pass": round(held / pass_s, 2),
        "held_vs_epoch": round(held / epoch_s, 3),
        "fit_without_s": round(timing.median([r["fit"] for r in without]), 2),
        "fit_with_s": round(timing.median([r["fit"] for r in with_]), 2),
        "fit_ratio": round(
            timing.paired_ratio([r["fit"] for r in with_], [r["fit"] for r in without]), 3
        ),
        "extra_vs_epoch": round(
            (timing.median([r["fit"] for r in with_]) - timing.median([r["fit"] for r in without]))
            / epochs
            / epoch_s,
            2,
        ),
        "fit_ratios": [round(a["fit"] / b["fit"], 3) for a, b in zip(with_, without)],
    }
    convviz.on_train_end()
    forget(model)
    return row


def measured_row(name: str, measure, ctx, **on_error) -> dict:
    """`measure()`'s row of one model, quietly, with the cores this process and the others
    used meanwhile (`cores`, `others_cores`) and its seconds. A model that fails gives a
    row with its error (and `on_error`'s fields), and the other models still run."""

    def metered():
        meter = timing.CpuMeter()
        row = measure()
        row["cores"] = meter.stop()
        row["others_cores"] = row["cores"].get("others_cores")
        return row

    ctx["log"](f"  {name} ...")
    start = time.perf_counter()
    try:
        row = quietly(metered)
    except Exception as error:  # noqa: BLE001 - one model failing leaves the others' rows
        import traceback

        traceback.print_exc()
        row = {"model": name, **on_error, "error": f"{type(error).__name__}: {error}"}
    row["seconds"] = round(time.perf_counter() - start, 1)
    gc.collect()  # the model's graphs before the next model's
    return row


def _row(name: str, spec: dict, ctx) -> dict:
    return measured_row(name, lambda: _measure(name, spec, ctx), ctx)


COLUMNS = [
    ("model", "model"),
    ("input", "input"),
    ("params", "params"),
    ("off", "children off"),
    ("pictures", "pictures / snapshot"),
    ("scalars", "scalars / snapshot"),
    ("pass_ms", "pass ms"),
    ("floor_ms", "fwd+bwd ms"),
    ("pass_vs_floor", "pass / fwd+bwd"),
    ("no_occlusion_vs_floor", "without occlusion / fwd+bwd"),
    ("first_held_s", "first held s"),
    ("held_s", "later held s"),
    ("held_vs_pass", "held / pass"),
    ("epoch_s", "epoch s"),
    ("held_vs_epoch", "held / epoch"),
    ("fit_without_s", "fit s, none"),
    ("fit_with_s", "fit s, ConvViz"),
    ("fit_ratio", "fit ratio"),
    ("extra_vs_epoch", "extra / epoch"),
    ("others_cores", "others' cores"),
]


def run(cfg, ctx):
    spec = cfg["zoo"]
    rows = [_row(name, spec, ctx) for name in spec["models"]]
    shown = [
        {**{k: "-" if v is None else v for k, v in r.items()}, "off": ", ".join(r["off"]) or "-"}
        for r in rows
        if "error" not in r
    ]
    text = table(shown, COLUMNS)
    for row in rows:
        if "error" in row:
            text += f"\n\n{row['model']} FAILED: {row['error']}"
    notes = [
        f"Each model with ConvViz(log_dir, probe=(x[:{PROBE}], y[:{PROBE}])), its defaults "
        "(feature maps, filters, Grad-CAM, occlusion, health, alerts; a child the model's "
        f"kind cannot serve switches itself off), fitted on {spec['n_train']} random samples "
        f"(batch {BATCH}, {spec['epochs']} epochs) of the builder's shapes and label kinds. "
        "tests/zoo.py's models as the tests build them; keras.applications models with "
        "weights=None, 64x64, 10 classes, softmax, Adam.",
        "pictures / scalars = image summaries (PNGs) and scalars written at the last "
        "snapshot, every run counted (the alerts' and the health table's text not).",
        "pass = the shared compiled pass of the last fit's snapshots (occlusion included "
        "where it is on), after its first call; fwd+bwd = one compiled forward and backward "
        "pass to the input on the same probe (the gradient of a fixed random weighting of "
        f"every output); interleaved, {spec['pass_reps']} repetitions, the median of the "
        "per-repetition ratios.",
        "held = ConvViz.on_epoch_end on the training thread, between two marker callbacks "
        "(first = the first snapshot of a fit, which traces the pass; later = the median of "
        "the third snapshot on, as the second may wait for the first one's drawing); epoch = "
        "an epoch of the fit without ConvViz. Drawing and writing run on the writer thread "
        "meanwhile. extra / epoch = (fit with - fit without) / epochs / epoch: what a "
        "snapshot costs the fit in all (tracing, held, and the writer thread's CPU taken "
        "from training), in epochs.",
        f"fit ratio = fit with ConvViz / without on the same model, {spec['reps']} "
        "repetitions in alternating order after a warm-up fit of each, the median of the "
        "per-repetition ratios; each ConvViz fit starts from a forgotten core, so its first "
        "snapshot traces the pass again; Keras's train step is traced once per model, "
        "by the warm-up.",
    ]
    targets = []
    for row in rows:
        if "error" in row:
            targets.append(target(f"zoo {row['model']} runs", row["error"], "runs", False))
            continue
        targets.append(
            target(
                f"zoo {row['model']}: fit with ConvViz / without", row["fit_ratio"], "report", None
            )  # fmt: skip
        )
        targets.append(
            target(
                f"zoo {row['model']}: later snapshot held / epoch",
                row["held_vs_epoch"],
                "report",
                None,
            )  # fmt: skip
        )
    return {"rows": rows, "table": text, "notes": notes, "targets": targets}
