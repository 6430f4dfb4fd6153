"""`Budget`: how often a `ConvViz`'s costly kinds run, so snapshots hold training at most
a given share of it.

What is measured, on the training thread, with one clock (wall time by default):

- held: the time inside `ConvViz`'s hooks during training (the shared pass, drawing where
  it is not on the writer thread, waiting for the previous snapshot's writing, tracing a
  new plan), every snapshot included, the first too;
- training time so far: the time since training began minus the time held.

A costly kind (`kinds.Kind.costly`: occlusion, Score-CAM, SmoothGrad, Integrated Gradients,
the faithfulness floors, activation maximisation) is run by its callback, which is a member
of the budget when it has one; its costly part (all of its costly kinds) is admitted or left
out as a whole, while its cheap kinds (Grad-CAM beside Score-CAM, plain gradients beside
SmoothGrad, the maps whose faithfulness is scored) run at every `freq` (`has_cheap_part`,
`needs_at`). The callback's cost is what its costly part adds to the snapshots: the held
time of a snapshot it ran in minus that of the cheapest snapshot without any costly part
(shared in proportion to the last costs when several ran together), the last such
measurement after its first (which also traced). At each epoch it is due by its `freq`, its
costly part runs when the time held so far plus this snapshot's cheap part and its cost
stays within `share` of the training time so far; its first snapshot of each training
always runs.
"""

from __future__ import annotations

import math
import time
import warnings

from keras_convviz import kinds
from keras_convviz._warn import user_stacklevel


def costly_runs(callback) -> list[str]:
    """The runs of a callback whose kind costs many extra passes."""
    return [run for run in callback.run_names() if getattr(kinds.get(run), "costly", False)]


def cheap_runs(callback) -> list[str]:
    """The runs of a callback whose pictures are cheap on their own (feature maps, a
    gradient CAM, plain gradients): neither costly nor a floor, whose scores are those of
    the callback's maps."""
    picked = []
    for run in callback.run_names():
        kind = kinds.get(run)
        if kind is not None and not kind.costly and kind.family != "floor":
            picked.append(run)
    return picked


def _labels(runs) -> list[str]:
    labels = []
    for run in runs:
        kind = kinds.get(run)
        label = "faithfulness" if kind.family == "floor" else kind.label
        if label not in labels:
            labels.append(label)
    return labels


def describe(callback) -> str:
    """`"OcclusionSensitivity (Occlusion)"`: the callback and its costly kinds."""
    return f"{type(callback).__name__} ({', '.join(_labels(costly_runs(callback)))})"


