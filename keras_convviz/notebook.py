"""Notebooks: `show`, one kind and layer of the logs as a self-contained output, and the
live view that `ConvViz(display=True)` keeps up to date while `fit` runs.

Both are drawn by the report's own code (`exports.html`), with its style scoped to the
output, images inlined and the script inline: no server and no network, so the output
shows in Jupyter, JupyterLab, Colab and VS Code and stays in the saved notebook. IPython is
imported only when the process already runs under it.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
import warnings

from keras_convviz import kinds
from keras_convviz._warn import user_stacklevel
from keras_convviz.exports import (
    _check_compare,
    _check_logdir,
    _check_positive,
    compare_sections,
    select_steps,
)
from keras_convviz.exports.events import read_alerts, read_run
from keras_convviz.exports.html import live_html, sheet_html
from keras_convviz.exports.sections import build_sections, epoch_of, run_base, split_image_tag

# The kind shown when none is named: what ConvViz draws of the model's decision.
DEFAULT_KIND = kinds.GRAD_CAM.run


def in_notebook() -> bool:
    """Whether this process is a notebook's kernel (Jupyter, Colab, VS Code): IPython
    runs, with a kernel that sends rich outputs to a front end. A terminal IPython, which
    would print each update as text, is not one."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a half-imported or foreign IPython: no notebook
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _uid() -> str:
    return "kcv-" + uuid.uuid4().hex[:12]


class Sheet:
    """What `show` returns: a notebook shows it as its HTML (`_repr_html_`).

    Attributes:
        html: The output's HTML, self-contained.
        kind, run, layer: What it shows (`run`: the run group, `"."` at the top).
        steps: The TensorBoard steps shown, one column each (epoch = step + 1).
    """

    def __init__(self, html: str, kind: str, run: str, layer: str | None, steps: list[int]):
        self.html = html
        self.kind, self.run, self.layer, self.steps = kind, run, layer, steps

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        epochs = [epoch_of(s) for s in self.steps]
        span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
        layer = f", layer {self.layer!r}" if self.layer is not None else ""
        return f"<keras_convviz sheet: {self.kind!r} of run {self.run!r}{layer}, {span}>"


def show(
    log_dir,
    kind: str | None = None,
    run: str | None = None,
    layer=None,
    every: int = 1,
    compare=None,
):
    """One kind and layer of a log directory, for a notebook: the probe images down, the
    epochs across, an epoch slider, the layer's scalars and its alerts.

    The output is what `kcv.export`'s report draws for that kind and layer, self-contained
    (images and script inline, no server, no network): it shows in Jupyter, JupyterLab,
    Colab and VS Code and stays in the saved notebook. Without its script (a notebook
    opened untrusted) the last epoch and the grid of every epoch still show.

    Args:
        log_dir: str or path. The `log_dir` of the callbacks, or a folder above it.
        kind: str or None. The kind, by its run name (`"grad_cam"`, `"feature_maps"`) or
            its label (`"Grad-CAM"`). Defaults to `None`: Grad-CAM where the logs have it,
            else the first kind in the tab's order.
        run: str or None. The run group (the folder above the kinds' runs, `"lr=1e-2"`;
            `"."` for runs directly in `log_dir`). Defaults to `None`: the first holding
            `kind`.
        layer: str or None. The layer. Defaults to `None`: the first the kind has.
        every: int. Show every N-th epoch (the first and the last always). Defaults to `1`.
        compare: str, path or None. Another run to show beside it, as `convviz export
            --compare` does: a run group of `log_dir` (`"lr=1e-3"`) or another log
            directory. Under each probe image, the same image of the other run at the same
            epoch; its scalars dashed in the same plots. Defaults to `None`.

    Returns:
        A `Sheet`; a notebook cell ending with it shows it.

    Raises:
        ValueError: `log_dir` holds no event files, or `kind`, `run` or `layer` names
            none of those there (they are listed), or `every` is below 1, or `compare`
            names neither a run of `log_dir` nor a log directory.

    Example:

    ```python
    kcv.show("logs/run1")  # Grad-CAM, every epoch
    kcv.show("logs/run1", kind="feature_maps", layer="conv2", every=5)
    kcv.show("logs/sweep", run="lr=1e-2", compare="lr=1e-3")  # two runs, one above the other
    ```
    """
    log_dir = os.fspath(log_dir)
    every = _check_positive("every", every)
    runs = _check_logdir(log_dir, "log_dir")
    other_dir, other_runs, runs, names = _check_compare(compare, log_dir, runs, "log_dir")
    kind_name = _pick_kind(kind, runs, log_dir)
    path = _pick_run(run, kind_name, runs, log_dir)
    sections, _ = build_sections(read_run(log_dir, path), lambda picture: True)
    section = _pick_layer(layer, sections, kind_name, path)
    steps = select_steps(section.steps, every)
    group = path.rsplit("/", 1)[0] if "/" in path else ""
    alerts_run = f"{group}/{kinds.ALERTS.run}" if group else kinds.ALERTS.run
    alerts = [a for a in read_alerts(log_dir, alerts_run) if a.get("layer") in (section.layer, "")]
    where = f"{log_dir}, run {path}"
    other = None
    if other_dir is not None:
        same_kind = [r for r in other_runs if run_base(r) == run_base(path)]
        series = [s for r in same_kind for s in read_run(other_dir, r)]
        ((other, names),) = compare_sections([section], series, lambda picture: True, names)
        where += f", compared with {other_dir if other_dir != log_dir else 'run ' + names[1]}"
    html = sheet_html(_uid(), section, steps, where, alerts, compare=other, names=names)
    return Sheet(html, kind_name, group or ".", section.layer, steps)


