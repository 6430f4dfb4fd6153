"""Reading event files back with TensorBoard's own reader (no private copy of the format).

A run is every directory under the log directory that holds event files directly, named
by its path relative to the log directory (`"grad_cam"`, or `"demo/grad_cam"` when the log
directory holds several sets of runs), as TensorBoard names them.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from keras_convviz import _tags


@dataclass
class Series:
    """One tag of one run: its steps and values, in step order.

    Attributes:
        run: The run, relative to the log directory, `/`-separated.
        tag: The tag, as TensorBoard shows it.
        kind: `"images"` or `"scalars"`.
        steps: The steps, ascending.
        values: Per step, for images the PNG bytes of each image of that step (a
            `tf.summary.image` call may store several), for scalars a float.
        sizes: Per step, for images the `(width, height)` the summary declares.
    """

    run: str
    tag: str
    kind: str
    steps: list[int] = field(default_factory=list)
    values: list = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)


def is_event_file(name: str) -> bool:
    return "tfevents" in name


def find_runs(log_dir) -> list[str]:
    """The runs under `log_dir`: each directory holding event files, relative, sorted."""
    runs = []
    for root, dirs, files in os.walk(log_dir):
        dirs.sort()
        if any(is_event_file(f) for f in files):
            rel = os.path.relpath(root, log_dir)
            runs.append("." if rel == os.curdir else rel.replace(os.sep, "/"))
    return sorted(runs)


def event_file_counts(log_dir) -> dict[str, int]:
    """`{run: number of event files in it}`."""
    counts = {}
    for run in find_runs(log_dir):
        path = os.path.join(log_dir, run)
        counts[run] = sum(is_event_file(f) for f in os.listdir(path))
    return counts


def read_run(log_dir, run: str) -> list[Series]:
    """Every image and scalar tag of one run, read with TensorBoard's `EventAccumulator`.

    Tags of other plugins (e.g. the model graph `keras.callbacks.TensorBoard` writes) are
    left out. Events are kept as TensorBoard's reader gives them (a step written twice
    appears twice); `unique_steps` keeps the last write of each step.
    """
    acc = event_accumulator.EventAccumulator(
        os.path.join(log_dir, run), size_guidance={event_accumulator.TENSORS: 0}
    )
    acc.Reload()
    found = []
    for tag in acc.Tags()["tensors"]:
        plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if plugin not in ("images", "scalars"):
            continue
        series = Series(run, tag, plugin)
        for event in acc.Tensors(tag):
            array = tensor_util.make_ndarray(event.tensor_proto)
            series.steps.append(event.step)
            if plugin == "images":
                # [width, height, png, png, ...], as tf.summary.image writes it
                series.values.append(list(array[2:]))
                series.sizes.append((int(array[0]), int(array[1])))
            else:
                series.values.append(float(array))
                series.sizes.append(None)
        found.append(series)
    return found


def read_alerts(log_dir, run: str) -> list[dict]:
    """The alerts of an `alerts` run: each JSON record `alerts.Monitor` wrote
    (`alerts.Alert.record`), the last write of each tag, in step order; `[]` when the run
    is missing. A record that does not parse is left out."""
    path = os.path.join(log_dir, run)
    if not os.path.isdir(path):
        return []
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    found = []
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != _tags.ALERTS_PLUGIN:
            continue
        events = acc.Tensors(tag)
        if not events:
            continue
        value = tensor_util.make_ndarray(events[-1].tensor_proto)
        try:
            record = json.loads(value.item() if value.shape == () else value.ravel()[0])
        except (ValueError, TypeError, IndexError):
            continue
        if isinstance(record, dict) and {"rule", "subject", "step"} <= set(record):
            found.append(record)
    return sorted(found, key=lambda a: (a.get("step", 0), a.get("rule", ""), a.get("subject", "")))


def watched_by(log_dir, run: str) -> list[str]:
    """The rules that watched the training of a `health` run (`alerts.Monitor` writes
    their names there, `_tags.RULES_PLUGIN`); `[]` when none did or the run is missing."""
    path = os.path.join(log_dir, run)
    if not os.path.isdir(path):
        return []
    acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != _tags.RULES_PLUGIN:
            continue
        for event in reversed(acc.Tensors(tag)):
            value = tensor_util.make_ndarray(event.tensor_proto)
            try:
                rules = json.loads(value.item() if value.shape == () else value.ravel()[0])
            except (ValueError, TypeError, IndexError):
                continue
            if isinstance(rules, list) and rules:
                return [str(rule) for rule in rules]
    return []


def unique_steps(series: Series) -> Series:
    """The series with each step once (its last write), in ascending step order."""
    last = {step: i for i, step in enumerate(series.steps)}
    order = [last[step] for step in sorted(last)]
    return Series(
        series.run,
        series.tag,
        series.kind,
        [series.steps[i] for i in order],
        [series.values[i] for i in order],
        [series.sizes[i] for i in order],
    )


def decode_png(blob: bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PNG as a `(height, width, channels)` uint8 array (2-D for grey).

    Args:
        blob: The PNG bytes.
        size: The `(width, height)` the summary declares; checked when given.
    """
    image = np.asarray(Image.open(io.BytesIO(blob)))
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        raise ValueError(
            f"An image summary declares size (width, height)={tuple(size)} but its PNG is "
            f"{image.shape[1]}x{image.shape[0]}: the event file is corrupt."
        )
    return image
