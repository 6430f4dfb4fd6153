"""Alerts: deliberately broken models provoke each rule, with the layer, the quantity and the
wording asserted; a healthy run writes nothing under `alerts/`."""

from __future__ import annotations

import dataclasses
import json
import warnings

import keras
import numpy as np
import pytest
from conftest import read_runs

import keras_convviz as kcv
from keras_convviz import _tags
from keras_convviz.alerts import RULES, ConvVizAlert, Monitor
from keras_convviz.summary_io import Scalar


def plain_cnn(activation="relu", seed=0):
    """conv_a / conv_b / GAP / dense: no batch norm, so what a layer does shows."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation=activation, name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((48, 16, 16, 3)).astype(np.float32), rng.integers(0, 3, 48)


def _strings(log_dir, plugin: str) -> dict:
    """{tag: {step: string}} of the string summaries of `plugin` in the `alerts` run."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(
        str(log_dir / "alerts"), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == plugin:
            out[tag] = {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)}
    return out


def texts(log_dir) -> dict:
    """{tag: {step: markdown}} of the text summaries (the Text tab) in the `alerts` run."""
    return _strings(log_dir, "text")


def records(log_dir) -> dict:
    """{tag: {step: alert}} of the alerts' JSON records (the ConvViz tab) in the `alerts` run."""
    return {
        tag: {step: json.loads(text) for step, text in steps.items()}
        for tag, steps in _strings(log_dir, _tags.ALERTS_PLUGIN).items()
    }


def fit_with_alerts(model, data, log_dir, epochs=2, extra=(), **options):
    x, y = data
    seen = []
    callback = kcv.ConvViz(
        log_dir,
        (x[:4], y[:4]),
        occlusion=False,
        on_alert=seen.append,
        on_error="raise",
        **options,
    )
    with pytest.warns(ConvVizAlert) as caught:
        model.fit(x, y, epochs=epochs, verbose=0, callbacks=[*extra, callback])
    return seen, [str(w.message) for w in caught if w.category is ConvVizAlert]


def test_dead_layer_fires_dead_channels_and_an_empty_explanation(tmp_path, data):
    model = plain_cnn()
    conv = model.get_layer("conv_b")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel, np.full_like(bias, -1000.0)])  # every unit below 0
    seen, warned = fit_with_alerts(model, data, tmp_path)
    by_rule = {(a.rule, a.layer): a for a in seen}
    dead = by_rule[("dead_channels", "conv_b")]
    assert dead.value == 1.0 and dead.step == 0 and dead.epoch == 1
    assert dead.evidence == "feature_maps/conv_b/dead_fraction"
    assert ("dead_channels", "conv_a") not in by_rule
    empty = by_rule[("empty_explanation", "conv_b")]
    assert empty.evidence == "grad_cam/conv_b/image_*/max"
    # No gradient flows through the dead layer: its kernel stops moving too.
    assert ("stalled_updates", "conv_b") in by_rule
    written = texts(tmp_path)
    assert {"alerts/dead_channels", "alerts/empty_explanation"} <= set(written)
    text = written["alerts/dead_channels"][0]
    assert (
        "**Most channels (units) are dead** in layer `conv_b` since epoch 1 (seen at epoch 1, "
        "step 0)" in text
    )
    assert "`dead_fraction` = 1 (> 0.5)" in text
    assert "evidence: `feature_maps/conv_b/dead_fraction`" in text
    # Once per rule and layer: the second epoch does not repeat it.
    assert list(written["alerts/dead_channels"]) == [0]
    # Beside the Markdown, each alert as one JSON record, under its rule and subject.
    stored = records(tmp_path)
    assert set(stored) == {f"alerts/{a.rule}/{a.subject}" for a in seen}
    record = stored["alerts/dead_channels/feature_maps/conv_b"]
    assert list(record) == [0]
    assert record[0] == {
        **dataclasses.asdict(dead),
        "refers_to": [],
        "where": "layer `conv_b`",
        "text": dead.markdown(),
    }
    assert sum("most channels (units) are dead in layer 'conv_b'" in w for w in warned) == 1
    # The health table marks the layer at every snapshot.
    table = read_text(tmp_path / "health", "health/layers")
    assert sorted(table) == [0, 1]
    # One column per layer, one row per quantity, the alerts last.
    lines = table[1].splitlines()
    columns = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = {line.split("|")[1].strip(): line.strip("|").split("|")[1:] for line in lines[2:]}
    alerts = dict(zip(columns[1:], (c.strip() for c in cells["alerts"])))
    assert "**dead_channels**" in alerts["`conv_b`"]
    assert "**empty_explanation**" in alerts["`conv_b`"]
    # conv_a is alive, but nothing reaches it through conv_b: it stalls.
    assert alerts["`conv_a`"] == "**stalled_updates**"
    dead = dict(zip(columns[1:], (c.strip() for c in cells["feature_maps dead_fraction"])))
    assert dead["`conv_b`"] == "1" and float(dead["`conv_a`"]) < 0.5


