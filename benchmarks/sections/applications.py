"""Section 11b of BENCHMARKS.md (`--only applications`): `ConvViz`'s defaults on
keras.applications models (issue 24).

Each model of the issue (`weights=None`, 64 px, InceptionV3 at its minimum of 75 px, 5
classes) trained on learnable data (`keras_convviz.datasets.make_shapes`, scaled as each
application expects) with `ConvViz(log_dir, probe=(x[:4], y[:4]))` and nothing else:
which layers the defaults chose, the cards a snapshot writes, the alerts raised on this
healthy short training, and the three cost ratios of the issue's targets, each in wall time
and in this process's CPU time (the machine is shared). `--label after` names the rows, so
a rerun after a change prints rows to paste beside the "before" ones.
"""

from __future__ import annotations

import contextlib
import gc
import subprocess
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf
import timing
from conftest import forget

import keras_convviz as kcv
from keras_convviz._tags import parse_picture_tag
from keras_convviz.datasets import make_shapes
from keras_convviz.exports.events import find_runs, read_run

from .common import table, target, versions
from .training import EpochClock
from .zoo import _backward_floor, measured_row

PROBE = 4
CLASSES = 5  # as the issue; make_shapes draws 4 of them, the fifth is never a label
BATCH = 16


def _frozen_mobilenetv2(input_shape, classes):
    """A transfer-learning model: a frozen MobileNetV2 base inside an outer model."""
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=input_shape)
    base.trainable = False
    inputs = keras.Input(input_shape)
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="frozen_mobilenetv2")


apps = keras.applications
# name -> (label, image side, builder(input_shape, classes), preprocess_input of [0, 255]).
# The preprocess functions are each application's own: [-1, 1] for MobileNet, ResNetV2,
# InceptionV3 and MobileNetV2; the identity for the models that rescale inside
# (MobileNetV3, EfficientNetV2, ConvNeXt take [0, 255]).
MODELS = {
    "mobilenet": (
        "MobileNet (include_top)",
        64,
        lambda s, c: apps.MobileNet(weights=None, include_top=True, input_shape=s, classes=c),
        apps.mobilenet.preprocess_input,
    ),
    "mobilenetv3small": (
        "MobileNetV3Small",
        64,
        lambda s, c: apps.MobileNetV3Small(weights=None, input_shape=s, classes=c),
        apps.mobilenet_v3.preprocess_input,
    ),
    "efficientnetv2b0": (
        "EfficientNetV2B0",
        64,
        lambda s, c: apps.EfficientNetV2B0(weights=None, input_shape=s, classes=c),
        apps.efficientnet_v2.preprocess_input,
    ),
    "resnet50v2": (
        "ResNet50V2",
        64,
        lambda s, c: apps.ResNet50V2(weights=None, input_shape=s, classes=c),
        apps.resnet_v2.preprocess_input,
    ),
    "inceptionv3": (
        "InceptionV3",
        75,
        lambda s, c: apps.InceptionV3(weights=None, input_shape=s, classes=c),
        apps.inception_v3.preprocess_input,
    ),
    "convnexttiny": (
        "ConvNeXtTiny",
        64,
        lambda s, c: apps.ConvNeXtTiny(weights=None, input_shape=s, classes=c),
        apps.convnext.preprocess_input,
    ),
    "frozen_mobilenetv2": (
        "MobileNetV2 base, frozen",
        64,
        _frozen_mobilenetv2,
        apps.mobilenet_v2.preprocess_input,
    ),
}


