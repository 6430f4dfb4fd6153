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
from keras_convviz.exports.sections import Section, epoch_of

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
# How the pages count epochs (`sections.epoch_of`), said once at their top.
EPOCH_NOTE = (
    "Epochs are counted as Keras prints them: epoch 1 is TensorBoard's step 0 (the plots' "
    "axes are in steps)."
)
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
.legend i { display: inline-block; width: 16px; height: 3px; vertical-align: middle;
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
.pair { display: flex; flex-direction: column; gap: 4px; }
figcaption .run, table.grid th .run { color: #1f4e79; font-weight: 600; }
#diagnosis { border-left: 4px solid #b3261e; }
#diagnosis.ok { border-left-color: #1e7b34; }
#diagnosis ol { margin: 4px 0; padding-left: 22px; } #diagnosis li { margin-bottom: 6px; }
#diagnosis .title { color: #b3261e; font-weight: 600; }
#diagnosis .why, #diagnosis .folded { color: #555; font-size: 13px; }
"""

# Reads only the DOM (data-* attributes), so no name ever ends up inside the script. A
# function of the element it serves (`script`): the document, or one notebook output.
_SCRIPT = """
(function (root) {
  function markers(section, step) {
    section.querySelectorAll("svg[data-s0]").forEach(function (svg) {
      var s0 = +svg.dataset.s0, s1 = +svg.dataset.s1, x0 = +svg.dataset.x0,
          x1 = +svg.dataset.x1, line = svg.querySelector("line.marker");
      var x = s1 > s0 ? x0 + (step - s0) / (s1 - s0) * (x1 - x0) : (x0 + x1) / 2;
      line.setAttribute("x1", x); line.setAttribute("x2", x);
    });
  }
  root.querySelectorAll("section.kind").forEach(function (section) {
    var steps = JSON.parse(section.dataset.steps);
    var slider = section.querySelector("input.epoch");
    var output = section.querySelector("output");
    function show(i) {
      i = Math.max(0, Math.min(steps.length - 1, i));
      slider.value = i;
      output.textContent = "epoch " + (steps[i] + 1) + " (step " + steps[i] + ")";
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
})"""


def script(root: str = "document") -> str:
    """The report's script, run on `root` (a JavaScript expression: the element whose
    sections it serves)."""
    return f"<script>{_SCRIPT}({root});</script>"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}"
    return f"{value:.2e}"


def svg_plot(
    title: str,
    lines: dict[str, tuple[list[int], list[float]]],
    marker: bool = True,
    styles: dict[str, tuple[int, bool]] | None = None,
) -> str:
    """A small line plot of scalars over steps, as inline SVG (no external reference).

    Args:
        title: The quantity plotted.
        lines: `{label: (steps, values)}`; non-finite values break their line.
        marker: Draw the line a section's slider moves to the picked epoch.
        styles: `{label: (colour index, dashed)}`; by default each line its own colour,
            solid.

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
        # The x axis is TensorBoard's: steps.
        f'<text x="{_PLOT_LEFT}" y="{_PLOT_HEIGHT - 6}" font-size="10">step {s0}</text>',
        f'<text x="{_PLOT_RIGHT}" y="{_PLOT_HEIGHT - 6}" text-anchor="end" font-size="10">'
        f"step {s1}</text>",
    ]
    if marker:
        parts.append(
            f'<line class="marker" x1="{_PLOT_RIGHT}" y1="{_PLOT_TOP}" x2="{_PLOT_RIGHT}" '
            f'y2="{_PLOT_BOTTOM}" stroke="#1f77b4" stroke-dasharray="3,2"/>'
        )
    legend = []
    for k, (label, (steps, values)) in enumerate(lines.items()):
        index, dashed = (styles or {}).get(label, (k, False))
        colour = PALETTE[index % len(PALETTE)]
        dash = ' stroke-dasharray="5,3"' if dashed else ""
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
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} '
                    f'points="{" ".join(run)}"><title>{escape(label)}</title></polyline>'
                )
        if label:
            key = f"border-top:2px dashed {colour};height:0" if dashed else f"background:{colour}"
            legend.append(f'<span><i style="{key}"></i>{escape(label)}</span>')
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
        f"{escape(epoch_list([epoch_of(s) for s in own]))} of the {len(epochs)} epochs with "
        f"snapshots ({escape(epoch_list([epoch_of(s) for s in epochs]))}): {why}. The other "
        "epochs have no picture of it.</p>"
    )


