"""Exports read from event files: animated GIFs, contact sheets and an offline HTML report."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from keras_convviz import _tags
from keras_convviz.exports.events import find_runs, read_alerts, read_run, watched_by
from keras_convviz.exports.gif import write_gif
from keras_convviz.exports.html import report_html
from keras_convviz.exports.sections import Picture, Section, build_sections, run_base
from keras_convviz.exports.sheet import contact_sheet

FORMATS = ("gif", "sheet", "html")
MAX_SHEET_COLUMNS = 12
_LISTED = 40  # tags named in an error message, at most


def export(
    logdir,
    out,
    tags: str | None = None,
    formats: Sequence[str] = FORMATS,
    every: int = 1,
    duration: int = 500,
    progress: bool | None = None,
    compare=None,
) -> dict[str, list[Path]]:
    """Writes GIFs, contact sheets and an offline HTML report from a log directory.

    Reads the event files under `logdir` with TensorBoard's own reader. A run is every
    directory holding event files (as TensorBoard shows them); its image tags are grouped
    by kind and layer as the callbacks name them (`grad_cam/conv4/image_3`).

    - `gif`: `out/gif/<tag>.gif` per image tag (e.g. `gif/grad_cam/conv4/image_3.gif`), a
      frame per epoch with the epoch in the top-left corner, looping, the last frame held;
    - `sheet`: `out/sheet/<run>/<layer>.png` per kind and layer, probe images down and
      epochs across, labelled; more than 12 epochs are thinned to 12 evenly spaced ones
      (the first and the last included);
    - `html`: `out/report.html`, one self-contained file (images inlined, no network, no
      external script, style or font): at the top the diagnosis of each training (one line
      per root cause of its alerts, linked to the section that shows it; "nothing wrong"
      when none fired), then per kind and layer an epoch slider over the probe images, the
      layer's scalars as small plots and the probe x epoch grid.

    Args:
        logdir: The log directory (the `log_dir` of the callbacks, or a folder above it).
        out: The folder to write into; made when missing. Files there are overwritten.
        tags: A regular expression; only image tags in which it is found are exported
            (searched in the tag and in `run/tag`). `None` exports every image tag.
        formats: Any of `"gif"`, `"sheet"`, `"html"`.
        every: Export every N-th epoch (the first and the last always). Defaults to `1`.
        duration: Milliseconds per GIF frame. Defaults to `500`.
        progress: Draw a progress bar on stderr; `None` draws it when stderr is a terminal.
        compare: Another run to show in the report beside `logdir`'s: under each probe
            image a row of that run's picture of the same kind and layer at the same
            epochs, and each quantity of both runs in one plot. A run of `logdir` (the
            folder above its kinds' runs, as the tab's run selector names it: `"lr=1e-2"`;
            the report then shows the other runs against it) or another log directory.
            Defaults to `None`.

    Returns:
        The files written: `{"gif": [...], "sheet": [...], "html": [...]}`.

    Raises:
        ValueError: `logdir` is missing or holds no event files or no image tag, `tags`
            is not a regular expression or matches no image tag (the tags are listed), an
            unknown format, `every`/`duration` below 1, or `compare` names neither a run
            of `logdir` (they are listed) nor a log directory.

    Example:

    ```python
    kcv.export("logs/run1", "share", tags=r"grad_cam/.*image_[0-3]$", formats=["gif", "html"])
    ```
    """
    formats = _check_formats(formats)
    every = _check_positive("every", every)
    duration = _check_positive("duration", duration)
    pattern = _check_pattern(tags)
    logdir = os.fspath(logdir)
    runs = _check_logdir(logdir)
    if compare is not None and "html" not in formats:
        raise ValueError(
            "`compare` shows a second run in the report: `formats` must include html. "
            f"Received: formats={formats}, compare={compare!r}"
        )
    other_dir, other_runs, runs, names = _check_compare(compare, logdir, runs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` must be a folder to write into. Received: out='{out}' (a file)")

    series = [s for run in runs for s in read_run(logdir, run)]

    def keep(picture: Picture) -> bool:
        return pattern is None or bool(
            pattern.search(picture.name) or pattern.search(f"{picture.run}/{picture.name}")
        )

    sections, other_scalars = build_sections(series, keep)
    compared = None
    if other_dir is not None:
        compared = compare_sections(
            sections, [s for run in other_runs for s in read_run(other_dir, run)], keep, names
        )
    if not sections:
        _no_pictures(logdir, tags, series)
    if tags is not None:  # scalars of no kept section only when they match too
        other_scalars = {
            tag: rows
            for tag, rows in other_scalars.items()
            if any(pattern.search(tag) or pattern.search(f"{run}/{tag}") for run in rows)
        }
    chosen = [select_steps(section.steps, every) for section in sections]

    work = 0
    if "gif" in formats:
        work += sum(len(s.pictures) for s in sections)
    if "sheet" in formats:
        work += len(sections)
    if "html" in formats:
        work += len(sections)
    bar = _Progress(work, progress)
    written: dict[str, list[Path]] = {"gif": [], "sheet": [], "html": []}
    used: set[Path] = set()
    try:
        # Section by section, so only one section's pictures are decoded at a time.
        for section, steps in zip(sections, chosen):
            if "gif" in formats:
                for picture in section.pictures:
                    frames = select_steps(picture.steps, every)
                    path = _unique(
                        out / "gif" / (_relative(picture.run, picture.name) + ".gif"), used
                    )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_gif(picture, frames, path, duration=duration)
                    written["gif"].append(path)
                    used.add(path)
                    bar.tick(picture.name)
            if "sheet" in formats:
                path = _unique(out / "sheet" / (_sheet_name(section) + ".png"), used)
                path.parent.mkdir(parents=True, exist_ok=True)
                contact_sheet(section, thin(steps, MAX_SHEET_COLUMNS)).save(path)
                written["sheet"].append(path)
                used.add(path)
                bar.tick(section.title)
            for picture in section.pictures:
                picture.forget_decoded()
        if "html" in formats:
            out.mkdir(parents=True, exist_ok=True)
            path = out / "report.html"
            path.write_text(
                report_html(
                    sections,
                    chosen,
                    other_scalars,
                    logdir,
                    tick=bar.tick,
                    compared=compared,
                    alerts=_alerts(logdir, runs),
                ),
                encoding="utf-8",
            )
            written["html"].append(path)
    finally:
        bar.close()
    return written


def compare_sections(sections: list[Section], other_series, keep, names) -> list:
    """Per section, `(the other run's section of the same kind and layer, (this run's
    name, the other's))`: a section without pictures where the other run has none.

    Args:
        sections: The sections of the report.
        other_series: Every series of the other run.
        keep: `keep(picture) -> bool`, the report's filter.
        names: `(name of logdir, name of the other run)`; the first is replaced by a
            section's own run group where it has one.
    """
    found = {(run_base(s.run), s.layer): s for s in build_sections(other_series, keep)[0]}
    compared = []
    for section in sections:
        key = (run_base(section.run), section.layer)
        own = section.run.rsplit("/", 1)[0] if "/" in section.run else names[0]
        other = found.get(key) or Section(names[1], section.layer)
        compared.append((other, (own, names[1])))
    return compared


def _check_compare(compare, logdir: str, runs: list[str], argument: str = "logdir"):
    """`(other log dir, its runs, logdir's runs to show, (logdir's name, the other's))`
    for `compare`: a run group of `logdir` (its runs are then left out of the rest) or
    another log directory; all `None` but the runs without `compare`. `argument`: the
    name of the log directory's argument, for messages."""
    name = os.path.basename(os.path.normpath(logdir)) or logdir
    if compare is None:
        return None, [], runs, (name, "")
    if not isinstance(compare, (str, os.PathLike)) or not os.fspath(compare):
        raise ValueError(
            f"`compare` must be a run of `{argument}` or a log directory. "
            f"Received: compare={compare!r}"
        )
    compare = os.fspath(compare)
    group = compare.strip("/").replace(os.sep, "/")
    groups = sorted({run.rsplit("/", 1)[0] for run in runs if "/" in run})
    inside = [run for run in runs if run.startswith(group + "/")]
    if group in groups and inside:
        rest = [run for run in runs if run not in inside]
        if not rest:
            raise ValueError(
                f"`compare` must name a run other than every run of `{argument}`. "
                f"Received: compare={compare!r}"
            )
        return logdir, inside, rest, (name, group)
    if os.path.isdir(compare) and find_runs(compare):
        other = os.path.basename(os.path.normpath(compare)) or compare
        if other == name:
            name, other = logdir, compare
        return compare, find_runs(compare), runs, (name, other)
    listed = ", ".join(groups[:_LISTED]) or "none (it holds one run)"
    raise ValueError(
        f"`compare` must be a run of `{argument}` (its runs: {listed}) or a log directory "
        f"holding event files. Received: compare={compare!r}"
    )


