"""Classic training bugs: does `ConvViz` catch them early, name the right cause, and stay
quiet on healthy trainings? With two published detectors as baselines (issue 26, point 6).

Each bug case is a small training on images of the shapes data
(`keras_convviz.datasets.make_shapes`, 24x24 px, with oriented stripes over them whose
orientation is the class, 4 classes: see `shapes`; 640 training, 160 validation and 400
clean test images, 6 epochs of batch 32) with one classic bug of the training-bug
benchmarks (DeepLocalize/DeepDiagnosis's Stack Overflow programs, AUTOTRAINER's cases,
UMLAUT's study); the healthy trainings are five different architectures. Every run has
`kcv.ConvViz(log_dir, probe=(x_val[:8], y_val[:8]), occlusion=False)` (occlusion off for
speed: no rule reads it) and validation data.

Per run: whether training broke (the accuracy on a clean held-out test set, whose labels
and pixels the bug does not touch, below `BROKEN_BELOW` of the way from chance to 1, or a
non-finite loss), the alerts in the order they were raised, the epoch of the first, whether
the first alert names the right cause (the case's `right` rules; an alert whose meaning
refers to one of them, e.g. a collapse that names the broken set-up, counts too) and
whether its advice names the fix (`fix_words`). The same runs' numbers are read by the
published rules of DeepDiagnosis and AUTOTRAINER (see `deepdiagnosis` and `autotrainer`
below), recorded by a small callback of ours at each epoch end.

Run: nice -n 10 python benchmarks/training_bugs.py [--seeds 2] [--quick] [--only a,b]
Results: benchmarks/training_bugs.json; `--table` prints the Markdown table of a results file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_convviz as kcv
from keras_convviz.datasets import make_shapes

HERE = Path(__file__).resolve().parent
SIZE = 24
N_TRAIN, N_VAL, N_TEST = 640, 160, 400
EPOCHS = 6
BATCH = 32
# Training broke when the clean test accuracy is below chance + BROKEN_BELOW * (1 - chance)
# (0.625 for 4 classes, 0.75 for a balanced binary task), or the loss is not finite.
BROKEN_BELOW = 0.5


# ---------------------------------------------------------------------------------------
# Data and models


def shapes(seed: int, size: int = SIZE):
    """Train, validation and clean test splits of one seed: oriented stripes (the class:
    horizontal, vertical, diagonal, anti-diagonal; random frequency and phase) blended
    over the shapes images, whose clutter is the background. On the shapes' own classes
    a small CNN of a few hundred images stays near chance for 6 epochs; on these it
    reaches 0.9-1.0, so a bug that keeps it from learning shows."""
    n = N_TRAIN + N_VAL + N_TEST
    background = make_shapes(n, image_size=size, seed=1000 + seed).images
    rng = np.random.default_rng(1000 + seed)
    y = rng.integers(0, 4, n)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    angle = np.array([0, np.pi / 2, np.pi / 4, 3 * np.pi / 4])[y] + rng.normal(0, 0.1, n)
    freq, phase = rng.uniform(0.5, 1.2, n), rng.uniform(0, 2 * np.pi, n)
    wave = np.cos(angle)[:, None, None] * i + np.sin(angle)[:, None, None] * j
    stripes = 0.5 + 0.5 * np.sin(freq[:, None, None] * wave + phase[:, None, None])
    x = (0.6 * background + 0.4 * stripes[..., None]).astype("float32")
    y = y.astype("int64")
    return (
        (x[:N_TRAIN], y[:N_TRAIN]),
        (x[N_TRAIN : N_TRAIN + N_VAL], y[N_TRAIN : N_TRAIN + N_VAL]),
        (x[N_TRAIN + N_VAL :], y[N_TRAIN + N_VAL :]),
    )


def cnn(
    act="relu",
    head=None,
    bias=None,
    dropout=0.0,
    batch_norm=False,
    size=SIZE,
    filters=(16, 32, 32),
):
    """Three 3x3 convs (pooling after the first two), global average pooling and a head."""
    layers = [keras.Input((size, size, 3))]
    for i, f in enumerate(filters):
        kwargs = {"bias_initializer": bias} if bias is not None else {}
        if batch_norm:
            layers += [keras.layers.Conv2D(f, 3, padding="same", use_bias=False)]
            layers += [keras.layers.BatchNormalization(momentum=0.9), keras.layers.Activation(act)]
        else:
            layers += [keras.layers.Conv2D(f, 3, padding="same", activation=act, **kwargs)]
        if dropout:
            layers += [keras.layers.Dropout(dropout)]
        if i < len(filters) - 1:
            layers += [keras.layers.MaxPooling2D()]
    layers += [keras.layers.GlobalAveragePooling2D()]
    layers += [head or keras.layers.Dense(4, activation="softmax")]
    return keras.Sequential(layers)


def deep_sigmoid():
    """One conv, then a plain stack of eight sigmoid dense layers."""
    layers = [keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(8, 3, activation="sigmoid")]
    layers += [keras.layers.MaxPooling2D(), keras.layers.Flatten()]
    layers += [keras.layers.Dense(32, activation="sigmoid") for _ in range(8)]
    layers += [keras.layers.Dense(4, activation="softmax")]
    return keras.Sequential(layers)


def wide_dense():
    """A model far too large for 48 images: it memorises them."""
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )


def efficientnet():
    """`keras.applications.EfficientNetV2B0` from scratch at 32 px. Its BatchNormalization
    momentum is 0.9, so its moving statistics follow the weights within the 20 steps of an
    epoch; MobileNetV2's and MobileNetV3's 0.999 keep them near their initial values for
    hundreds of steps, and in inference mode such a model predicts one class for far longer
    than this benchmark trains (BENCHMARKS.md section 13). The inputs are in [0, 1] already,
    so its own 0-255 preprocessing is off."""
    return keras.applications.EfficientNetV2B0(
        input_shape=(32, 32, 3), weights=None, classes=4, include_preprocessing=False
    )


SCCE = "sparse_categorical_crossentropy"


@dataclass
class Case:
    """One training: how to build it, what bug it has, and what counts as the right
    diagnosis.

    Attributes:
        name, bug: short name and the bug in words (empty for a healthy training).
        model: `model()` builds the (uncompiled) model.
        loss, optimizer: `compile`'s; `optimizer()` builds it.
        data: `data(splits, rng) -> (train, val)`: the splits `fit` gets (the test split
            stays clean), labels as the loss wants them.
        binary: the task is "horizontal or vertical stripes" vs diagonal ones (balanced).
        right: the rules whose firing names the bug's cause.
        fix_words: words of which one in the first alert's advice names the fix.
        autotrainer, deepdiagnosis: the baseline's symptoms that name the cause.
        fix_families: the families of fixes that repair the bug (for the baselines'
            repairs: AUTOTRAINER's strategies, DeepDiagnosis's messages).
    """

    name: str
    bug: str
    model: object
    loss: object = SCCE
    optimizer: object = lambda: keras.optimizers.Adam(1e-3)
    data: object = None
    binary: bool = False
    right: tuple = ()
    fix_words: tuple = ()
    autotrainer: tuple = ()
    deepdiagnosis: tuple = ()
    fix_families: tuple = ()
    epochs: int = EPOCHS
    shuffle: bool = True
    size: int = SIZE
    freeze: bool = False
    n_train: int = N_TRAIN


def _same(train, val, rng):
    return train, val


def _one_class(train, val, rng):
    """A label pipeline that overwrote every label with class 0 (train and validation)."""
    return (train[0], np.zeros_like(train[1])), (val[0], np.zeros_like(val[1]))


def _shuffled(train, val, rng):
    """Labels shuffled apart from their images (train and validation)."""
    return (train[0], rng.permutation(train[1])), (val[0], rng.permutation(val[1]))


def _raw_pixels(train, val, rng):
    return (train[0] * 255, train[1]), (val[0] * 255, val[1])


def _one_hot(train, val, rng):
    eye = np.eye(4, dtype="float32")
    return (train[0], eye[train[1]]), (val[0], eye[val[1]])


def _sorted(train, val, rng):
    order = np.argsort(train[1], kind="stable")
    return (train[0][order], train[1][order]), val


def _tiny(train, val, rng):
    return (train[0][:48], train[1][:48]), val


LR = ("learning rate",)
FAM_LR = ("learning_rate",)

CASES = [
    Case(
        "softmax_one_unit",
        "`Dense(1, activation='softmax')` with 0/1 labels and binary cross-entropy",
        lambda: cnn(head=keras.layers.Dense(1, activation="softmax")),
        loss="binary_crossentropy",
        binary=True,
        right=("softmax_single_unit", "labels_out_of_range"),
        fix_words=("sigmoid",),
        autotrainer=("activation_issue", "loss_issue"),
        deepdiagnosis=("out_of_range",),
        fix_families=("output_activation",),
    ),
    Case(
        "linear_output_probability_loss",
        "a linear output layer with `sparse_categorical_crossentropy` (from_logits=False)",
        lambda: cnn(head=keras.layers.Dense(4)),
        right=("unbounded_probabilities",),
        fix_words=("from_logits", "softmax"),
        autotrainer=("activation_issue",),
        deepdiagnosis=("out_of_range",),
        fix_families=("output_activation",),
    ),
    Case(
        "relu_output_probability_loss",
        "a ReLU output layer with `sparse_categorical_crossentropy` (from_logits=False)",
        lambda: cnn(head=keras.layers.Dense(4, activation="relu")),
        right=("unbounded_probabilities",),
        fix_words=("from_logits", "softmax"),
        autotrainer=("activation_issue",),
        deepdiagnosis=("out_of_range",),
        fix_families=("output_activation",),
    ),
    Case(
        "softmax_mse",
        "a softmax output fitted with mean squared error on one-hot labels",
        lambda: cnn(),
        loss="mse",
        data=_one_hot,
        right=("softmax_regression_loss",),
        fix_words=("crossentropy",),
        autotrainer=("loss_issue",),
        deepdiagnosis=(),
        fix_families=("loss",),
    ),
    Case(
        "one_class_labels",
        "every training and validation label is class 0 (a broken label pipeline)",
        lambda: cnn(),
        data=_one_class,
        right=("single_class_labels",),
        fix_words=("labels",),
        fix_families=("labels",),
    ),
    Case(
        "shuffled_labels",
        "labels shuffled apart from their images (train and validation)",
        lambda: cnn(),
        data=_shuffled,
        right=("loss_at_chance",),
        fix_words=("paired",),
        fix_families=("labels",),
    ),
    Case(
        "unscaled_inputs",
        "0-255 pixels into a model without rescaling",
        lambda: cnn(),
        data=_raw_pixels,
        right=("unscaled_inputs",),
        fix_words=("Rescaling",),
        autotrainer=("abnormal_data",),
        deepdiagnosis=(),
        fix_families=("data_scaling",),
    ),
    Case(
        "negative_lr",
        "a negative learning rate (Adam -1e-3)",
        lambda: cnn(),
        optimizer=lambda: keras.optimizers.Adam(-1e-3),
        right=("learning_rate",),
        fix_words=LR,
        autotrainer=("explode", "unstable", "not_converge"),
        deepdiagnosis=("invalid_loss",),
        fix_families=FAM_LR,
    ),
    Case(
        "adam_lr_1",
        "a learning rate far too large (Adam 1.0)",
        lambda: cnn(),
        optimizer=lambda: keras.optimizers.Adam(1.0),
        right=("learning_rate", "loss_exploded", "large_updates", "non_finite"),
        fix_words=LR,
        autotrainer=("explode", "unstable", "relu", "not_converge"),
        deepdiagnosis=("invalid_loss", "numerical_forward", "dead_node"),
        fix_families=FAM_LR,
    ),
    Case(
        "sgd_lr_10",
        "a learning rate far too large (SGD 10)",
        lambda: cnn(),
        optimizer=lambda: keras.optimizers.SGD(10.0),
        right=("learning_rate", "loss_exploded", "large_updates", "non_finite"),
        fix_words=LR,
        autotrainer=("explode", "unstable", "relu", "not_converge"),
        deepdiagnosis=("invalid_loss", "numerical_forward", "dead_node"),
        fix_families=FAM_LR,
    ),
    Case(
        "lr_too_small",
        "a learning rate far too small (Adam 1e-6)",
        lambda: cnn(),
        optimizer=lambda: keras.optimizers.Adam(1e-6),
        right=("learning_rate", "loss_at_chance", "loss_plateau", "stalled_updates"),
        fix_words=(
            "larger learning rate",
            "learning rate near",
            "default learning rate",
            "learning rate is (nearly)",
        ),
        autotrainer=("not_converge",),
        deepdiagnosis=("loss_not_decreasing", "unchanged_weights"),
        fix_families=FAM_LR,
    ),
    Case(
        "dead_relu",
        "ReLU convs with a large negative bias (initialised at -10)",
        lambda: cnn(bias=keras.initializers.Constant(-10.0)),
        right=("dead_channels",),
        fix_words=("initialisation", "LeakyReLU", "bias"),
        autotrainer=("relu",),
        deepdiagnosis=("dead_node", "numerical_forward"),
        fix_families=("init", "activation"),
    ),
    Case(
        "no_nonlinearity",
        "no activation anywhere and no softmax, with `sparse_categorical_crossentropy`",
        lambda: cnn(act=None, head=keras.layers.Dense(4)),
        right=("unbounded_probabilities",),
        fix_words=("softmax", "from_logits"),
        autotrainer=("activation_issue",),
        deepdiagnosis=("out_of_range",),
        fix_families=("output_activation", "activation"),
    ),
    Case(
        "heavy_dropout",
        "dropout 0.7 after every conv",
        lambda: cnn(dropout=0.7),
        right=("heavy_dropout",),
        fix_words=("0.1-0.3",),
        autotrainer=("not_converge",),
        fix_families=("dropout",),
    ),
    Case(
        "deep_sigmoid",
        "a plain stack of eight sigmoid dense layers trained with SGD 0.01",
        deep_sigmoid,
        optimizer=lambda: keras.optimizers.SGD(0.01),
        right=("vanishing_gradients", "saturated_activations"),
        fix_words=("ReLU",),
        autotrainer=("vanish",),
        deepdiagnosis=("vanishing_gradient", "saturated"),
        fix_families=("activation",),
    ),
    Case(
        "frozen_model",
        "`model.trainable = False` before `compile` (every layer frozen)",
        lambda: cnn(),
        freeze=True,
        right=("nothing_trainable", "stalled_updates", "loss_at_chance", "loss_plateau"),
        fix_words=("trainable",),
        autotrainer=("not_converge",),
        deepdiagnosis=("unchanged_weights", "unchanged_forward", "loss_not_decreasing"),
        fix_families=("trainable",),
    ),
    Case(
        "unshuffled_sorted",
        "training data sorted by class and `fit(shuffle=False)`",
        lambda: cnn(),
        data=_sorted,
        shuffle=False,
        right=("loss_oscillation", "collapsed_model", "loss_at_chance"),
        fix_words=("shuffle",),
        autotrainer=("unstable",),
        fix_families=("shuffle",),
    ),
    Case(
        "overfit_tiny",
        "48 training images, a wide dense model, 10 epochs",
        wide_dense,
        data=_tiny,
        epochs=10,
        right=("overfitting",),
        fix_words=("EarlyStopping", "augmentation", "more data"),
        autotrainer=("overfit",),
        fix_families=("regularise",),
    ),
]

HEALTHY = [
    Case("bn_cnn", "", lambda: cnn(batch_norm=True)),
    Case("tanh_cnn", "", lambda: cnn(act="tanh")),
    Case(
        "sgd_momentum_schedule",
        "",
        lambda: cnn(),
        optimizer=lambda: keras.optimizers.SGD(
            keras.optimizers.schedules.CosineDecay(0.05, EPOCHS * N_TRAIN // BATCH),
            momentum=0.9,
        ),
    ),
    Case("efficientnetv2b0", "", efficientnet, size=32, epochs=10),
    Case(
        "binary_sigmoid",
        "",
        lambda: cnn(head=keras.layers.Dense(1, activation="sigmoid")),
        loss="binary_crossentropy",
        binary=True,
    ),
]


# ---------------------------------------------------------------------------------------
# What the baselines need, recorded at each epoch end


def activation_of(layer) -> str:
    if isinstance(layer, keras.layers.Activation):
        return getattr(layer.activation, "__name__", "linear")
    if isinstance(layer, keras.layers.ReLU):
        return "relu"
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "linear") if act is not None else "none"


def _sat_fraction(out: np.ndarray, act: str) -> float | None:
    """DeepDiagnosis's saturation: the fraction of pre-activations beyond +-5, read from
    the outputs (sigmoid(5) = 0.99331, tanh(5) = 0.99991)."""
    if act == "sigmoid":
        return float(np.mean((out <= 1 - 0.99331) | (out >= 0.99331)))
    if act == "tanh":
        return float(np.mean(np.abs(out) >= 0.99991))
    return None


class Recorder(keras.callbacks.Callback):
    """Records at each epoch end what DeepDiagnosis's and AUTOTRAINER's rules read: the
    logs, each layer's output on the first batch of training data (inference mode, as
    both do), each weight's gradient of the loss on that batch, and the weights."""

    def __init__(self, x, y, loss, lr_of):
        super().__init__()
        self.x, self.y = x[:BATCH], y[:BATCH]
        self.loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        self.lr_of = lr_of
        self.epochs: list[dict] = []

    def on_train_begin(self, logs=None):
        model = self.model
        self.layers = [
            layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)
        ]
        self.probe = keras.Model(model.inputs, [layer.output for layer in self.layers])

    def on_epoch_end(self, epoch, logs=None):
        outputs = self.probe(self.x, training=False)
        outputs = [np.asarray(o, dtype="float64") for o in outputs]
        layers = []
        for layer, out in zip(self.layers, outputs):
            act = activation_of(layer)
            weights = layer.get_weights()
            kernel = np.asarray(weights[0], "float64") if weights else None
            layers.append(
                {
                    "name": layer.name,
                    "type": type(layer).__name__,
                    "activation": act,
                    "dense": isinstance(layer, keras.layers.Dense),
                    "flatten": isinstance(layer, keras.layers.Flatten),
                    "out_mean": float(np.mean(out)),
                    "out_mean_abs": float(np.mean(np.abs(out))),
                    "out_finite": bool(np.isfinite(out).all()),
                    "out_nonpositive": float(np.mean(out <= 0)),
                    "out_abs_sum_max": float(np.abs(out.reshape(len(out), -1)).sum(1).max()),
                    "out_min": float(np.nanmin(out)) if out.size else 0.0,
                    "out_max": float(np.nanmax(out)) if out.size else 0.0,
                    "saturated": _sat_fraction(out, act),
                    "kernel_mean": None if kernel is None else float(np.mean(kernel)),
                    "kernel_norm": None if kernel is None else float(np.linalg.norm(kernel)),
                    "kernel_var": None
                    if kernel is None or kernel.size < 2
                    else float(np.var(kernel.ravel(), ddof=1)),
                    "weights_finite": all(np.isfinite(w).all() for w in weights),
                    "weight_abs_max": max((float(np.abs(w).max()) for w in weights), default=0),
                }
            )
        grads = []
        trainable = self.model.trainable_weights
        if trainable:
            with tf.GradientTape() as tape:
                pred = self.model(self.x, training=False)
                y = self.y.reshape(-1, 1) if pred.shape[-1] == 1 else self.y
                loss = keras.ops.mean(self.loss_fn(y, pred))
            for var, g in zip(trainable, tape.gradient(loss, trainable)):
                g = np.zeros(var.shape) if g is None else np.asarray(g, "float64")
                layer = var.path.split("/")[-2] if "/" in var.path else ""
                grads.append(
                    {
                        "layer": layer,
                        "ndim": len(var.shape),
                        "norm": float(np.linalg.norm(g)),
                        "zeros": int(np.sum(g == 0)),
                        "size": int(g.size),
                        "mean": float(np.mean(g)),
                        "mean_abs": float(np.mean(np.abs(g))),
                        "finite": bool(np.isfinite(g).all()),
                    }
                )
        self.epochs.append(
            {
                "logs": {k: float(v) for k, v in (logs or {}).items()},
                "lr": self.lr_of(),
                "layers": layers,
                "grads": grads,
            }
        )


