"""Alerts: rules over the health numbers that say which layer went wrong, how, since when,
and which picture shows it.

A rule reads one quantity (the last part of a scalar's tag, e.g. `dead_fraction`) of every
subject that writes it (the tag without the quantity and the probe image: e.g.
`feature_maps/conv3`) and fires when its test holds. A `Monitor` watches the scalars the
callbacks of a `ConvViz` write at each snapshot. On a rule's first firing for a subject it
writes, in the run `alerts/`, the alert as JSON under `alerts/<rule>/<subject>` (a string
tensor of the plugin `convviz_alerts`, which the ConvViz tab reads) and a Markdown text
summary under `alerts/<rule>` (TensorBoard's Text tab); it warns once in the training log,
calls the user's `on_alert(alert)` and, when the rule is in `stop_on`, stops training the
way `EarlyStopping` does. At every snapshot it also writes one Markdown table of every
watched layer's numbers, with a mark where a rule fired (`health/layers`). A healthy run
writes nothing under `alerts/`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from keras_convviz import _tags, kinds
from keras_convviz._warn import user_stacklevel
from keras_convviz.summary_io import write_text

ALERTS_RUN = _tags.ALERTS
HEALTH_RUN = _tags.HEALTH
HEALTH_TABLE = _tags.tag(_tags.HEALTH, "layers")
# The names of the rules that watch a training, as a JSON list (`Monitor._announce`).
RULES_TAG = _tags.tag(_tags.HEALTH, "rules")


class ConvVizAlert(UserWarning):
    """The warning an alert gives in the training log (once per rule and layer)."""


def above(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    return value > threshold


def at_most(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    return value <= threshold


def grew(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    return previous is not None and previous > 0 and value >= threshold * previous


def collapsed(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """Nearly every probe image gets one class, while their labels are not one class."""
    labels = now.get("label_majority_fraction")
    return labels is not None and value >= threshold and labels < threshold


def at_least(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    return value >= threshold


def unscaled(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """Raw values (0-255 pixels) into a model with no layer that rescales them."""
    return value > threshold and now.get("input_min", 0.0) >= 0 and not now.get("input_rescaled")


def off_default(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """Not positive, or `threshold` times above (or 10 x `threshold` times below, or at)
    the optimizer's own default learning rate."""
    default = now.get("default_learning_rate")
    if value <= 0:
        return True
    return default is not None and not default / (10 * threshold) < value < default * threshold


