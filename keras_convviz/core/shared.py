"""One core per model, and one pass per snapshot for every callback watching a probe."""

from __future__ import annotations

import keras

from keras_convviz.core.binding import Bound
from keras_convviz.core.graph import ModelGraph
from keras_convviz.core.needs import Plan, Result
from keras_convviz.core.passes import Core
from keras_convviz.core.probe import Probe

# The model keeps its core (and its shared passes) itself: a core refers back to its model,
# so a weak-keyed table would keep every model alive. Set past Keras's attribute tracking.
_CORE_ATTRIBUTE = "_keras_convviz_core"
_SHARED_ATTRIBUTE = "_keras_convviz_shared"


def core_for(model: keras.Model) -> Core:
    """The `Core` of a model, made once and reused by every callback and explainer call."""
    core = model.__dict__.get(_CORE_ATTRIBUTE)
    if core is None:
        core = Core(ModelGraph(model))
        object.__setattr__(model, _CORE_ATTRIBUTE, core)
    return core


class SharedPass:
    """One compiled pass per snapshot for all callbacks on a model and probe.

    Each member declares when it is due (`is_due(epoch)`) and what it needs then
    (`needs_at(epoch)`, a tuple of `Need`s); the first member to ask at an epoch runs one
    pass for the union of the needs of the members due then, and the others read the
    cached `Result`.
    """

    def __init__(self, core: Core, probe: Probe, bound: Bound):
        self.core = core
        self.probe = probe
        self.bound = bound
        self.members: list = []
        self.passes_run = 0
        self._plans: dict[tuple, Plan] = {}
        self._cache: tuple[int, Result] | None = None

    def join(self, member) -> None:
        if member not in self.members:
            self.members.append(member)
        self._cache = None

    def leave(self, member) -> None:
        if member in self.members:
            self.members.remove(member)
        self._cache = None

    def result(self, epoch: int) -> Result:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        # Only the members due now: a pass without the others' needs is cheaper (each
        # distinct set of due members is one plan, traced once).
        needs = tuple(need for m in self.members if m.is_due(epoch) for need in m.needs_at(epoch))
        plan = self._plans.get(needs)
        if plan is None:
            plan = Plan(needs)
            self._plans[needs] = plan
        result = self.core.run(plan, self.bound)
        self.passes_run += 1
        self._cache = (epoch, result)
        return result


def shared_pass(model: keras.Model, probe: Probe, bound: Bound) -> SharedPass:
    """The `SharedPass` for a model, probe content and binding, made on first use."""
    per_model = model.__dict__.get(_SHARED_ATTRIBUTE)
    if per_model is None:
        per_model = {}
        object.__setattr__(model, _SHARED_ATTRIBUTE, per_model)
    key = (probe.key, bound.binding)
    shared = per_model.get(key)
    if shared is None:
        shared = SharedPass(core_for(model), probe, bound)
        per_model[key] = shared
    return shared
