"""The set-up rules (read at train begin) and the rules on `fit`'s own loss: each classic bug
raises its alert with the right rule, at the right time, and `fit` always runs; the same
models built right raise none of them."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import keras_convviz as kcv
from keras_convviz import _tags
from keras_convviz.alerts import RULES, Monitor
from keras_convviz.checks import FitNumbers
from keras_convviz.summary_io import Scalar

SETUP_RULES = [name for name, rule in RULES.items() if rule.runs == (_tags.SETUP,)]
FIT_RULES = [name for name, rule in RULES.items() if rule.runs == (_tags.FIT,)]


def cnn(head=None, before=(), after_conv=(), seed=0):
    """A small CNN; `head` the output layer (3-class softmax by default), `before` layers
    between the input and the first conv, `after_conv` layers after it."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((16, 16, 3)), *before]
    layers += [keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")]
    layers += [*after_conv, keras.layers.GlobalAveragePooling2D()]
    layers += [head or keras.layers.Dense(3, activation="softmax", name="head")]
    return keras.Sequential(layers)


def data(n=32, classes=3, high=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 16, 16, 3)) * high).astype(np.float32), rng.integers(0, classes, n)


def fired(model, x, y, tmp_path, epochs=1, probe=8):
    """The rules that fired (name -> first alert) in a `fit` with `ConvViz`'s defaults
    (occlusion off, for speed); `fit` must run every epoch."""
    seen = []
    callback = kcv.ConvViz(tmp_path, (x[:probe], y[:probe]), occlusion=False, on_alert=seen.append)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == epochs
    out = {}
    for alert in seen:
        out.setdefault(alert.rule, alert)
    return out


def frozen(model):
    model.trainable = False
    return model


def compiled(model, loss="sparse_categorical_crossentropy", optimizer=None):
    model.compile(optimizer or keras.optimizers.Adam(1e-3), loss)
    return model


CASES = {
    "softmax_single_unit": lambda: (
        compiled(cnn(keras.layers.Dense(1, activation="softmax")), "binary_crossentropy"),
        data(classes=2),
    ),
    "unbounded_probabilities": lambda: (compiled(cnn(keras.layers.Dense(3))), data()),
    "softmax_regression_loss": lambda: (
        compiled(cnn(), "mse"),
        (data()[0], np.eye(3, dtype=np.float32)[data()[1]]),
    ),
    "unscaled_inputs": lambda: (compiled(cnn()), data(high=255.0)),
    "learning_rate": lambda: (compiled(cnn(), optimizer=keras.optimizers.Adam(-1e-3)), data()),
    "heavy_dropout": lambda: (compiled(cnn(after_conv=[keras.layers.Dropout(0.6)])), data()),
    "single_class_labels": lambda: (compiled(cnn()), (data()[0], np.zeros(32, np.int64))),
    "nothing_trainable": lambda: (compiled(frozen(cnn())), data()),
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_set_up_bug_raises_its_alert_at_the_first_snapshot(rule, tmp_path):
    model, (x, y) = CASES[rule]()
    alerts = fired(model, x, y, tmp_path)
    assert rule in alerts, sorted(alerts)
    alert = alerts[rule]
    assert alert.step == 0 and alert.epoch == 1
    # Only set-up rules: a bug in the set-up is named as such, not as a layer's symptom.
    assert not set(alerts) & set(SETUP_RULES) - {rule}, sorted(alerts)


def test_the_same_models_built_right_raise_no_set_up_alert(tmp_path):
    """The controls: the same layers with what each bug got wrong put right (a sigmoid unit,
    logits with `from_logits=True`, a cross-entropy, a `Rescaling` layer before 0-255
    inputs, Adam's default rate, dropout 0.2 on feature maps and 0.5 on a dense layer)."""
    x, y = data()
    models = [
        (
            compiled(cnn(keras.layers.Dense(1, activation="sigmoid")), "binary_crossentropy"),
            (x, (y > 0).astype(np.float32)),
        ),
        (
            compiled(
                cnn(keras.layers.Dense(3)),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            ),
            (x, y),
        ),
        (compiled(cnn(before=[keras.layers.Rescaling(1 / 255)])), (x * 255, y)),
        (compiled(cnn(after_conv=[keras.layers.Dropout(0.2)])), (x, y)),
        (
            compiled(
                keras.Sequential(
                    [
                        keras.Input((16, 16, 3)),
                        keras.layers.Conv2D(4, 3, activation="relu"),
                        keras.layers.Flatten(),
                        keras.layers.Dense(8, activation="relu"),
                        keras.layers.Dropout(0.5),
                        keras.layers.Dense(3, activation="softmax"),
                    ]
                )
            ),
            (x, y),
        ),
    ]
    for i, (model, (xs, ys)) in enumerate(models):
        alerts = fired(model, xs, ys, tmp_path / str(i))
        assert not set(alerts) & set(SETUP_RULES), (i, sorted(alerts))


def test_a_softmax_over_one_unit_never_stops_fit_and_names_the_model_not_the_probe(tmp_path):
    """The bug of the training-bug benchmarks: `Dense(1, activation="softmax")` with 0/1
    labels. The kinds that need class scores switch off with one warning; the alert says
    what is wrong with the model."""
    head = keras.layers.Dense(1, activation="softmax", name="out")
    model = compiled(cnn(head), "binary_crossentropy")
    x, y = data(classes=2)
    seen = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            x,
            y.astype(np.float32),
            epochs=2,
            verbose=0,
            callbacks=[
                kcv.ConvViz(tmp_path, (x[:8], y[:8]), occlusion=False, on_alert=seen.append)
            ],
        )
    messages = [str(w.message) for w in caught]
    assert not any("`probe` labels must be" in m for m in messages)
    assert [a.rule for a in seen if a.rule in SETUP_RULES] == ["softmax_single_unit"]
    assert "in layer `out`" in seen[0].markdown()