def epoch_list(steps: list[int]) -> str:
    """`1-3, 6, 9`: consecutive numbers as ranges."""
    parts, start = [], None
    for i, step in enumerate(steps):
        if start is None:
            start = step
        if i + 1 == len(steps) or steps[i + 1] != step + 1:
            parts.append(str(start) if start == step else f"{start}-{step}")
            start = None
    return ", ".join(parts)


def _rows(section: Section, compare: Section | None, names: tuple[str, str]) -> list:
    """`(picture or None, label, run name)` per row: each picture of `section`, and with
    `compare` the same probe image's picture of the other run under it (`None`: it has
    none)."""
    if compare is None:
        return [(p, p.row, "") for p in section.pictures]
    others = {p.row: p for p in compare.pictures}
    rows = []
    for picture in section.pictures:
        rows.append((picture, picture.row, names[0]))
        rows.append((others.get(picture.row), picture.row, names[1]))
    return rows


def _compared_scalars(section: Section, compare: Section, names: tuple[str, str]) -> dict:
    """Each quantity of either run in one plot: `{quantity: (lines, styles)}`, a line per
    run and row (`lr=1e-3 image_0`), a row's two lines in one colour, the other run's
    dashed (`svg_plot`'s `styles`)."""
    merged: dict[str, tuple[dict, dict]] = {}
    for dashed, (name, part) in enumerate(zip(names, (section, compare))):
        for quantity, rows in part.scalars.items():
            lines, styles = merged.setdefault(quantity, ({}, {}))
            for row, line in rows.items():
                label = f"{name} {row}".strip()
                lines[label] = line
                colours = {r: i for i, r in enumerate(section.scalars.get(quantity, rows))}
                styles[label] = (colours.get(row, len(colours)), bool(dashed))
    return merged