class CpuClock(EpochClock):
    """`EpochClock` that also reads this process's CPU time (every thread) at each mark."""

    def __init__(self):
        super().__init__()
        self.begin_cpu, self.end_cpu = [], []

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.begin_cpu.append(time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.end_cpu.append(time.process_time())


def _build(name: str, seed: int, n_train: int):
    label, size, builder, preprocess = MODELS[name]
    keras.utils.set_random_seed(seed)
    model = builder((size, size, 3), CLASSES)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    data = make_shapes(n_train, image_size=size, seed=seed)
    x = np.asarray(preprocess(data.images * 255.0), dtype=np.float32)
    return model, x, data.labels


def _fit(model, x, y, epochs: int, log_dir: str | None, **convviz_args) -> dict:
    """One fit, timed per epoch and per snapshot (wall and CPU); with `log_dir`, `ConvViz`
    between two clocks, so `snapshots` is what its `on_epoch_end` held training."""
    clock, mark = CpuClock(), CpuClock()
    callbacks = [clock]
    convviz = None
    if log_dir is not None:
        # A new core and shared pass, so the fit's first snapshot traces as a first fit does.
        forget(model)
        convviz = kcv.ConvViz(log_dir, probe=(x[:PROBE], y[:PROBE]), **convviz_args)
        callbacks += [convviz, mark]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            x, y, epochs=epochs, batch_size=BATCH, verbose=0, shuffle=True, callbacks=callbacks
        )
    return {
        "convviz": convviz,
        "log_dir": log_dir,
        "warnings": [str(w.message) for w in caught],
        "loss": [round(v, 3) for v in history.history["loss"]],
        "accuracy": [round(v, 3) for v in history.history["accuracy"]],
        "epochs": [e - b for b, e in zip(clock.begin, clock.end)],
        # The same without the wait before the first step (tf.data's teardown, 12c).
        "epochs_steps": [e - f for f, e in zip(clock.first_step, clock.end)],
        "epochs_cpu": [e - b for b, e in zip(clock.begin_cpu, clock.end_cpu)],
        "snapshots": [m - e for e, m in zip(clock.end, mark.end)],
        "snapshots_cpu": [m - e for e, m in zip(clock.end_cpu, mark.end_cpu)],
    }


def _layer(model, path: str):
    """The layer at a nested path (`base/conv1`), or `None`."""
    layer = model
    try:
        for part in path.split("/"):
            layer = layer.get_layer(part)
    except (ValueError, AttributeError):
        return None
    return layer


def _describe(model, path: str) -> dict:
    layer = _layer(model, path)
    shape = activation = None
    if layer is not None:
        with contextlib.suppress(AttributeError, ValueError):
            shape = "x".join(str(d) for d in layer.output.shape[1:-1])
        # A conv's own activation; for any other layer (ReLU, Add, ...) its class.
        function = getattr(layer, "activation", None)
        activation = getattr(function, "__name__", None) or type(layer).__name__
    return {"path": path, "name": path.rsplit("/", 1)[-1], "map": shape, "activation": activation}


def _order(model) -> dict[str, int]:
    """Each layer's path (nested models included) -> its position in the model."""
    order = {}

    def walk(layers, prefix):
        for layer in layers:
            path = f"{prefix}{layer.name}"
            order[path] = len(order)
            if isinstance(layer, keras.Model):
                walk(layer.layers, f"{path}/")

    walk(model.layers, "")
    return order


def _cards(log_dir: str) -> dict:
    """Per step: image tags, PNGs and scalar tags written (every run; text cards, the alerts
    and the health table, not counted), and the layers of each picture run."""
    steps: dict[int, dict] = {}
    layers: dict[str, list] = {}
    for run in find_runs(log_dir):
        for series in read_run(log_dir, run):
            if series.kind == "images":
                picture = parse_picture_tag(series.tag)
                if picture is not None and picture.layer is not None:
                    found = layers.setdefault(picture.run, [])
                    if picture.layer not in found:
                        found.append(picture.layer)
            for step in sorted(set(series.steps)):
                into = steps.setdefault(step, {"image_tags": 0, "pngs": 0, "scalar_tags": 0})
                if series.kind == "images":
                    into["image_tags"] += 1
                    into["pngs"] += sum(
                        len(v) for s, v in zip(series.steps, series.values) if s == step
                    )
                else:
                    into["scalar_tags"] += 1
    return {"steps": steps, "layers": layers}


def _floor_times(model, x, reps: int) -> tuple[list, list]:
    """One compiled forward + backward pass on the probe: wall and CPU seconds per call."""
    floor = _backward_floor(model)
    probe = tf.constant(x[:PROBE])
    floor(probe).numpy()
    walls, cpus = [], []
    for _ in range(reps):
        wall, cpu = time.perf_counter(), time.process_time()
        floor(probe).numpy()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def _alerts(fit: dict, model) -> list[dict]:
    monitor = fit["convviz"].monitor
    found = []
    for alert in monitor.alerts if monitor is not None else []:
        where = _describe(model, alert.layer) if alert.layer else {}
        found.append(
            {
                "rule": alert.rule,
                "subject": alert.subject,
                "layer": where.get("name", ""),
                "activation": where.get("activation"),
                "value": round(float(alert.value), 4),
                "epoch": alert.epoch,
            }
        )
    return found


