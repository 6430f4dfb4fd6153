"""The callback base: lifecycle, `freq`, the lazy writer, chief-only writing, error policy.

Subclasses say what to compute and how to name it (`_prepare`, `_snapshot`); everything with
a side effect (files, warnings) lives here.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from keras_convviz import _core
from keras_convviz._model_graph import check_backend
from keras_convviz._probe import Probe, make_probe

_ON_ERROR = ("warn", "raise")
# Consecutive failed snapshots after which a callback stops trying for the rest of the run.
MAX_FAILURES = 3
# zlib level of the PNGs. Level 1 encodes a snapshot in about 0.4-0.6x the time of the
# default level (6), for files 7% larger on the demo model's ConvViz snapshot (0.2% on the
# noise images of benchmarks/write_fix.py); TensorBoard shows the same pixels either way.
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
    tag: str
    value: float | tf.Tensor


def check_freq(freq) -> int:
    if isinstance(freq, bool) or not isinstance(freq, (int, np.integer)) or freq < 0:
        raise ValueError(
            "`freq` must be a non-negative int (epochs between snapshots; 0 disables). "
            f"Received: freq={freq!r}"
        )
    return int(freq)


def check_positive_int(value, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{argument}` must be an int >= 1. Received: {argument}={value!r}")
    return int(value)


def warn_skipped_convs(graph, callback: str) -> None:
    """Say once, at train begin, which conv layers a callback leaves out."""
    skipped = graph.skipped_convs()
    if skipped:
        warnings.warn(
            f"{callback} shows 2-D convolutions only; it skips the 1-D/3-D conv layers {skipped}.",
            UserWarning,
            stacklevel=3,
        )


def check_layer_names(layer_names, argument: str = "layer_names"):
    if layer_names is None:
        return None
    if isinstance(layer_names, str):
        return [layer_names]
    names = list(layer_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"`{argument}` must be None or a non-empty list of layer names. "
            f"Received: {argument}={layer_names!r}"
        )
    return names


class SnapshotCallback(keras.callbacks.Callback):
    """Base of the keras_convviz callbacks. Not for direct use.

    Args:
        log_dir: str or path. The TensorBoard log directory; this callback writes into its
            own run directory `log_dir/<run_name>`.
        freq: int. Write a snapshot at the end of every `freq` epochs (epochs 0, freq,
            2*freq, ...). `0` disables the callback. Defaults to `1`.
        on_error: `"warn"` or `"raise"`. What a failure inside a snapshot does: `"warn"`
            warns once with the cause and training goes on (after 3 failures in a row the
            callback turns itself off for the run); `"raise"` re-raises. Defaults to `"warn"`.
    """

    run_name = ""

    def __init__(self, log_dir, freq: int = 1, on_error: str = "warn"):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise TypeError(f"`log_dir` must be a path. Received: log_dir={log_dir!r}")
        if on_error not in _ON_ERROR:
            raise ValueError(f"`on_error` must be one of {_ON_ERROR}. Received: {on_error!r}")
        check_backend()
        self.log_dir = os.fspath(log_dir)
        self.freq = check_freq(freq)
        self.on_error = on_error
        self._writer = None
        self._encode = None
        self._failures = 0
        self._warned = False
        self._active = False
        self._prepared = False

    @property
    def run_dir(self) -> str:
        return os.path.join(self.log_dir, self.run_name)

    # ---- what subclasses supply ---------------------------------------------------------

    def _prepare(self, model: keras.Model) -> None:
        """Resolve layers and validate arguments against the model (before the first epoch)."""

    def _can_prepare(self, model: keras.Model) -> bool:
        """Whether `_prepare` can run at train begin (else it runs at the first snapshot)."""
        return model.built

    def _snapshot(self, epoch: int) -> list[Image | Scalar]:
        raise NotImplementedError

    # ---- shared-pass membership (probe-based callbacks) ------------------------------------

    def feature_refs(self) -> tuple:
        return ()

    def cam_requests(self) -> tuple:
        return ()

    def is_due(self, epoch: int) -> bool:
        return self._active and self.freq > 0 and epoch % self.freq == 0

    # ---- lifecycle ------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._failures = 0
        self._warned = False
        self._active = False
        self._prepared = False
        if not self.freq:
            return
        if self._can_prepare(self.model):
            self._prepare(self.model)
            self._prepared = True
        if _is_chief(self.model):
            _check_writable(self.run_dir)
        self._active = True

    def on_epoch_end(self, epoch, logs=None):
        if not self.is_due(epoch):
            return
        try:
            if not self._prepared:  # a model first built by the training step itself
                self._prepare(self.model)
                self._prepared = True
            summaries = self._snapshot(epoch)
            if _is_chief(self.model):
                self._write(epoch, summaries)
            self._failures = 0
        except Exception as error:  # noqa: BLE001 - a snapshot must never end the run
            if self.on_error == "raise":
                raise
            self._failures += 1
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{type(self).__name__} could not write its snapshot at epoch {epoch}: "
                    f"{type(error).__name__}: {error}. Training goes on; the callback tries "
                    f"again at its next snapshot and stops after {MAX_FAILURES} failures in a row.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            if self._failures >= MAX_FAILURES:
                self._active = False
                warnings.warn(
                    f"{type(self).__name__} failed {MAX_FAILURES} snapshots in a row and is off "
                    "for the rest of this training run.",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def on_train_end(self, logs=None):
        self._active = False
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ---- writing ----------------------------------------------------------------------------

    def _write(self, epoch: int, summaries) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.run_dir)
        images = [item.data for item in summaries if isinstance(item, Image)]
        if images:
            if self._encode is None:
                # One compiled function encodes every PNG of a snapshot (in parallel, off
                # Python); the images' shapes are fixed per callback, so it traces once.
                self._encode = _core.compile_once(encode_images, autograph=False)
            encoded = iter(self._encode(tuple(images)))
        with self._writer.as_default(step=epoch):
            # What tf.summary.image / tf.summary.scalar write, without their per-call work.
            for item in summaries:
                if isinstance(item, Image):
                    tf.summary.write(item.tag, next(encoded), metadata=_IMAGE_METADATA)
                else:
                    value = tf.cast(item.value, tf.float32)
                    if value.shape.rank != 0:
                        raise ValueError(f"Scalar {item.tag!r} must be a scalar; got {value.shape}")
                    tf.summary.write(item.tag, value, metadata=_SCALAR_METADATA)
        # Flushed at every snapshot so a run killed later keeps what was written.
        self._writer.flush()


def encode_images(images: tuple[tf.Tensor, ...]) -> list[tf.Tensor]:
    """Image summary tensors, as `tf.summary.image(..., max_outputs=1)` makes them.

    Args:
        images: `(1, height, width, channels)` tensors, uint8 or float in [0, 1].

    Returns:
        One `(3,)` string tensor per image: width, height and the PNG of its first image.
    """
    encoded = []
    for data in images:
        image = tf.image.convert_image_dtype(data[0], tf.uint8, saturate=True)
        shape = tf.shape(image)
        png = tf.io.encode_png(image, compression=PNG_COMPRESSION)
        encoded.append(tf.stack([tf.as_string(shape[1]), tf.as_string(shape[0]), png]))
    return encoded


class ProbeCallback(SnapshotCallback):
    """A callback that runs on a fixed probe through the shared pass.

    Args (besides the base's):
        probe: images, `(x, labels)` or a `tf.data.Dataset`; for a multi-input model `x`
            is a dict keyed by input name or a list in input order.
        image_input: the model input that takes the images, by name or position.
        score_output: the model output that holds the class scores, by name or position.
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
    ):
        super().__init__(log_dir, freq=freq, on_error=on_error)
        self.probe: Probe = make_probe(probe, image_input)
        self.image_input = image_input
        self.score_output = score_output
        self._shared: _core.SharedPass | None = None

    def _can_prepare(self, model: keras.Model) -> bool:
        return True  # an unbuilt model is built from the probe's shape in `_join`

    def _join(self, model: keras.Model) -> _core.SharedPass:
        if not model.built:
            # A Sequential model without an `Input` is built by its first training step;
            # building it now for the probe's shape is what that step would do.
            model.build((None, *self.probe.image_shape))
        core = _core.core_for(model)
        bound = core.bind(self.probe, self.image_input, self.score_output, self.needs_scores)
        if self._shared is not None:
            self._shared.leave(self)
        self._shared = _core.shared_pass(model, self.probe, bound)
        self._shared.join(self)
        return self._shared

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