# ---------------------------------------------------------------------------------------
# Baseline 1: AUTOTRAINER (Zhang et al., ICSE'21), github.com/shiningrain/AUTOTRAINER,
# AutoTrainer/utils/monitor.py (`Monitor.determine`, `judge_issue`, `loss_issue`,
# `gradient_issue`, `layer_issue`, `loss_function_issue`) and utils/utils.py (when it
# checks), with the parameters of AutoTrainer/reproduce.py.
AT_PARAMS = {
    "beta_1": 1e-3,  # vanishing: gradient norm ratio first/last kernel below this ...
    "beta_2": 1e-4,  # ... and the first kernel's gradient norm below this
    "beta_3": 70,  # exploding: ratio above this
    "gamma": 0.7,  # dying ReLU: fraction of zero gradients at least this
    "zeta": 0.03,  # unstable: accuracy swings at least this ...
    "eta": 0.2,  # ... in at least this fraction of the epochs
    "delta": 0.01,  # accuracy stuck: no epoch improves it by this
    "Theta": 0.6,  # not converging: best accuracies below this
    "omega_1": 10,  # abnormal data: a layer's mean |output| at least this
    "omega_2": 1,  # output not a distribution: per-sample |output| sum above this + 0.1
}
# utils/repair.py, method 'efficiency': the repairs AUTOTRAINER tries per issue.
AT_REPAIRS = {
    "vanish": ("activation", "batch_norm"),
    "explode": ("activation", "gradient_clip", "batch_norm"),
    "relu": ("activation", "init", "batch_norm"),
    "unstable": ("optimizer", "learning_rate", "batch_size", "init"),
    "not_converge": ("optimizer", "learning_rate", "init"),
    "overfit": ("regularise",),
    "activation_issue": ("output_activation",),
    "loss_issue": ("loss",),
    "abnormal_data": ("data_scaling",),
}
AT_PRIORITY = {  # utils/modules.py `problem_evaluation`: the issue reported when several
    "activation_issue": 3,
    "loss_issue": 3,
    "abnormal_data": 4,
    "vanish": 2,
    "explode": 2,
    "relu": 2,
    "not_converge": 1,
    "unstable": 1,
}


