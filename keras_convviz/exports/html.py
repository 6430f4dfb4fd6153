"""The offline report: one HTML file, images inlined, no network, no external file.

Per kind and layer: the probe images at the epoch an epoch slider picks, the scalars of
that layer as small inline SVG plots (a marker at the picked epoch), and the whole probe x
epoch grid (click a cell to pick its epoch). Every name is escaped: a layer named
`<script>` stays text, and no data is ever placed inside the script.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
from collections.abc import Callable
from html import escape

from keras_convviz import diagnosis
from keras_convviz.exports.sections import Section

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_PLOT_WIDTH, _PLOT_HEIGHT = 280, 120
_PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM = 54, 272, 10, 98

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
  color: #1b1b1b; background: #f4f4f4; }
header, section, nav { background: #fff; margin: 12px; padding: 12px 16px;
  border-radius: 6px; box-shadow: 0 1px 2px rgba(0,0,0,.12); }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 8px; }
h2 .run, nav .run { color: #555; font-weight: normal; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
nav ul { margin: 4px 0; padding-left: 20px; columns: 3 220px; }
.controls { display: flex; align-items: center; gap: 8px; margin: 4px 0 10px; }
.controls input[type=range] { width: min(480px, 60vw); }
.controls output { font-weight: 600; min-width: 80px; }
.shown { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 12px; color: #444; }
img { image-rendering: pixelated; display: block; max-width: 100%; height: auto; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; margin: 10px 0; }
.plot { font-size: 12px; } .plot svg { background: #fafafa; border: 1px solid #ddd; }
.legend span { margin-right: 8px; white-space: nowrap; }
.legend i { display: inline-block; width: 10px; height: 3px; vertical-align: middle;
  margin-right: 3px; }
details { margin-top: 8px; } summary { cursor: pointer; color: #333; }
.scroll { overflow-x: auto; }
table.grid { border-collapse: collapse; }
table.grid th { font-weight: normal; font-size: 12px; color: #444; padding: 2px 4px;
  text-align: left; white-space: nowrap; }
table.grid td { padding: 2px; border: 2px solid transparent; }
table.grid td.current { border-color: #1f77b4; }
table.grid img { height: 72px; width: auto; max-width: none; cursor: pointer; }
.missing { visibility: hidden; }
.epochs-note { color: #8a5a00; margin: 0 0 8px; }
img.smooth { image-rendering: auto; }
#diagnosis { border-left: 4px solid #b3261e; }
#diagnosis.ok { border-left-color: #1e7b34; }
#diagnosis ol { margin: 4px 0; padding-left: 22px; } #diagnosis li { margin-bottom: 6px; }
#diagnosis .title { color: #b3261e; font-weight: 600; }
#diagnosis .why, #diagnosis .folded { color: #555; font-size: 13px; }
"""