def _healthy_fit(name: str, seed: int, spec: dict, ctx) -> tuple:
    """The healthy short training of the issue: a fresh model, default `ConvViz`."""
    model, x, y = _build(name, seed, spec["n_train"])
    log_dir = tempfile.mkdtemp(dir=ctx["tmp"], prefix=f"apps_{name}_{seed}_")
    fit = _fit(model, x, y, spec["epochs"], log_dir)
    fit["convviz"].settle()
    return model, x, y, fit


def _measure(name: str, spec: dict, ctx) -> dict:
    label, size = MODELS[name][:2]
    started_cpu = time.process_time()
    # A: the healthy training, from scratch with the defaults (alerts, cards, layers; the
    # first snapshot of a fit, and a later one).
    model, x, y, a = _healthy_fit(name, spec["seeds"][0], spec, ctx)
    # B: epochs without ConvViz (Keras's train step already traced by A).
    b = _fit(model, x, y, spec["plain_epochs"], None)
    # C: ConvViz without the perturbation kinds, for later snapshots' held time.
    log_c = tempfile.mkdtemp(dir=ctx["tmp"], prefix=f"apps_{name}_c_")
    c = _fit(model, x, y, spec["later_epochs"], log_c, occlusion=False)
    c["convviz"].settle()
    floor_wall, floor_cpu = _floor_times(model, x, spec["floor_reps"])

    cards = _cards(a["log_dir"])
    order = _order(model)
    maps = sorted(cards["layers"].get("feature_maps", []), key=lambda p: order.get(p, 1e9))
    cams = cards["layers"].get("grad_cam", [])
    later_step = max(cards["steps"]) if cards["steps"] else None
    later = cards["steps"].get(later_step, {})
    first = cards["steps"].get(min(cards["steps"]), {}) if cards["steps"] else {}

    med = timing.median
    epoch, epoch_cpu = med(b["epochs"]), med(b["epochs_cpu"])
    floor_s, floor_cpu_s = med(floor_wall), med(floor_cpu)
    # (a) a later snapshot without occlusion (the second of C's fit on) / fwd+bwd.
    held, held_cpu = med(c["snapshots"][1:]), med(c["snapshots_cpu"][1:])
    # (b) the epoch after a snapshot / an epoch without one: after A's first snapshot (the
    # defaults) and after C's first snapshots (without occlusion).
    after_first, after_first_cpu = a["epochs"][1], a["epochs_cpu"][1]
    after_c, after_c_cpu = med(c["epochs"][1:]), med(c["epochs_cpu"][1:])
    # (b) without the tf.data wait before each epoch's first step, which comes in plain
    # fits as often (section 12c): where a median of 2-3 short epochs lands otherwise
    # depends on that thread's timer.
    epoch_steps = med(b["epochs_steps"])
    after_first_steps, after_c_steps = a["epochs_steps"][1], med(c["epochs_steps"][1:])
    # (c) the first snapshot against a later one, both A's (the defaults); the model's own
    # first-step tracing = A's first epoch (Keras traces its train step) - a plain epoch.
    first_s, first_cpu = a["snapshots"][0], a["snapshots_cpu"][0]
    later_s, later_cpu = a["snapshots"][-1], a["snapshots_cpu"][-1]
    # (c) like for like: C's first snapshot (its pass traced anew) against its later ones,
    # the same kinds at each; A's first also runs the costly kinds, its later ones not
    # (the budget), so A's ratio also holds their first run.
    same_first_s, same_first_cpu = c["snapshots"][0], c["snapshots_cpu"][0]
    tracing_s = max(0.0, a["epochs"][0] - epoch)
    tracing_cpu = max(0.0, a["epochs_cpu"][0] - epoch_cpu)

    row = {
        "model": name,
        "what": label,
        "input": f"{size}x{size}x3",
        "params": model.count_params(),
        "grad_cam": [_describe(model, p) for p in cams],
        "feature_maps": [_describe(model, p) for p in maps],
        "image_tags": later.get("image_tags"),
        "pngs": later.get("pngs"),
        "scalar_tags": later.get("scalar_tags"),
        "first_image_tags": first.get("image_tags"),
        "first_scalar_tags": first.get("scalar_tags"),
        "runs": find_runs(a["log_dir"]),
        "off": [type(ch).__name__ for ch in a["convviz"].callbacks if ch.not_served],
        "warnings": a["warnings"],
        "alerts": {spec["seeds"][0]: _alerts(a, model)},
        "loss": {spec["seeds"][0]: a["loss"]},
        "accuracy": {spec["seeds"][0]: a["accuracy"]},
        "floor_s": round(floor_s, 4),
        "floor_cpu_s": round(floor_cpu_s, 4),
        "later_held_no_occlusion_s": round(held, 3),
        "later_held_no_occlusion_cpu_s": round(held_cpu, 3),
        "a_ratio": round(held / floor_s, 2),
        "a_ratio_cpu": round(held_cpu / floor_cpu_s, 2),
        "a_target_s": round(1.5 * floor_s + 0.5, 3),
        "a_met": held <= 1.5 * floor_s + 0.5,
        "epoch_s": round(epoch, 3),
        "epoch_cpu_s": round(epoch_cpu, 3),
        "epoch_after_first_s": round(after_first, 3),
        "epoch_after_later_s": round(after_c, 3),
        "b_ratio_first": round(after_first / epoch, 2),
        "b_ratio_first_cpu": round(after_first_cpu / epoch_cpu, 2),
        "b_ratio_later": round(after_c / epoch, 2),
        "b_ratio_later_cpu": round(after_c_cpu / epoch_cpu, 2),
        "b_met": max(after_first / epoch, after_c / epoch) <= 1.2,
        "b_ratio_first_steps": round(after_first_steps / epoch_steps, 2),
        "b_ratio_later_steps": round(after_c_steps / epoch_steps, 2),
        "b_met_steps": max(after_first_steps, after_c_steps) / epoch_steps <= 1.2,
        "first_held_s": round(first_s, 2),
        "first_held_cpu_s": round(first_cpu, 2),
        "later_held_s": round(later_s, 2),
        "later_held_cpu_s": round(later_cpu, 2),
        "tracing_s": round(tracing_s, 2),
        "tracing_cpu_s": round(tracing_cpu, 2),
        "c_ratio": round(first_s / later_s, 2),
        "c_ratio_cpu": round(first_cpu / later_cpu, 2),
        "c_met": first_s <= 2 * later_s + tracing_s,
        "c_same_first_s": round(same_first_s, 2),
        "c_same_first_cpu_s": round(same_first_cpu, 2),
        "c_same_ratio": round(same_first_s / held, 2),
        "c_same_met": same_first_s <= 2 * held + tracing_s,
        "raw": {
            key: {k: v for k, v in fit.items() if k not in ("convviz", "log_dir", "warnings")}
            for key, fit in (("a", a), ("b", b), ("c", c))
        },
        "floor_raw": {"wall": floor_wall, "cpu": floor_cpu},
    }
    for fit in (a, c):
        fit["convviz"].on_train_end()
    forget(model)
    del model, a, b, c
    gc.collect()
    # False alarms: the same healthy training with the other seeds.
    for seed in spec["seeds"][1:]:
        model, _, _, fit = _healthy_fit(name, seed, spec, ctx)
        row["alerts"][seed] = _alerts(fit, model)
        row["loss"][seed] = fit["loss"]
        row["accuracy"][seed] = fit["accuracy"]
        fit["convviz"].on_train_end()
        forget(model)
        del model, fit
        gc.collect()
    row["cpu_s"] = round(time.process_time() - started_cpu, 1)
    return row