def read_text(run_dir, tag) -> dict:
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    return {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)}


def test_nan_weights_fire_non_finite_and_can_stop_training(tmp_path, data):
    model = plain_cnn(activation="linear")  # a ReLU may turn NaN into 0
    x, y = data

    def poison(epoch, logs):
        if epoch == 1:
            kernel, bias = model.get_layer("conv_a").get_weights()
            kernel[0, 0, 0, 0] = np.nan
            model.get_layer("conv_a").set_weights([kernel, bias])

    epochs_run = []
    extra = [
        keras.callbacks.LambdaCallback(on_epoch_end=poison),
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_run.append(e)),
    ]
    seen, warned = fit_with_alerts(
        model, data, tmp_path, epochs=5, extra=extra, stop_on=("non_finite",)
    )
    non_finite = [a for a in seen if a.rule == "non_finite"]
    assert non_finite and all(a.epoch == 2 for a in non_finite)
    subjects = {a.subject for a in non_finite}
    assert {"feature_maps/conv_a", "filter_weights/conv_a"} <= subjects
    assert epochs_run == [0, 1]  # stopped after the epoch the alert fired
    assert "NaN or Inf values" in texts(tmp_path)["alerts/non_finite"][1]


def test_blown_up_weights_fire_exploding_activations_and_large_updates(tmp_path, data):
    model = plain_cnn()

    def blow_up(epoch, logs):
        if epoch == 1:
            kernel, bias = model.get_layer("conv_a").get_weights()
            model.get_layer("conv_a").set_weights([kernel * 1000.0, bias])

    seen, _ = fit_with_alerts(
        model,
        data,
        tmp_path,
        epochs=2,
        extra=[keras.callbacks.LambdaCallback(on_epoch_end=blow_up)],
    )
    by_rule = {(a.rule, a.layer): a for a in seen}
    explode = by_rule[("exploding_activations", "conv_a")]
    assert explode.step == 1 and explode.value > 100
    assert ("exploding_activations", "conv_b") in by_rule  # it spreads downstream
    update = by_rule[("large_updates", "conv_a")]
    assert update.value == pytest.approx(999, rel=0.01)
    assert ("large_updates", "conv_b") not in by_rule


def test_saturated_sigmoid_convs_fire_saturated_activations(tmp_path, data):
    model = plain_cnn(activation="sigmoid")
    kernel, bias = model.get_layer("conv_a").get_weights()
    model.get_layer("conv_a").set_weights([kernel * 60.0, bias])
    seen, _ = fit_with_alerts(model, data, tmp_path, epochs=1)
    (alert,) = [a for a in seen if a.rule == "saturated_activations"]
    assert alert.layer == "conv_a" and alert.value > 0.5
    assert alert.evidence == "feature_maps/conv_a/saturated_fraction"


def test_stalled_updates_fire_on_trainable_layers_only(tmp_path, data):
    model = plain_cnn()
    model.get_layer("conv_a").trainable = False  # frozen on purpose: no alert
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")  # nothing moves
    seen, _ = fit_with_alerts(model, data, tmp_path, epochs=2)
    stalled = {a.layer for a in seen if a.rule == "stalled_updates"}
    assert stalled == {"conv_b", "head"}  # the dense head is watched too


def test_stalled_updates_fire_on_an_update_lost_in_rounding(tmp_path):
    """A relative update of 2e-12 (not exactly 0: a few tiny weights moved) is no learning;
    1e-5 (fine-tuning at a small rate) is."""
    model = plain_cnn()
    monitor = Monitor(str(tmp_path), RULES)
    for step, value in enumerate((2e-12, 1e-5)):
        tag = f"filter_weights/conv_{'ab'[step]}/relative_update"
        monitor.observe(step, step, [Scalar(tag, value)], model)
    assert [(a.layer, a.value) for a in monitor.alerts] == [("conv_a", 2e-12)]