# Reads only the DOM (data-* attributes), so no name ever ends up inside the script.
_SCRIPT = """
(function () {
  function markers(section, step) {
    section.querySelectorAll("svg[data-s0]").forEach(function (svg) {
      var s0 = +svg.dataset.s0, s1 = +svg.dataset.s1, x0 = +svg.dataset.x0,
          x1 = +svg.dataset.x1, line = svg.querySelector("line.marker");
      var x = s1 > s0 ? x0 + (step - s0) / (s1 - s0) * (x1 - x0) : (x0 + x1) / 2;
      line.setAttribute("x1", x); line.setAttribute("x2", x);
    });
  }
  document.querySelectorAll("section.kind").forEach(function (section) {
    var steps = JSON.parse(section.dataset.steps);
    var slider = section.querySelector("input.epoch");
    var output = section.querySelector("output");
    function show(i) {
      i = Math.max(0, Math.min(steps.length - 1, i));
      slider.value = i;
      output.textContent = "epoch " + steps[i];
      section.querySelectorAll("img.shown-image").forEach(function (img) {
        var cell = section.querySelector(
          'table.grid img[data-row="' + img.dataset.row + '"][data-col="' + i + '"]');
        if (cell) { img.src = cell.src; img.classList.remove("missing"); }
        else { img.classList.add("missing"); }
      });
      section.querySelectorAll("table.grid td").forEach(function (td) {
        td.classList.toggle("current", td.dataset.col === String(i));
      });
      markers(section, steps[i]);
    }
    slider.addEventListener("input", function () { show(+slider.value); });
    section.querySelector("button.prev").addEventListener("click", function () {
      show(+slider.value - 1); });
    section.querySelector("button.next").addEventListener("click", function () {
      show(+slider.value + 1); });
    section.querySelectorAll("table.grid img").forEach(function (img) {
      img.addEventListener("click", function () { show(+img.dataset.col); });
    });
    show(+slider.value);
  });
})();
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}"
    return f"{value:.2e}"


def svg_plot(
    title: str, lines: dict[str, tuple[list[int], list[float]]], marker: bool = True
) -> str:
    """A small line plot of scalars over steps, as inline SVG (no external reference).

    Args:
        title: The quantity plotted.
        lines: `{label: (steps, values)}`; non-finite values break their line.
        marker: Draw the line a section's slider moves to the picked epoch.

    Returns:
        A `<div class="plot">` with the SVG and a legend.
    """
    points = [(s, v) for steps, values in lines.values() for s, v in zip(steps, values)]
    finite = [v for _, v in points if math.isfinite(v)]
    s0, s1 = min(s for s, _ in points), max(s for s, _ in points)
    v0, v1 = (min(finite), max(finite)) if finite else (0.0, 1.0)
    constant = v0 == v1
    if constant:  # a flat line in the middle, labelled once with its value
        v0, v1 = v0 - 1.0, v1 + 1.0

    def x_of(s):
        if s0 == s1:
            return (_PLOT_LEFT + _PLOT_RIGHT) / 2
        return _PLOT_LEFT + (s - s0) / (s1 - s0) * (_PLOT_RIGHT - _PLOT_LEFT)

    def y_of(v):
        return _PLOT_BOTTOM - (v - v0) / (v1 - v0) * (_PLOT_BOTTOM - _PLOT_TOP)

    parts = [
        f'<svg width="{_PLOT_WIDTH}" height="{_PLOT_HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" data-s0="{s0}" data-s1="{s1}" '
        f'data-x0="{_PLOT_LEFT}" data-x1="{_PLOT_RIGHT}">',
        f'<line x1="{_PLOT_LEFT}" y1="{_PLOT_BOTTOM}" x2="{_PLOT_RIGHT}" y2="{_PLOT_BOTTOM}" '
        'stroke="#999"/>',
        f'<line x1="{_PLOT_LEFT}" y1="{_PLOT_TOP}" x2="{_PLOT_LEFT}" y2="{_PLOT_BOTTOM}" '
        'stroke="#999"/>',
        *(
            [
                f'<text x="{_PLOT_LEFT - 4}" y="{y_of(v0 + 1.0) + 4:.1f}" text-anchor="end" '
                f'font-size="10">{escape(_number(v0 + 1.0))}</text>'
            ]
            if constant
            else [
                f'<text x="{_PLOT_LEFT - 4}" y="{_PLOT_TOP + 8}" text-anchor="end" '
                f'font-size="10">{escape(_number(v1))}</text>',
                f'<text x="{_PLOT_LEFT - 4}" y="{_PLOT_BOTTOM}" text-anchor="end" '
                f'font-size="10">{escape(_number(v0))}</text>',
            ]
        ),
        f'<text x="{_PLOT_LEFT}" y="{_PLOT_HEIGHT - 6}" font-size="10">{s0}</text>',
        f'<text x="{_PLOT_RIGHT}" y="{_PLOT_HEIGHT - 6}" text-anchor="end" font-size="10">'
        f"{s1}</text>",
    ]
    if marker:
        parts.append(
            f'<line class="marker" x1="{_PLOT_RIGHT}" y1="{_PLOT_TOP}" x2="{_PLOT_RIGHT}" '
            f'y2="{_PLOT_BOTTOM}" stroke="#1f77b4" stroke-dasharray="3,2"/>'
        )
    legend = []
    for k, (label, (steps, values)) in enumerate(lines.items()):
        colour = PALETTE[k % len(PALETTE)]
        runs, current = [], []
        for s, v in zip(steps, values):
            if math.isfinite(v):
                current.append(f"{x_of(s):.1f},{y_of(v):.1f}")
            elif current:
                runs.append(current)
                current = []
        runs.append(current)
        for run in runs:
            if len(run) == 1:
                x, y = run[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>')
            elif run:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                    f'points="{" ".join(run)}"><title>{escape(label)}</title></polyline>'
                )
        if label:
            legend.append(f'<span><i style="background:{colour}"></i>{escape(label)}</span>')
    parts.append("</svg>")
    legend_html = f'<div class="legend">{"".join(legend)}</div>' if legend else ""
    return (
        f'<div class="plot"><div><code>{escape(title)}</code></div>{"".join(parts)}'
        f"{legend_html}</div>"
    )


def _display_width(width: int) -> int:
    """Small pictures enlarged by a whole factor (pixels stay crisp), wide ones shrunk so
    two fit side by side."""
    return min(width * max(1, 200 // max(width, 1)), 640)


def epochs_note(section: Section, epochs: list[int]) -> str:
    """A line saying at which epochs a kind exists, when it exists at fewer of them than
    its experiment's other kinds (a costly kind thinned by `ConvViz`'s budget or given a
    `freq` of its own); else empty."""
    own = section.steps
    if not own or len(own) >= len(epochs):
        return ""
    why = (
        "a costly kind: ConvViz's `budget` (or its own `freq`) runs it less often"
        if section.kind is not None and section.kind.costly
        else "its own `freq` runs it less often"
    )
    return (
        f'<p class="epochs-note">{escape(section.label)} exists at epochs '
        f"{escape(epoch_list(own))} of the {len(epochs)} epochs with snapshots "
        f"({escape(epoch_list(epochs))}): {why}. The other epochs have no picture of it.</p>"
    )


def epoch_list(steps: list[int]) -> str:
    """`0-3, 6, 9`: consecutive steps as ranges."""
    parts, start = [], None
    for i, step in enumerate(steps):
        if start is None:
            start = step
        if i + 1 == len(steps) or steps[i + 1] != step + 1:
            parts.append(str(start) if start == step else f"{start}-{step}")
            start = None
    return ", ".join(parts)


def section_html(index: int, section: Section, steps: list[int], epochs=None) -> str:
    """One kind and layer: slider, the pictures at the picked epoch, plots and grid;
    `epochs`: every epoch its experiment has snapshots at (`epochs_note`)."""
    last = len(steps) - 1
    head = (
        f'<section class="kind" id="section-{index}" data-steps="{escape(json.dumps(steps))}">'
    ) + (
        f"<h2>{escape(section.heading)}"
        + (f' <span class="run">{escape(section.run)}</span>' if section.kind else "")
        + "</h2>"
    )
    controls = (
        '<div class="controls"><button class="prev" type="button" '
        'aria-label="previous epoch">&#9664;</button>'
        f'<input class="epoch" type="range" min="0" max="{last}" step="1" value="{last}" '
        f'aria-label="epoch of {escape(section.title)}">'
        '<button class="next" type="button" aria-label="next epoch">&#9654;</button>'
        f"<output>epoch {steps[last]}</output>"
        f"<span>{len(steps)} of {len(section.steps)} epochs</span></div>"
    ) + epochs_note(section, epochs or section.steps)
    shown = []
    for row, picture in enumerate(section.pictures):
        step = steps[last]
        width = max(w for w, _ in picture.sizes)
        src = f'src="{data_uri(picture.blob(step))}"' if step in picture.steps else ""
        missing = "" if src else " missing"
        shown_width = _display_width(width)
        smooth = " smooth" if shown_width < width else ""
        shown.append(
            f'<figure><img class="shown-image{missing}{smooth}" data-row="{row}" {src} '
            f'style="width:{shown_width}px" alt="{escape(picture.name)}">'
            f"<figcaption>{escape(picture.row or picture.name)}</figcaption></figure>"
        )
    plots = [svg_plot(quantity, rows) for quantity, rows in section.scalars.items()]
    header = "".join(f"<th>epoch {s}</th>" for s in steps)
    body = []
    for row, picture in enumerate(section.pictures):
        cells = []
        for col, step in enumerate(steps):
            if step in picture.steps:
                cells.append(
                    f'<td data-col="{col}"><img data-row="{row}" data-col="{col}" '
                    f'src="{data_uri(picture.blob(step))}" '
                    f'alt="{escape(picture.name)} epoch {step}" '
                    f'title="{escape(picture.name)}, epoch {step}"></td>'
                )
            else:
                cells.append(f'<td data-col="{col}"></td>')
        body.append(f"<tr><th>{escape(picture.row)}</th>{''.join(cells)}</tr>")
    grid = (
        "<details open><summary>every exported epoch (click a picture to pick its epoch)"
        '</summary><div class="scroll"><table class="grid">'
        f"<tr><th></th>{header}</tr>{''.join(body)}</table></div></details>"
    )
    plots_html = f'<div class="plots">{"".join(plots)}</div>' if plots else ""
    return f'{head}{controls}<div class="shown">{"".join(shown)}</div>{plots_html}{grid}</section>'


def _group(run: str) -> str:
    return run.rsplit("/", 1)[0] if "/" in run else ""


def _plain(text: str) -> str:
    """A rule's text, escaped, its `code` spans as `<code>`."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _evidence_anchor(group: str, subject: str, sections: list[Section], scalars: bool) -> str:
    """The id of the section that shows a subject (`feature_maps/conv2`): its kind and
    layer, else another kind's section of that layer, else the other scalars (the health
    numbers of a layer no kind draws); `""` when none does."""
    run, _, layer = subject.partition("/")
    full = f"{group}/{run}" if group else run
    in_group = [(i, s) for i, s in enumerate(sections) if _group(s.run) == group]
    for wanted in ((full, layer or None), (full, None)):
        for i, section in in_group:
            if (section.run, section.layer) == wanted:
                return f"section-{i}"
    for i, section in in_group:
        if layer and section.layer == layer:
            return f"section-{i}"
    return "scalars" if scalars else ""