def _alerts(logdir: str, runs: list[str]) -> dict[str, list[dict]] | None:
    """`{alerts run: its records}` for the report's diagnosis; `None` (no diagnosis) where
    no rule watched the training: no alert fired and no health run names the rules that
    watched (`ConvViz(alerts=False)`, or logs of other callbacks alone)."""
    found = {run: read_alerts(logdir, run) for run in runs if run_base(run) == _tags.ALERTS}
    healths = [run for run in runs if run_base(run) == _tags.HEALTH]
    if any(found.values()) or any(watched_by(logdir, run) for run in healths):
        return found
    return None


def select_steps(steps: list[int], every: int) -> list[int]:
    """Every `every`-th of `steps`, counted from the first; the last always."""
    chosen = steps[::every]
    if steps and chosen[-1] != steps[-1]:
        chosen.append(steps[-1])
    return chosen


def thin(steps: list[int], limit: int) -> list[int]:
    """At most `limit` of `steps`, evenly spaced, the first and the last included."""
    if len(steps) <= limit:
        return steps
    picks = sorted({round(i * (len(steps) - 1) / (limit - 1)) for i in range(limit)})
    return [steps[i] for i in picks]


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,@-]")


def _safe(name: str) -> str:
    """A tag as a relative path: each part kept to safe characters, never `..`."""
    parts = []
    for part in name.split("/"):
        part = _UNSAFE.sub("_", part).strip(".") or "_"
        parts.append(part)
    return "/".join(parts)


