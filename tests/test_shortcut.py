"""Truth on trained models: the demo CNN trained with a class cue in a corner (a shortcut)
is right on the probe by the cue, its Grad-CAM leaves the shapes and `evidence_off_region`
fires; trained on the same shapes without the cue (the truth tests' model, `trained_shapes`),
its maps stay on the shapes, no alert."""

from __future__ import annotations

import numpy as np
from conftest import SHORTCUT_EPOCHS, SHORTCUT_SIZE

from keras_convviz import _tags
from keras_convviz.datasets import CLASS_NAMES, make_shortcut_shapes
from keras_convviz.exports.events import read_run

# What the clean model's Grad-CAM share inside the shapes must reach: above the uniform floor
# (the shapes' area share) by this much, and this many times the shortcut model's share.
CLEAN_ABOVE_FLOOR = 0.15
CLEAN_OVER_SHORTCUT = 3.0


def _series(run_data, run: str, tag: str) -> list[float]:
    for series in read_run(run_data.log_dir, run):
        if series.tag == tag:
            return [float(v) for v in series.values]
    raise AssertionError(f"no {tag} in {run}")


def in_region_and_floor(run) -> tuple[float, float]:
    """Grad-CAM's `in_region` on the probe after the last epoch, and its uniform floor."""
    tag = _tags.tag("grad_cam", run.layer, _tags.IN_REGION)
    return _series(run, "grad_cam", tag)[-1], _series(run, _tags.FLOOR_UNIFORM, tag)[-1]


def follows_the_cue(model) -> dict[str, float]:
    """On 200 unseen shapes: the accuracy with each image's own class's cue, and with the
    next class's cue the share of predictions that follow the cue and that follow the
    shape."""
    data = make_shortcut_shapes(200, SHORTCUT_SIZE, seed=77)
    other = (data.labels + 1) % len(CLASS_NAMES)
    swapped = make_shortcut_shapes(200, SHORTCUT_SIZE, seed=77, cues=other)
    predicted = np.argmax(model.predict(swapped.images, verbose=0), -1)
    return {
        "accuracy": np.mean(np.argmax(model.predict(data.images, verbose=0), -1) == data.labels),
        "cue": np.mean(predicted == other),
        "shape": np.mean(predicted == data.labels),
    }


def test_the_shortcut_alert_fires_before_the_last_epoch_and_never_on_the_clean_model(
    shortcut_runs,
):
    """Seed spread, seeds 0-4, oneDNN on and off (BENCHMARKS.md): fired at epoch 3 of 6
    for every training; never on the clean model (no alert at all)."""
    fired = [a for a in shortcut_runs["shortcut"].alerts if a.rule == "evidence_off_region"]
    assert fired, [a.rule for a in shortcut_runs["shortcut"].alerts]
    assert fired[0].epoch < SHORTCUT_EPOCHS
    assert fired[0].subject == f"grad_cam/{shortcut_runs['shortcut'].layer}"
    clean = [a.rule for a in shortcut_runs["clean"].alerts]
    assert "evidence_off_region" not in clean


def test_the_shortcut_models_maps_lie_off_the_shapes_the_clean_models_on_them(shortcut_runs):
    """Seed spread, seeds 0-4, oneDNN on and off (BENCHMARKS.md): floors 0.043; shortcut
    share - floor -0.027 to -0.017 (test: <= 0.05); clean share - floor 0.27-0.31 (test:
    >= 0.15); clean / shortcut 13.1-21.2 (test: > 3)."""
    shares, floors = {}, {}
    for name, run in shortcut_runs.items():
        shares[name], floors[name] = in_region_and_floor(run)
        assert 0.02 < floors[name] < 0.12, floors  # the shapes' share of the images
    assert shares["shortcut"] <= floors["shortcut"] + 0.05, (shares, floors)
    assert shares["clean"] >= floors["clean"] + CLEAN_ABOVE_FLOOR, (shares, floors)
    assert shares["clean"] > CLEAN_OVER_SHORTCUT * shares["shortcut"], shares


def test_the_shortcut_model_follows_the_cue_on_images_with_another_classs_cue(shortcut_runs):
    """Seed spread, seeds 0-4, oneDNN on and off (BENCHMARKS.md): accuracy 1.0, follows the
    cue 0.995-1.0, follows the shape 0-0.005."""
    shares = follows_the_cue(shortcut_runs["shortcut"].model)
    assert shares["accuracy"] > 0.95, shares
    assert shares["cue"] > 0.9, shares
    assert shares["shape"] < 0.1, shares


def test_convviz_demo_takes_shortcut(monkeypatch):
    from keras_convviz import demo
    from keras_convviz.__main__ import main

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda **options: calls.append(options))
    main(["demo", "--shortcut", "--epochs", "3"])
    main(["demo"])
    assert [(c["shortcut"], c.get("epochs")) for c in calls] == [(True, 3), (False, None)]