def test_thresholds_and_switches(tmp_path, data):
    x, y = data
    model = plain_cnn()
    kernel, bias = model.get_layer("conv_b").get_weights()
    model.get_layer("conv_b").set_weights([kernel, np.full_like(bias, -1000.0)])
    quiet = kcv.ConvViz(
        tmp_path,
        (x[:4], y[:4]),
        occlusion=False,
        # The dead layer also stalls the layers below it and collapses the classifier.
        alerts={
            "dead_channels": 1.5,  # a fraction never above 1.5: never fires
            "empty_explanation": False,
            "stalled_updates": False,
            "collapsed_model": False,
        },
    )
    model.fit(x, y, epochs=1, verbose=0, callbacks=[quiet])
    assert not (tmp_path / "alerts").exists()
    with pytest.raises(ValueError, match=r"`alerts` must be True, False or a dict.*dead_units"):
        kcv.ConvViz(tmp_path, x[:4], alerts={"dead_units": 0.5})
    with pytest.raises(ValueError, match=r"`alerts\['dead_channels'\]` must be a number"):
        kcv.ConvViz(tmp_path, x[:4], alerts={"dead_channels": "high"})
    with pytest.raises(ValueError, match=r"`stop_on` must name rules among"):
        kcv.ConvViz(tmp_path, x[:4], stop_on=("nan",))
    with pytest.raises(TypeError, match=r"`on_alert` must be callable"):
        kcv.ConvViz(tmp_path, x[:4], on_alert="print")


def test_every_rule_has_a_test_here():
    covered = {
        "dead_channels",
        "empty_explanation",
        "non_finite",
        "exploding_activations",
        "large_updates",
        "saturated_activations",
        "stalled_updates",
        "collapsed_model",
        "vanishing_gradients",
        "evidence_off_region",
        "no_gradient",
    }
    # The rules on the set-up and on `fit`'s loss have theirs in test_checks.py.
    elsewhere = {
        name for name, rule in RULES.items() if rule.runs in ((_tags.SETUP,), (_tags.FIT,))
    }
    assert covered == set(RULES) - elsewhere


def test_a_collapsed_classifier_fires_collapsed_model(tmp_path, data):
    model = plain_cnn()
    kernel, _ = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([kernel * 0, np.array([50.0, 0.0, 0.0], np.float32)])
    seen, warned = fit_with_alerts(model, data, tmp_path, epochs=5)
    (alert,) = [a for a in seen if a.rule == "collapsed_model"]
    assert alert.subject == "health" and alert.layer == "" and alert.value == 1.0
    # Four snapshots in a row (an untrained or batch-normalised model may predict one
    # class for its first epochs): it fires at the fourth, saying since when.
    assert (alert.since_epoch, alert.epoch, alert.step) == (1, 4, 3)
    assert alert.evidence == "health/majority_fraction"
    assert (
        "**The model predicts one class for everything** in the probe's `health`"
        in (texts(tmp_path)["alerts/collapsed_model"][3])
    )
    assert any("predicts one class for everything in the probe's health" in w for w in warned)


def test_one_labelled_class_is_not_a_collapse(tmp_path, data):
    x, _ = data
    model = plain_cnn()
    kernel, _ = model.get_layer("head").get_weights()
    model.get_layer("head").set_weights([kernel * 0, np.array([50.0, 0.0, 0.0], np.float32)])
    seen = []
    callback = kcv.ConvViz(tmp_path, (x[:4], np.zeros(4, np.int32)), on_alert=seen.append)
    model.fit(x, np.zeros(len(x), np.int32), epochs=1, verbose=0, callbacks=[callback])
    assert [a for a in seen if a.rule == "collapsed_model"] == []


def test_a_layer_the_loss_barely_reaches_fires_vanishing_gradients(tmp_path, data):
    model = plain_cnn()
    conv = model.get_layer("conv_b")
    kernel, bias = conv.get_weights()
    # Everything conv_a learns passes through conv_b's kernel: its gradient shrinks 1e5-fold
    # (conv_b frozen, so training cannot undo it).
    conv.set_weights([kernel * 1e-5, bias + 0.1])
    conv.trainable = False
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    seen, _ = fit_with_alerts(model, data, tmp_path, epochs=1, health={"gradients": True})
    (alert,) = [a for a in seen if a.rule == "vanishing_gradients"]
    assert alert.layer == "conv_a" and alert.subject == "health/conv_a"
    assert alert.value < 1e-3
    assert alert.evidence == "health/conv_a/gradient_ratio"


def test_a_record_is_json_even_with_a_non_finite_value():
    from keras_convviz.alerts import Alert

    fields = {f.name: "x" for f in dataclasses.fields(Alert)}
    fields.update(value=float("inf"), threshold=100.0, step=3, epoch=4, since_epoch=2)
    record = json.loads(json.dumps(Alert(**fields).record(), allow_nan=False))
    assert (record["value"], record["threshold"], record["epoch"]) == ("inf", 100.0, 4)
    assert record["text"].startswith("**x** in layer `x` since epoch 2")