def _has_nan(values) -> bool:
    values = np.asarray([np.nan if v is None else v for v in values], "float64")
    return bool(np.isnan(values).any() or np.isinf(values).any())


def _ol_judge(acc, threshold, rate) -> bool:
    maximum, minimum = [], []
    for i in range(1, len(acc) - 1):
        if acc[i] - acc[i - 1] >= 0 and acc[i] - acc[i + 1] >= 0:
            maximum.append(acc[i])
        if acc[i] - acc[i - 1] <= 0 and acc[i] - acc[i + 1] <= 0:
            minimum.append(acc[i])
    count = sum(
        maximum[i] - minimum[i] >= threshold for i in range(min(len(maximum), len(minimum)))
    )
    return count >= rate * len(acc)


def _max_delta(acc) -> float:
    return max([0.0] + [b - a for a, b in zip(acc, acc[1:])])


def autotrainer(record: list[dict], meta: dict) -> dict:
    """AUTOTRAINER's monitor, checked every epoch (checkgap 1): the first epoch it reports
    an issue, and the issue (the highest `problem_evaluation` of those found)."""
    p = AT_PARAMS
    total = meta["epochs"]
    f = {
        "died_relu": 0,
        "vanish_gradient": 0,
        "explode_gradient": 0,
        "nan_gradient": False,
        "nan_weight": False,
        "nan_loss": False,
        "abnormal_loss": False,
        "not_converge": False,
        "sc_accuracy": False,
        "unstable_loss": False,
        "test_not_well": 0,
        "test_turn_bad": 0,
    }
    # loss_function_issue: an output/loss pair it does not know.
    loss, units, act = meta["loss"], meta["units"], meta["out_activation"]
    f["improper_loss"] = not (
        (units <= 2 and "binary" in loss) or (units > 2 and "categorical" in loss)
    )
    if f["improper_loss"] and (
        (act != "sigmoid" and "binary" in loss and units != 2)
        or (act != "softmax" and "categorical" in loss)
        or (act != "linear" and "mean" in loss)
    ):
        f["activation_output"] = True
    history = {"loss": [], "acc": [], "val_loss": [], "val_acc": []}
    mid_check = True
    for epoch, rec in enumerate(record):
        logs = rec["logs"]
        history["loss"].append(logs.get("loss"))
        history["acc"].append(logs.get("accuracy", logs.get("binary_accuracy")))
        history["val_loss"].append(logs.get("val_loss"))
        history["val_acc"].append(logs.get("val_accuracy", logs.get("val_binary_accuracy")))
        look = (
            f["abnormal_loss"]
            or f["nan_loss"]
            or f["sc_accuracy"]
            or (total * 0.5 <= epoch and mid_check)
        )
        if total * 0.5 <= epoch and mid_check:
            mid_check = False
        layers = rec["layers"]
        if look:
            f.setdefault("activation_output", False)
            f.setdefault("abnormal_output", False)
            out = layers[-1]
            if out["out_abs_sum_max"] > p["omega_2"] + 0.1 or not out["out_finite"]:
                f["activation_output"] = True
            for other in layers[:-1]:
                if other["out_mean_abs"] >= p["omega_1"] and not f["activation_output"]:
                    f["abnormal_output"] = True
                    break
        grads = rec["grads"]
        if grads:  # a model with no trainable weight gives AUTOTRAINER no gradient to read
            if not all(g["finite"] for g in grads):
                f["nan_gradient"] = True
            else:
                kernels = [g["norm"] for g in grads if g["ndim"] > 1]
                ratio = kernels[0] / kernels[-1] if kernels and kernels[-1] > 0 else math.inf
                if ratio < p["beta_1"] and kernels[0] < p["beta_2"]:
                    f["vanish_gradient"] += 1
                if ratio > p["beta_3"]:
                    f["explode_gradient"] += 1
                zeros = sum(g["zeros"] for g in grads) / sum(g["size"] for g in grads)
                if zeros >= p["gamma"]:
                    f["died_relu"] += 1
        if not all(layer["weights_finite"] for layer in layers):
            f["nan_weight"] = True
        # loss_issue
        tl, ta, vl, va = (history[k] for k in ("loss", "acc", "val_loss", "val_acc"))
        if _has_nan(vl) or _has_nan(tl) or max(vl + tl) >= 1e3:
            f["nan_loss"] = True
        else:
            if min(vl + tl) < 0:
                f["abnormal_loss"] = True
            if len(tl) >= 0.3 * total - 1:
                bad = 0
                for i in range(len(tl) - 1):
                    if tl[-i - 1] - tl[-i - 2] < -1e-2 and vl[-i - 1] - vl[-i - 2] > 1e-2:
                        bad += 1
                    else:
                        f["test_turn_bad"] = bad
                        break
                if _ol_judge(ta, p["zeta"], p["eta"]):
                    f["unstable_loss"] = True
                if max(va) < p["Theta"] and max(ta) < p["Theta"]:
                    f["not_converge"] = True
                if _max_delta(va) < p["delta"] and _max_delta(ta) < p["delta"]:
                    f["sc_accuracy"] = True
        # judge_issue: it judges only when it looked at the layers' outputs.
        issues = []
        if look:
            if f["abnormal_output"]:
                issues.append("abnormal_data")
            if f["nan_loss"] or f["abnormal_loss"]:
                if f["abnormal_loss"]:
                    issues.append("loss_issue")
                elif f["activation_output"]:
                    issues.append("activation_issue")
                elif f["nan_weight"] or f["nan_gradient"]:
                    issues.append("explode")
            if f["not_converge"] or f["sc_accuracy"]:
                if f["activation_output"]:
                    issues.append("activation_issue")
                elif f["died_relu"] >= 1:
                    issues.append("relu")
                elif f["explode_gradient"] >= 1:
                    issues.append("explode")
                elif f["vanish_gradient"] >= 1:
                    issues.append("vanish")
                elif f["not_converge"] and f["sc_accuracy"] and not f["abnormal_output"]:
                    issues.append("not_converge")
            if f["unstable_loss"]:
                issues.append("activation_issue" if f["activation_output"] else "unstable")
            if not f["activation_output"] and f["improper_loss"]:
                issues.append("loss_issue")
        if issues:
            issue = max(dict.fromkeys(issues), key=lambda i: AT_PRIORITY[i])
            return {"epoch": epoch + 1, "symptom": issue, "fix": list(AT_REPAIRS[issue])}
    return {}