def test_a_negative_learning_rate_is_named_at_the_start_and_the_loss_explosion_after(tmp_path):
    model = compiled(cnn(), optimizer=keras.optimizers.SGD(-0.5))
    x, y = data()
    alerts = fired(model, x, y, tmp_path, epochs=4)
    assert alerts["learning_rate"].epoch == 1
    assert "learning_rate" in alerts and alerts["learning_rate"].value == pytest.approx(-0.5)
    assert "loss_exploded" in alerts, sorted(alerts)
    assert alerts["loss_exploded"].where == "the training's loss (`fit`'s logs)"


def test_a_loss_at_chance_level_for_four_epochs_fires_once(tmp_path):
    """Labels that do not depend on the inputs and a learning rate too small to memorise
    them: the loss stays at log 3, the rule fires after 4 epochs, and says since when."""
    head = keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros")
    model = compiled(cnn(head), optimizer=keras.optimizers.SGD(1e-5))
    x, y = data(n=48)
    alerts = fired(model, x, y, tmp_path, epochs=5)
    assert alerts["loss_at_chance"].epoch == 4 and alerts["loss_at_chance"].since_epoch == 1
    assert alerts["loss_at_chance"].value == pytest.approx(np.log(3), rel=0.01)


def test_fit_numbers_follow_the_loss():
    numbers = FitNumbers(classes=4)
    first = {item.tag: item.value for item in numbers.of({"loss": 2.0, "accuracy": 0.5})}
    assert first == {"fit/non_finite": 0, "fit/loss": 2.0, "fit/chance_loss": np.log(4)}
    # A NaN loss is counted and kept out of the loss's history.
    later = {item.tag: item.value for item in numbers.of({"loss": float("nan")})}
    assert later["fit/non_finite"] == 1 and "fit/smallest_loss" not in later
    after = {item.tag: item.value for item in numbers.of({"loss": 1.0})}
    assert after["fit/smallest_loss"] == 2.0 and after["fit/loss_fell"] == 1


def test_every_rule_on_the_training_s_own_numbers_is_exercised():
    """Each set-up and fit rule has a case above (a rule added without one fails here)."""
    exercised = set(CASES) | {"loss_exploded", "loss_at_chance", "labels_out_of_range"}
    exercised |= {"loss_plateau", "loss_oscillation", "overfitting"}
    assert set(SETUP_RULES) | set(FIT_RULES) <= exercised


def test_labels_beyond_the_output_s_classes_are_named_and_never_stop_fit(tmp_path):
    """Probe labels of 3 classes for a 2-class output: the alert names it, the kinds that
    explain a class per label switch off, and `fit` (on labels it can take) runs."""
    model = compiled(cnn(keras.layers.Dense(2, activation="softmax")))
    x, y = data(classes=2)
    seen = []
    probe_labels = np.arange(8) % 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[
                kcv.ConvViz(tmp_path, (x[:8], probe_labels), occlusion=False, on_alert=seen.append)
            ],
        )
    assert [a.rule for a in seen if a.rule in SETUP_RULES] == ["labels_out_of_range"]
    off = [str(w.message) for w in caught if "serves this model in part" in str(w.message)]
    assert len(off) == 1 and "classes 0..2 but output" in off[0], off


def bn_cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, name="conv1"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv2"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax", name="head"),
        ]
    )