def _row(name: str, spec: dict, ctx) -> dict:
    return measured_row(name, lambda: _measure(name, spec, ctx), ctx, what=MODELS[name][0])


# ---- the rows as BENCHMARKS.md shows them ---------------------------------------------------


def _short(layers: list[dict]) -> str:
    return ", ".join(f"`{d['name']}`" + (f" {d['map']}" if d["map"] else "") for d in layers)


def _alert_text(alerts: list[dict]) -> str:
    if not alerts:
        return "none"
    counts: dict[str, list] = {}
    for alert in alerts:
        where = alert["layer"] or alert["subject"]
        if alert["activation"]:
            where += f" ({alert['activation']})"
        counts.setdefault(alert["rule"], []).append(where)
    return "; ".join(f"{len(v)} {rule}: {', '.join(v)}" for rule, v in counts.items())


def _pair(wall, cpu, digits: str = ".2f") -> str:
    return f"{wall:{digits}} ({cpu:{digits}})"


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


LAYER_COLUMNS = [
    ("what", "model"),
    ("label", "run"),
    ("cam", "Grad-CAM layer (map)"),
    ("maps_n", "feature maps (1x1)"),
    ("maps", "feature-map layers (map)"),
    ("cards", "image / scalar tags per snapshot"),
    ("alerts_text", "alerts, seed 0 (rule: layer (activation))"),
    ("false_alarms", "alerts, other seeds"),
    ("healthy", "loss, epoch 1 -> 2"),
]