# ---------------------------------------------------------------------------------------
# Baseline 2: DeepDiagnosis (Wardat et al., ICSE'22), github.com/DeepDiagnosis/ICSE2022,
# callback/callbacks.py (`mapFaluireToFix.on_epoch_end` and the `identify*` and `*Analysis`
# functions): N = 5 (checks every 5 epochs), FRQ = 20, dead: fraction <= 0 at least 0.7
# (`threshold_layer_1`), saturated: more than 0.5 (`threshold_layer`) of the
# pre-activations beyond +-5, vanishing: mean |dW| below 1e-7 (`threshold_VG`), poor
# weight: variance outside [1e-5, 10], learning rate (lr |dW| / |W|) outside
# [1e-5, 1e-1] (`LearnRate_threshold` 1e-3 times 100 and / 100). It stops at its first
# finding; its "layer names" are read as each layer's activation (it matched separate
# Activation layers by name; these models fuse activations into their layers).
def _dd_fix(analysis: str, rec: dict, meta: dict, layer: int) -> list:
    """The fix message of one `*Analysis` function, as fix families."""
    poor = any(
        layer_["kernel_var"] is not None and not 1e-5 <= layer_["kernel_var"] <= 10
        for layer_ in rec["layers"]
    )
    unnormal = meta["x_min"] < -1 or meta["x_max"] > 1
    rates = [
        rec["lr"] * g["norm"] / layer_["kernel_norm"]
        for g, layer_ in zip(
            [g for g in rec["grads"] if g["ndim"] > 1],
            [layer_ for layer_ in rec["layers"] if layer_["kernel_norm"]],
        )
        if layer_["kernel_norm"]
    ]
    bad_lr = any(r > 1e-1 or r < 1e-5 for r in rates)
    last = layer + 1 == len(rec["layers"])
    if analysis == "out_of_range":
        return ["output_activation"]  # "change the activation function to softmax"
    if analysis == "numerical":
        if poor:
            return ["init"]
        if unnormal:
            return ["data_scaling"]
        return ["learning_rate"] if bad_lr else ["activation"]
    if analysis == "numerical_dw":
        return ["loss", "output_activation"] if layer + 2 == len(rec["layers"]) else ["activation"]
    if analysis in ("dead", "saturated"):
        if unnormal:
            return ["data_scaling"]
        if poor:
            return ["init"]
        return ["learning_rate"] if bad_lr else ["dropout", "activation"]
    if analysis == "vanishing":
        return ["learning_rate"] if bad_lr else ["layers", "activation"]
    if analysis == "unchanged":
        if last:
            return ["output_activation"]
        if poor:
            return ["init"]
        return ["learning_rate"] if bad_lr else ["optimizer"]
    if analysis in ("accuracy", "loss"):
        if poor:
            return ["init"]
        if unnormal:
            return ["data_scaling"]
        return ["learning_rate"] if bad_lr else ["optimizer"]
    if analysis == "invalid":
        if rec["layers"][-1]["activation"] in ("linear", "none"):
            return ["output_activation"]
        return ["learning_rate"] if bad_lr else ["optimizer"]
    return []