def _relative(run: str, name: str) -> str:
    """Where a picture's files go: the tag, under the run's parent folders (and under the
    run itself when the tag does not start with the run's name)."""
    base = run_base(run)
    parent = run.rsplit("/", 1)[0] if "/" in run else ""
    if run == ".":
        return _safe(name)
    if not name.startswith(base + "/"):
        parent = run
    return _safe(f"{parent}/{name}" if parent else name)


def _sheet_name(section: Section) -> str:
    name = section.run if section.layer is None else f"{section.run}/{section.layer}"
    return _safe(name if section.run != "." else section.layer or "pictures")


def _unique(path: Path, used: set[Path] = frozenset()) -> Path:
    """`path`, or `path` with `_2`, `_3`... when two names came out the same."""
    candidate, n = path, 2
    while candidate in used:
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate


class _Progress:
    """`[#####.....] 12/40 name` redrawn in place on stderr."""

    def __init__(self, total: int, enabled: bool | None):
        self.total, self.done = total, 0
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)

    def tick(self, name: str) -> None:
        self.done += 1
        if not self.enabled or not self.total:
            return
        filled = round(30 * self.done / self.total)
        line = f"\rexport [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} {name}"
        sys.stderr.write(line[:120].ljust(120))
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.total:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(
            f"`formats` must be one or more of {', '.join(FORMATS)}. Received: formats={formats}"
        )
    return formats


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
    return value


def _check_pattern(tags):
    if tags is None:
        return None
    try:
        return re.compile(tags)
    except (re.error, TypeError) as error:
        raise ValueError(
            f"`tags` must be a regular expression ({error}). Received: tags={tags!r}"
        ) from None


def _check_logdir(logdir: str, argument: str = "logdir") -> list[str]:
    """The runs under `logdir`; a clear error naming `argument` when there are none."""
    if not os.path.isdir(logdir):
        what = "a file" if os.path.exists(logdir) else "no such directory"
        raise ValueError(
            f"`{argument}` must be a directory holding TensorBoard event files. "
            f"Received: {argument}='{logdir}' ({what})"
        )
    runs = find_runs(logdir)
    if not runs:
        entries = sorted(os.listdir(logdir))
        listed = ", ".join(entries[:20]) + (
            f" and {len(entries) - 20} more" if len(entries) > 20 else ""
        )
        raise ValueError(
            f"`{argument}` must hold TensorBoard event files (`*tfevents*`), in it or in "
            f"folders below it; none found. It holds: {listed or 'nothing'}. "
            f"Received: {argument}='{logdir}'"
        )
    return runs


def _no_pictures(logdir: str, tags: str | None, series) -> None:
    images = sorted({_qualified(s.run, s.tag) for s in series if s.kind == "images"})
    if not images:
        others = sorted({_qualified(s.run, s.tag) for s in series})
        runs = ", ".join(sorted({s.run for s in series}))
        raise ValueError(
            f"`logdir` holds no image tag to export (runs: {runs}; other tags: "
            f"{_listing(others)}). Received: logdir='{logdir}'"
        )
    raise ValueError(
        f"`tags` must match at least one image tag (searched in the tag and in `run/tag`). "
        f"The image tags are ({len(images)}): {_listing(images)}. "
        f"Received: tags={tags!r}"
    )


def _qualified(run: str, tag: str) -> str:
    """A tag, preceded by its run when the tag alone does not say it."""
    return tag if tag.startswith(run + "/") else f"{run}: {tag}"


def _listing(names: list[str]) -> str:
    more = len(names) - _LISTED
    return ", ".join(names[:_LISTED]) + (f" and {more} more" if more > 0 else "") or "none"