COST_COLUMNS = [
    ("what", "model"),
    ("label", "run"),
    ("floor", "fwd+bwd ms"),
    ("held", "(a) later held, no occlusion, s"),
    ("a", "(a) held / fwd+bwd"),
    ("a_met", "(a) <= 1.5x + 0.5 s"),
    ("epoch", "epoch s"),
    ("b_first", "(b) after 1st / plain"),
    ("b_later", "(b) after later / plain"),
    ("b_met", "(b) <= 1.2"),
    ("b_steps", "(b) after 1st / after later / plain, tf.data wait left out"),
    ("b_met_steps", "(b) <= 1.2, wait left out"),
    ("first", "first snapshot s"),
    ("later", "later snapshot s"),
    ("tracing", "train-step tracing s"),
    ("c", "(c) first / later"),
    ("c_met", "(c) <= 2x later + tracing"),
    ("same_first", "(c') first without occlusion s"),
    ("same", "(c') first / later, same kinds"),
    ("same_met", "(c') <= 2x later + tracing"),
    ("others", "others' cores"),
]


def _shown(row: dict, label: str, seeds) -> dict:
    if "error" in row:
        return {"what": row["what"], "label": label, "cam": f"FAILED: {row['error']}"}
    maps = row["feature_maps"]
    ones = sum(d["map"] is not None and set(d["map"].split("x")) == {"1"} for d in maps)
    others = [row["alerts"].get(s, []) for s in seeds[1:]]
    return {
        "what": row["what"],
        "label": label,
        "cam": _short(row["grad_cam"]) or "-",
        "maps_n": f"{len(maps)} ({ones})",
        "maps": _short(maps) or "-",
        "cards": f"{row['image_tags']} / {row['scalar_tags']}",
        "alerts_text": _alert_text(row["alerts"][seeds[0]]),
        "false_alarms": " / ".join(_alert_text(a) for a in others) if others else "-",
        "healthy": f"{row['loss'][seeds[0]][0]:.2f} -> {row['loss'][seeds[0]][-1]:.2f}",
        "floor": _pair(row["floor_s"] * 1e3, row["floor_cpu_s"] * 1e3, ".0f"),
        "held": _pair(row["later_held_no_occlusion_s"], row["later_held_no_occlusion_cpu_s"]),
        "a": _pair(row["a_ratio"], row["a_ratio_cpu"], ".1f"),
        "a_met": _yes(row["a_met"]),
        "epoch": _pair(row["epoch_s"], row["epoch_cpu_s"]),
        "b_first": _pair(row["b_ratio_first"], row["b_ratio_first_cpu"]),
        "b_later": _pair(row["b_ratio_later"], row["b_ratio_later_cpu"]),
        "b_met": _yes(row["b_met"]),
        "b_steps": f"{row['b_ratio_first_steps']:.2f} / {row['b_ratio_later_steps']:.2f}",
        "b_met_steps": _yes(row["b_met_steps"]),
        "first": _pair(row["first_held_s"], row["first_held_cpu_s"], ".1f"),
        "later": _pair(row["later_held_s"], row["later_held_cpu_s"], ".1f"),
        "tracing": _pair(row["tracing_s"], row["tracing_cpu_s"], ".1f"),
        "c": _pair(row["c_ratio"], row["c_ratio_cpu"]),
        "c_met": _yes(row["c_met"]),
        "same_first": _pair(row["c_same_first_s"], row["c_same_first_cpu_s"], ".1f"),
        "same": f"{row['c_same_ratio']:.2f}",
        "same_met": _yes(row["c_same_met"]),
        "others": row.get("others_cores", "-"),
    }