def _const(values) -> bool:
    """`meanResult`: the mean equals the maximum (all equal)."""
    values = [v for v in values if v is not None]
    return bool(values) and np.mean(values) == np.max(values)


def deepdiagnosis(record: list[dict], meta: dict) -> dict:
    """DeepDiagnosis's first finding: epoch, symptom and fix."""
    n_every, layers_n = 5, len(record[0]["layers"])
    forward = [[] for _ in range(layers_n)]
    weights = [[] for _ in range(layers_n)]
    deltas = [[] for _ in range(layers_n)]
    losses = []

    def found(epoch, symptom, analysis, rec, layer=0):
        return {"epoch": epoch + 1, "symptom": symptom, "fix": _dd_fix(analysis, rec, meta, layer)}

    for epoch, rec in enumerate(record):
        counter = epoch + 1
        layers = rec["layers"]
        for i, layer in enumerate(layers):
            forward[i].append(layer["out_mean"])
            act = layer["activation"]
            if i + 1 == layers_n and act != "softmax" and epoch == 0:
                # identifyRange: a linear/ReLU output with a categorical cross-entropy, or
                # labels outside the output activation's range.
                ce = "categorical_crossentropy" in meta["loss"]
                lo, hi = {"sigmoid": (0, 1), "tanh": (-1, 1), "relu": (0, math.inf)}.get(
                    act, (-math.inf, math.inf)
                )
                spread = layer["out_max"] - layer["out_min"]
                if (
                    (act in ("relu", "linear", "none") and ce)
                    or (act in ("linear", "none") and spread > 10 * (meta["y_max"] - meta["y_min"]))
                    or meta["y_min"] < lo
                    or meta["y_max"] > hi
                ):
                    return found(epoch, "out_of_range", "out_of_range", rec, i)
            mean = layer["out_mean"]
            if not math.isfinite(mean) or mean == 0:
                return found(epoch, "numerical_forward", "numerical", rec, i)
            if act == "relu" and epoch == meta["epochs"] - 1 and layer["out_nonpositive"] >= 0.7:
                return found(epoch, "dead_node", "dead", rec, i)
            if (
                counter % n_every == 0
                and layer["saturated"] is not None
                and layer["saturated"] > 0.5
            ):
                return found(epoch, "saturated", "saturated", rec, i)
        if counter % n_every == 0:
            for i, layer in enumerate(layers[:-1]):
                if _const(forward[i][-n_every:]) and not layer["flatten"]:
                    return found(epoch, "unchanged_forward", "unchanged", rec, i)
                forward[i].clear()
        loss = rec["logs"].get("loss")
        if loss is not None:
            losses.append(loss)
            if not math.isfinite(loss):
                return found(epoch, "invalid_loss", "invalid", rec)
            if counter % n_every == 0:
                if _const(losses[-n_every:]):
                    return found(epoch, "loss_not_decreasing", "loss", rec)
                losses.clear()
        acc = rec["logs"].get("accuracy", rec["logs"].get("binary_accuracy"))
        if acc is not None and (not math.isfinite(acc) or acc == 0):
            return found(epoch, "invalid_accuracy", "invalid", rec)
        # Backward: the dense layers' kernel gradients, last layer first.
        kernel_grads = {g["layer"]: g for g in rec["grads"] if g["ndim"] > 1}
        for i in reversed(range(layers_n)):
            layer = layers[i]
            if layer["dense"] and layer["name"] in kernel_grads:
                g = kernel_grads[layer["name"]]
                if not math.isfinite(g["mean"]) or g["mean"] == 0:
                    return found(epoch, "numerical_delta_weights", "numerical_dw", rec, i)
                if g["mean_abs"] < 1e-7:
                    return found(epoch, "vanishing_gradient", "vanishing", rec, i)
                deltas[i].append(g["mean"])
            weights[i].append(layer["kernel_mean"])
            km = layer["kernel_mean"]
            if km is not None and (not math.isfinite(km) or km == 0):
                return found(epoch, "numerical_weights", "numerical", rec, i)
        if counter % n_every == 0:
            for i in reversed(range(layers_n)):
                if layers[i]["dense"] and _const(deltas[i][-n_every:]):
                    return found(epoch, "unchanged_delta_weights", "unchanged", rec, i)
                deltas[i].clear()
                if layers[i]["dense"] and _const(weights[i][-n_every:]):
                    return found(epoch, "unchanged_weights", "unchanged", rec, i)
                weights[i].clear()
    return {}