def beyond(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """A label at or beyond the output's number of classes."""
    classes = now.get("output_classes")
    return classes is not None and value >= classes


def exploded(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """The loss grew `threshold` times above the smallest it had been."""
    smallest = now.get("smallest_loss")
    return smallest is not None and smallest > 0 and value >= threshold * smallest


def stuck(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """Less progress than `threshold` over the window while the loss is still far from
    fitting (above half of a classifier's chance level)."""
    loss, chance = now.get("loss"), now.get("chance_loss")
    return value <= threshold and chance is not None and loss is not None and loss > chance / 2


def diverging(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """The validation loss `threshold` times its best or more while the training loss still
    falls."""
    return value >= threshold and bool(now.get("loss_fell"))


def at_chance(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """The loss within `threshold` (relative) of a classifier's chance level, log K."""
    chance = now.get("chance_loss")
    return chance is not None and abs(value - chance) <= threshold * chance


# `evidence_off_region` judges only a model that is right on the probe: a model still
# guessing has no reasons to judge.
RIGHT_ON_PROBE = 0.8
# What a map's `in_region` is compared with: a uniform map's score, the region's area
# share, written under the map's tag in this run (`Monitor.observe` reads it beside the map).
IN_REGION_FLOOR = f"{kinds.FLOOR_UNIFORM.run}:{kinds.IN_REGION}"


def off_region(value: float, previous: float | None, threshold: float, now: dict) -> bool:
    """At most `threshold` above the uniform floor, on a model right on `RIGHT_ON_PROBE` of
    the probe or more."""
    floor, accuracy = now.get(IN_REGION_FLOOR), now.get("probe_accuracy")
    if floor is None or accuracy is None or accuracy < RIGHT_ON_PROBE:
        return False
    return value <= floor + threshold


@dataclass(frozen=True)
class Cause:
    """A reading of a rule's firing that the evidence around it supports.

    Attributes:
        when: `when(context) -> dict or None`: the values to fill into `meaning` and
            `advice` when this cause fits the context (`Monitor.context`: the alerts fired
            so far by rule, the layer, the training's latest loss and chance level, whether
            the model has batch normalisation), else `None`. Its `"refers"` value, if
            any, lists the alerts it names as the root (`Alert`s, or `reference` keys of
            alerts still waiting for their patience): `Alert.refers_to`.
        meaning: what it means then, with `{name}`s from `when`'s values.
        advice: what to try then.
    """

    when: Callable[[dict], dict | None]
    meaning: str
    advice: str


def _fired(context: dict, *rules: str, other_layer: bool = False) -> list:
    return [
        alert
        for rule in rules
        for alert in context["fired"].get(rule, [])
        if not other_layer or alert.layer != context["layer"]
    ]


def _naming(alerts: list, what: str) -> dict | None:
    """`{what: "`a`, `b`", "refers": alerts}` of the alerts' rules (or layers), or None when
    there are none."""
    if not alerts:
        return None
    names = dict.fromkeys(getattr(a, "layer" if what == "layers" else "rule") for a in alerts)
    return {what: ", ".join(f"`{name}`" for name in names), "refers": alerts}


_BROKEN_SET_UP = (
    "nothing_trainable",
    "softmax_single_unit",
    "unbounded_probabilities",
    "softmax_regression_loss",
    "labels_out_of_range",
    "single_class_labels",
)
_DIVERGED = ("loss_exploded", "large_updates", "non_finite")


def _set_up_broken(context: dict) -> dict | None:
    return _naming(_fired(context, *_BROKEN_SET_UP), "alerts")


def _bad_rate(context: dict) -> dict | None:
    """The `learning_rate` alert fired: how the rate is off, against the optimizer's
    default."""
    refers = _fired(context, "learning_rate")
    if not refers:
        return None
    rate, default = context.get("learning_rate"), context.get("default_learning_rate")
    if rate is None or default is None:
        how = "far off the usual range"
    elif rate <= 0:
        how = "not positive (a negative rate climbs the loss)"
    else:
        how = "far too large" if rate > default else "far too small"
    return {"how": how, "refers": refers}


def _diverged(context: dict) -> dict | None:
    return _naming(_fired(context, *_DIVERGED), "alerts")


def _batch_norm_lag(context: dict) -> dict | None:
    """A batch-normalised model whose training loss is well below the probe's (in
    inference mode) or below half the chance level: it predicts well in training mode; the
    probe runs in inference mode, on moving statistics that lag behind."""
    loss, chance = context.get("training_loss"), context.get("chance_loss")
    probe_loss = context["now"].get("loss")
    if not (context.get("batch_norm") and loss is not None):
        return None
    low = (chance and loss < 0.5 * chance) or (probe_loss and loss < 0.75 * probe_loss)
    if not low:
        return None
    against = f"{probe_loss:.3g} on the probe" if probe_loss else f"chance {chance:.3g}"
    return {"loss": f"{loss:.3g}", "against": against}


# Above this share of their initial values (mean 0, variance 1) the moving statistics do
# not yet describe the layer's inputs: MobileNetV2's momentum of 0.999 keeps 89 % after the
# 120 steps of 6 short epochs, a momentum of 0.9 keeps 12 % after 20 steps.
_STALE_STATISTICS = 0.25


def _stale_statistics(context: dict) -> dict | None:
    """Moving statistics of BatchNormalization that still hold much of their initial
    values (`momentum ** steps`): in inference mode they do not normalise yet, whatever the
    training loss says."""
    memory = context.get("batch_norm_memory")
    if not memory or memory["share"] < _STALE_STATISTICS:
        return None
    return {
        "share": f"{memory['share']:.0%}",
        "momentum": f"{memory['momentum']:g}",
        "steps": memory["steps"],
    }


_STALE_ADVICE = (
    "judge the model in inference mode (`val_accuracy`, the probe) only after more steps, "
    "or lower the BatchNormalization `momentum` (e.g. 0.9; keras.applications' MobileNetV2 "
    "and MobileNetV3 use 0.999)"
)


def _never_learnt(context: dict) -> dict | None:
    """The training loss still at chance level: nothing was learnt from the inputs."""
    loss, chance = context.get("training_loss"), context.get("chance_loss")
    if loss is None or not chance or loss < 0.9 * chance:
        return None
    return {
        "loss": f"{loss:.3g}",
        "chance": f"{chance:.3g}",
        "refers": _fired(context, "loss_at_chance"),
    }


def _dead_here(context: dict) -> dict | None:
    here = [a for a in _fired(context, "dead_channels") if a.layer == context["layer"]]
    return _naming(here, "layers")


def _dead_anywhere(context: dict) -> dict | None:
    return _naming(_fired(context, "dead_channels"), "layers")


def _dead_elsewhere(context: dict) -> dict | None:
    return _naming(_fired(context, "dead_channels", other_layer=True), "layers")


def _off_region_numbers(context: dict) -> dict | None:
    """The map, its share on the objects, the floor and the probe accuracy, in words."""
    now = context["now"]
    if IN_REGION_FLOOR not in now or "probe_accuracy" not in now:
        return None
    run = context.get("subject", "").split("/")[0]
    kind = kinds.get(run)
    return {
        "map": kind.label if kind is not None else run,
        "share": f"{now[kinds.IN_REGION]:.0%}",
        "floor": f"{now[IN_REGION_FLOOR]:.0%}",
        "accuracy": f"{now['probe_accuracy']:.0%}",
        "tag": f"{context.get('subject', '')}/{kinds.IN_REGION}",
    }


def _all_dead(context: dict) -> dict | None:
    """A layer whose every unit is silent on every probe image now: all the gradient that
    passes it is 0 (a partly dead layer still passes some)."""
    subjects = context.get("all_dead", [])
    if not subjects:
        return None
    layers = dict.fromkeys(subject.split("/", 1)[-1] for subject in subjects)
    return {
        "layers": ", ".join(f"`{layer}`" for layer in layers),
        "refers": [reference("dead_channels", subject) for subject in subjects],
    }


def _cut_off(context: dict) -> dict | None:
    """The `no_gradient` alert fired for this layer: its reading and advice."""
    cut = [a for a in _fired(context, "no_gradient") if a.layer == context["layer"]]
    return {"why": cut[0].meaning, "advice": cut[0].advice, "refers": cut} if cut else None


# Bounded activations after a layer from which its gradient vanishes: each sigmoid scales
# it by 1/4 at most, so four of them by 1/256 or less (Glorot and Bengio, 2010).
SATURATING_STACK = 4


def _saturating_stack(context: dict) -> dict | None:
    count = context.get("bounded_after", 0)
    return {"count": count} if count >= SATURATING_STACK else None


@dataclass(frozen=True)
class Rule:
    """A test of one quantity.

    Attributes:
        name: the rule's name, also its tag `alerts/<name>`.
        title: what went wrong, in a few words.
        quantity: the scalar it reads (the last part of the tag; the largest over the
            probe images where it is per image).
        test: `test(value, previous value or None, threshold, every quantity of the
            subject now) -> bool`.
        condition: the test in words, `{t}` standing for the threshold.
        threshold: the threshold (an argument of `ConvViz(alerts={name: threshold})`).
        meaning: what it usually means.
        advice: what to try.
        runs: the runs whose scalars it reads (empty: any).
        trainable_only: fires only on layers meant to train.
        patience: the snapshots in a row the test must hold before the rule fires (the
            alert then says since when): a number, or `patience(context) -> int` where it
            depends on the layer (`Monitor.context`).
        causes: readings that the evidence around the firing may support, first fitting
            first (`Cause`); `meaning` and `advice` are the reading when none fits.
    """

    name: str
    title: str
    quantity: str
    test: Callable[[float, float | None, float, dict], bool]
    condition: str
    threshold: float
    meaning: str
    advice: str
    runs: tuple[str, ...] = ()
    trainable_only: bool = False
    patience: int | Callable[[dict], int] = 1
    causes: tuple[Cause, ...] = ()

    def describe(self) -> str:
        return self.condition.format(t=f"{self.threshold:g}")

    def patience_in(self, context: dict) -> int:
        return self.patience(context) if callable(self.patience) else self.patience

    def explain(self, context: dict) -> tuple[str, str, tuple[str, ...]]:
        """`(meaning, advice, refers_to)`: of the first cause that fits the context (and
        the `reference`s of the alerts it names as the root), else the rule's."""
        for cause in self.causes:
            values = cause.when(context)
            if values is not None:
                refers = tuple(
                    dict.fromkeys(
                        r if isinstance(r, str) else reference(r.rule, r.subject)
                        for r in values.get("refers", ())
                    )
                )
                return cause.meaning.format(**values), cause.advice.format(**values), refers
        return self.meaning, self.advice, ()


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        # `dead_fraction` is written only for ReLU outputs (`health.activation_health`):
        # a linear conv's channel below 0 still passes a gradient and is no dead unit.
        Rule(
            "dead_channels",
            "Most channels (units) are dead",
            "dead_fraction",
            above,
            "> {t}",
            0.5,
            "these channels output 0 for every probe image: their ReLUs stopped firing, "
            "often after a too large learning rate or a large negative bias, and they no "
            "longer learn",
            "lower the learning rate; use LeakyReLU/GELU or batch normalisation before the "
            "activation; check the initialisation",
            # Conv channels in the feature maps; a dense layer's units in the health run.
            runs=(kinds.FEATURE_MAPS.run, kinds.HEALTH.run),
            # A ReLU after BatchNormalization is judged in inference mode, on moving
            # statistics that lag behind the weights for the first epochs (most of all with
            # keras.applications' momentum of 0.99-0.999): there a channel silent on the
            # probe is dead only when it stays so.
            # A dense layer's unit is judged on one value per probe image (a conv channel
            # on every position of each): one silent on a few images may be quiet, not
            # dead; a dead one stays so (its weights get no gradient), so it must stay so
            # for two snapshots.
            patience=lambda context: (
                3 if context["after_batch_norm"] else 2 if context["run"] == HEALTH_RUN else 1
            ),
            causes=(
                Cause(
                    _batch_norm_lag,
                    "these ReLUs follow BatchNormalization and are silent on the probe in "
                    "inference mode while the training loss is lower ({loss}, against "
                    "{against}): the moving statistics still lag behind the weights",
                    "this usually passes within a few epochs; with few steps per epoch, "
                    "lower the BatchNormalization `momentum` (e.g. 0.9)",
                ),
                Cause(
                    _stale_statistics,
                    "these ReLUs follow BatchNormalization whose moving statistics still "
                    "hold {share} of their initial values (momentum {momentum} after {steps} "
                    "steps): in inference mode, where the probe runs, they do not normalise "
                    "yet, so these channels may be silent here and alive in training",
                    _STALE_ADVICE,
                ),
            ),
        ),
        Rule(
            "non_finite",
            "NaN or Inf values",
            "non_finite",
            above,
            "> {t}",
            0.0,
            "the model diverged or a layer overflowed (mixed precision without loss scaling, "
            "a log or division of 0, exploding gradients)",
            "lower the learning rate; clip gradients (`clipnorm`); check the data for NaN; "
            "with mixed precision keep the loss scaling",
        ),
        Rule(
            "exploding_activations",
            "Activations grow by orders of magnitude",
            "max_activation",
            grew,
            "grew {t}x or more since the previous snapshot",
            100.0,
            "the layer's outputs are blowing up between snapshots: training is becoming "
            "unstable and will soon overflow",
            "lower the learning rate; add normalisation; clip gradients",
            runs=(kinds.FEATURE_MAPS.run, kinds.HEALTH.run),
        ),
        Rule(
            "saturated_activations",
            "Bounded activations are saturated",
            "saturated_fraction",
            above,
            "> {t}",
            0.5,
            "most sigmoid/tanh outputs sit at their bounds, where their gradient is about "
            "0: the layer learns slowly or not at all",
            "normalise the inputs of the layer (batch normalisation); use ReLU-like "
            "activations; lower the initial weights",
            runs=(kinds.FEATURE_MAPS.run, kinds.HEALTH.run),
        ),
        Rule(
            "no_gradient",
            "No gradient reaches a trainable layer",
            "no_gradient",
            above,
            "the loss's gradient with respect to the kernel is exactly 0 on the probe",
            0.0,
            "the layer is cut off from the loss: a `stop_gradient` or a branch whose output "
            "is not used, or every path back from the loss passes dead ReLUs; it does not "
            "learn at all",
            "look for a `stop_gradient` or an unused output after this layer; look at the "
            "layers after it for dead units",
            runs=(kinds.HEALTH.run,),
            trainable_only=True,
            causes=(
                Cause(
                    _all_dead,
                    "every unit of layer {layers} is silent on every probe image (dead ReLUs, "
                    "`dead_channels`): no gradient flows through it",
                    "fix the dead layer {layers} first (its alert says how)",
                ),
            ),
        ),
        Rule(
            "large_updates",
            "Weight updates far too large",
            "relative_update",
            above,
            "> {t}",
            1.0,
            "the kernel changed by more than its own size since the previous snapshot: the "
            "learning rate is far too high for this layer",
            "lower the learning rate (or use warm-up); clip gradients",
            # Conv kernels in the filter weights; a dense layer's in the health run.
            runs=(kinds.FILTER_WEIGHTS.run, kinds.HEALTH.run),
            trainable_only=True,
        ),
        Rule(
            "stalled_updates",
            "A trainable layer does not move",
            "relative_update",
            at_most,
            "<= {t}",
            # Below what float32 rounding leaves of a real step (a weight of 1 moves by at
            # least 6e-8), far below a healthy epoch's 1e-3..1e-1 or fine-tuning's 1e-5.
            1e-7,
            "the kernel did not change since the previous snapshot (by less than float32 "
            "rounding) although the layer is trainable: its gradient is zero or vanishing "
            "(dead layer, disconnected) or the learning rate is (nearly) 0",
            "check the learning rate and that the layer is used; look at the feature maps "
            "of this layer and the ones after it for dead channels",
            runs=(kinds.FILTER_WEIGHTS.run, kinds.HEALTH.run),
            trainable_only=True,
            causes=(
                Cause(
                    _bad_rate,
                    "the learning rate is {how} (alert `learning_rate`)",
                    "set the learning rate near the optimizer's default",
                ),
                Cause(
                    _dead_here,
                    "most of this layer's own units are dead (alert `dead_channels`): no "
                    "gradient reaches their weights",
                    "fix the dead units first (the `dead_channels` alert says how)",
                ),
                Cause(
                    _cut_off,
                    "no gradient reaches this layer at all (alert `no_gradient`): {why}",
                    "{advice}",
                ),
                Cause(
                    _dead_elsewhere,
                    "the channels of layer {layers} are dead: no gradient flows back through "
                    "them, so the layers that feed it stop too",
                    "fix the dead layer {layers} first (its alert says how)",
                ),
                Cause(
                    _saturating_stack,
                    "the loss's gradient passes {count} sigmoid/tanh activations on its way "
                    "back to this layer's kernel (its own included; a sigmoid's derivative is "
                    "1/4 at most) and vanishes before it arrives: vanishing gradients "
                    "(`vanishing_gradients` measures them with `health={{'gradients': True}}`)",
                    "use ReLU-like activations in the hidden layers (keep the sigmoid for the "
                    "output), with batch normalisation; or add skip connections",
                ),
            ),
        ),
        Rule(
            "empty_explanation",
            "The CAM map is empty",
            "max",
            at_most,
            "<= {t} on every probe image",
            0.0,
            "no position of the layer has positive evidence for the target class on any "
            "probe image: the layer carries no class information the head uses, or the "
            "model ignores the image",
            "explain another layer; check the head and the labels; look at the feature maps",
            runs=tuple(kind.run for kind in kinds.of_family("cam")),
            causes=(
                Cause(
                    _dead_here,
                    "most units of this layer are dead (alert `dead_channels`): they output 0 "
                    "on every probe image, so no position has evidence to show",
                    "fix the dead units first (the `dead_channels` alert says how)",
                ),
            ),
        ),
        Rule(
            "evidence_off_region",
            "The evidence lies outside the objects",
            kinds.IN_REGION,
            off_region,
            f"<= the uniform floor (the regions' area share) + {{t}}, 2 snapshots in a row, "
            f"while the probe accuracy is {RIGHT_ON_PROBE:.0%} or more",
            # An absolute margin over the floor (the share a uniform map scores): on the
            # demo's shapes (floor 0.05) a shortcut model's Grad-CAM put 0.02-0.07 on them
            # at every epoch, a clean one's 0.21-0.30 at its first epoch and 0.37-0.41 at
            # its last (BENCHMARKS.md, section 14).
            0.05,
            "the model is right on the probe, but its map puts about as much of its positive "
            "evidence on the objects as a map spread evenly over the image: it decides on "
            "something else, usually a shortcut in the training data (a marker, a watermark, "
            "a border or a background that goes with the class), which the probe shares",
            "look at the maps' hot spots in the ConvViz tab to find the cue; remove or "
            "randomise it in the training data (or put it on every class); augment (crops, "
            "flips, colour jitter); check the model on images without the cue",
            runs=tuple(kind.run for kind in kinds.of_family("cam")),
            patience=2,
            causes=(
                Cause(
                    _off_region_numbers,
                    "the model gets {accuracy} of the probe right, but its {map} map puts "
                    "only {share} of its positive evidence on the objects, no more than a "
                    "map spread evenly over the image ({floor}, the objects' area share: "
                    "`{tag}` in the run `floor_uniform`): it decides on something outside "
                    "the objects, usually a shortcut in the training data (a marker, a "
                    "watermark, a border or a background that goes with the class), which "
                    "the probe shares",
                    "look at the {map} maps' hot spots in the ConvViz tab to find the cue; "
                    "remove or randomise it in the training data (or put it on every class); "
                    "augment (crops, flips, colour jitter); check the model on images "
                    "without the cue",
                ),
            ),
        ),
        Rule(
            "vanishing_gradients",
            "Vanishing gradients",
            "gradient_ratio",
            at_most,
            "<= {t}: the loss gradient reaching this layer's kernel is that fraction of the "
            "largest gradient of a later layer",
            1e-3,
            "the loss barely reaches this layer: it learns orders of magnitude slower than "
            "the layers after it (saturated or dead units between, a too deep plain stack)",
            "use ReLU-like activations and batch normalisation; add skip connections; check "
            "the later layers for dead or saturated units",
            runs=(kinds.HEALTH.run,),
        ),
        # The set-up, read once at train begin (`checks.setup_numbers`).
        Rule(
            "nothing_trainable",
            "Nothing in the model can train",
            "trainable_weights",
            at_most,
            "{t} trainable weights",
            0,
            "the model (or every layer) has `trainable=False`: `fit` runs, but no weight "
            "changes and the loss stays where it starts",
            "set `trainable=True` on the layers to train (with a frozen base, at least on "
            "the new head) and compile again",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "softmax_single_unit",
            "A softmax over one unit",
            "softmax_units",
            at_most,
            "a softmax output with {t} unit",
            1,
            "a softmax over a single unit outputs 1 whatever its input: its gradient is 0 and "
            "the model cannot learn",
            "use `Dense(1, activation='sigmoid')` with `binary_crossentropy`, or "
            "`Dense(classes, activation='softmax')` with `sparse_categorical_crossentropy`",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "unbounded_probabilities",
            "The loss expects probabilities the output does not give",
            "unbounded_probabilities",
            above,
            "a cross-entropy with `from_logits=False` on an output without softmax or sigmoid",
            0,
            "the loss reads the output as probabilities but the output layer gives unbounded "
            "values (linear or ReLU): Keras clips them into (0, 1), so most of the gradient "
            "is lost and the loss can stall or turn NaN",
            "put the softmax (or sigmoid) on the output layer, or compile the loss with "
            "`from_logits=True`",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "softmax_regression_loss",
            "Class probabilities fitted with a regression loss",
            "softmax_regression_loss",
            above,
            "a softmax output compiled with a mean squared or absolute error",
            0,
            "a regression loss on a softmax's probabilities has vanishing gradients once a "
            "class saturates, so the classifier learns slowly or stalls",
            "compile with `sparse_categorical_crossentropy` (class ids) or "
            "`categorical_crossentropy` (one-hot labels)",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "unscaled_inputs",
            "Raw input values into a model without rescaling",
            "input_max",
            unscaled,
            "the probe's values reach more than {t} (none negative) and no layer before "
            "the first conv or dense layer rescales them",
            10.0,
            "the inputs look like raw 0-255 pixels but the model has no `Rescaling` or "
            "`Normalization` layer: the first layers saturate and training is slow or unstable",
            "add `keras.layers.Rescaling(1 / 255)` after the input, or scale the data as the "
            "model expects (keras.applications models: their `preprocess_input`)",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "learning_rate",
            "A learning rate far off the usual range",
            "learning_rate",
            off_default,
            "not positive, or {t}x above (or 10x{t}x below) the optimizer's default",
            100.0,
            "a learning rate that is negative or zero does not descend; one far above the "
            "optimizer's default diverges or collapses the model; one far below it barely "
            "moves the weights",
            "start near the optimizer's default learning rate (Adam 1e-3, SGD 1e-2) and tune "
            "by factors of 3",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "heavy_dropout",
            "Heavy dropout on feature maps",
            "dropout_rate",
            at_least,
            "a dropout rate of {t} or more on a layer's feature maps",
            0.5,
            "dropping half or more of the feature-map values at every step keeps a conv "
            "network from fitting its data (it underfits)",
            "use a rate of 0.1-0.3 after convs (or `SpatialDropout2D`), keep 0.5 for dense layers",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "single_class_labels",
            "Every probe label is one class",
            "label_classes",
            at_most,
            "{t} class among the probe's labels",
            1,
            "the labels hold one class only: a broken label pipeline (labels overwritten, "
            "read from the wrong column, or sorted data cut before other classes start)",
            "check the labels `fit` gets (`np.unique(y, return_counts=True)`); shuffle data "
            "that is sorted by class",
            runs=(_tags.SETUP,),
        ),
        Rule(
            "labels_out_of_range",
            "Labels outside the output's classes",
            "label_max",
            beyond,
            "a probe label at or beyond the output's number of classes",
            0,
            "the output has fewer units than the labels have classes (a softmax over one "
            "unit with 0/1 labels, a class count off by one, one-hot labels read as ids)",
            "give the output one unit per class (`Dense(classes)`), or a sigmoid unit for "
            "two classes with `binary_crossentropy`",
            runs=(_tags.SETUP,),
        ),
        # The fit's own numbers, read at every epoch (`checks.FitNumbers`).
        Rule(
            "loss_exploded",
            "The loss grows by orders of magnitude",
            "loss",
            exploded,
            "the loss is {t}x or more its smallest so far",
            100.0,
            "training diverges: a too large or negative learning rate, exploding gradients, "
            "or a loss on unscaled targets",
            "lower the learning rate (and check its sign); clip gradients (`clipnorm`); "
            "scale the inputs and targets",
            runs=(_tags.FIT,),
        ),
        Rule(
            "loss_at_chance",
            "The loss sits at chance level",
            "loss",
            at_chance,
            "the training loss within {t} of log K (relative), a K-class guess, for 4 epochs",
            0.01,
            "the model learns nothing from its inputs: labels that do not match the inputs "
            "(shuffled separately), a learning rate far too small, dead or saturated layers, "
            "or an output/loss mismatch",
            "check that inputs and labels are paired and that data sorted by class is "
            "shuffled before batching; look at the set-up alerts and at the "
            "layers' alerts; try a larger learning rate",
            runs=(_tags.FIT,),
            patience=4,
            causes=(
                Cause(
                    _dead_anywhere,
                    "most units of layer {layers} are dead (alert `dead_channels`): what the "
                    "layers before them see cannot reach the loss, so the model learns nothing",
                    "fix the dead layer {layers} first (its alert says how)",
                ),
            ),
        ),
        Rule(
            "loss_plateau",
            "The loss stopped falling far from a fit",
            "window_progress",
            stuck,
            "the smallest loss of the last 5 epochs is less than {t} (relative) below the "
            "smallest before them, while above half the chance level",
            0.05,
            "training stalls before the model fits its data: a learning rate too small (or "
            "decayed too early), too much regularisation (dropout, weight decay), a model "
            "too small, or saturated or dead layers",
            "look at the layers' alerts; try a larger learning rate or less regularisation",
            runs=(_tags.FIT,),
        ),
        Rule(
            "loss_oscillation",
            "The loss oscillates",
            "window_rises",
            at_least,
            "the loss rose by more than 5 % in {t} or more of the last 5 epochs",
            2.0,
            "the steps overshoot: a learning rate too large for the loss surface, a batch "
            "too small, or unshuffled data",
            "lower the learning rate (or add a schedule that decays it); use larger batches; "
            "shuffle the data",
            runs=(_tags.FIT,),
        ),
        Rule(
            "overfitting",
            "Training and validation diverge",
            "val_loss_over_best",
            diverging,
            "the validation loss {t}x its best or more while the training loss still falls, "
            "3 epochs in a row",
            1.1,
            "the model fits the training data and no longer generalises: it memorises",
            "stop earlier (`keras.callbacks.EarlyStopping(restore_best_weights=True)`); add "
            "data augmentation, dropout or weight decay; get more data",
            runs=(_tags.FIT,),
            patience=3,
        ),
        Rule(
            "collapsed_model",
            "The model predicts one class for everything",
            "majority_fraction",
            collapsed,
            ">= {t} of the probe images get the same class while their labels differ",
            1.0,
            "the classifier collapsed onto one class: a too large learning rate, dead "
            "features, a broken label pipeline or extreme class imbalance",
            "lower the learning rate; check the labels and the class balance; look at the "
            "feature maps and the alerts of the layers",
            runs=(kinds.HEALTH.run,),
            causes=(
                Cause(
                    _set_up_broken,
                    "the training's set-up is broken (alert {alerts}): the model cannot "
                    "learn the classes, so it settles on one",
                    "fix what {alerts} says first",
                ),
                Cause(
                    _bad_rate,
                    "the learning rate is {how} (alert `learning_rate`), and the classifier "
                    "fell onto one class",
                    "set the learning rate near the optimizer's default (Adam 1e-3, SGD "
                    "1e-2) and tune it by factors of 3",
                ),
                Cause(
                    _diverged,
                    "the training diverged (alert {alerts}) and the classifier fell onto one class",
                    "lower the learning rate; clip gradients (`clipnorm`)",
                ),
                Cause(
                    _batch_norm_lag,
                    "no collapse of the training: its loss is lower ({loss}, against "
                    "{against}), so in training mode the model predicts better; the probe "
                    "runs in inference mode, where the BatchNormalization layers use moving "
                    "statistics that still lag behind the weights",
                    "this usually passes within a few epochs; with few steps per epoch, "
                    "lower the BatchNormalization `momentum` (e.g. 0.9; keras.applications "
                    "models use 0.99-0.999)",
                ),
                Cause(
                    _stale_statistics,
                    "the BatchNormalization layers' moving statistics still hold {share} of "
                    "their initial values (momentum {momentum} after {steps} steps): in "
                    "inference mode, where the probe and the validation run, they do not "
                    "normalise yet, and the model may give one class to every image while "
                    "it learns in training mode",
                    _STALE_ADVICE,
                ),
                Cause(
                    _dead_anywhere,
                    "most units of layer {layers} are dead (alert `dead_channels`): the head "
                    "gets (nearly) the same features for every image and settles on one class",
                    "fix the dead layer {layers} first (its alert says how)",
                ),
                Cause(
                    _never_learnt,
                    "the training loss is still at chance level ({loss}, log K = {chance}): "
                    "the model has learnt nothing from its inputs and guesses one class",
                    "check that each input is paired with its own label and that data "
                    "sorted by class is shuffled before batching (`dataset.shuffle`); check "
                    "that the layers are trainable and the learning rate not far too small",
                ),
            ),
            # An untrained model often starts on one class, and a batch-normalised one may
            # predict one class in inference mode for its first epochs, while its moving
            # statistics catch up: the README quickstart's model did for up to 3 epochs
            # (benchmarks/false_alarms.py) and then reached 0.88-0.91.
            patience=4,
        ),
    )
}

# What a rule's subject is when it is no layer.
_PLACES = {_tags.SETUP: "the training's set-up", _tags.FIT: "the training's loss (`fit`'s logs)"}
# Where the user sees the numbers of the rules that read no snapshot (no tag of ours).
_EVIDENCE = {
    _tags.SETUP: "`model.summary()`, the loss and optimizer given to `compile`, the probe",
    _tags.FIT: "`epoch_loss` in the `train` run of `keras.callbacks.TensorBoard`, or the "
    "`History` that `fit` returns",
}
_IMAGE = re.compile(r"^image_\d+$")
_SEPARATOR = "\n\n---\n\n"


@dataclass(frozen=True)
class Alert:
    """One rule firing for one subject.

    Attributes:
        rule: the rule's name.
        title: what went wrong.
        subject: the run and layer (e.g. `feature_maps/conv3`).
        layer: the layer's path, or `""` when the subject is not a layer.
        quantity: the quantity read.
        value: its value.
        threshold: the rule's threshold.
        condition: the test, in words.
        step: the TensorBoard step it fired at; epoch: that epoch (1-based, as Keras
            prints it); since_epoch: the first epoch of the snapshots in a row on which
            the test held.
        evidence: the tag that shows it.
        meaning: what it usually means.
        advice: what to try.
        refers_to: the alerts its meaning names as the root cause (`reference` keys,
            `"<rule>/<subject>"`), empty when it is a root itself: the diagnosis
            (`keras_convviz.diagnosis`) folds it under them.
    """

    rule: str
    title: str
    subject: str
    layer: str
    quantity: str
    value: float
    threshold: float
    condition: str
    step: int
    epoch: int
    since_epoch: int
    evidence: str
    meaning: str
    advice: str
    refers_to: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """Where it went wrong, in words."""
        if self.layer:
            return f"layer `{self.layer}`"
        return _PLACES.get(self.subject, f"the probe's `{self.subject}`")

    def markdown(self) -> str:
        where = self.where
        return (
            f"**{self.title}** in {where} since epoch {self.since_epoch} (seen at epoch "
            f"{self.epoch}, step {self.step}).\n\n"
            f"- `{self.quantity}` = {self.value:.4g} ({self.condition})\n"
            f"- usually means: {self.meaning}\n"
            f"- try: {self.advice}\n"
            f"- evidence: {self.evidence if ' ' in self.evidence else f'`{self.evidence}`'}"
        )

    def record(self) -> dict:
        """The alert as JSON-ready data: every attribute, `where` and `text`, its Markdown. A
        non-finite `value` is written as the string `"nan"`, `"inf"` or `"-inf"` (JSON has
        no NaN)."""
        out = dataclasses.asdict(self)
        out["refers_to"] = list(self.refers_to)
        out["where"] = self.where
        for name in ("value", "threshold"):
            if not math.isfinite(out[name]):
                out[name] = str(out[name])
        out["text"] = self.markdown()
        return out


def rules_from(alerts) -> dict[str, Rule]:
    """The rules to watch: `True` (all, default thresholds), `False`, or a dict of
    `{rule name: threshold, or False to switch it off}` over the defaults."""
    if alerts is True:
        return dict(RULES)
    if alerts is False or alerts is None:
        return {}
    if not isinstance(alerts, dict) or set(alerts) - set(RULES):
        unknown = sorted(set(alerts) - set(RULES)) if isinstance(alerts, dict) else None
        raise ValueError(
            "`alerts` must be True, False or a dict of {rule: threshold or False} with rules "
            f"among {sorted(RULES)}. Received: alerts={alerts!r}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    rules = dict(RULES)
    for name, setting in alerts.items():
        if setting is False or setting is None:
            del rules[name]
            continue
        ok = isinstance(setting, (int, float, np.integer, np.floating))
        if not ok or isinstance(setting, bool) or not np.isfinite(setting):
            raise ValueError(
                f"`alerts['{name}']` must be a number (the threshold) or False. "
                f"Received: {setting!r}"
            )
        rules[name] = dataclasses.replace(rules[name], threshold=float(setting))
    return rules


def check_stop_on(stop_on, rules: dict[str, Rule]) -> tuple[str, ...]:
    names = (stop_on,) if isinstance(stop_on, str) else tuple(stop_on or ())
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise ValueError(
            f"`stop_on` must name rules among {sorted(RULES)}. Received: stop_on={stop_on!r}"
        )
    off = [n for n in names if n not in rules]
    if off:
        raise ValueError(f"`stop_on` names rules switched off in `alerts`: {off}")
    return names


def split_tag(tag: str) -> tuple[str, str, str, bool]:
    """`(run, layer, quantity, per_image)` of a scalar tag; a probe image part is dropped."""
    parts = tag.split("/")
    quantity = parts.pop()
    per_image = bool(parts) and _IMAGE.match(parts[-1]) is not None
    if per_image:
        parts.pop()
    return parts[0], "/".join(parts[1:]), quantity, per_image


class Monitor:
    """Watches the scalars of one training's callbacks and raises alerts.

    Args:
        log_dir: where the `alerts/` and `health/` runs are written.
        rules: the rules (`rules_from`).
        on_alert: called with each `Alert` when it first fires, or `None`.
        stop_on: rule names that stop training when they fire.
    """

    def __init__(self, log_dir: str, rules: dict[str, Rule], on_alert=None, stop_on=()):
        if on_alert is not None and not callable(on_alert):
            raise TypeError(f"`on_alert` must be callable. Received: on_alert={on_alert!r}")
        self.log_dir = log_dir
        self.rules = rules
        self.on_alert: Callable | None = on_alert
        self.stop_on = stop_on
        self.alerts: list[Alert] = []
        self._fired: dict[tuple[str, str], Alert] = {}
        self._streaks: dict[tuple[str, str], list] = {}  # [first step, its epoch, count]
        self._previous: dict[str, float] = {}
        self._snapshot: dict[str, dict[str, float]] = {}
        self._step: int | None = None
        self._writers: dict = {}
        # The training's latest numbers that the causes read (`note`).
        self._numbers: dict[str, float] = {}
        self._announced = False  # whether the rules that watch are written (`_announce`)

    def _announce(self, step: int) -> None:
        """Write which rules watch this training, once, at its first check (`RULES_TAG`):
        without it, logs of `ConvViz(alerts=False)` read like a healthy training."""
        if self._announced:
            return
        self._announced = True
        record = json.dumps(sorted(self.rules))
        self._write(HEALTH_RUN, RULES_TAG, record, step, _record_metadata(_tags.RULES_PLUGIN))

    def note(self, numbers: dict[str, float]) -> None:
        """Keep the training's latest numbers (its loss, chance level) for the causes."""
        self._numbers.update(numbers)

    def context(self, model, layer: str, now: dict | None = None) -> dict:
        """What a rule's causes read (`Cause.when`): the alerts fired so far by rule, the
        layer, its quantities now, whether the model has batch normalisation, and the
        training's numbers noted (`note`: its loss, chance level, learning rate)."""
        fired: dict[str, list[Alert]] = {}
        for (rule, _), alert in self._fired.items():
            fired.setdefault(rule, []).append(alert)
        all_dead = [
            key[: -len("/dead_fraction")]
            for key, value in self._previous.items()
            if key.endswith("/dead_fraction") and value >= 1.0
        ]
        return {
            **self._numbers,
            "fired": fired,
            "all_dead": all_dead,
            "layer": layer,
            "now": now or {},
            "batch_norm": _batch_norm(model),
            "batch_norm_memory": _batch_norm_memory(model),
            "after_batch_norm": _after_batch_norm(model, layer),
            "bounded_after": _bounded_after(model, layer),
        }

    def observe(self, step: int, epoch: int, scalars, model, table: bool = True) -> list[Alert]:
        """Check the scalars one callback wrote at a snapshot (or numbers read elsewhere,
        `table=False`: not for the health table); returns the new alerts."""
        values: dict[tuple[str, str], dict[str, list[float]]] = {}
        per_image: dict[tuple[str, str], set] = {}
        whole: dict[tuple[str, str], dict[str, float]] = {}  # of the subject, not per image
        # A floor's copy under a map's tag, in the floor's run: read beside the map as
        # `<floor run>:<quantity>`.
        beside: dict[tuple[str, str], dict[str, float]] = {}
        for item in scalars:
            run, layer, quantity, of_image = split_tag(item.tag)
            other = getattr(item, "run", None)
            if other not in (None, run):
                if not of_image:
                    beside.setdefault((run, layer), {})[f"{other}:{quantity}"] = float(item.value)
                continue
            value = float(item.value)
            values.setdefault((run, layer), {}).setdefault(quantity, []).append(value)
            if of_image:
                per_image.setdefault((run, layer), set()).add(quantity)
                continue
            whole.setdefault((run, layer), {})[quantity] = value
            if layer and table:
                self._snapshot.setdefault(layer, {})[f"{run}:{quantity}"] = value
        if table:
            self._step = step
        self._announce(step)
        new = []
        subjects = []
        for (run, layer), quantities in values.items():
            subject = "/".join(p for p in (run, layer) if p)
            # The largest over the probe images, where a quantity is per image only (the
            # probe's own value where it is written too: `in_region`'s mean).
            of_subject = whole.get((run, layer), {})
            now = {q: of_subject.get(q, max(observed)) for q, observed in quantities.items()}
            before = {q: self._previous.get(f"{subject}/{q}") for q in now}
            self._previous.update({f"{subject}/{q}": v for q, v in now.items()})
            now.update(beside.get((run, layer), {}))
            if "probe_accuracy" in self._numbers:  # noted by the map callbacks (`note`)
                now.setdefault("probe_accuracy", self._numbers["probe_accuracy"])
            subjects.append((run, layer, subject, now, before, of_subject))
        # Rule by rule over every subject, in the order of `RULES`: a root cause (dead
        # units) fires before what follows from it on other layers (no gradient, stalled
        # updates), whose causes then name it.
        for rule in self.rules.values():
            for run, layer, subject, now, before, of_subject in subjects:
                if rule.quantity not in now or (rule.runs and run not in rule.runs):
                    continue
                if (rule.name, subject) in self._fired:
                    continue
                if rule.trainable_only and not _trainable(model, layer):
                    continue
                value = now[rule.quantity]
                streak = (rule.name, subject)
                if not rule.test(value, before[rule.quantity], rule.threshold, now):
                    self._streaks.pop(streak, None)
                    continue
                since = self._streaks.setdefault(streak, [step, epoch, 0])
                since[2] += 1
                context = {**self.context(model, layer, now), "subject": subject, "run": run}
                if since[2] < rule.patience_in(context):
                    continue
                meaning, advice, refers_to = rule.explain(context)
                evidence = _EVIDENCE.get(run, f"{subject}/{rule.quantity}")
                if rule.quantity in per_image.get((run, layer), set()) - set(of_subject):
                    evidence = f"{subject}/image_*/{rule.quantity}"
                alert = Alert(
                    rule=rule.name,
                    title=rule.title,
                    subject=subject,
                    layer=layer,
                    quantity=rule.quantity,
                    value=value,
                    threshold=rule.threshold,
                    condition=rule.describe(),
                    step=step,
                    epoch=epoch + 1,
                    since_epoch=since[1] + 1,
                    evidence=evidence,
                    meaning=meaning,
                    advice=advice,
                    refers_to=refers_to,
                )
                self._fired[(rule.name, subject)] = alert
                new.append(alert)
        for alert in new:
            self._raise(alert, model)
        return new

    def _raise(self, alert: Alert, model) -> None:
        self.alerts.append(alert)
        same_step = [a for a in self.alerts if a.rule == alert.rule and a.step == alert.step]
        record = json.dumps(alert.record(), allow_nan=False)
        self._write(ALERTS_RUN, record_tag(alert), record, alert.step, _record_metadata())
        self._write(
            ALERTS_RUN,
            f"alerts/{alert.rule}",
            _SEPARATOR.join(a.markdown() for a in same_step),
            alert.step,
        )
        where = f"layer {alert.layer!r}" if alert.layer else alert.where.replace("`", "")
        evidence = alert.evidence.replace("`", "")
        warnings.warn(
            f"keras_convviz alert at epoch {alert.epoch}: {alert.title.lower()} in {where}: "
            f"{alert.quantity} = {alert.value:.4g} ({alert.condition}). Try: {alert.advice}. "
            f"Evidence: {evidence}.",
            ConvVizAlert,
            stacklevel=user_stacklevel(),
        )
        if self.on_alert is not None:
            self.on_alert(alert)
        if alert.rule in self.stop_on and model is not None:
            model.stop_training = True
            print(f"keras_convviz: training stopped at epoch {alert.epoch}: {alert.title}.")

    def end_snapshot(self) -> None:
        """Write the table of every watched layer's numbers at this snapshot."""
        if self._step is None or not self._snapshot:
            return
        firing = {}
        for alert in self._fired.values():
            firing.setdefault(alert.layer, []).append(alert.rule)
        # One column per layer (a few), one row per quantity (many): it fits a page.
        layers = list(self._snapshot)
        quantities = sorted({q for numbers in self._snapshot.values() for q in numbers})
        lines = [
            "| | " + " | ".join(f"`{layer}`" for layer in layers) + " |",
            "|---|" + "---|" * len(layers),
        ]
        for quantity in quantities:
            cells = [
                f"{self._snapshot[layer][quantity]:.3g}"
                if quantity in self._snapshot[layer]
                else ""
                for layer in layers
            ]
            lines.append(f"| {quantity.replace(':', ' ')} | " + " | ".join(cells) + " |")
        marks = [", ".join(f"**{r}**" for r in firing.get(layer, [])) or "ok" for layer in layers]
        lines.append("| alerts | " + " | ".join(marks) + " |")
        self._write(HEALTH_RUN, HEALTH_TABLE, "\n".join(lines), self._step)
        self._snapshot = {}
        self._step = None

    def _write(self, run: str, tag: str, text: str, step: int, metadata=None) -> None:
        """Writes `text`: as Markdown for the Text tab, or with `metadata` as a string tensor
        of that plugin."""
        write_text(self._writers, self.log_dir, self, run, tag, text, step, metadata)


def _batch_norm(model) -> bool:
    if model is None:
        return False
    from keras_convviz.core.shared import core_for

    return any(
        isinstance(ref.layer, keras.layers.BatchNormalization) for ref in core_for(model).graph.refs
    )


def _batch_norm_memory(model) -> dict | None:
    """`{"share", "momentum", "steps"}` of the trained BatchNormalization layer whose moving
    statistics hold the largest share of their initial values: Keras updates them as
    `momentum * moving + (1 - momentum) * batch` once per step, so `momentum ** steps` is
    left. `None` without such a layer or an optimizer that counts its steps."""
    if not _batch_norm(model):
        return None
    iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
    if iterations is None:
        return None
    from keras_convviz.core.shared import core_for

    # A frozen BatchNormalization runs in inference mode and keeps its statistics.
    momenta = [
        float(ref.layer.momentum)
        for ref in core_for(model).graph.refs
        if isinstance(ref.layer, keras.layers.BatchNormalization) and ref.layer.trainable
    ]
    if not momenta:
        return None
    steps = int(keras.ops.convert_to_numpy(iterations))
    momentum = max(momenta)
    return {"share": momentum**steps, "momentum": momentum, "steps": steps}


def _after_batch_norm(model, layer: str) -> bool:
    """Whether a layer's output reaches its ReLU through BatchNormalization (conv -> BN ->
    ReLU), where its dead channels are counted (`ModelGraph.rectified`)."""
    if model is None or not layer:
        return False
    from keras_convviz.core.shared import core_for

    graph = core_for(model).graph
    try:
        ref = graph.find(layer, "layer")
    except (ValueError, TypeError):
        return False
    relu = graph.rectified(ref)
    if relu is None or relu is ref:
        return False
    return any(isinstance(p.layer, keras.layers.BatchNormalization) for p in graph.producers(relu))


def _bounded_after(model, layer: str) -> int:
    """How many layers after `layer` (in graph order, itself included) end in a sigmoid or
    tanh: what the loss's gradient passes through on its way back to it. The model's
    output layers do not count (their sigmoid is a probability, paired with its loss)."""
    if model is None or not layer:
        return 0
    from keras_convviz.core.graph import output_activation
    from keras_convviz.core.shared import core_for

    refs = core_for(model).graph.refs
    paths = [ref.path for ref in refs]
    if layer not in paths:
        return 0
    outputs = {id(t) for t in model.outputs}
    return sum(
        1
        for ref in refs[paths.index(layer) :]
        if output_activation(ref.layer) in ("sigmoid", "hard_sigmoid", "tanh")
        and id(getattr(ref.layer, "output", None)) not in outputs
    )


def _trainable(model, layer: str) -> bool:
    """Whether training updates the layer now (not inside a frozen base)."""
    from keras_convviz.core.shared import core_for
    from keras_convviz.health import trains

    try:
        return trains(model, [core_for(model).graph.find(layer, "layer").layer])[0]
    except (ValueError, KeyError, TypeError):
        return False


def reference(rule: str, subject: str) -> str:
    """The key an alert is referred to by (`Alert.refers_to`): `"<rule>/<subject>"`."""
    return f"{rule}/{subject}"


def record_tag(alert: Alert) -> str:
    """`alerts/<rule>/<subject>`: one JSON record per tag, as a rule fires once per subject."""
    return _tags.tag(ALERTS_RUN, alert.rule, alert.subject)


def _record_metadata(plugin: str = _tags.ALERTS_PLUGIN) -> bytes:
    """The summary metadata of an alert's JSON record: a string tensor of the plugin
    `_tags.ALERTS_PLUGIN` (or `plugin`), of data class tensor (both TensorBoard loaders
    keep it)."""
    from tensorboard.compat.proto import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin, content=b"1"),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    ).SerializeToString()