def stepped_bn_cnn(momentum, steps):
    """`bn_cnn` with its BatchNormalization `momentum`, compiled, `steps` steps into training."""
    model = bn_cnn()
    model.layers[1].momentum = momentum
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(steps)
    return model


def collapse(monitor, model, snapshots=4, probe_loss=None):
    """A probe predicted as one class while its labels are not, `snapshots` times."""
    for step in range(snapshots):
        numbers = [
            Scalar("health/majority_fraction", 1.0),
            Scalar("health/label_majority_fraction", 0.5),
        ]
        if probe_loss is not None:
            numbers.append(Scalar("health/loss", probe_loss))
        monitor.observe(step, step, numbers, model)
    (alert,) = [a for a in monitor.alerts if a.rule == "collapsed_model"]
    return alert


@pytest.mark.parametrize(
    "model, numbers, fired, expected",
    [
        # A batch-normalised model whose training loss is low: moving statistics, not the
        # learning rate (the false "lower the learning rate" of the bug benchmark) ...
        (bn_cnn, {"training_loss": 0.03, "chance_loss": np.log(3)}, (), "moving statistics"),
        # ... or well below the probe's loss in inference mode (MobileNetV2 with its
        # BatchNormalization momentum of 0.999, early in training).
        (bn_cnn, {"training_loss": 0.95, "probe_loss": 1.39}, (), "moving statistics"),
        # Moving statistics that still hold most of their initial values (MobileNetV2's
        # momentum 0.999 after 6 epochs of 20 steps) explain a collapse in inference mode
        # while the training loss is still high ...
        (
            lambda: stepped_bn_cnn(0.999, 120),
            {"training_loss": 1.45, "chance_loss": np.log(3)},
            (),
            "still hold 89% of their initial values (momentum 0.999 after 120 steps)",
        ),
        # ... statistics that caught up (momentum 0.9) do not: nothing was learnt.
        (
            lambda: stepped_bn_cnn(0.9, 120),
            {"training_loss": 1.097, "chance_loss": np.log(3)},
            (),
            "nothing from",
        ),
        # The same collapse without batch normalisation: the rule's general reading.
        (lambda: cnn(), {"training_loss": 0.03}, (), "a too large learning"),
        # The loss never left chance: nothing was learnt (shuffled labels, a frozen model).
        (lambda: cnn(), {"training_loss": 1.097, "chance_loss": np.log(3)}, (), "nothing from"),
        # With a broken set-up fired before, the set-up is named first.
        (
            bn_cnn,
            {"training_loss": 1.1, "chance_loss": np.log(3)},
            ("softmax_single_unit",),
            "(alert `softmax_single_unit`)",
        ),
        # A learning-rate alert says which way the rate is off.
        (
            lambda: cnn(),
            {"training_loss": 5.0, "learning_rate": -1.0, "default_learning_rate": 1e-3},
            ("learning_rate",),
            "is not positive",
        ),
        (
            lambda: cnn(),
            {"training_loss": 1.1, "learning_rate": 1e-7, "default_learning_rate": 1e-3},
            ("learning_rate",),
            "is far too small",
        ),
    ],
)
def test_a_collapse_names_the_cause_the_evidence_supports(
    tmp_path, model, numbers, fired, expected
):
    monitor = Monitor(str(tmp_path), RULES)
    model = model()
    probe_loss = numbers.pop("probe_loss", None)
    monitor.note(numbers)
    for rule in fired:  # as the set-up check reports it
        reported = {
            "softmax_single_unit": [Scalar("setup/head/softmax_units", 1.0)],
            "learning_rate": [
                Scalar("setup/learning_rate", numbers.get("learning_rate", -1.0)),
                Scalar("setup/default_learning_rate", numbers.get("default_learning_rate", 1)),
            ],
        }
        monitor.observe(0, 0, reported[rule], model, table=False)
        assert rule in [a.rule for a in monitor.alerts]
    alert = collapse(monitor, model, probe_loss=probe_loss)
    assert expected in alert.meaning, alert.meaning
    assert alert.record()["meaning"] == alert.meaning


@pytest.mark.parametrize("momentum, stale", [(0.999, True), (0.9, False)])
def test_dead_channels_after_stale_batch_norm_statistics_name_them(tmp_path, momentum, stale):
    """A ReLU after BatchNormalization silent on the probe while the moving statistics are
    still mostly their initial values is an inference-mode reading, not a dead layer."""
    monitor = Monitor(str(tmp_path), RULES)
    model = stepped_bn_cnn(momentum, 60)
    for step in range(3):
        monitor.observe(step, step, [Scalar("feature_maps/conv1/dead_fraction", 1.0)], model)
    (alert,) = [a for a in monitor.alerts if a.rule == "dead_channels"]
    assert ("moving statistics still hold" in alert.meaning) == stale, alert.meaning
    assert ("lower the learning rate" in alert.advice) != stale, alert.advice