def _kinds_in(runs: list[str]) -> list[str]:
    """The kinds with pictures among `runs`' names, in the tab's order (then others)."""
    found = []
    for run in runs:
        base = run_base(run)
        known = kinds.get(base)
        if (known is None or known.pictures) and base not in found and base != ".":
            found.append(base)
    order = list(kinds.KINDS)
    return sorted(found, key=lambda b: (order.index(b) if b in order else len(order), b))


def _pick_kind(kind, runs: list[str], log_dir: str) -> str:
    available = _kinds_in(runs)
    if not available:
        raise ValueError(
            f"`log_dir` holds no run of pictures (runs: {', '.join(runs)}). "
            f"Received: log_dir='{log_dir}'"
        )
    if kind is None:
        return DEFAULT_KIND if DEFAULT_KIND in available else available[0]
    for base in available:
        known = kinds.get(base)
        if kind == base or (
            isinstance(kind, str) and known is not None and kind.lower() == known.label.lower()
        ):
            return base
    listed = ", ".join(
        f"'{b}'" + (f" ({kinds.get(b).label})" if kinds.get(b) else "") for b in available
    )
    raise ValueError(
        f"`kind` must be one of the kinds in `log_dir` ('{log_dir}'): {listed}. "
        f"Received: kind={kind!r}"
    )


def _pick_run(run, kind: str, runs: list[str], log_dir: str) -> str:
    """The path of the run of `kind` in the group `run`."""
    of_kind = [r for r in runs if run_base(r) == kind]
    groups = {(r.rsplit("/", 1)[0] if "/" in r else "."): r for r in of_kind}
    if run is None:
        return of_kind[0]
    wanted = os.fspath(run).strip("/") or "." if isinstance(run, (str, os.PathLike)) else run
    if wanted in groups:
        return groups[wanted]
    if wanted in of_kind:
        return wanted
    raise ValueError(
        f"`run` must be one of the runs of `log_dir` ('{log_dir}') holding '{kind}': "
        f"{', '.join(repr(g) for g in groups)}. Received: run={run!r}"
    )


def _pick_layer(layer, sections, kind: str, path: str):
    if layer is None:
        return sections[0]
    for section in sections:
        if section.layer == layer:
            return section
    layers = [s.layer for s in sections]
    listed = (
        ", ".join(repr(name) for name in layers)
        if any(name is not None for name in layers)
        else f"none ('{kind}' has no layers: leave `layer` out)"
    )
    raise ValueError(
        f"`layer` must be one of the layers of '{kind}' in run '{path}': {listed}. "
        f"Received: layer={layer!r}"
    )


class LiveView:
    """The output area of the cell running `fit`, updated after every snapshot with the
    latest pictures of one callback's first layer, the model's health numbers and the
    alerts so far (`ConvViz(display=True)`).

    It shows what the snapshot wrote, the PNGs already encoded for the event file
    (`SnapshotCallback._write` hands them over): no drawing or encoding of its own. The
    callbacks call `saw` on the thread that writes their snapshot; `update` runs after
    every callback's snapshot, on that same thread.

    Args:
        source: The callback whose pictures show.
        health: The `ModelHealth` callback, or `None`.
        monitor: The alerts' `Monitor`, or `None`.
        log_dir: The logs, named in the output.
    """

    def __init__(self, source, health, monitor, log_dir: str):
        from IPython.display import HTML, display

        self._html_type = HTML
        self.uid = _uid()
        self._source, self._health, self._monitor = source, health, monitor
        self._log_dir = log_dir
        self._key: tuple[str, str | None] | None = None  # (run, layer) shown
        self._pictures: list[tuple[str, bytes, int]] = []
        self._numbers: dict[str, float] = {}
        self._step: int | None = None
        self._changed = False
        self._lock = threading.Lock()
        self.updates = 0
        self._failed = False
        self._handle = display(self._html_type(self.html()), display_id=True)

    def saw(self, callback, step: int, encoded: dict, scalars: list) -> None:
        """Keep what a callback's snapshot wrote at `step` that the view shows."""
        if callback is self._source:
            pictures = []
            for tag, data in encoded.items():
                run = tag.split("/", 1)[0]
                layer, row = split_image_tag(run, tag)
                if self._key is None:
                    self._key = (run, layer)
                if (run, layer) == self._key:
                    width = int(data[0].numpy())
                    pictures.append((row or tag, data[2].numpy(), width))
            if pictures:
                with self._lock:
                    self._pictures, self._step, self._changed = pictures, step, True
        elif callback is self._health:
            numbers = {
                item.tag.split("/", 1)[1]: float(item.value)
                for item in scalars
                if item.tag.count("/") == 1
            }
            with self._lock:
                self._numbers, self._changed = numbers, True

    def html(self) -> str:
        with self._lock:
            pictures, numbers, step = list(self._pictures), dict(self._numbers), self._step
        run, layer = self._key or (self._source.run_names()[0], None)
        known = kinds.get(run)
        heading = known.label if known is not None else run
        if layer is not None:
            heading = f"{heading} / {layer}"
        alerts = [a.record() for a in self._monitor.alerts] if self._monitor else []
        where = (
            f"Logs: {self._log_dir}. Every epoch, with the scalars: "
            f"kcv.show({self._log_dir!r}), or TensorBoard's ConvViz tab."
        )
        return live_html(self.uid, heading, step, pictures, numbers, alerts, where)

    def update(self) -> None:
        """Redraw the output when a snapshot brought something new."""
        if self._failed or not self._changed:
            return
        self._changed = False
        try:
            self._handle.update(self._html_type(self.html()))
            self.updates += 1
        except Exception as error:  # noqa: BLE001 - the view must never end the run
            self._failed = True
            warnings.warn(
                f"ConvViz could not update its notebook view: {type(error).__name__}: "
                f"{error}. Training goes on; the logs are written as usual.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
