"""Health numbers: against numpy on known activations and weights, and as the callbacks write
them during a real `fit`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import read_runs

import keras_convviz as kcv
from keras_convviz.health import activation_health, map_change, weight_health


def numpy_activation_health(a: np.ndarray, bounds=None, rectified=None) -> dict:
    """`rectified`: the ReLU output whose channels may die (None: no `dead_fraction`)."""
    a = a.astype(np.float64)
    peak = np.abs(a).max()
    out = {
        "near_zero_fraction": np.mean(np.abs(a) <= 1e-3 * peak),
        "mean": a.mean(),
        "std": a.std(),
        "max_activation": peak,
    }
    if rectified is not None:
        out["dead_fraction"] = np.mean(rectified.max(axis=(0, 1, 2)) <= 0)
    if bounds is not None:
        low, high, both = bounds
        margin = 0.01 * (high - low)
        saturated = a >= high - margin
        if both:
            saturated |= a <= low + margin
        out["saturated_fraction"] = saturated.mean()
    return out


def check_close(got: dict, expected: dict):
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert abs(float(got[name]) - value) < 1e-5 * max(1.0, abs(value)), name


def test_activation_numbers_of_a_relu_layer():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(3, 5, 4, 6)), 0).astype(np.float32)
    a[..., 1] = 0.0  # a dead channel
    a[..., 4] = -2.0  # negative everywhere (a linear layer's dead channel)
    a[0, 0, 0, 0] = 1e-6  # near zero, not zero
    got = activation_health(a, "relu")
    check_close(got, numpy_activation_health(a, rectified=a))
    assert float(got["dead_fraction"]) == pytest.approx(2 / 6)
    assert float(got["max_activation"]) == pytest.approx(np.abs(a).max())  # magnitude: 2.0+


@pytest.mark.parametrize(
    "activation, bounds",
    [
        ("sigmoid", (0.0, 1.0, True)),
        ("hard_sigmoid", (0.0, 1.0, True)),
        ("tanh", (-1.0, 1.0, True)),
        ("relu6", (0.0, 6.0, False)),  # relu6's 0 is a dead unit, not saturation
    ],
)
def test_bounded_activations_count_their_saturated_values(activation, bounds):
    low, high, _ = bounds
    rng = np.random.default_rng(1)
    a = rng.uniform(low, high, size=(2, 4, 4, 3)).astype(np.float32)
    a[0, :2] = high  # saturated at the top
    a[1, :1] = low  # at the bottom
    got = activation_health(a, activation)
    rectified = a if activation == "relu6" else None  # only a ReLU's channels can die
    check_close(got, numpy_activation_health(a, bounds, rectified))
    assert float(got["saturated_fraction"]) >= 2 * 4 * 3 / a.size


def test_weight_numbers():
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    w1 = w0 + 0.01 * rng.normal(size=w0.shape).astype(np.float32)
    got = weight_health(w1, w0)
    assert float(got["norm"]) == pytest.approx(np.linalg.norm(w1), rel=1e-6)
    expected = np.linalg.norm(w1 - w0) / np.linalg.norm(w0)
    assert float(got["relative_update"]) == pytest.approx(expected, rel=1e-5)
    assert float(weight_health(w0, w0)["relative_update"]) == 0.0
    assert set(weight_health(w0)) == {"norm"}


def health_model():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="sigmoid", name="squash")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="frozen")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
    model.get_layer("frozen").trainable = False
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_callbacks_write_the_health_of_each_layer(tmp_path):
    model = health_model()
    rng = np.random.default_rng(3)
    x = rng.random((32, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    kernels = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: kernels.append(
            model.get_layer("squash").kernel.numpy().copy()
        )
    )
    callbacks = [kcv.FeatureMaps(tmp_path, x[:4]), kcv.FilterWeights(tmp_path), record]
    model.fit(x, y, epochs=3, verbose=0, callbacks=callbacks)
    runs = read_runs(tmp_path)

    maps = kcv.feature_maps(model, x[:4])
    features = runs["feature_maps"]
    for layer, bounds in (("squash", (0.0, 1.0, True)), ("frozen", None)):
        rectified = maps[layer] if layer == "frozen" else None  # relu: its channels can die
        expected = numpy_activation_health(maps[layer], bounds, rectified)
        for name, value in expected.items():
            series = features[f"feature_maps/{layer}/{name}"]
            assert series["steps"] == [0, 1, 2], (layer, name)
            assert abs(series["values"][-1] - value) < 1e-5 * max(1.0, abs(value)), (layer, name)
    assert "feature_maps/frozen/saturated_fraction" not in features  # relu: unbounded
    assert "feature_maps/squash/dead_fraction" not in features  # sigmoid: cannot die

    weights = runs["filter_weights"]
    updates = weights["filter_weights/squash/relative_update"]
    assert updates["steps"] == [1, 2]  # none before the first snapshot
    for step, value in zip(updates["steps"], updates["values"]):
        expected = np.linalg.norm(kernels[step] - kernels[step - 1]) / np.linalg.norm(
            kernels[step - 1]
        )
        assert value == pytest.approx(expected, rel=1e-4)
    # Frozen: drawn once, no update to judge.
    assert weights["filter_weights/frozen"]["steps"] == [0]
    assert "filter_weights/frozen/relative_update" not in weights
    norms = weights["filter_weights/squash/norm"]["values"]
    assert norms[-1] == pytest.approx(np.linalg.norm(kernels[-1]), rel=1e-5)


def test_map_change_is_one_minus_the_correlation():
    rng = np.random.default_rng(5)
    before = rng.random((4, 6, 5)).astype(np.float32)
    now = before.copy()
    now[0] = 3 * before[0] + 1  # the same picture, rescaled: no change
    now[1] = rng.random((6, 5))  # unrelated
    now[2] = 0.5  # constant now
    now[3] = -before[3]  # inverted
    got = map_change(now, before).numpy()
    expected = [1 - np.corrcoef(now[i].ravel(), before[i].ravel())[0, 1] for i in (0, 1, 3)]
    np.testing.assert_allclose(got[[0, 1, 3]], expected, atol=1e-5)
    assert got[0] == pytest.approx(0, abs=1e-5) and got[3] == pytest.approx(2, abs=1e-5)
    assert got[2] == 1.0  # a constant map correlates with nothing
    assert map_change(now[2:3], now[2:3]).numpy()[0] == 0.0  # unless it did not change


def test_grad_cam_writes_how_much_each_map_changed(tmp_path, model, data):
    x, y = data
    probe = (x[:3], y[:3])
    cams = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: cams.append(kcv.grad_cam(model, probe))
    )
    model.fit(x, y, epochs=3, verbose=0, callbacks=[kcv.GradCAM(tmp_path, probe), record])
    runs = read_runs(tmp_path)["grad_cam"]
    for i in range(3):
        series = runs[f"grad_cam/conv_b/image_{i}/change"]
        assert series["steps"] == [1, 2]
        for step, value in zip(series["steps"], series["values"]):
            a, b = cams[step][i].ravel(), cams[step - 1][i].ravel()
            assert value == pytest.approx(1 - np.corrcoef(a, b)[0, 1], abs=1e-4)


def test_model_health_numbers(tmp_path):
    keras.utils.set_random_seed(6)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(7)
    x = rng.random((6, 8, 8, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 0, 1])
    model.fit(x, labels, epochs=1, verbose=0, callbacks=[kcv.ModelHealth(tmp_path, (x, labels))])
    runs = read_runs(tmp_path)["health"]
    p = model.predict(x, verbose=0)
    predicted = p.argmax(1)
    last = {tag: series["values"][-1] for tag, series in runs.items()}
    assert last["health/accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert last["health/confidence"] == pytest.approx(p.max(1).mean(), rel=1e-5)
    majority = np.bincount(predicted).max() / 6
    assert last["health/majority_fraction"] == pytest.approx(majority)
    assert last["health/label_majority_fraction"] == pytest.approx(3 / 6)
    for i in range(6):
        assert last[f"health/image_{i}/probability"] == pytest.approx(p[i, labels[i]], rel=1e-5)


@pytest.mark.parametrize("one_hot", [False, True])
def test_loss_and_its_gradient_norms_on_the_probe(tmp_path, one_hot):
    import tensorflow as tf

    model = health_model()
    loss_name = "categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"
    model.compile("adam", loss_name)  # the loss as the user compiled it, labels as given
    rng = np.random.default_rng(8)
    x = rng.random((16, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    labels = np.eye(3, dtype=np.float32)[y] if one_hot else y
    probe = (x[:5], labels[:5])
    callbacks = [
        kcv.ModelHealth(tmp_path / "with", probe, gradients=True),
        kcv.ModelHealth(tmp_path / "without", probe),
    ]
    model.fit(x, labels, epochs=1, verbose=0, callbacks=callbacks)
    # By default the loss (from the forward), not its gradients (one more backward).
    without = read_runs(tmp_path / "without")["health"]
    assert "health/loss" in without
    assert not [tag for tag in without if "gradient" in tag]
    runs = read_runs(tmp_path / "with")["health"]
    last = {tag: series["values"][-1] for tag, series in runs.items()}

    loss_fn = keras.losses.get(loss_name)
    # Every trainable layer with a kernel, in graph order, the dense head included; the
    # frozen conv is not trained, so not judged.
    kernels = [model.get_layer(n).kernel for n in ("squash", "head")]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(loss_fn(probe[1], model(probe[0], training=False)))
    grads = tape.gradient(loss, [k.value for k in kernels])
    assert last["health/loss"] == pytest.approx(float(loss), rel=1e-5)
    assert without["health/loss"]["values"][-1] == pytest.approx(float(loss), rel=1e-5)
    norms = [float(tf.norm(g)) for g in grads]
    assert last["health/squash/gradient_norm"] == pytest.approx(norms[0], rel=1e-4)
    assert last["health/head/gradient_norm"] == pytest.approx(norms[1], rel=1e-4)
    assert last["health/squash/gradient_ratio"] == pytest.approx(norms[0] / norms[1], rel=1e-4)
    assert "health/head/gradient_ratio" not in last  # the last layer has no later one
    assert not [tag for tag in last if tag.startswith("health/frozen/")]


def test_gradients_must_be_a_bool(tmp_path):
    probe = np.zeros((2, 12, 12, 3), np.float32)
    with pytest.raises(
        TypeError, match=r"`gradients` must be True or False. Received: gradients='yes'"
    ):
        kcv.ModelHealth(tmp_path, probe, gradients="yes")


def test_no_loss_numbers_without_labels_or_with_a_custom_compute_loss(tmp_path):
    class Custom(keras.Model):
        def compute_loss(self, *args, **kwargs):  # might update its own trackers
            return super().compute_loss(*args, **kwargs)

    base = health_model()
    custom = Custom(base.inputs, base.outputs)
    custom.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(9).random((8, 12, 12, 3)).astype(np.float32)
    y = np.arange(8) % 3
    for model, probe, where in ((base, x[:4], "nolabels"), (custom, (x[:4], y[:4]), "custom")):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[kcv.ModelHealth(tmp_path / where, probe)])
        tags = read_runs(tmp_path / where)["health"]
        assert "health/loss" not in tags and not any("gradient" in t for t in tags), where


def frozen_base_model():
    """A small functional base inside an outer model, as a `keras.applications` base is."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="base_a")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="base_b")(x)
    base = keras.Model(inputs, x, name="base")
    outer_in = keras.Input((12, 12, 3))
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="top_conv")(
        base(outer_in)
    )
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(outer_in, keras.layers.Dense(3, activation="softmax", name="head")(y))
    return model, base