def _lscpu_model() -> str | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return None


def run(cfg, ctx):
    spec = cfg["applications"]
    label = getattr(ctx["args"], "label", None) or f"commit {versions().get('commit')}"
    rows = [_row(name, spec, ctx) for name in spec["models"]]
    shown = [_shown(row, label, spec["seeds"]) for row in rows]
    text = (
        table(shown, LAYER_COLUMNS)
        + "\n\n"
        + table([s for s in shown if "floor" in s], COST_COLUMNS)
    )
    notes = [
        f"Each model with ConvViz(log_dir, probe=(x[:{PROBE}], y[:{PROBE}])) and nothing "
        f"else, trained from scratch on {spec['n_train']} make_shapes images (batch {BATCH}, "
        f"{spec['epochs']} epochs, Adam, {CLASSES} classes of which the data uses 4), scaled "
        "by each application's own preprocess_input from [0, 255] ([-1, 1] for MobileNet, "
        "ResNetV2, InceptionV3, MobileNetV2; [0, 255] for the models that rescale inside).",
        "Layers and cards are read from the event files of that training: the picture tags' "
        "layers of the feature_maps and grad_cam runs (map = the layer's output height x "
        "width), image and scalar tags written at the last snapshot (text cards not counted). "
        "Alerts: ConvViz.monitor.alerts of the same training (rule, layer, the layer's own "
        f"activation); other seeds: the same training with seeds {list(spec['seeds'][1:])}.",
        "Times: wall seconds, and in brackets this process's CPU seconds over the same "
        "stretch (every thread: the writer's drawing included). (a) = held time of a later "
        f"snapshot (median of the 2nd to the {spec['later_epochs']}th) of a fit with "
        "ConvViz(..., occlusion=False) / one compiled forward + backward pass to the input on "
        f"the probe (median of {spec['floor_reps']}). (b) = training time of the epoch after a "
        "snapshot / of an epoch in a fit without ConvViz (median of "
        f"{spec['plain_epochs']}), after the defaults' first snapshot and after the "
        "snapshots of the fit without occlusion (its 2nd and later epochs); the same from "
        "each epoch's first step (leaving out the wait for tf.data's autotuning thread "
        "before it, section 12c). (c) = the "
        "defaults' first / second snapshot of the healthy training; tracing = its first "
        "epoch - a plain epoch (Keras tracing its train step). (c') = the same with the "
        "snapshots of the fit without occlusion: its first (a new pass traced) / its later "
        "ones, the same kinds at each.",
    ]
    targets = []
    for row in rows:
        if "error" in row:
            targets.append(target(f"applications {row['model']} runs", row["error"], "runs", False))
            continue
        alerts = sum(len(v) for v in row["alerts"].values())
        targets += [
            target(f"applications {row['model']}: alerts (all seeds)", alerts, "0", alerts == 0),
            target(
                f"applications {row['model']}: (a) later held s, no occlusion",
                row["later_held_no_occlusion_s"],
                f"<= {row['a_target_s']}",
                row["a_met"],
            ),
            target(
                f"applications {row['model']}: (b) epoch after snapshot / plain",
                max(row["b_ratio_first"], row["b_ratio_later"]),
                "<= 1.2",
                row["b_met"],
            ),
            target(
                f"applications {row['model']}: (b) the same, tf.data wait left out",
                max(row["b_ratio_first_steps"], row["b_ratio_later_steps"]),
                "<= 1.2",
                row["b_met_steps"],
            ),
            target(
                f"applications {row['model']}: (c) first snapshot s",
                row["first_held_s"],
                f"<= {2 * row['later_held_s'] + row['tracing_s']:.2f}",
                row["c_met"],
            ),
            target(
                f"applications {row['model']}: (c') first snapshot s, same kinds as later",
                row["c_same_first_s"],
                f"<= {2 * row['later_held_no_occlusion_s'] + row['tracing_s']:.2f}",
                row["c_same_met"],
            ),
        ]
    return {
        "label": label,
        "lscpu_model_name": _lscpu_model(),
        "rows": rows,
        "table": text,
        "notes": notes,
        "targets": targets,
    }