def diagnosis_html(
    alerts: dict[str, list[dict]], sections: list[Section], scalars: bool = False
) -> str:
    """The diagnosis at the top of the report: per training (an `alerts` run), what is
    wrong, since which epoch, where and what to try, one line per root cause
    (`keras_convviz.diagnosis`), each linked to the section that shows it; "nothing
    wrong" when no alert fired.

    Args:
        alerts: `{alerts run: its alert records}` (`events.read_alerts`).
        sections: the report's sections, in order (their ids are `section-<i>`).
        scalars: whether the report has its "Other scalars" section (id `scalars`).
    """
    blocks = []
    for run, records in sorted(alerts.items()):
        group = _group(run)
        lines = diagnosis.diagnose(records)
        label = f' <span class="run">{escape(group)}</span>' if group and len(alerts) > 1 else ""
        if not lines:
            blocks.append(f"<p>Nothing wrong{label}: no alert fired.</p>")
            continue
        items = []
        for line in lines:
            anchor = _evidence_anchor(group, line.subjects[0], sections, scalars)
            title = f'<span class="title">{escape(line.title)}</span>'
            if anchor:
                title = f'<a href="#{anchor}">{title}</a>'
            since = "" if line.since_epoch == line.epoch else f", seen at epoch {line.epoch}"
            folded = ""
            if line.folded:
                followers = "; ".join(
                    f"epoch {f['epoch']}: {escape(f['title'])} in {_plain(f['where'])}"
                    for f in line.folded
                )
                folded = f'<div class="folded">Follows from it: {followers}.</div>'
            evidence = "" if anchor else f" (evidence: {_plain(line.evidence)})"
            items.append(
                f"<li>{title} since epoch {line.since_epoch}{since}, in {_plain(line.where)}"
                f"{evidence}.<div><strong>Try:</strong> {_plain(line.advice)}.</div>"
                f'<div class="why">{_plain(line.meaning)}.</div>{folded}</li>'
            )
        blocks.append(f"{label and f'<h3>{label}</h3>'}<ol>{''.join(items)}</ol>")
    if not blocks:
        blocks.append("<p>Nothing wrong: no alert fired.</p>")
    ok = ' class="ok"' if all(b.startswith("<p>") for b in blocks) else ""
    note = "" if ok else '<p class="why">Epochs as Keras counts them, from 1.</p>'
    return f'<section id="diagnosis"{ok}><h2>Diagnosis</h2>{note}{"".join(blocks)}</section>'


