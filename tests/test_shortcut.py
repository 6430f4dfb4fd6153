"""Truth on trained models: the demo CNN trained with a class cue in a corner (a shortcut)
is right on the probe by the cue, its Grad-CAM leaves the shapes and `evidence_off_region`
fires; trained on the same shapes without the cue, its maps stay on the shapes, no alert."""

from __future__ import annotations

import numpy as np
from conftest import SHORTCUT_EPOCHS, SHORTCUT_SIZE

from keras_convviz import _tags
from keras_convviz.datasets import CLASS_NAMES, make_shortcut_shapes
from keras_convviz.exports.events import read_run


def _series(run_data, run: str, tag: str) -> list[float]:
    for series in read_run(run_data.log_dir, run):
        if series.tag == tag:
            return [float(v) for v in series.values]
    raise AssertionError(f"no {tag} in {run}")


def test_the_shortcut_alert_fires_before_the_last_epoch_and_never_on_the_clean_model(
    shortcut_runs,
):
    fired = [a for a in shortcut_runs["shortcut"].alerts if a.rule == "evidence_off_region"]
    assert fired, [a.rule for a in shortcut_runs["shortcut"].alerts]
    assert fired[0].epoch < SHORTCUT_EPOCHS
    assert fired[0].subject == f"grad_cam/{shortcut_runs['shortcut'].layer}"
    clean = [a.rule for a in shortcut_runs["clean"].alerts]
    assert "evidence_off_region" not in clean


def test_the_shortcut_models_maps_lie_off_the_shapes_the_clean_models_on_them(shortcut_runs):
    shares = {}
    for name, run in shortcut_runs.items():
        tag = _tags.tag("grad_cam", run.layer, _tags.IN_REGION)
        shares[name] = _series(run, "grad_cam", tag)[-1]
        floor = _series(run, _tags.FLOOR_UNIFORM, tag)[-1]
        assert 0.02 < floor < 0.12  # the shapes' share of the 32x32 images
    shortcut_floor = floor
    assert shares["shortcut"] <= shortcut_floor + 0.05
    assert shares["clean"] > 1.5 * shares["shortcut"], shares


def test_the_shortcut_model_follows_the_cue_on_images_with_another_classs_cue(shortcut_runs):
    data = make_shortcut_shapes(200, SHORTCUT_SIZE, seed=77)
    other = (data.labels + 1) % len(CLASS_NAMES)
    swapped = make_shortcut_shapes(200, SHORTCUT_SIZE, seed=77, cues=other)
    model = shortcut_runs["shortcut"].model
    assert np.mean(np.argmax(model.predict(data.images, verbose=0), -1) == data.labels) > 0.95
    predicted = np.argmax(model.predict(swapped.images, verbose=0), -1)
    assert np.mean(predicted == other) > 0.9
    assert np.mean(predicted == data.labels) < 0.1


def test_convviz_demo_takes_shortcut(monkeypatch):
    from keras_convviz import demo
    from keras_convviz.__main__ import main

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda **options: calls.append(options))
    main(["demo", "--shortcut", "--epochs", "3"])
    main(["demo"])
    assert [(c["shortcut"], c.get("epochs")) for c in calls] == [(True, 3), (False, None)]
