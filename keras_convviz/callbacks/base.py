"""The callback base: lifecycle, `freq`, steps, chief-only writing, errors.

Subclasses say what to compute and how to name it (`_prepare`, `needs`, `_snapshot`);
everything with a side effect (files, warnings) lives here, the writing itself in
`keras_convviz.summary_io`.
"""

from __future__ import annotations

import functools
import os
import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from keras_convviz import kinds
from keras_convviz._args import (
    check_freq,
    check_log_dir,
    check_on_error,
    check_positive_int,
    check_scale,
)
from keras_convviz._warn import user_stacklevel
from keras_convviz.callbacks import background, budget
from keras_convviz.core.binding import bind
from keras_convviz.core.geometry import MAX_SLICES
from keras_convviz.core.graph import NotServed, check_backend
from keras_convviz.core.probe import Probe, make_probe, warn_large_probe
from keras_convviz.core.shared import SharedPass, core_for, shared_pass
from keras_convviz.summary_io import (
    Image,
    RunWriter,
    Scalar,
    one_image_per_picture,
    write_summaries,
)

# Conv layers a callback shows by default at most (`default_conv_layers`).
MAX_LAYERS = 8
# Consecutive failed snapshots after which a callback stops trying for the rest of the run.
MAX_FAILURES = 3


def default_conv_layers(callback, graph, geometry=None, max_layers: int = MAX_LAYERS) -> list:
    """The conv layers a callback shows when no `layer_names` are given.

    Every conv layer whose output lays out over the input (`geometry`, by default the
    model's) when there are at most `max_layers`. Else those whose maps keep at least 2
    positions along each spatial axis, when they are at most `max_layers` (the others run
    on 1x1 maps: squeeze-excite branches, a classifier after global pooling). Else one per
    resolution stage (`ModelGraph.stage_layers`: the last conv before the resolution
    drops), the first stage always, and with more stages than `max_layers` that many spread
    evenly over them, the first and the last kept. Says which, once, at train begin."""
    skipped = graph.skipped_convs(geometry)
    if skipped:
        known = geometry or graph.geometry
        shown = known.describe() + " " if known is not None else ""
        callback._notice(
            f"the convolutions whose output lays out over the {shown}input are shown; "
            f"the conv layers {skipped} are skipped."
        )
    refs = graph.conv_layers(geometry)
    if len(refs) <= max_layers:
        return refs
    wide = [r for r in refs if graph.has_extent(r, geometry)]
    of_model = f"of the {len(refs)} conv layers of model {graph.model.name!r}"
    how = f"Pass `layer_names` to choose others, or `max_layers={len(refs)}` to show every one."
    if len(wide) <= max_layers:
        callback._notice(
            f"{len(wide)} {of_model} are shown, those whose maps keep at least 2 positions "
            f"along each spatial axis: {[r.path for r in wide]}. {how}"
        )
        return wide
    stages = graph.stage_layers(refs, geometry)
    if stages is None:  # sizes left free: spread over the depth
        stages, per = wide, "spread evenly over its depth"
    else:
        per = "one per resolution stage (the last conv before the resolution drops)"
        if len(stages) > max_layers:
            per = f"{per}, spread evenly over its {len(stages)} stages"
    if len(stages) > max_layers:
        picked = np.unique(np.round(np.linspace(0, len(stages) - 1, max_layers)).astype(int))
        stages = [stages[i] for i in picked]
    callback._notice(
        f"{len(stages)} {of_model} are shown, {per}: {[r.path for r in stages]}. {how}"
    )
    return stages