def report_html(
    sections: list[Section],
    steps: list[list[int]],
    other_scalars: dict[str, dict[str, tuple[list[int], list[float]]]],
    log_dir: str,
    tick: Callable[[str], None] = lambda name: None,
    alerts: dict[str, list[dict]] | None = None,
) -> str:
    """The whole report.

    Args:
        sections: The kinds and layers, in order.
        steps: Per section, the steps to show.
        other_scalars: `{tag: {run: (steps, values)}}`, scalars of no section.
        log_dir: Shown in the header.
        tick: Called with each section's title once it is rendered (progress).
        alerts: `{alerts run: its alert records}`, for the diagnosis at the top
            (`diagnosis_html`); `None` leaves it out.

    Returns:
        The HTML document.
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc = "".join(
        f'<li><a href="#section-{i}">{escape(s.heading)}'
        + (f' <span class="run">{escape(s.run)}</span>' if s.kind else "")
        + "</a></li>"
        for i, s in enumerate(sections)
    )
    # Per experiment (the runs' parent directory), every epoch some kind has pictures at.
    epochs: dict[str, set] = {}
    for section in sections:
        epochs.setdefault(_group(section.run), set()).update(section.steps)
    body = []
    for i, (section, chosen) in enumerate(zip(sections, steps)):
        body.append(section_html(i, section, chosen, sorted(epochs[_group(section.run)])))
        tick(section.title)
    if other_scalars:
        plots = "".join(svg_plot(tag, runs, marker=False) for tag, runs in other_scalars.items())
        body.append(
            '<section id="scalars"><h2>Other scalars</h2>'
            f'<div class="plots">{plots}</div></section>'
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>keras_convviz report: {escape(log_dir)}</title><style>{_CSS}</style></head>"
        "<body><header><h1>keras_convviz report</h1>"
        f"<div>Log directory <code>{escape(log_dir)}</code>, exported {now}. "
        "Epoch = TensorBoard's step, counted from 0. Move a slider (or use the arrow keys on "
        "it) to scrub through the epochs.</div></header>"
        + ("" if alerts is None else diagnosis_html(alerts, sections, bool(other_scalars)))
        + f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>"
        f"{''.join(body)}<script>{_SCRIPT}</script></body></html>"
    )
