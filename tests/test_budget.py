"""`ConvViz(budget=...)`: the schedule of the costly kinds, on a fake clock, and in a real fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz.callbacks.budget import Budget


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Member:
    """A callback as the budget sees it: its runs, its `freq`, whether it is due."""

    def __init__(self, run="occlusion_sensitivity", freq=1):
        self.run = run
        self.freq = freq

    def run_names(self):
        return (self.run,)

    def _scheduled(self, epoch):
        return epoch % self.freq == 0


def simulate(budget, members, epochs, epoch_time, cheap, costs, first_extra=0.0):
    """Train `epochs` epochs of `epoch_time` s on the fake clock; each snapshot holds
    `cheap` s plus the cost of each member admitted (`first_extra` more at the first, its
    trace). Returns the epochs each member ran at."""
    clock = budget.clock
    budget.begin(members)
    ran = {m: [] for m in members}
    for epoch in range(epochs):
        clock.now += epoch_time
        budget.hold()
        clock.now += cheap + (first_extra if epoch == 0 else 0.0)
        for member in members:
            if member._scheduled(epoch) and budget.admits(member, epoch):
                ran[member].append(epoch)
                clock.now += costs[member]
        budget.release(epoch_end=True, snapshot=True)
    return ran


def test_a_kind_costlier_than_the_budget_is_thinned_to_it():
    budget = Budget(0.1, Clock())
    occlusion = Member()
    with pytest.warns(
        UserWarning,
        match=r"Occlusion\) takes about 2.01 s a snapshot against 1 s epochs, so it runs "
        r"about every 21 epochs",
    ) as seen:
        ran = simulate(budget, [occlusion], 200, 1.0, 0.01, {occlusion: 2.0})
    assert len(seen) == 1  # once per kind per training
    assert "`budget=None`" in str(seen[0].message)
    runs = ran[occlusion]
    assert runs[0] == 0  # the first snapshot always runs
    # 0.1 s per 1 s epoch, 0.01 of it for the cheap kinds: 2 s fit about every 22 epochs.
    assert 7 <= len(runs) <= 10
    assert budget.held() <= 0.1 * budget.training_time() + 2.0  # within one run of it
    gaps = np.diff(runs[1:])
    assert gaps.min() >= 20 and gaps.max() <= 23


def test_a_cheap_costly_kind_runs_at_every_freq_and_the_first_trace_is_paid_back():
    budget = Budget(0.1, Clock())
    saliency = Member("smoothgrad", freq=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not thinned after the trace is paid back: no warning
        ran = simulate(budget, [saliency], 30, 1.0, 0.0, {saliency: 0.02})
    assert ran[saliency] == list(range(0, 30, 2))
    # A first snapshot of 5 s (tracing) holds the costly kind back until training has
    # earned it and a second run at the cost measured then (the trace included: the kind's
    # cost is known only once it ran again): 100 s of training at 0.1. Then every `freq`.
    budget = Budget(0.1, Clock())
    with pytest.warns(UserWarning, match="runs about every"):
        ran = simulate(budget, [saliency], 140, 1.0, 0.0, {saliency: 0.02}, first_extra=5.0)
    assert ran[saliency][0] == 0
    assert 98 <= ran[saliency][1] <= 106
    assert ran[saliency][1:] == list(range(ran[saliency][1], 140, 2))


def test_two_costly_kinds_share_the_budget_and_none_runs_everything():
    clock = Clock()
    budget = Budget(0.2, clock)
    occlusion, actmax = Member(), Member("activation_maximization")
    costs = {occlusion: 1.0, actmax: 3.0}
    with pytest.warns(UserWarning) as seen:
        ran = simulate(budget, [occlusion, actmax], 120, 1.0, 0.05, costs)
    assert len(seen) == 2
    assert ran[occlusion][0] == ran[actmax][0] == 0
    held = 0.05 * 120 + sum(costs[m] * len(ran[m]) for m in costs)
    assert held == pytest.approx(budget.held())
    assert held <= 0.2 * budget.training_time() + 3.0
    # Neither starves the other: they take turns.
    assert len(ran[actmax]) >= 3
    assert abs(len(ran[occlusion]) - len(ran[actmax])) <= 1
    assert budget.thinned["activation_maximization"][0] == 1
    assert "occlusion_sensitivity" in budget.thinned

    unlimited = Budget(None, Clock())
    ran = simulate(unlimited, [occlusion, actmax], 5, 1.0, 0.05, costs)
    assert ran == {occlusion: [0, 1, 2, 3, 4], actmax: [0, 1, 2, 3, 4]}


def test_a_cheap_kind_is_never_under_the_budget():
    budget = Budget(0.1, Clock())
    gradcam = Member("grad_cam")
    ran = simulate(budget, [gradcam], 5, 1.0, 0.0, {gradcam: 100.0})
    assert ran[gradcam] == [0, 1, 2, 3, 4]
    assert budget.members == []


@pytest.mark.parametrize("budget", [0, 1.5, -0.1, "0.1", True, float("nan")])
def test_budget_is_checked(tmp_path, budget):
    with pytest.raises(ValueError, match=r"`budget` must be None or a number in \(0, 1\]"):
        kcv.ConvViz(tmp_path, np.zeros((2, 8, 8, 3), np.float32), budget=budget)


def fit_one_batch_epochs(log_dir, epochs: int, **options) -> dict:
    """The small CNN fit for `epochs` one-batch epochs of 8 noise images, with `ConvViz`
    on 4 of them drawing Grad-CAM and what `options` add; the runs it wrote."""
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    options = dict(feature_maps=False, filter_weights=False, health=False, alerts=False, **options)
    callback = kcv.ConvViz(log_dir, (x[:4], y[:4]), **options)
    small_cnn().fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=[callback])
    return read_runs(log_dir)


def test_fit_thins_an_occlusion_far_dearer_than_the_epochs(tmp_path):
    # 32 x 32 windows of 2 px on each probe image: far dearer than a one-batch epoch.
    occlusion = {"stride": 1, "patch_size": 2, "method": "naive"}
    with pytest.warns(
        UserWarning, match=r"OcclusionSensitivity \(Occlusion\) takes about.*`occlusion_freq=n`"
    ):
        runs = fit_one_batch_epochs(tmp_path / "thin", 4, occlusion=occlusion)
    assert runs["grad_cam"]["grad_cam/conv_b/image_0"]["steps"] == [0, 1, 2, 3]
    assert runs["occlusion_sensitivity"]["occlusion_sensitivity/image_0"]["steps"] == [0]

    runs = fit_one_batch_epochs(tmp_path / "all", 3, occlusion=occlusion, budget=None)
    assert runs["occlusion_sensitivity"]["occlusion_sensitivity/image_0"]["steps"] == [0, 1, 2]


def test_a_kind_given_its_own_freq_is_outside_the_budget(tmp_path):
    x = np.zeros((2, 8, 8, 3), np.float32)
    costly = {"occlusion": True, "saliency": True}
    for given in ({"occlusion_freq": 1}, {"saliency": {"freq": 2}}):
        callback = kcv.ConvViz(tmp_path, x, **{**costly, **given})
        outside = {type(c).__name__ for c in callback.callbacks if c._budget is None}
        assert outside == {"OcclusionSensitivity" if "occlusion_freq" in given else "Saliency"}


def test_faithfulness_is_thinned_and_grad_cam_maps_run_at_every_epoch(tmp_path):
    with pytest.warns(
        UserWarning,
        match=r"GradCAM \(faithfulness\): its costly part takes about .* Grad-CAM at every",
    ):
        # 64 deletion and insertion steps for the map and each floor: far dearer than a
        # one-batch epoch, while the map itself is one backward pass.
        runs = fit_one_batch_epochs(tmp_path, 4, occlusion=False, faithfulness={"steps": 64})
    assert runs["grad_cam"]["grad_cam/conv_b/image_0"]["steps"] == [0, 1, 2, 3]
    assert runs["grad_cam"]["grad_cam/conv_b/deletion"]["steps"] == [0]
    assert runs["floor_random"]["grad_cam/conv_b/deletion"]["steps"] == [0]


def test_a_costly_method_is_thinned_and_the_cheap_ones_beside_it_run_at_every_epoch(tmp_path):
    # Score-CAM one channel per model call, SmoothGrad 64 noisy copies of each image: far
    # dearer than a one-batch epoch, while Grad-CAM and the plain gradient are one
    # backward pass.
    with pytest.warns(UserWarning) as seen:
        runs = fit_one_batch_epochs(
            tmp_path,
            4,
            occlusion=False,
            grad_cam={"method": ["gradcam", "scorecam"], "batch_size": 1},
            saliency={"method": ["gradient", "smoothgrad"], "samples": 64},
        )
    for cheap, tag in (("grad_cam", "grad_cam/conv_b/image_0"), ("gradient", "gradient/image_0")):
        assert runs[cheap][tag]["steps"] == [0, 1, 2, 3]
    assert runs["grad_cam"]["grad_cam/conv_b/image_0/change"]["steps"] == [1, 2, 3]
    for costly, tag in (
        ("score_cam", "score_cam/conv_b/image_0"),
        ("smoothgrad", "smoothgrad/image_0"),
    ):
        assert runs[costly][tag]["steps"] == [0]  # the first always runs, then the budget
        assert runs[costly][f"{tag}/max"]["steps"] == [0]
    assert "score_cam/conv_b/image_0/change" not in runs["score_cam"]
    told = [str(w.message) for w in seen if "costly part" in str(w.message)]
    assert len(told) == 2
    assert any(
        "GradCAM (Score-CAM): its costly part" in m and "Grad-CAM at every `freq`" in m
        for m in told
    )
    assert any(
        "Saliency (SmoothGrad): its costly part" in m and "Gradient at every `freq`" in m
        for m in told
    )


class Admits:
    """A budget that admits the costly kinds at the given epochs only."""

    def __init__(self, epochs):
        self.epochs = epochs

    def admits(self, callback, epoch):
        return epoch in self.epochs


@pytest.mark.parametrize(
    "cls, options, cheap, costly",
    [
        (kcv.GradCAM, {"method": ["scorecam", "gradcam"]}, "grad_cam", "score_cam"),
        (
            kcv.Saliency,
            {"method": ["integrated_gradients", "gradient"]},
            "gradient",
            "integrated_gradients",
        ),
    ],
)
def test_a_map_callback_writes_its_costly_method_at_the_admitted_epochs_only(
    tmp_path, cls, options, cheap, costly
):
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    callback = cls(tmp_path, (x[:2], y[:2]), scale="run", **options)
    callback._budget = Admits({0, 2})
    small_cnn().fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[callback])
    runs = read_runs(tmp_path)
    layer = "conv_b/" if cls is kcv.GradCAM else ""
    assert runs[cheap][f"{cheap}/{layer}image_1"]["steps"] == [0, 1, 2, 3]
    assert runs[costly][f"{costly}/{layer}image_1"]["steps"] == [0, 2]
    assert runs[costly][f"{costly}/{layer}image_1/max"]["steps"] == [0, 2]
    if cls is kcv.GradCAM:  # each method's change is against its own last map
        assert runs[cheap][f"{cheap}/{layer}image_1/change"]["steps"] == [1, 2, 3]
        assert runs[costly][f"{costly}/{layer}image_1/change"]["steps"] == [2]