# ---------------------------------------------------------------------------------------
# Running


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _lr_of(optimizer):
    def read():
        try:
            return float(np.asarray(keras.ops.convert_to_tensor(optimizer.learning_rate)))
        except (TypeError, ValueError, AttributeError):
            return float("nan")

    return read


def run_one(case: Case, seed: int, log_root: Path) -> dict:
    keras.utils.set_random_seed(seed)
    train, val, test = shapes(seed, case.size)
    if case.binary:
        train, val, test = ((x, (y < 2).astype("float32")) for x, y in (train, val, test))
    rng = np.random.default_rng(seed)
    train, val = (case.data or _same)(train, val, rng)
    test_x = test[0] * 255 if case.data is _raw_pixels else test[0]
    model = case.model()
    if case.freeze:
        model.trainable = False
    optimizer = case.optimizer()
    metric = "binary_accuracy" if case.binary else "accuracy"
    model.compile(optimizer, case.loss, metrics=[metric])
    seen = []
    log_dir = log_root / f"{case.name}_{seed}"
    convviz = kcv.ConvViz(
        str(log_dir), probe=(val[0][:8], val[1][:8]), occlusion=False, on_alert=seen.append
    )
    recorder = Recorder(train[0], train[1], case.loss, _lr_of(optimizer))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(
            train[0],
            train[1],
            validation_data=val,
            epochs=case.epochs,
            batch_size=BATCH,
            shuffle=case.shuffle,
            verbose=0,
            callbacks=[recorder, convviz],
        )
        convviz.settle()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    pred = model.predict(test_x, batch_size=200, verbose=0)
    if case.binary:
        test_acc = float(np.mean((pred[:, 0] > 0.5) == (test[1] > 0.5)))
    else:
        test_acc = float(np.mean(np.argmax(pred, -1) == test[1]))
    losses = history.history["loss"]
    chance = 0.5 if case.binary else 0.25
    finite = all(math.isfinite(v) for v in losses)
    broken = (not finite) or test_acc < chance + BROKEN_BELOW * (1 - chance)
    alerts = [
        {
            "rule": a.rule,
            "layer": a.layer,
            "epoch": a.epoch,
            "since_epoch": a.since_epoch,
            "value": a.value if math.isfinite(a.value) else str(a.value),
            "meaning": a.meaning,
            "advice": a.advice,
        }
        for a in seen
    ]
    labels = np.asarray(train[1])
    out_layer = recorder.layers[-1]
    meta = {
        "epochs": case.epochs,
        "loss": case.loss if isinstance(case.loss, str) else type(case.loss).__name__,
        "units": int(model.outputs[0].shape[-1]),
        "out_activation": activation_of(out_layer),
        "x_min": float(np.min(train[0])),
        "x_max": float(np.max(train[0])),
        "y_min": float(labels.min()),
        "y_max": float(labels.max()),
    }
    return {
        "case": case.name,
        "seed": seed,
        "healthy": not case.bug,
        "test_accuracy": test_acc,
        "final_val_accuracy": history.history.get("val_" + metric, [None])[-1],
        "loss": losses,
        "val_loss": history.history.get("val_loss"),
        "broken": broken,
        "alerts": alerts,
        "autotrainer": autotrainer(recorder.epochs, meta),
        "deepdiagnosis": deepdiagnosis(recorder.epochs, meta),
        "cpu_s": cpu,
        "wall_s": wall,
    }