def section_html(
    index,
    section: Section,
    steps: list[int],
    epochs=None,
    compare: Section | None = None,
    names: tuple[str, str] = ("", ""),
) -> str:
    """One kind and layer: slider, the pictures at the picked epoch, plots and grid.

    Args:
        index: Makes the section's id (`section-<index>`), unique in the page.
        section: The kind and layer.
        steps: The steps to show.
        epochs: Every epoch its experiment has snapshots at (`epochs_note`).
        compare: The same kind and layer of another run, shown under each picture (a
            row of its own at the same steps) with its scalars in the same plots; a
            section without pictures when that run has none of them.
        names: The two runs' names, for the rows and the plots' legends.
    """
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
        f"<output>epoch {epoch_of(steps[last])} (step {steps[last]})</output>"
        f"<span>{len(steps)} of {len(section.steps)} epochs</span></div>"
    ) + epochs_note(section, epochs or section.steps)
    if compare is not None and not compare.pictures:
        controls += (
            f'<p class="epochs-note">{escape(names[1])} has no pictures of '
            f"{escape(section.heading)}.</p>"
        )
    rows = _rows(section, compare, names)
    widths = {p.row: max(w for w, _ in p.sizes) for p in section.pictures}
    shown = []
    for row, (picture, label, name) in enumerate(rows):
        step = steps[last]
        width = widths[label] if picture is None else max(w for w, _ in picture.sizes)
        has = picture is not None and step in picture.steps
        src = f'src="{data_uri(picture.blob(step))}"' if has else ""
        missing = "" if src else " missing"
        shown_width = _display_width(width)
        smooth = " smooth" if shown_width < width else ""
        alt = picture.name if picture is not None else label
        caption = escape(label or alt) + (f' <span class="run">{escape(name)}</span>' * bool(name))
        figure = (
            f'<figure><img class="shown-image{missing}{smooth}" data-row="{row}" {src} '
            f'style="width:{shown_width}px" alt="{escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
        if compare is None:
            shown.append(figure)
        elif row % 2 == 0:  # a probe image, the other run's under it
            shown.append(f'<div class="pair">{figure}')
        else:
            shown.append(f"{figure}</div>")
    if compare is None:
        plots = [svg_plot(quantity, lines) for quantity, lines in section.scalars.items()]
    else:
        plots = [
            svg_plot(quantity, lines, styles=styles)
            for quantity, (lines, styles) in _compared_scalars(section, compare, names).items()
        ]
    header = "".join(f"<th>epoch {epoch_of(s)}</th>" for s in steps)
    body = []
    for row, (picture, label, name) in enumerate(rows):
        cells = []
        for col, step in enumerate(steps):
            if picture is not None and step in picture.steps:
                what = f"{name} {picture.name}".strip()
                cells.append(
                    f'<td data-col="{col}"><img data-row="{row}" data-col="{col}" '
                    f'src="{data_uri(picture.blob(step))}" '
                    f'alt="{escape(what)} epoch {epoch_of(step)}" '
                    f'title="{escape(what)}, epoch {epoch_of(step)} (step {step})"></td>'
                )
            else:
                cells.append(f'<td data-col="{col}"></td>')
        run = f'<br><span class="run">{escape(name)}</span>' if name else ""
        body.append(f"<tr><th>{escape(label)}{run}</th>{''.join(cells)}</tr>")
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
    compared: list | None = None,
    alerts: dict[str, list[dict]] | None = None,
) -> str:
    """The whole report.

    Args:
        sections: The kinds and layers, in order.
        steps: Per section, the steps to show.
        other_scalars: `{tag: {run: (steps, values)}}`, scalars of no section.
        log_dir: Shown in the header.
        tick: Called with each section's title once it is rendered (progress).
        compared: Per section, `(other run's section, (its run's name, the other's))`
            to show under it (`section_html`'s `compare`), or `None`.
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
        other, names = compared[i] if compared else (None, ("", ""))
        body.append(
            section_html(i, section, chosen, sorted(epochs[_group(section.run)]), other, names)
        )
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
        f"{EPOCH_NOTE} Move a slider (or use the arrow keys on it) to scrub through the "
        "epochs.</div></header>"
        + ("" if alerts is None else diagnosis_html(alerts, sections, bool(other_scalars)))
        + f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>"
        f"{''.join(body)}{script()}</body></html>"
    )


# The notebook: one output holding a section (`kcv.show`) or the live view of a training
# (`ConvViz(display=True)`). Its style is scoped to the output's element, so the page around
# it (a notebook's own style) is untouched, and it does not depend on the script: a
# notebook opened untrusted drops scripts, and then the last epoch and the grid show.


def scoped_css(scope: str) -> str:
    """The report's style, each rule limited to the element `scope` (a CSS selector) and
    what is inside it; `body`'s rule is the element's own."""
    rules = []
    for chunk in _CSS.split("}"):
        if "{" not in chunk:
            continue
        selectors, declarations = chunk.split("{", 1)
        scoped = [
            scope if sel.strip() == "body" else f"{scope} {sel.strip()}"
            for sel in selectors.split(",")
            if sel.strip()
        ]
        rules.append(f"{', '.join(scoped)} {{{declarations.strip()}}}")
    return "\n".join(rules)


_NOTEBOOK_CSS = """
{scope} {{ padding: 4px 0; border-radius: 6px; }}
{scope} .where {{ margin: 0 12px; color: #444; font-size: 13px; }}
{scope} section .where {{ margin: 8px 0 0; }}
{scope} ul.alerts {{ margin: 6px 0; padding-left: 20px; }}
{scope} ul.alerts li {{ margin: 2px 0; }}
{scope} table.numbers td, {scope} table.numbers th {{ padding: 1px 10px 1px 0;
  text-align: left; font-weight: normal; }}
{scope} table.numbers td {{ font-variant-numeric: tabular-nums; }}
{scope} table.numbers caption {{ text-align: left; color: #444; padding: 6px 0 2px; }}
"""


def alerts_html(alerts: list[dict]) -> str:
    """The alerts (their JSON records, `alerts.Alert.record`) as a list, or `""`."""
    if not alerts:
        return ""
    items = []
    for alert in alerts:
        where = f"layer {alert['layer']}" if alert.get("layer") else alert.get("subject", "")
        since = alert.get("since_epoch", alert.get("epoch"))
        since_text = "" if since == alert.get("epoch") else f" (since epoch {since})"
        items.append(
            f"<li><strong>epoch {escape(str(alert.get('epoch')))}{escape(since_text)}: "
            f"{escape(str(alert.get('title', alert.get('rule', ''))))}</strong> in "
            f"<code>{escape(str(where))}</code>: <code>{escape(str(alert.get('quantity', '')))}"
            f"</code> = {escape(_alert_value(alert.get('value')))} "
            f"({escape(str(alert.get('condition', '')))}). Try: "
            f"{escape(str(alert.get('advice', '')))}</li>"
        )
    return f'<ul class="alerts">{"".join(items)}</ul>'


def _alert_value(value) -> str:
    return _number(value) if isinstance(value, (int, float)) else str(value)


def notebook_html(uid: str, inner: str, with_script: bool = True) -> str:
    """One notebook output: `inner` inside an element with id `uid` (letters, digits and
    `-` only), with the report's style scoped to it and, when asked, its script."""
    scope = f"#{uid}"
    style = scoped_css(scope) + _NOTEBOOK_CSS.format(scope=scope)
    # The script's parent where the front end runs it as a script element (JupyterLab, VS
    # Code, Colab), else the element by id (classic Notebook evaluates its text).
    root = (
        "(document.currentScript && document.currentScript.parentNode) || "
        f'document.getElementById("{uid}")'
    )
    run = script(root) if with_script else ""
    return f'<div class="keras-convviz" id="{uid}"><style>{style}</style>{inner}{run}</div>'


def sheet_html(
    uid: str,
    section: Section,
    steps: list[int],
    where: str,
    alerts: list[dict],
    epochs=None,
    compare: Section | None = None,
    names: tuple[str, str] = ("", ""),
) -> str:
    """`kcv.show`'s output: `section_html` of one kind and layer (slider, pictures, plots,
    grid; with `compare`, another run's under them) and the alerts of its layer, under a
    line saying where it was read."""
    inner = section_html(uid, section, steps, epochs, compare, names)
    if alerts:  # inside the section's card, under its grid
        inner = inner[: -len("</section>")] + f"<h3>Alerts</h3>{alerts_html(alerts)}</section>"
    return notebook_html(uid, f'<div class="where">{escape(where)}. {EPOCH_NOTE}</div>{inner}')


# The health numbers the live view lists first, in this order (`ModelHealth`'s tags).
_LIVE_NUMBERS = ("loss", "accuracy", "confidence", "majority_fraction", "label_majority_fraction")
# The live view's pictures at most this wide: a probe of a few images fits across a notebook.
LIVE_WIDTH = 300


def live_html(
    uid: str,
    heading: str,
    step: int | None,
    pictures: list[tuple[str, bytes, int]],
    numbers: dict[str, float],
    alerts: list[dict],
    where: str,
) -> str:
    """The live view of a training (`ConvViz(display=True)`): the latest pictures of one
    kind and layer, the model's health numbers and the alerts so far.

    Args:
        uid: The output element's id.
        heading: The kind and layer (`Grad-CAM / conv2`).
        step: The step of the pictures, `None` before the first snapshot.
        pictures: `(label, PNG, width)` per probe image.
        numbers: `{name: value}`, the health numbers at that step.
        alerts: The alerts so far (JSON records).
        where: Where the logs are, and how to see every epoch.
    """
    when = (
        "waiting for the first snapshot"
        if step is None
        else (f"epoch {epoch_of(step)} (step {step})")
    )
    figures = []
    for label, png, width in pictures:
        shown = min(_display_width(width), LIVE_WIDTH)
        smooth = " smooth" if shown < width else ""
        figures.append(
            f'<figure><img class="shown-image{smooth}" src="{data_uri(png)}" '
            f'style="width:{shown}px" alt="{escape(label)}, {escape(when)}">'
            f"<figcaption>{escape(label)}</figcaption></figure>"
        )
    first = {name: i for i, name in enumerate(_LIVE_NUMBERS)}
    table = "".join(
        f"<tr><th><code>{escape(name)}</code></th><td>{escape(_number(value))}</td></tr>"
        for name, value in sorted(numbers.items(), key=lambda n: first.get(n[0], len(first)))
    )
    inner = (
        f'<section class="live"><h2>{escape(heading)} <span class="run">{escape(when)}</span>'
        f'</h2><div class="shown">{"".join(figures)}</div>'
        + (
            f'<table class="numbers"><caption>the model on the probe</caption>{table}</table>'
            if table
            else ""
        )
        + alerts_html(alerts)
        + f'<div class="where">{escape(where)}</div></section>'
    )
    return notebook_html(uid, inner, with_script=False)