def _localization_scalars(in_region: float, per_image=(0.9, 0.0), floor=0.05) -> list:
    """What `GradCAM(regions=...)` writes for one map: the probe's mean `in_region` and
    `pointing`, each image's `in_region`, and the uniform floor under the same tags."""
    map_tag = "grad_cam/conv_b"
    items = [Scalar(f"{map_tag}/in_region", in_region), Scalar(f"{map_tag}/pointing", 0.0)]
    items += [Scalar(f"{map_tag}/image_{i}/in_region", v) for i, v in enumerate(per_image)]
    for quantity in ("in_region", "pointing"):
        items.append(Scalar(f"{map_tag}/{quantity}", floor, run=_tags.FLOOR_UNIFORM))
    items += [
        Scalar(f"{map_tag}/image_{i}/in_region", floor, run=_tags.FLOOR_UNIFORM)
        for i in range(len(per_image))
    ]
    return items


def test_evidence_off_region_fires_after_two_snapshots_near_the_floor_on_a_right_model(tmp_path):
    model = plain_cnn()
    monitor = Monitor(str(tmp_path), RULES)
    margin = RULES["evidence_off_region"].threshold
    # (probe accuracy, the probe's mean in_region) per epoch; floor 0.05.
    epochs = [
        (0.5, 0.04),  # not right on the probe yet: no judgement
        (0.9, 0.05 + margin),  # at floor + margin: counts (1 of 2)
        (0.9, 0.2),  # well above: the streak breaks
        (0.9, 0.06),  # 1 of 2; one image at 0.9 must not hide the probe's mean
        (0.95, 0.03),  # 2 of 2: fires, since epoch 4
        (0.95, 0.02),  # fires once per map
    ]
    for epoch, (accuracy, in_region) in enumerate(epochs):
        monitor.note({"probe_accuracy": accuracy})
        monitor.observe(epoch, epoch, _localization_scalars(in_region), model)
    [alert] = monitor.alerts
    assert (alert.rule, alert.subject, alert.layer) == (
        "evidence_off_region",
        "grad_cam/conv_b",
        "conv_b",
    )
    assert (alert.epoch, alert.since_epoch, alert.value) == (5, 4, 0.03)
    assert alert.evidence == "grad_cam/conv_b/in_region"
    text = alert.markdown()
    assert "95% of the probe right, but its Grad-CAM map puts only 3% of its" in text
    assert "(5%, the objects' area share: `grad_cam/conv_b/in_region` in the run " in text
    assert "a marker, a watermark, a border or a background that goes with the class" in text
    assert "hot spots in the ConvViz tab" in text and "remove or randomise it" in text


def test_evidence_off_region_needs_the_floor_and_the_accuracy(tmp_path):
    model = plain_cnn()
    without_accuracy = Monitor(str(tmp_path / "a"), RULES)
    without_floor = Monitor(str(tmp_path / "b"), RULES)
    for epoch in range(3):
        without_accuracy.observe(epoch, epoch, _localization_scalars(0.01), model)
        without_floor.note({"probe_accuracy": 1.0})
        scalars = [s for s in _localization_scalars(0.01) if s.run is None]
        without_floor.observe(epoch, epoch, scalars, model)
    assert without_accuracy.alerts == [] and without_floor.alerts == []