def test_a_stalled_layer_before_a_dead_one_points_at_the_dead_one(tmp_path):
    """conv1 stops moving because conv2's channels are dead: the alert on conv1 names conv2
    and says to fix it first; conv2 stalls by its own dead units. Both refer to the dead
    layer's alert (the diagnosis folds them under it)."""
    monitor = Monitor(str(tmp_path), RULES)
    model = bn_cnn()
    monitor.observe(0, 0, [Scalar("feature_maps/conv2/dead_fraction", 1.0)], model)
    monitor.observe(
        0,
        0,
        [
            Scalar("filter_weights/conv1/relative_update", 0.0),
            Scalar("filter_weights/conv2/relative_update", 0.0),
        ],
        model,
    )
    stalled = {a.layer: a for a in monitor.alerts if a.rule == "stalled_updates"}
    assert "layer `conv2` are dead" in stalled["conv1"].meaning
    assert stalled["conv1"].advice == "fix the dead layer `conv2` first (its alert says how)"
    assert stalled["conv2"].meaning.startswith("most of this layer's own units are dead")
    for layer in ("conv1", "conv2"):
        assert stalled[layer].refers_to == ("dead_channels/feature_maps/conv2",)


def curve_alerts(tmp_path, losses, val_losses=None, classes=3):
    """The fit rules' alerts `(rule, epoch)` on a loss curve, as `ConvViz` feeds them."""
    monitor = Monitor(str(tmp_path), RULES)
    numbers = FitNumbers(classes)
    for epoch, loss in enumerate(losses):
        logs = {"loss": loss}
        if val_losses is not None:
            logs["val_loss"] = val_losses[epoch]
        monitor.observe(epoch, epoch, numbers.of(logs), None, table=False)
    return [(a.rule, a.epoch) for a in monitor.alerts]


HEALTHY = [1.1, 0.8, 0.6, 0.5, 0.42, 0.38, 0.35, 0.33, 0.32, 0.31, 0.305, 0.30]


@pytest.mark.parametrize(
    "losses, val_losses, expected",
    [
        # Converging, slower and slower, with a validation loss that wobbles by a few %.
        (HEALTHY, [1.0, 0.8, 0.7, 0.72, 0.69, 0.7, 0.68, 0.69, 0.7, 0.69, 0.7, 0.71], []),
        # Noisy but falling: one rise of more than 5 % in a window is no oscillation.
        ([1.1, 0.9, 0.96, 0.8, 0.75, 0.7, 0.66, 0.62, 0.6], None, []),
        # Stuck at 0.9 for 3 classes (chance 1.1): no progress, far from a fit.
        # (epochs 4-8 are no lower than epochs 1-3 by 5 %: the 8th epoch says so).
        ([1.1, 0.95, 0.9, 0.9, 0.89, 0.9, 0.89, 0.9, 0.89], None, [("loss_plateau", 8)]),
        ([1.0, 0.8, 1.0, 0.7, 0.95, 0.65, 0.9], None, [("loss_oscillation", 6)]),
        (HEALTHY[:8], [1.0, 0.8, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0], [("overfitting", 6)]),
        ([1.0, 10.0, 500.0], None, [("loss_exploded", 3)]),
    ],
)
def test_the_fit_rules_on_loss_curves(tmp_path, losses, val_losses, expected):
    assert curve_alerts(tmp_path, losses, val_losses) == expected


def test_a_fitted_model_s_flat_loss_is_no_plateau(tmp_path):
    """Converged (far below half the chance level) and flat for 8 epochs: fine."""
    assert curve_alerts(tmp_path, [1.1, 0.3, *[0.1] * 8]) == []


def test_a_model_built_by_its_first_step_is_checked_after_it(tmp_path):
    """A Sequential model without an `Input` has no layers to read at train begin: its
    set-up is checked at the end of the first epoch, and `fit` runs."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model = compiled(model)
    x, y = data(high=255.0)
    alerts = fired(model, x, y, tmp_path, epochs=2)
    assert alerts["unscaled_inputs"].epoch == 1


def test_freq_zero_writes_no_alert_either(tmp_path):
    model = compiled(cnn())
    x, y = data(high=255.0)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[kcv.ConvViz(tmp_path, (x[:8], y[:8]), freq=0)])
    assert list(tmp_path.iterdir()) == []