def judge(case: Case, run: dict) -> dict:
    """Detected, first epoch, right cause first, actionable fix: ours and the baselines'."""
    out = {}
    alerts = run["alerts"]
    first = alerts[0] if alerts else None
    if first is None:
        out["ours"] = {"detected": False}
    else:

        def right(alert):
            named = alert["rule"] in case.right or any(
                f"`{rule}`" in alert["meaning"] for rule in case.right
            )
            return named

        out["ours"] = {
            "detected": True,
            "epoch": first["epoch"],
            "first": first["rule"],
            "right": right(first),
            "actionable": right(first)
            and any(w.lower() in first["advice"].lower() for w in case.fix_words),
            "any_right": any(right(a) for a in alerts),
        }
    for tool, rights in (("autotrainer", case.autotrainer), ("deepdiagnosis", case.deepdiagnosis)):
        found = run[tool]
        if not found:
            out[tool] = {"detected": False}
            continue
        ok = found["symptom"] in rights
        out[tool] = {
            "detected": True,
            "epoch": found["epoch"],
            "first": found["symptom"],
            "right": ok,
            "actionable": ok and bool(set(found["fix"]) & set(case.fix_families)),
        }
    return out


def summarise(results: list[dict]) -> dict:
    cases = {c.name: c for c in CASES + HEALTHY}
    summary = {}
    bug_runs = [r for r in results if not r["healthy"]]
    broke = [r for r in bug_runs if r["broken"]]
    healthy = [r for r in results if r["healthy"]]
    for tool in ("ours", "autotrainer", "deepdiagnosis"):
        judged = [judge(cases[r["case"]], r)[tool] for r in broke]
        detected = [j for j in judged if j["detected"]]
        epochs = [j["epoch"] for j in detected]
        false = [judge(cases[r["case"]], r)[tool] for r in healthy]
        summary[tool] = {
            "broken_runs": len(broke),
            "detected": len(detected),
            "right_first": sum(j["right"] for j in detected),
            "actionable": sum(j["actionable"] for j in detected),
            "median_first_epoch": statistics.median(epochs) if epochs else None,
            "healthy_runs": len(healthy),
            "false_alarms": sum(j["detected"] for j in false),
        }
    return summary