def dense_stack(seed=0, cut=False, bias=None):
    """Flatten / hidden_a / [stop_gradient] / hidden_b / head: ReLU dense layers only."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu", name="hidden_a")(x)
    if cut:  # nothing hidden_a does reaches the loss
        x = keras.layers.Lambda(keras.ops.stop_gradient, name="cut")(x)
    extra = {} if bias is None else {"bias_initializer": keras.initializers.Constant(bias)}
    x = keras.layers.Dense(16, activation="relu", name="hidden_b", **extra)(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def test_dead_relu_units_of_a_dense_layer_fire_dead_channels(tmp_path, data):
    seen, _ = fit_with_alerts(
        dense_stack(bias=-1000.0), data, tmp_path, epochs=2, grad_cam=False, filter_weights=False
    )
    by_rule = {(a.rule, a.layer): a for a in seen}
    dead = by_rule[("dead_channels", "hidden_b")]
    # One value per probe image and unit: dead when it stays so for two snapshots.
    assert (dead.value, dead.since_epoch, dead.epoch) == (1.0, 1, 2)
    assert dead.evidence == "health/hidden_b/dead_fraction"
    assert ("dead_channels", "hidden_a") not in by_rule
    # Nothing reaches hidden_a through the dead layer: its kernel stops, and says why.
    stalled = by_rule[("stalled_updates", "hidden_a")]
    assert stalled.evidence == "health/hidden_a/relative_update"
    assert "`hidden_b` are dead" in stalled.meaning


@pytest.fixture(scope="module")
def corners():
    """Noise images whose class is the channel brightened in their top left corner, centred
    on 0 (uncentred, all positive, 10 of hidden_a's 16 units of `dense_stack(seed=1)` are
    silent on every training image: dead, and `dead_channels` rightly says so)."""
    rng = np.random.default_rng(1)
    x = rng.random((256, 16, 16, 3)).astype(np.float32)
    y = rng.integers(0, 3, 256)
    x[np.arange(256), :8, :8, y] += 0.5
    return x - 0.5, y


def fit_dense(model, data, log_dir, epochs):
    x, y = data
    seen = []
    callback = kcv.ConvViz(
        log_dir, (x[:8], y[:8]), occlusion=False, on_alert=seen.append, health={"gradients": True}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvViz serves it in part: no conv to draw
        history = model.fit(x, y, epochs=epochs, verbose=0, callbacks=[callback])
    return seen, history.history["loss"], read_runs(log_dir)["health"]


def test_a_dense_layer_cut_off_from_the_loss_has_no_gradient_not_a_ratio(tmp_path, corners):
    seen, _, runs = fit_dense(dense_stack(cut=True), corners, tmp_path, epochs=2)
    assert runs["health/hidden_a/gradient_norm"]["values"] == [0.0, 0.0]
    assert runs["health/hidden_a/no_gradient"]["values"] == [1.0, 1.0]
    # Not a ratio of 0 (vanishing) nor of 1 (healthy): no ratio at all.
    assert "health/hidden_a/gradient_ratio" not in runs
    assert runs["health/hidden_b/gradient_ratio"]["values"][0] > 0
    assert "health/hidden_b/no_gradient" not in runs  # sparse: written from its first 1
    by_rule = {(a.rule, a.layer): a for a in seen}
    cut = by_rule[("no_gradient", "hidden_a")]
    assert (cut.epoch, cut.evidence) == (1, "health/hidden_a/no_gradient")
    assert "stop_gradient" in cut.advice
    # Its kernel stops moving too, and that alert names the root.
    stalled = by_rule[("stalled_updates", "hidden_a")]
    assert "alert `no_gradient`): the layer is cut off from the loss" in stalled.meaning
    assert set(by_rule) == {("no_gradient", "hidden_a"), ("stalled_updates", "hidden_a")}


def test_a_healthy_dense_model_raises_nothing(tmp_path, corners):
    seen, loss, runs = fit_dense(dense_stack(seed=1), corners, tmp_path, epochs=4)
    assert loss[-1] < 0.8 * loss[0]  # it learns
    assert seen == []
    assert not (tmp_path / "alerts").exists()
    # Every trainable layer watched, in graph order, the head included.
    for layer in ("hidden_a", "hidden_b", "head"):
        assert len(runs[f"health/{layer}/relative_update"]["values"]) == 3
        assert f"health/{layer}/gradient_norm" in runs
    assert {f"health/{layer}/dead_fraction" for layer in ("hidden_a", "hidden_b")} <= set(runs)
    assert "health/head/dead_fraction" not in runs  # a softmax unit cannot die


def test_a_stalled_layer_under_a_sigmoid_stack_names_vanishing_gradients(tmp_path):
    def stack(sigmoids):
        keras.utils.set_random_seed(0)
        layers = [keras.Input((8,)), keras.layers.Dense(8, activation="relu", name="first")]
        layers += [keras.layers.Dense(8, activation="sigmoid") for _ in range(sigmoids)]
        return keras.Sequential([*layers, keras.layers.Dense(3, activation="sigmoid")])

    # The output's sigmoid is a probability, not part of the stack.
    for sigmoids, expected in ((4, "the loss's gradient passes 4 sigmoid/tanh"), (3, "the ker")):
        monitor = Monitor(str(tmp_path), RULES)
        monitor.observe(0, 0, [Scalar("health/first/relative_update", 1e-9)], stack(sigmoids))
        (alert,) = monitor.alerts
        assert alert.meaning.startswith(expected), alert.meaning
        assert ("ReLU-like" in alert.advice) == (sigmoids == 4)