class Notices:
    """The set-up messages of several callbacks (a `ConvViz`'s children), given as one
    warning per message however many callbacks share it ("FeatureMaps and FilterWeights:
    8 of the 53 conv layers ... are shown"), not one per child."""

    def __init__(self):
        self._pending: dict[tuple, list[str]] = {}

    def add(self, who: str, text: str, category) -> None:
        names = self._pending.setdefault((text, category), [])
        if who not in names:
            names.append(who)

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (text, category), names in pending.items():
            warnings.warn(f"{_and(names)}: {text}", category, stacklevel=user_stacklevel())


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class SnapshotCallback(keras.callbacks.Callback):
    """Base of the keras_convviz callbacks. Not for direct use.

    Steps never go backwards for one instance: a later `fit` with the same callback
    continues after the last epoch it saw (an `initial_epoch` further ahead is kept), into
    the same event file.

    Args:
        log_dir: str or path. The TensorBoard log directory; this callback writes into its
            own run directory `log_dir/<run_name>`.
        freq: int. Write a snapshot at the end of every `freq` epochs (epochs 0, freq,
            2*freq, ... of each `fit`). `0` disables the callback. Defaults to `1`.
        on_error: `"warn"` or `"raise"`. What a failure inside a snapshot does: `"warn"`
            warns once with the cause and training goes on (after 3 failures in a row the
            callback turns itself off for the run); `"raise"` re-raises. Defaults to `"warn"`.
    """

    run_name = ""
    # Whether snapshots are drawn and written on the writer thread (see `background`);
    # `None`: there only where training runs on an accelerator (`draw_off_thread`).
    background: bool | None = None

    def __init__(self, log_dir, freq: int = 1, on_error: str = "warn"):
        super().__init__()
        self.log_dir = check_log_dir(log_dir)
        self.on_error = check_on_error(on_error)
        check_backend()
        self.freq = check_freq(freq)
        self._writers: dict[str, RunWriter] = {}
        self._monitor = None  # set by `ConvViz` to watch for alerts
        self._budget = None  # set by `ConvViz` to run costly kinds less often (`budget`)
        self._viewer = None  # set by `ConvViz(display=True)` in a notebook (`notebook`)
        self._failures = 0
        self._warned = False
        self._active = False
        self._prepared = False
        self._next_step = 0  # the first step a later epoch may write
        self._floor = 0  # the first step this fit may write
        self._written: set[str] = set()  # sparse scalars written once, written from then on
        self._offset: int | None = None  # step - epoch in the current fit
        self._last_model = None
        self._pending = None  # the snapshot in flight on the writer thread (`background`)
        # Why the callback is off for this training (a model its defaults cannot serve).
        self.not_served: str | None = None
        # Set by `ConvViz`, which gives its children's set-up warnings once for all of them
        # (which are off and why; a large probe) ...
        self._parent_warns = False
        # ... and gathers their other set-up messages (`_notice`) to give each once.
        self._notices: Notices | None = None

    @property
    def run_dir(self) -> str:
        return os.path.join(self.log_dir, self.run_name)

    def run_names(self) -> tuple[str, ...]:
        """The runs this callback writes (each tag starts with its run's name)."""
        return (self.run_name,)

    # ---- what subclasses supply ---------------------------------------------------------

    def _prepare(self, model: keras.Model) -> None:
        """Resolve layers and validate arguments against the model (before the first epoch)."""

    def _can_prepare(self, model: keras.Model) -> bool:
        """Whether `_prepare` can run at train begin (else it runs at the first snapshot)."""
        return model.built

    def _capture(self, epoch: int):
        """What the snapshot reads of the model, taken on the training thread at the end
        of the epoch (the shared pass's result, copies of the kernels)."""
        return None

    def _snapshot(self, epoch: int, captured) -> list[Image | Scalar]:
        """The summaries of a snapshot from what `_capture` took; may run on the writer
        thread, so it reads nothing of the model that training changes."""
        raise NotImplementedError

    def _notice(self, text: str, category=UserWarning) -> None:
        """Tell the user something about this training's set-up (which layers are shown,
        what was chosen and why): a warning "<callback name>: <text>", given
        once per `ConvViz` for all of its children that say the same."""
        if self._notices is not None:
            self._notices.add(type(self).__name__, text, category)
        else:
            warnings.warn(f"{type(self).__name__}: {text}", category, stacklevel=user_stacklevel())

    # ---- shared-pass membership (probe-based callbacks) ------------------------------------

    def needs(self) -> tuple:
        """What this callback needs from the shared pass (`Need`s)."""
        return ()

    def needs_at(self, epoch: int) -> tuple:
        """What it needs from the pass at `epoch`, where it is due (`needs`, less the
        costly kinds' needs where its budget leaves them out then)."""
        return self.needs()

    def is_due(self, epoch: int) -> bool:
        """Whether the callback takes a snapshot at `epoch`: by its `freq`, and as its
        `budget` admits its costly kinds (a `ConvViz`'s, `callbacks.budget`). A callback
        with cheap kinds beside its costly ones (`has_cheap_part`: Grad-CAM beside
        Score-CAM, Grad-CAM's maps with their faithfulness scores) is due by its `freq`
        alone, its costly kinds computed and written only as the budget admits them
        (`costly_due`, `needs_at`)."""
        if not self._scheduled(epoch):
            return False
        return self.costly_due(epoch) or self.has_cheap_part()

    def costly_due(self, epoch: int) -> bool:
        """Whether the callback's costly kinds run at `epoch`, where it is due."""
        return self._budget is None or self._budget.admits(self, epoch)

    def has_cheap_part(self) -> bool:
        """Whether the callback writes a kind that is cheap on its own (`kinds.Kind.costly`
        false, no floor), which runs at every `freq` while the budget thins the costly
        ones."""
        return bool(budget.cheap_runs(self))

    def _scheduled(self, epoch: int) -> bool:
        return self._active and self.freq > 0 and epoch % self.freq == 0

    # ---- lifecycle ------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        # A fit that raised never called `on_train_end`: let its snapshots land first, so
        # the runs' next steps below are known.
        self._pending = None
        background.WRITER.wait_idle()
        self._failures = 0
        self._warned = False
        self._active = False
        self._prepared = False
        self._offset = None
        self.not_served = None
        if not self.freq:
            return
        previous = self._last_model() if self._last_model is not None else None
        if previous is not None and previous is not self.model and self._next_step:
            warnings.warn(
                f"{type(self).__name__} is used on another model ({self.model.name!r}) than "
                f"in its last fit ({previous.name!r}); its run {self.run_dir!r} continues "
                f"at step {self._next_step}, so its history mixes both models. Make a new "
                "callback with another `log_dir` to keep them apart.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        self._last_model = weakref.ref(self.model)
        # A later fit, or a new callback on a run this process already wrote, continues it.
        runs = (os.path.join(self.log_dir, run) for run in self.run_names())
        self._floor = max(self._next_step, *(RunWriter.next_step_of(run) for run in runs))
        if self._can_prepare(self.model) and not self._prepare_or_switch_off():
            return
        if _is_chief(self.model):
            for run in self.run_names():
                _check_writable(os.path.join(self.log_dir, run))
        self._active = True

    def on_epoch_end(self, epoch, logs=None):
        if self._offset is None:  # the first epoch of this fit
            self._offset = max(0, self._floor - epoch)
        step = epoch + self._offset
        if self._active:
            self._next_step = step + 1
        if not self.is_due(epoch):
            return
        self.settle()  # at most one snapshot of this callback in flight
        if not self._active:  # the previous snapshot's failure turned it off
            return
        try:
            # A model first built by the training step itself is prepared now.
            if not (self._prepared or self._prepare_or_switch_off()):
                return
            # What reads the model runs now, before the next step changes it.
            captured = self._capture(epoch)
        except Exception as error:  # noqa: BLE001 - a snapshot must never end the run
            self._failed(epoch, error)
            return
        if not _is_chief(self.model):
            return
        job = functools.partial(self._finish, step, epoch, captured)
        if self.off_thread():
            self._pending = background.WRITER.submit(job)
            if self.on_error == "raise":  # the error surfaces at the epoch that caused it
                self.settle()
        else:
            job()

    def off_thread(self) -> bool:
        """Whether this callback's snapshots are drawn on the writer thread."""
        return background.draw_off_thread() if self.background is None else self.background

    def _prepare_or_switch_off(self) -> bool:
        """`_prepare` for the model; when its default arguments cannot serve it
        (`NotServed`), the callback is off for this training instead: training goes on and
        one warning says why (`ConvViz` gathers its children's into one)."""
        try:
            self._prepare(self.model)
        except NotServed as reason:
            self._active = False
            self.not_served = str(reason)
            if not self._parent_warns:
                warnings.warn(
                    f"{type(self).__name__} is off for this training: {reason}.",
                    UserWarning,
                    stacklevel=user_stacklevel(),
                )
            return False
        self._prepared = True
        return True

    def _finish(self, step: int, epoch: int, captured) -> None:
        """Draw, encode and write a snapshot, and check it for alerts (on the writer
        thread, see `background`)."""
        try:
            summaries = self._snapshot(epoch, captured)
            written = self._write(step, summaries)
            if self._monitor is not None:  # alerts (`ConvViz(alerts=...)`)
                self._monitor.observe(step, epoch, written, self.model)
            self._failures = 0
        except Exception as error:  # noqa: BLE001 - a snapshot must never end the run
            self._failed(epoch, error)

    def settle(self) -> None:
        """Wait for this callback's snapshot in flight; re-raise its error with
        `on_error="raise"`."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.wait()
            if pending.error is not None:
                raise pending.error

    def _failed(self, epoch: int, error: Exception) -> None:
        if self.on_error == "raise":
            raise error  # on the writer thread, `settle` raises it on the training thread
        self._failures += 1
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"{type(self).__name__} could not write its snapshot at epoch {epoch + 1}: "
                f"{type(error).__name__}: {error}. Training goes on; the callback tries "
                f"again at its next snapshot and stops after {MAX_FAILURES} failures in a row.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        if self._failures >= MAX_FAILURES:
            self._active = False
            warnings.warn(
                f"{type(self).__name__} failed {MAX_FAILURES} snapshots in a row and is off "
                "for the rest of this training run.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def on_train_end(self, logs=None):
        self._active = False
        self.settle()
        for shared in self._writers.values():
            shared.writer.flush()

    # ---- writing ----------------------------------------------------------------------------

    def _due(self, item) -> bool:
        """Whether a summary is written now (a sparse scalar only from its first non-zero)."""
        if not (isinstance(item, Scalar) and item.sparse) or item.tag in self._written:
            return True
        if float(item.value) == 0.0:
            return False
        self._written.add(item.tag)
        return True

    def _write(self, step: int, summaries) -> list:
        """Write a snapshot's summaries at `step`; returns the scalars written."""
        summaries = [item for item in summaries if self._due(item)]
        if getattr(self, "grid", False):
            summaries = one_image_per_picture(summaries)
        encoded = write_summaries(self._writers, self.log_dir, self, step, summaries)
        scalars = [item for item in summaries if isinstance(item, Scalar)]
        if self._viewer is not None:  # a notebook's live view (`ConvViz(display=True)`)
            self._viewer.saw(self, step, encoded, scalars)
        return scalars


class ProbeCallback(SnapshotCallback):
    """A callback that runs on a fixed probe through the shared pass.

    Args (besides the base's):
        probe: images, `(x, labels)` or a `tf.data.Dataset`; for a multi-input model `x`
            is a dict keyed by input name or a list in input order.
        image_input: the model input that takes the images, by name or position.
        score_output: the model output that holds the class scores, by name or position.
        grid: one picture per layer and kind with every probe image in it (one below the
            other, tag `.../all_images`) instead of one card per probe image.
        scale: `"image"`: each picture scaled on its own (best contrast); `"run"`: each
            map's (or feature channel's) scale is the running maximum over the training
            run, so a map that fades is seen to fade.
        max_slices: the depth slices a volume's pictures show at most, evenly spaced.
    """

    # Whether the callback reads class scores (else an ambiguous output is not an error).
    needs_scores = True

    def __init__(
        self,
        log_dir,
        probe,
        freq: int = 1,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
        grid: bool = False,
        scale: str = "image",
        max_slices: int = MAX_SLICES,
    ):
        super().__init__(log_dir, freq=freq, on_error=on_error)
        self.scale = check_scale(scale)
        self.max_slices = check_positive_int(max_slices, "max_slices")
        # What a segmentation output's maps explain (`bind`'s `class_index`): the map
        # callbacks' `class_index`; `ConvViz` gives its own to the others, so that all its
        # children bind alike and share one pass.
        self._class_index = None
        self._running: dict = {}  # running scales by key, with `scale="run"`
        if not isinstance(grid, bool):
            raise TypeError(f"`grid` must be True or False. Received: grid={grid!r}")
        self.grid = grid
        self.probe: Probe = make_probe(probe, image_input)
        self._told_large = False  # the large-probe warning, once (after the probe fits)
        self.image_input = image_input
        self.score_output = score_output
        self._shared: SharedPass | None = None

    def _can_prepare(self, model: keras.Model) -> bool:
        return True  # an unbuilt model is built from the probe's shape in `_join`

    def _join(self, model: keras.Model) -> SharedPass:
        if not model.built:
            # A Sequential model without an `Input` is built by its first training step;
            # building it now for the probe's shape is what that step would do.
            model.build((None, *self.probe.image_shape))
        core = core_for(model)
        bound = bind(
            core.graph,
            self.probe,
            self.image_input,
            self.score_output,
            self.needs_scores,
            class_index=self._class_index,
            slices=self.max_slices,
        )
        geometry = bound.binding.geometry
        unserved = [run for run in self.run_names() if not kinds.serves(run, geometry.name)]
        if unserved:
            raise NotServed(
                f"{', '.join(kinds.get(run).label for run in unserved)} cannot draw the "
                f"{geometry.describe()} probe of model {model.name!r} yet"
            )
        self.probe = bound.probe  # the labels of the output the maps explain
        head = bound.binding.head
        labels = self.probe.labels if head is not None else None
        if labels is not None and (labels.min() < 0 or labels.max() >= head.num_classes):
            # A model whose output cannot hold its labels (a softmax over one unit with 0/1
            # labels) is a bug of the model, named by the `labels_out_of_range` alert; what
            # needs a class per label is off, training goes on.
            raise NotServed(
                f"the probe's labels are classes {labels.min()}..{labels.max()} but "
                f"output {head.name!r} of model {model.name!r} has {head.num_classes} "
                "class scores"
            )
        # How many samples the probe holds is known once it fits the model's input rank.
        if not (self._told_large or self._parent_warns):
            warn_large_probe(self.probe)
        self._told_large = True
        if self._shared is not None:
            self._shared.leave(self)
        self._shared = shared_pass(model, self.probe, bound)
        self._shared.join(self)
        return self._shared

    def _capture(self, epoch: int):
        return self._shared.result(epoch)

    def _running_scales(self, keys, initial=None) -> list | None:
        """With `scale="run"`, the running scales so far (`initial(key)` at the first
        snapshot; by default one 0 per probe image, for heat maps); `None` with
        `scale="image"`. Store the updated ones with `_keep_scales`."""
        if self.scale != "run":
            return None
        if initial is None:
            initial = lambda _: tf.zeros(self.probe.size)  # noqa: E731
        return [self._running[k] if k in self._running else initial(k) for k in keys]

    def _keep_scales(self, keys, scales) -> None:
        if self.scale == "run":
            self._running.update(zip(keys, scales))

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self._shared is not None:
            self._shared.leave(self)
            self._shared = None


def _is_chief(model: keras.Model | None = None) -> bool:
    """False only on a non-chief worker of a multi-worker strategy.

    Keras calls callbacks outside the strategy scope (`fit` enters it only to build the model
    and to run its steps), so there `tf.distribute.get_strategy()` is the default strategy
    on every worker. The task comes from the strategy the model was built under, else from
    `TF_CONFIG`, where `MultiWorkerMirroredStrategy` reads it by default.
    """
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    try:
        task_type, task_id = resolver.task_type, resolver.task_id
        cluster = resolver.cluster_spec().as_dict()
    except (ValueError, KeyError, TypeError, AttributeError):
        return True  # a malformed TF_CONFIG: no cluster to defer to
    if not task_type:
        return True
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and task_id == 0


def _check_writable(run_dir: str) -> None:
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"`log_dir` must be a writable directory. Could not create {run_dir!r}: {error}"
        ) from error
    if not os.access(run_dir, os.W_OK):
        raise ValueError(f"`log_dir` must be a writable directory. Received: {run_dir!r}")
