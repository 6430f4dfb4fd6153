"""The callback base: lifecycle, `freq`, steps, the shared writers, chief-only writing, errors.

Subclasses say what to compute and how to name it (`_prepare`, `needs`, `_snapshot`);
everything with a side effect (files, warnings) lives here.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import re
import warnings
import weakref
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from keras_convviz import _tags
from keras_convviz._args import (
    check_class_index,
    check_class_names,
    check_class_names_fit,
    check_freq,
    check_log_dir,
    check_on_error,
    check_scale,
    faithfulness_options,
    resolve_targets,
)
from keras_convviz._rendering import caption_codes, text_codes
from keras_convviz.callbacks import background
from keras_convviz.core.binding import bind
from keras_convviz.core.graph import check_backend
from keras_convviz.core.needs import Const, Logits, Need, targets_const
from keras_convviz.core.probe import Probe, make_probe, warn_large_probe
from keras_convviz.core.shared import SharedPass, core_for, shared_pass
from keras_convviz.methods import faithfulness as faithfulness_module
from keras_convviz.methods.perturb import occlusion_baseline

# Class names longer than this are cut in the captions.
MAX_NAME = 16
# Conv layers a callback shows by default on a deep model (`default_conv_layers`).
MAX_DEFAULT_LAYERS = 16
# Consecutive failed snapshots after which a callback stops trying for the rest of the run.
MAX_FAILURES = 3
# zlib level of the PNGs. Level 1 encodes a snapshot in about 0.4-0.6x the time of the
# default level (6), for files 7% larger on the demo model's ConvViz snapshot (0.2% on the
# noise images of the benchmark that measured it); TensorBoard shows the same pixels.
PNG_COMPRESSION = 1
# What tf.summary.image and tf.summary.scalar attach to each value, made once.
_IMAGE_METADATA = image_metadata.create_summary_metadata(display_name=None, description=None)
_SCALAR_METADATA = scalar_metadata.create_summary_metadata(display_name=None, description=None)


@dataclass(frozen=True)
class Image:
    """One image summary: `data` is `(1, height, width, 3)` uint8 or float in [0, 1]."""

    tag: str
    data: tf.Tensor


@dataclass(frozen=True)
class Scalar:
    """One scalar summary. A `sparse` one (e.g. `non_finite`) is written from the first
    snapshot where it is non-zero on, so a healthy run shows no flat chart of zeros. It goes
    to the run its tag starts with, unless `run` names another (a floor written under the
    tag of the map it is the floor of, so TensorBoard draws them in one chart)."""

    tag: str
    value: float | tf.Tensor
    sparse: bool = False
    run: str | None = None


def default_conv_layers(graph, callback: str) -> list:
    """The conv layers a callback shows when no `layer_names` are given: every 2-D conv
    layer, or on a deep model `MAX_DEFAULT_LAYERS` of them spread evenly over its depth
    (the first and the last included). Says so once, at train begin, and which conv layers
    it leaves out."""
    skipped = graph.skipped_convs()
    if skipped:
        warnings.warn(
            f"{callback} shows 2-D convolutions only; it skips the 1-D/3-D conv layers {skipped}.",
            UserWarning,
            stacklevel=3,
        )
    refs = graph.conv_layers()
    if len(refs) <= MAX_DEFAULT_LAYERS:
        return refs
    picked = np.unique(np.round(np.linspace(0, len(refs) - 1, MAX_DEFAULT_LAYERS)).astype(int))
    refs_shown = [refs[i] for i in picked]
    warnings.warn(
        f"{callback} shows {len(refs_shown)} of the {len(refs)} conv layers of model "
        f"{graph.model.name!r}, spread evenly over its depth: {[r.path for r in refs_shown]}. "
        "Pass `layer_names` to choose others.",
        UserWarning,
        stacklevel=3,
    )
    return refs_shown


class RunWriter:
    """The one event file of a run directory in this process.

    TensorBoard's fast loader serves more than 10 images per tag only from a run with one
    event file, so every callback writing into a run directory (two `GradCAM`s on two
    layers, a second `fit`, a new callback made for the next `fit` in a notebook) shares
    this writer. It stays open while a callback that wrote through it lives; it knows the
    next step, so a new callback continues the run instead of writing its steps again; and
    it refuses a tag that another callback writes in the same training.
    """

    _open: dict[str, RunWriter] = {}

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.writer = tf.summary.create_file_writer(run_dir)
        self.users = 0
        self._seen: weakref.WeakSet = weakref.WeakSet()
        self.owners: dict[str, weakref.ref] = {}
        self.next_step = 0

    @classmethod
    def next_step_of(cls, run_dir: str) -> int:
        """The step after the last one written into a run directory in this process."""
        shared = cls._open.get(os.path.realpath(run_dir))
        return 0 if shared is None else shared.next_step

    @classmethod
    def acquire(cls, run_dir: str, user) -> RunWriter:
        key = os.path.realpath(run_dir)
        shared = cls._open.get(key)
        if shared is None:
            shared = cls._open[key] = RunWriter(run_dir)
        if user not in shared._seen:
            shared._seen.add(user)
            shared.users += 1
            weakref.finalize(user, shared._release)
        return shared

    def _release(self) -> None:
        # Called when a user is collected, possibly in the middle of tracing a graph: no
        # TensorFlow op may run here. Dropping the last reference lets TensorFlow's own
        # resource deleter close the file (flushed at every snapshot already).
        self.users -= 1
        key = os.path.realpath(self.run_dir)
        if not self.users and RunWriter._open.get(key) is self:
            del RunWriter._open[key]

    def claim(self, tag: str, user) -> None:
        owner = self.owners.get(tag)
        current = owner() if owner is not None else None
        if current is None or not current._active:  # gone, or its training is over
            self.owners[tag] = weakref.ref(user)
        elif current is not user:
            raise ValueError(
                f"Two callbacks write the tag {tag!r} into the run {self.run_dir!r} "
                f"({type(current).__name__} and {type(user).__name__}); give one of them "
                "another `log_dir`."
            )


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
    # Whether snapshots are drawn and written on the writer thread (see `background`).
    background = True

    def __init__(self, log_dir, freq: int = 1, on_error: str = "warn"):
        super().__init__()
        self.log_dir = check_log_dir(log_dir)
        self.on_error = check_on_error(on_error)
        check_backend()
        self.freq = check_freq(freq)
        self._writers: dict[str, RunWriter] = {}
        self._monitor = None  # set by `ConvViz` to watch for alerts
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

    # ---- shared-pass membership (probe-based callbacks) ------------------------------------

    def needs(self) -> tuple:
        """What this callback needs from the shared pass (`Need`s)."""
        return ()

    def is_due(self, epoch: int) -> bool:
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
                stacklevel=2,
            )
        self._last_model = weakref.ref(self.model)
        # A later fit, or a new callback on a run this process already wrote, continues it.
        runs = (os.path.join(self.log_dir, run) for run in self.run_names())
        self._floor = max(self._next_step, *(RunWriter.next_step_of(run) for run in runs))
        if self._can_prepare(self.model):
            self._prepare(self.model)
            self._prepared = True
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
            if not self._prepared:  # a model first built by the training step itself
                self._prepare(self.model)
                self._prepared = True
            # What reads the model runs now, before the next step changes it.
            captured = self._capture(epoch)
        except Exception as error:  # noqa: BLE001 - a snapshot must never end the run
            self._failed(epoch, error)
            return
        if not _is_chief(self.model):
            return
        job = functools.partial(self._finish, step, epoch, captured)
        if self.background:
            self._pending = background.WRITER.submit(job)
            if self.on_error == "raise":  # the error surfaces at the epoch that caused it
                self.settle()
        else:
            job()

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
                f"{type(self).__name__} could not write its snapshot at epoch {epoch}: "
                f"{type(error).__name__}: {error}. Training goes on; the callback tries "
                f"again at its next snapshot and stops after {MAX_FAILURES} failures in a row.",
                RuntimeWarning,
                stacklevel=3,
            )
        if self._failures >= MAX_FAILURES:
            self._active = False
            warnings.warn(
                f"{type(self).__name__} failed {MAX_FAILURES} snapshots in a row and is off "
                "for the rest of this training run.",
                RuntimeWarning,
                stacklevel=3,
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
        images = [item for item in summaries if isinstance(item, Image)]
        encoded = dict(zip(map(id, images), encode_images([item.data for item in images])))
        by_run: dict[str, list] = {}
        for item in summaries:
            run = getattr(item, "run", None) or item.tag.split("/", 1)[0]
            by_run.setdefault(run, []).append(item)
        for run, items in by_run.items():
            shared = self._writers.get(run)
            if shared is None:
                shared = RunWriter.acquire(os.path.join(self.log_dir, run), self)
                self._writers[run] = shared
            with shared.writer.as_default(step=step):
                # What tf.summary.image / tf.summary.scalar write, without their per-call work.
                for item in items:
                    shared.claim(item.tag, self)
                    if isinstance(item, Image):
                        tf.summary.write(item.tag, encoded[id(item)], metadata=_IMAGE_METADATA)
                    else:
                        value = tf.cast(item.value, tf.float32)
                        if value.shape.rank != 0:
                            raise ValueError(
                                f"Scalar {item.tag!r} must be a scalar; got {value.shape}"
                            )
                        tf.summary.write(item.tag, value, metadata=_SCALAR_METADATA)
            # Flushed at every snapshot so a run killed later keeps what was written.
            shared.writer.flush()
            shared.next_step = max(shared.next_step, step + 1)
        return [item for item in summaries if isinstance(item, Scalar)]


_PER_IMAGE = re.compile(r"^(.*)/image_\d+$")


def one_image_per_picture(summaries: list) -> list:
    """Each series of per-probe-image pictures (`.../image_<i>`) as one image, the probe
    images one below the other (tag `.../all_images`); other summaries unchanged."""
    groups: dict[str, list] = {}
    out = []
    for item in summaries:
        match = _PER_IMAGE.match(item.tag) if isinstance(item, Image) else None
        if match is None:
            out.append(item)
        else:
            groups.setdefault(match.group(1), []).append(item.data)
    for prefix, images in groups.items():
        gap = tf.fill([1, 4, images[0].shape[2], 3], tf.constant(255, images[0].dtype))
        rows = [part for data in images for part in (data, gap)][:-1]
        out.append(Image(_tags.tag(prefix, _tags.ALL_IMAGES), tf.concat(rows, axis=1)))
    return out


def encode_image(data: tf.Tensor) -> tf.Tensor:
    """The image summary tensor `tf.summary.image(..., max_outputs=1)` makes.

    The PNG is encoded eagerly, on the calling thread: in a compiled function TensorFlow
    runs the encoder on its inter-op threads, which training's steps wait for, and a later
    snapshot's writing cost a 1-epoch fit beside it about 70-90 ms more (BENCHMARKS.md, 8).

    Args:
        data: `(1, height, width, channels)`, uint8 or float in [0, 1].

    Returns:
        `(3,)` string tensor: width, height and the PNG of the image.
    """
    image = tf.image.convert_image_dtype(data[0], tf.uint8, saturate=True)
    height, width = image.shape[:2]
    png = tf.io.encode_png(image, compression=PNG_COMPRESSION)
    return tf.stack([tf.constant(str(width)), tf.constant(str(height)), png])


# Threads that encode a snapshot's images side by side (zlib runs without the interpreter
# lock): the last snapshot is on disk sooner after training ends. The events are still
# written one by one, in order.
_ENCODERS = concurrent.futures.ThreadPoolExecutor(
    max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="keras_convviz-encode"
)


def encode_images(images: list) -> list:
    """`encode_image` of each image, in order, several at once."""
    if len(images) < 2:
        return [encode_image(data) for data in images]
    return list(_ENCODERS.map(encode_image, images))


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
    ):
        super().__init__(log_dir, freq=freq, on_error=on_error)
        self.scale = check_scale(scale)
        self._running: dict = {}  # running scales by key, with `scale="run"`
        if not isinstance(grid, bool):
            raise TypeError(f"`grid` must be True or False. Received: grid={grid!r}")
        self.grid = grid
        self.probe: Probe = make_probe(probe, image_input)
        warn_large_probe(self.probe)
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
        bound = bind(core.graph, self.probe, self.image_input, self.score_output, self.needs_scores)
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


class MapCallback(ProbeCallback):
    """A probe callback that draws one heat map per probe image for a target class.

    It resolves the targets, reads the logits from the shared pass, and captions every
    panel with the target class, the predicted class and its probability.

    Args (besides `ProbeCallback`'s):
        class_index: the class explained for every image, or `None`.
        class_names: the classes' names for the captions, or `None` (their indices).
        faithfulness: `True` or a dict of `kcv.faithfulness` options (`steps`, `baseline`,
            `sigma`, `batch_size`): also score each map by deletion and insertion, beside
            a random and an edge map on the same images.
    """

    def __init__(
        self,
        log_dir,
        probe,
        class_index=None,
        class_names=None,
        freq: int = 1,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
        grid: bool = False,
        faithfulness=False,
        scale: str = "image",
    ):
        super().__init__(log_dir, probe, freq, on_error, image_input, score_output, grid, scale)
        check_class_index(class_index)
        self.class_index = class_index
        self.class_names = check_class_names(class_names)
        options = faithfulness_options(faithfulness)
        self.faithfulness = options
        if options is not None:
            self._faithfulness_args = {
                "steps": options.get("steps", faithfulness_module.STEPS),
                "baseline": occlusion_baseline(options.get("baseline"), self.probe),
                "sigma": options.get("sigma", faithfulness_module.SIGMA),
                "batch_size": options.get("batch_size", 256),
            }
        self._map_needs: tuple = ()

    def _join_targets(self, model: keras.Model) -> tuple[SharedPass, Const]:
        """Join the shared pass; the targets as a `Const` for the needs."""
        shared = self._join(model)
        head = shared.bound.binding.head
        targets = resolve_targets(self.probe, self.class_index, head.num_classes, "class_index")
        check_class_names_fit(self.class_names, head.num_classes)
        names = self.class_names or [str(c) for c in range(head.num_classes)]
        width = min(max(len(n) for n in names), MAX_NAME)
        self._names = tf.constant(np.stack([text_codes(n, width) for n in names]))
        self._head = head
        self._given_targets = tf.constant(targets)
        self._targets = targets_const(targets)
        return shared, self._targets

    def needs(self):
        return (*self._map_needs, *self._faithfulness_needs(), Logits())

    def _floor_runs(self) -> tuple[str, ...]:
        """The runs the faithfulness floors are written to (none without faithfulness)."""
        if self.faithfulness is None:
            return ()
        return tuple(_tags.floor_run(name) for name in faithfulness_module.FLOORS)

    def _faithfulness_of(self, of: Need) -> faithfulness_module.Faithfulness:
        return faithfulness_module.Faithfulness(of, self._targets, **self._faithfulness_args)

    def _faithfulness_needs(self) -> tuple:
        if self.faithfulness is None:
            return ()
        maps = (*self._map_needs, *faithfulness_module.FLOORS.values())
        return tuple(self._faithfulness_of(need) for need in maps)

    def _faithfulness_items(self, result, need: Need, *tag_parts) -> list[Scalar]:
        """The probe's mean deletion and insertion scores of a map, and of the floors
        under the same tags in their own runs: `<map tag>/deletion`, `.../insertion`."""
        if self.faithfulness is None:
            return []
        floors = faithfulness_module.FLOORS
        sources = [(None, need), *((_tags.floor_run(n), f) for n, f in floors.items())]
        items = []
        for run, of in sources:
            scores = tf.reduce_mean(result[self._faithfulness_of(of)], axis=0)
            for column, curve in enumerate((_tags.DELETION, _tags.INSERTION)):
                items.append(Scalar(_tags.tag(*tag_parts, curve), scores[column], run=run))
        return items

    def _caption(self, logits: tf.Tensor) -> tf.Tensor:
        """`(batch, length)` caption codes: target, predicted class, its probability."""
        probabilities = self._head.probabilities(logits)
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        targets = tf.where(self._given_targets < 0, predicted, self._given_targets)
        confidence = tf.gather(probabilities, predicted, axis=1, batch_dims=1)
        return caption_codes(targets, predicted, confidence, self._names)