class Budget:
    """Decides, per epoch, which costly callbacks run (see the module's docstring).

    Args:
        share: float in (0, 1] or None. The largest share of the training time so far that
            snapshots may hold; `None` runs every callback at its `freq`.
        clock: callable returning seconds; `time.perf_counter` by default (tests pass a
            fake one).
    """

    def __init__(self, share: float | None, clock=time.perf_counter):
        self.share = share
        self.clock = clock
        # Per callback under the budget: how to tell the user to set its own schedule.
        self.arguments: dict = {}
        self.begin(())

    def begin(self, callbacks) -> None:
        """A training begins: the callbacks under the budget (those with a costly kind,
        not given a `freq` of their own) and a fresh account."""
        self.members = [c for c in callbacks if costly_runs(c)] if self.share else []
        self._start = self.clock()
        self._held = 0.0
        self._hold_from: float | None = None
        self._epochs = 0
        self._cheap: float | None = None  # the cheapest snapshot without a costly kind
        self._costs: dict = {}  # callback -> its last measured cost, seconds
        self._runs: dict = {}  # callback -> snapshots run in this training
        self._last: dict = {}  # callback -> the last epoch it was admitted at
        self._decided: tuple[int, frozenset] | None = None
        self._told: set = set()
        # Costly run -> the epochs a callback's costly part with it was left out at.
        self.thinned: dict[str, list[int]] = {}

    # ---- the account (training thread) ------------------------------------------------

    def hold(self) -> None:
        """The training thread enters `ConvViz`'s hooks."""
        self._hold_from = self.clock()

    def release(self, epoch_end: bool, snapshot: bool) -> None:
        """It leaves them; `epoch_end`: the hook was an epoch's end; `snapshot`: a snapshot
        was taken then (some callback was due)."""
        if self._hold_from is None:
            return
        held = self.clock() - self._hold_from
        self._hold_from = None
        self._held += held
        self._epochs += epoch_end
        if not snapshot:
            return
        ran = self._decided[1] if self._decided is not None else frozenset()
        self._decided = None
        if not ran:
            self._cheap = held if self._cheap is None else min(self._cheap, held)
            return
        extra = max(0.0, held - (self._cheap or 0.0))
        weights = {c: self._costs.get(c, 1.0) for c in ran}
        total = sum(weights.values()) or 1.0
        for callback in ran:
            # The first run's cost includes its trace: kept only until a later one.
            self._costs[callback] = extra * weights[callback] / total
            self._runs[callback] = self._runs.get(callback, 0) + 1

    def held(self) -> float:
        return self._held

    def training_time(self) -> float:
        now = self._hold_from if self._hold_from is not None else self.clock()
        return max(0.0, now - self._start - self._held)

    # ---- the decision ---------------------------------------------------------------------

    def admits(self, callback, epoch: int) -> bool:
        """Whether `callback`, due by its `freq` at `epoch`, runs."""
        if callback not in self.members:
            return True
        if self._decided is None or self._decided[0] != epoch:
            self._decided = (epoch, self._decide(epoch))
        return callback in self._decided[1]

    def _decide(self, epoch: int) -> frozenset:
        allowed = self.share * self.training_time()
        projected = self._held + (self._cheap or 0.0)
        admitted = []
        waiting = False
        # The longest waiting first, and none overtakes it: a cheap kind cannot use up the
        # budget a dearer one is saving for.
        due = [c for c in self.members if c._scheduled(epoch)]
        for callback in sorted(due, key=lambda c: self._last.get(c, -1)):
            cost = self._costs.get(callback, 0.0)
            first = not self._runs.get(callback)
            if first or (not waiting and projected + cost <= allowed):
                admitted.append(callback)
                projected += cost
                self._last[callback] = epoch
                continue
            waiting = True
            for run in costly_runs(callback):
                epochs = self.thinned.setdefault(run, [])
                if epoch not in epochs:  # a floor shared by two callbacks
                    epochs.append(epoch)
            if callback not in self._told:
                self._told.add(callback)
                self._warn(callback, cost)
        return frozenset(admitted)

    def every(self, callback, cost: float) -> int | None:
        """About how many epochs apart `callback` runs now, or `None` while the cheap
        snapshots alone use the budget."""
        epoch = self._epoch_time()
        spare = self.share * epoch - (self._cheap or 0.0)
        if spare <= 0:
            return None
        freq = max(1, callback.freq)
        return max(freq, math.ceil(cost / spare / freq) * freq)

    def _epoch_time(self) -> float:
        """The mean epoch's training time so far (an epoch whose end is being held counts)."""
        return self.training_time() / max(1, self._epochs + (self._hold_from is not None))

    def _warn(self, callback, cost: float) -> None:
        epoch = self._epoch_time()
        every = self.every(callback, cost)
        how_often = (
            f"runs about every {every} epochs now (not every {callback.freq})"
            if every is not None
            else "does not run again while the other snapshots use the whole budget"
        )
        own = self.arguments.get(callback, "its `freq`")
        what = f"{describe(callback)} takes"
        cheap = _labels(cheap_runs(callback))
        if cheap:  # they still run at every `freq`
            what = f"{describe(callback)}: its costly part takes"
            how_often = f"{how_often}, {' and '.join(cheap)} at every `freq`"
        warnings.warn(
            f"ConvViz: {what} about {cost:.3g} s a snapshot against "
            f"{epoch:.3g} s epochs, so it {how_often}, to keep snapshots within "
            f"budget={self.share} of the training time. To change it: `budget=None` runs "
            f"everything at every `freq`, a larger `budget` runs it more often, {own} sets "
            "its own schedule.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