def _pct(a, b):
    return f"{a}/{b} ({100 * a / b:.0f} %)" if b else "-"


def table(data: dict) -> str:
    cases = {c.name: c for c in CASES + HEALTHY}
    results = data["results"]
    lines = [
        "| case | seed | test acc | broke | ConvViz alerts (epoch) | 1st right | fix | "
        "AUTOTRAINER | DeepDiagnosis |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def mark(j):
        return "yes" if j else "no"

    def base(j, found):
        if not j["detected"]:
            return "-"
        good = "right" if j["right"] else "wrong"
        fix = ", fix" if j["actionable"] else ""
        return f"{found['symptom']} (ep {found['epoch']}; {good}{fix})"

    for r in results:
        j = judge(cases[r["case"]], r)
        first_epochs = {}  # a rule that fires on several layers: its first epoch
        for a in r["alerts"]:
            first_epochs.setdefault(a["rule"], a["epoch"])
        rules = [f"{rule} ({epoch})" for rule, epoch in first_epochs.items()]
        shown = ", ".join(rules[:4]) + (f" +{len(rules) - 4}" if len(rules) > 4 else "")
        ours = j["ours"]
        healthy = r["healthy"]
        lines.append(
            f"| {r['case']}{' (healthy)' if healthy else ''} | {r['seed']} | "
            f"{r['test_accuracy']:.2f} | {'-' if healthy else mark(r['broken'])} | "
            f"{shown or '-'} | "
            f"{'-' if healthy or not ours['detected'] else mark(ours['right'])} | "
            f"{'-' if healthy or not ours['detected'] else mark(ours['actionable'])} | "
            f"{base(j['autotrainer'], r['autotrainer'])} | "
            f"{base(j['deepdiagnosis'], r['deepdiagnosis'])} |"
        )
    lines += ["", "| | ConvViz | AUTOTRAINER | DeepDiagnosis | target |", "|---|---|---|---|---|"]
    s = data["summary"]
    rows = [
        ("broken bug runs detected", "detected", ">= 90 %"),
        ("right cause named first", "right_first", ">= 85 %"),
        ("actionable fix", "actionable", ">= 80 %"),
    ]
    for label, key, target in rows:
        cells = [
            _pct(s[t][key], s[t]["broken_runs"]) for t in ("ours", "autotrainer", "deepdiagnosis")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    cells = [str(s[t]["median_first_epoch"]) for t in ("ours", "autotrainer", "deepdiagnosis")]
    lines.append("| median epoch of the first finding | " + " | ".join(cells) + " | <= 2 |")
    cells = [
        f"{s[t]['false_alarms']}/{s[t]['healthy_runs']}"
        for t in ("ours", "autotrainer", "deepdiagnosis")
    ]
    lines.append("| healthy runs with an alarm | " + " | ".join(cells) + " | 0 |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per bug case (default 2)")
    parser.add_argument("--quick", action="store_true", help="1 seed everywhere")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--out", default=str(HERE / "training_bugs.json"))
    parser.add_argument("--table", action="store_true", help="print the table of --out")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return
    bug_seeds = 1 if args.quick else args.seeds
    healthy_seeds = 1 if args.quick else 3
    only = set(filter(None, args.only.split(",")))
    plan = [(c, s) for c in CASES for s in range(bug_seeds)]
    plan += [(c, s) for c in HEALTHY for s in range(healthy_seeds)]
    plan = [(c, s) for c, s in plan if not only or c.name in only]
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for case, seed in plan:
            r = run_one(case, seed, Path(tmp))
            results.append(r)
            rules = list(dict.fromkeys(a["rule"] for a in r["alerts"]))
            print(
                f"{case.name:32s} seed {seed} acc {r['test_accuracy']:.2f} broken "
                f"{r['broken']!s:5s} alerts {rules} AT {r['autotrainer'].get('symptom')} "
                f"DD {r['deepdiagnosis'].get('symptom')} ({r['cpu_s']:.0f} s CPU, "
                f"{r['wall_s']:.0f} s)",
                flush=True,
            )
    data = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "keras_convviz": getattr(kcv, "__version__", "?"),
        "argv": sys.argv[1:],
        "total_wall_s": time.perf_counter() - start,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "broken_below": BROKEN_BELOW,
        "results": results,
    }
    data["summary"] = summarise(results)
    Path(args.out).write_text(json.dumps(data, indent=1))
    print(table(data))


if __name__ == "__main__":
    main()