def test_a_frozen_base_is_drawn_once_and_again_when_fine_tuned(tmp_path):
    from keras_convviz.alerts import ConvVizAlert

    model, base = frozen_base_model()
    base.trainable = False  # the layers keep their own flags; the parent freezes them
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(6)
    x = rng.random((16, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    seen = []
    callback = kcv.ConvViz(
        tmp_path,
        (x[:2], y[:2]),
        layer_names=["base/base_a", "base/base_b", "top_conv"],
        feature_maps=False,
        grad_cam=False,
        occlusion=False,
        health=False,
        on_alert=seen.append,
        on_error="raise",
        alerts={"collapsed_model": False, "learning_rate": False},
    )
    # SGD(0): nothing moves, so only the trainable layer may be told it stalled.
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    weights = read_runs(tmp_path)["filter_weights"]
    for layer in ("base/base_a", "base/base_b"):
        assert weights[f"filter_weights/{layer}"]["steps"] == [0], layer
        assert f"filter_weights/{layer}/relative_update" not in weights
    assert weights["filter_weights/top_conv"]["steps"] == [0, 1, 2]
    assert {(a.rule, a.layer) for a in seen} == {("stalled_updates", "top_conv")}

    # Fine-tuning: unfrozen, the base trains, is drawn at each snapshot and judged again.
    base.trainable = True
    model.compile(keras.optimizers.SGD(10.0), "sparse_categorical_crossentropy")
    seen.clear()
    with pytest.warns(ConvVizAlert):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    weights = read_runs(tmp_path)["filter_weights"]
    for layer in ("base/base_a", "base/base_b"):
        assert weights[f"filter_weights/{layer}"]["steps"] == [0, 3, 4], layer
        assert weights[f"filter_weights/{layer}/relative_update"]["steps"] == [3, 4]
    # The base's layers are judged now: a learning rate of 10 moves them far too much.
    assert {a.layer for a in seen if a.rule == "large_updates"} >= {"base/base_a"}


def test_the_update_of_a_large_kernel_is_measured_on_a_fixed_sample_of_it():
    import tensorflow as tf

    from keras_convviz.callbacks.model_health import UPDATE_SAMPLE, update_sample

    rng = np.random.default_rng(0)
    start = rng.normal(size=(1024, 300)).astype(np.float32)
    kernel = tf.Variable(start)
    before = update_sample(kernel)
    assert before.shape[0] <= UPDATE_SAMPLE < start.size  # not a copy of the whole kernel
    kernel.assign_add(0.01 * rng.normal(size=start.shape).astype(np.float32))
    whole = float(weight_health(kernel, start)["relative_update"])
    sampled = float(weight_health(update_sample(kernel), before)["relative_update"])
    assert abs(sampled - whole) < 0.05 * whole
    small = np.arange(72, dtype=np.float32).reshape(3, 3, 2, 4)
    np.testing.assert_array_equal(update_sample(tf.Variable(small)), small.ravel())  # whole
