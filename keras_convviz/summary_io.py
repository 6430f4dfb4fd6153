"""Summary I/O: the summary records, their PNG encoding, and the one writer of each run.

Below both the callbacks and the alerts: everything that writes into a run directory goes
through `RunWriter`, so a run keeps one event file (see `RunWriter`).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import weakref
from dataclasses import dataclass

import tensorflow as tf
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata

from keras_convviz import _tags

# zlib level of the PNGs: level 1 encodes in well under the default level's (6) time, for
# slightly larger files with the same pixels (BENCHMARKS.md, "Problems the first runs
# found", 2).
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


@dataclass(frozen=True)
class Tensor:
    """One tensor summary of a plugin other than TensorBoard's own (`metadata`: the
    serialized `SummaryMetadata` that names it), e.g. the probe's regions for the tab's
    outline. It goes to the run its tag starts with, unless `run` names another."""

    tag: str
    value: tf.Tensor
    metadata: bytes
    run: str | None = None


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
        """Make `user` (a callback: its `_active` says whether its training runs) the
        writer of `tag`; raises if another callback in training writes it."""
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

    def wrote(self, step: int) -> None:
        """Flush what was written at `step`, so a run killed later keeps it."""
        self.writer.flush()
        self.next_step = max(self.next_step, step + 1)


def run_writer(writers: dict[str, RunWriter], log_dir: str, run: str, user) -> RunWriter:
    """The writer of `log_dir/run` for `user`, kept in `user`'s `writers` by run name."""
    shared = writers.get(run)
    if shared is None:
        shared = writers[run] = RunWriter.acquire(os.path.join(log_dir, run), user)
    return shared


def write_summaries(
    writers: dict[str, RunWriter], log_dir: str, user, step: int, summaries
) -> dict[str, tf.Tensor]:
    """Write `Image`s, `Scalar`s and `Tensor`s at `step`, each into its run under `log_dir` (a
    `Scalar`'s `run`, else the first part of its tag); `user` claims their tags. Returns
    `{tag: encode_image(...)}` of the images written (a notebook's live view shows them
    without encoding them again)."""
    images = [item for item in summaries if isinstance(item, Image)]
    encoded = dict(zip(map(id, images), encode_images([item.data for item in images])))
    by_run: dict[str, list] = {}
    for item in summaries:
        run = getattr(item, "run", None) or item.tag.split("/", 1)[0]
        by_run.setdefault(run, []).append(item)
    for run, items in by_run.items():
        shared = run_writer(writers, log_dir, run, user)
        with shared.writer.as_default(step=step):
            # What tf.summary.image / tf.summary.scalar write, without their per-call work.
            for item in items:
                shared.claim(item.tag, user)
                if isinstance(item, Image):
                    tf.summary.write(item.tag, encoded[id(item)], metadata=_IMAGE_METADATA)
                elif isinstance(item, Tensor):
                    tf.summary.write(item.tag, item.value, metadata=item.metadata)
                else:
                    value = tf.cast(item.value, tf.float32)
                    if value.shape.rank != 0:
                        raise ValueError(f"Scalar {item.tag!r} must be a scalar; got {value.shape}")
                    tf.summary.write(item.tag, value, metadata=_SCALAR_METADATA)
        shared.wrote(step)
    return {item.tag: encoded[id(item)] for item in images}


def write_text(
    writers: dict[str, RunWriter],
    log_dir: str,
    user,
    run: str,
    tag: str,
    text: str,
    step: int,
    metadata=None,
) -> None:
    """Write `text` at `step` into `log_dir/run`: a Markdown summary for the Text tab, or
    with `metadata` a string tensor of that plugin (the alerts' JSON records)."""
    shared = run_writer(writers, log_dir, run, user)
    with shared.writer.as_default(step=step):
        if metadata is None:
            tf.summary.text(tag, text)
        else:
            tf.summary.write(tag, tf.constant(text), metadata=metadata)
    shared.wrote(step)


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
    runs the encoder on its inter-op threads, which training's steps wait for
    (BENCHMARKS.md, 8).

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
