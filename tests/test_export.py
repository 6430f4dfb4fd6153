"""`kcv.export` / `convviz export`: GIFs, contact sheets and the offline report, read back."""

from __future__ import annotations

import base64
import re
import shutil
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest
import tensorflow as tf
from conftest import EPOCHS_12, read_runs, small_cnn
from PIL import Image

import keras_convviz as kcv
from keras_convviz import kinds
from keras_convviz.__main__ import main
from keras_convviz.exports import MAX_SHEET_COLUMNS, draw, events, sheet
from keras_convviz.exports.sections import build_sections


def rgb(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).convert("RGB")).astype(np.int16)


def image_tags(log_dir) -> dict[str, dict]:
    return {
        tag: series
        for tags in read_runs(log_dir).values()
        for tag, series in tags.items()
        if series["kind"] == "images"
    }


@pytest.fixture(scope="module")
def exported(logs_12_epochs, tmp_path_factory):
    """Every format of the 12-epoch logs, exported once for the tests that only read."""
    out = tmp_path_factory.mktemp("export")
    written = kcv.export(logs_12_epochs, out)
    return out, written


def test_gif_per_tag_frames_are_the_stored_images(logs_12_epochs, exported):
    out, written = exported
    stored = image_tags(logs_12_epochs)
    assert sorted(p.relative_to(out / "gif").as_posix() for p in written["gif"]) == sorted(
        f"{tag}.gif" for tag in stored
    )
    for tag, series in stored.items():
        assert series["steps"] == list(range(EPOCHS_12))
        gif = Image.open(out / "gif" / f"{tag}.gif")
        assert gif.n_frames == EPOCHS_12, tag
        assert gif.info["loop"] == 0
        expected = [rgb(v) for v in series["values"]]
        height, width = expected[0].shape[:2]
        label = np.zeros((height, width), bool)
        label[:26, :110] = True  # the epoch label's corner, "epoch 12" at twice the font
        for k in range(EPOCHS_12):
            gif.seek(k)
            frame = np.asarray(gif.convert("RGB")).astype(np.int16)
            assert frame.shape == expected[k].shape, tag
            errors = [np.abs(frame - e)[~label].mean() for e in expected]
            # 256 colours per frame: close to its own step's image, never closer to another.
            assert errors[k] < 6, (tag, k, errors[k])
            assert errors[k] <= min(errors) + 1e-9, (tag, k)
            # The label is there: the corner differs from the stored image.
            assert np.abs(frame - expected[k])[label].mean() > 20, (tag, k)


def test_contact_sheet_cells_are_the_stored_images_probes_down_epochs_across(
    logs_12_epochs, exported, tmp_path
):
    out, written = exported
    assert sorted(p.relative_to(out / "sheet").as_posix() for p in written["sheet"]) == [
        "feature_maps/conv_a.png",
        "feature_maps/conv_b.png",
        "filter_weights/conv_a.png",
        "filter_weights/conv_b.png",
        "grad_cam/conv_b.png",
        "occlusion_sensitivity.png",
    ]
    stored = image_tags(logs_12_epochs)
    series = [
        s for run in events.find_runs(logs_12_epochs) for s in events.read_run(logs_12_epochs, run)
    ]
    sections = {s.title: s for s in build_sections(series, lambda p: True)[0]}
    assert MAX_SHEET_COLUMNS >= EPOCHS_12  # all 12 epochs fit: no thinning here
    for title, name, rows in [
        (
            "grad_cam / conv_b",
            "grad_cam/conv_b",
            ["grad_cam/conv_b/image_0", "grad_cam/conv_b/image_1"],
        ),
        (
            "occlusion_sensitivity",
            "occlusion_sensitivity",
            ["occlusion_sensitivity/image_0", "occlusion_sensitivity/image_1"],
        ),
        ("filter_weights / conv_b", "filter_weights/conv_b", ["filter_weights/conv_b"]),
    ]:
        picture = np.asarray(Image.open(out / "sheet" / f"{name}.png").convert("RGB"))
        layout = sheet.sheet_layout(sections[title], list(range(EPOCHS_12)))
        cell_h, cell_w = stored[rows[0]]["values"][0].shape[:2]
        assert (layout.rows, layout.columns) == (len(rows), EPOCHS_12)
        assert (layout.cell_height, layout.cell_width) == (cell_h, cell_w)
        assert picture.shape[:2] == (
            layout.top + len(rows) * (cell_h + sheet.GAP) - sheet.GAP + sheet.MARGIN,
            layout.left + EPOCHS_12 * (cell_w + sheet.GAP) - sheet.GAP + sheet.MARGIN,
        )
        for r, tag in enumerate(rows):  # probe images down, epochs across, pixel for pixel
            for c in range(EPOCHS_12):
                x, y = layout.cell(r, c)
                cell = picture[y : y + cell_h, x : x + cell_w].astype(np.int16)
                np.testing.assert_array_equal(cell, rgb(stored[tag]["values"][c]), f"{tag} {c}")
        # Labelled: the title and epoch labels above the cells hold ink.
        assert (picture[: layout.top] < 100).any()

    # Every 5th epoch (and the last): 0, 5, 10, 11 -> 4 columns and 4 GIF frames.
    written = kcv.export(logs_12_epochs, tmp_path, tags="^grad_cam/", every=5)
    wide = Image.open(out / "sheet" / "grad_cam" / "conv_b.png")
    narrow = Image.open(tmp_path / "sheet" / "grad_cam" / "conv_b.png")
    cell_w = stored["grad_cam/conv_b/image_0"]["values"][0].shape[1]
    assert wide.width - narrow.width == (EPOCHS_12 - 4) * (cell_w + sheet.GAP)
    assert wide.height == narrow.height
    assert [Image.open(p).n_frames for p in written["gif"]] == [4, 4]


class Page(HTMLParser):
    """The start tags and text of a page, as an HTML parser reads them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.headings: list[str] = []
        self._in_heading = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "h2":
            self._in_heading = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_heading = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_heading:
            self.headings[-1] += data


def test_report_is_self_contained_and_holds_every_step_of_the_chosen_tags(logs_12_epochs, tmp_path):
    kcv.export(logs_12_epochs, tmp_path, tags="grad_cam|occlusion", formats=["html"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    names = [t for t, _ in page.tags]
    assert "html" in names and "body" in names and "svg" in names and "input" in names
    # No external reference: images inlined, scripts and styles inline, links in-page.
    for tag, attrs in page.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        if "src" in attrs:
            assert tag == "img" and attrs["src"].startswith("data:image/png;base64,"), attrs
        if "href" in attrs:
            assert attrs["href"].startswith("#"), attrs
    outside_data = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    for needle in ("http:", "https:", "//", "url(", "@import", "@font-face"):
        assert needle not in outside_data, needle
    # Every step of every chosen tag, byte for byte; nothing of the others.
    inlined = set(re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text))
    series = [
        s for r in events.find_runs(logs_12_epochs) for s in events.read_run(logs_12_epochs, r)
    ]
    for s in series:
        if s.kind != "images":
            continue
        blobs = {base64.b64encode(v[0]).decode() for v in s.values}
        if s.tag.startswith(("grad_cam/", "occlusion_sensitivity/")):
            assert len(s.steps) == EPOCHS_12 and blobs <= inlined, s.tag
        else:
            assert not blobs & inlined, s.tag
    grid = [a for t, a in page.tags if t == "img" and "data-col" in a]
    assert len(grid) == 4 * EPOCHS_12
    sliders = [a for t, a in page.tags if t == "input" and a.get("type") == "range"]
    assert [a["max"] for a in sliders] == [str(EPOCHS_12 - 1)] * 2
    # The layer's scalars are plotted: one plot per quantity, one line per probe image.
    # grad_cam .../image_<i>/max and .../image_<i>/change, occlusion .../image_<i>/max
    assert text.count("<polyline") == 2 * 2 + 2


def write_events(run_dir, steps=3):
    """Image and scalar summaries under hostile names, as a custom loop could write them."""
    writer = tf.summary.create_file_writer(str(run_dir))
    rng = np.random.default_rng(0)
    with writer.as_default():
        for step in range(steps):
            tf.summary.image("feature_maps/<script>/image_0", rng.random((1, 20, 30, 3)), step)
            tf.summary.image("feature_maps/../../escape/image_0", rng.random((1, 8, 8, 1)), step)
            tf.summary.scalar("feature_maps/<script>/dead_fraction", 0.1 * step, step)
            tf.summary.image("several", rng.random((3, 10, 12, 3)), step, max_outputs=3)
    writer.close()


def test_hostile_names_stay_text_and_inside_out(tmp_path):
    write_events(tmp_path / "logs" / "feature_maps")
    out = tmp_path / "out"
    written = kcv.export(tmp_path / "logs", out)
    for path in written["gif"] + written["sheet"]:
        assert path.resolve().is_relative_to(out.resolve()), path
    names = sorted(p.relative_to(out / "gif").as_posix() for p in written["gif"])
    # One GIF per image of a summary holding several per step.
    assert names == [
        "feature_maps/_/_/escape/image_0.gif",
        "feature_maps/_script_/image_0.gif",
        "feature_maps/several/sample_0.gif",
        "feature_maps/several/sample_1.gif",
        "feature_maps/several/sample_2.gif",
    ]
    text = (out / "report.html").read_text(encoding="utf-8")
    assert text.count("<script") == 1  # ours; every name escaped
    page = Page(text)
    assert [t for t, _ in page.tags].count("script") == 1
    # The kind's label, the layer's name shown as text, and the run.
    assert f"{kinds.FEATURE_MAPS.label} / <script> feature_maps" in page.headings
    assert "dead_fraction" in "".join(page.text)  # its scalar is plotted


def test_export_errors_name_the_argument_and_list_what_exists(logs_12_epochs, tmp_path):
    with pytest.raises(ValueError, match=r"`logdir` .*no such directory"):
        kcv.export(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no event files|none found.*notes\.txt"):
        kcv.export(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match=r"`tags` must match.*grad_cam/conv_b/image_1"):
        kcv.export(logs_12_epochs, tmp_path / "out", tags="conv_z")
    with pytest.raises(ValueError, match=r"`tags` must be a regular expression"):
        kcv.export(logs_12_epochs, tmp_path / "out", tags="(")
    with pytest.raises(ValueError, match=r"`formats` must be one or more of gif, sheet, html"):
        kcv.export(logs_12_epochs, tmp_path / "out", formats=["pdf"])
    with pytest.raises(ValueError, match=r"`every` must be an int >= 1. Received: every=0"):
        kcv.export(logs_12_epochs, tmp_path / "out", every=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"`out` must be a folder"):
        kcv.export(logs_12_epochs, tmp_path / "file")
    assert not (tmp_path / "out").exists()  # nothing written on a bad argument


def test_command_line_export(logs_12_epochs, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["export", str(logs_12_epochs), "--out", str(out)]
    assert main([*args, "--tags", "occlusion", "--format", "gif,sheet", "--every", "3"]) == 0
    printed = capsys.readouterr().out
    assert "2 GIFs" in printed and "1 contact sheet:" in printed
    gifs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.gif"))
    assert gifs == [
        "gif/occlusion_sensitivity/image_0.gif",
        "gif/occlusion_sensitivity/image_1.gif",
    ]
    assert Image.open(out / gifs[0]).n_frames == 5  # 0, 3, 6, 9 and the last, 11
    assert not (out / "report.html").exists()
    assert main([*args, "--tags", "nothing_like_it"]) == 2
    error = capsys.readouterr().err
    assert "--tags must match" in error and "filter_weights/conv_a" in error


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_slider_changes_the_shown_image_in_chromium(exported):
    browser_path = chromium()
    if browser_path is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    out, _ = exported
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto((out / "report.html").as_uri())
            section = page.locator("section.kind").filter(has_text="grad_cam").first
            slider = section.locator("input.epoch")
            shown = section.locator("img.shown-image").first
            output = section.locator("output")
            assert slider.input_value() == str(EPOCHS_12 - 1)
            # Epochs as Keras prints them, TensorBoard's step beside.
            assert output.inner_text() == f"epoch {EPOCHS_12} (step {EPOCHS_12 - 1})"
            last = shown.get_attribute("src")
            before = section.screenshot()
            slider.focus()
            for _ in range(EPOCHS_12 - 1):
                page.keyboard.press("ArrowLeft")
            assert slider.input_value() == "0"
            assert output.inner_text() == "epoch 1 (step 0)"
            first = shown.get_attribute("src")
            assert first != last
            cell = section.locator('table.grid img[data-row="0"][data-col="0"]')
            assert first == cell.get_attribute("src")
            assert section.screenshot() != before
            # A click on a grid picture picks its epoch.
            section.locator('table.grid img[data-row="1"][data-col="7"]').click()
            assert slider.input_value() == "7" and output.inner_text() == "epoch 8 (step 7)"
        finally:
            browser.close()


def test_sections_follow_the_kinds_layouts_and_labels(tmp_path, monkeypatch):
    # A layer named like a probe image: in a kind drawn once per layer it is the layer; in
    # a run of no kind it reads as a probe image. A kind added to the registry is read so.
    new = kinds.Kind("toy_maps", "Toy maps", "actmax", kinds.LAYER)
    monkeypatch.setitem(kinds.KINDS, new.run, new)
    rng = np.random.default_rng(0)
    for run in ("filter_weights", "toy_maps", "custom"):
        writer = tf.summary.create_file_writer(str(tmp_path / "logs" / run))
        with writer.as_default():
            for step in range(2):
                tf.summary.image(f"{run}/image_1", rng.random((1, 6, 6, 3)), step)
                tf.summary.scalar(f"{run}/image_1/norm", 0.5 * step, step)
        writer.close()
    written = kcv.export(tmp_path / "logs", tmp_path / "out", formats=["sheet", "html"])
    sheets = sorted(p.relative_to(tmp_path / "out" / "sheet").as_posix() for p in written["sheet"])
    assert sheets == ["custom.png", "filter_weights/image_1.png", "toy_maps/image_1.png"]
    page = Page((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert sorted(page.headings) == [
        "Filter weights / image_1 filter_weights",
        "Toy maps / image_1 toy_maps",
        "custom",
    ]


def test_the_report_says_at_which_epochs_a_thinned_kind_exists(tmp_path):
    # Feature maps at every epoch, occlusion at 0, 3 and 4 (ConvViz's budget thinned it).
    rng = np.random.default_rng(0)
    for run, steps in (("feature_maps", range(5)), ("occlusion_sensitivity", (0, 3, 4))):
        writer = tf.summary.create_file_writer(str(tmp_path / "logs" / "exp" / run))
        tag = "feature_maps/conv/image_0" if run == "feature_maps" else f"{run}/image_0"
        with writer.as_default():
            for step in steps:
                tf.summary.image(tag, rng.random((1, 6, 6, 3)), step)
        writer.close()
    kcv.export(tmp_path / "logs", tmp_path / "out", formats=["html"])
    text = " ".join(Page((tmp_path / "out" / "report.html").read_text(encoding="utf-8")).text)
    assert (
        "Occlusion exists at epochs 1, 4-5 of the 5 epochs with snapshots (1-5): a costly "
        "kind: ConvViz's `budget` (or its own `freq`) runs it less often." in text
    )
    assert text.count("exists at epochs") == 1  # feature maps: at every epoch, no note


def test_gifs_sheets_and_report_count_epochs_as_keras_prints_them(logs_12_epochs, exported):
    # Keras's log says "Epoch 1/N" for step 0: so do the GIF frames, the sheets' columns and
    # the report, with TensorBoard's step where its own numbers are (slider, plot axes).
    out, _ = exported
    tag = "grad_cam/conv_b/image_0"
    series = image_tags(logs_12_epochs)[tag]
    gif = Image.open(out / "gif" / f"{tag}.gif")
    for k in (0, EPOCHS_12 - 1):
        gif.seek(k)
        frame = np.asarray(gif.convert("RGB")).astype(np.int16)
        labelled = {
            n: rgb(np.asarray(draw.corner_label(series["values"][k], f"epoch {n}")[0]))
            for n in (k, k + 1)
        }
        box = draw.corner_label(series["values"][k], f"epoch {k + 1}")[1]
        corner = (slice(box[1], box[3]), slice(box[0], box[2]))
        errors = {n: np.abs(frame[corner] - image[corner]).mean() for n, image in labelled.items()}
        assert errors[k + 1] < 2 < errors[k], (k, errors)

    picture = Image.open(out / "sheet" / "grad_cam" / "conv_b.png").convert("RGB")
    section = next(
        s
        for s in build_sections(events.read_run(logs_12_epochs, "grad_cam"), lambda p: True)[0]
        if s.layer == "conv_b"
    )
    layout = sheet.sheet_layout(section, section.steps)
    y = sheet.MARGIN + draw.GLYPH_HEIGHT * layout.scale + sheet.GAP
    for column in (0, EPOCHS_12 - 1):
        x = layout.cell(0, column)[0]
        for n, same in ((column + 1, True), (column, False)):
            text = f"epoch {n}"
            width, height = draw.text_size(text, layout.scale)
            expected = Image.new("RGB", (width, height), sheet.BACKGROUND)
            draw.draw_text(expected, (0, 0), text, scale=layout.scale)
            drawn = np.asarray(picture.crop((x, y, x + width, y + height)))
            assert np.array_equal(drawn, np.asarray(expected)) == same, (column, n)

    text = (out / "report.html").read_text(encoding="utf-8")
    grad_cam = text[text.index("Grad-CAM / conv_b") :]
    grad_cam = grad_cam[: grad_cam.index("</section>")]
    headers = re.findall(r"<th>epoch (\d+)</th>", grad_cam)
    assert headers == [str(k) for k in range(1, EPOCHS_12 + 1)]
    assert f"<output>epoch {EPOCHS_12} (step {EPOCHS_12 - 1})</output>" in grad_cam
    assert ">step 0</text>" in grad_cam and f">step {EPOCHS_12 - 1}</text>" in grad_cam
    assert "epoch 1 is TensorBoard's step 0" in text


def write_run(run_dir, steps, seed, layers=("conv",)):
    """Feature maps of 2 probe images and a layer scalar, as `FeatureMaps` names them."""
    rng = np.random.default_rng(seed)
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step in steps:
            for layer in layers:
                for i in range(2):
                    tf.summary.image(
                        f"feature_maps/{layer}/image_{i}", rng.random((1, 6, 8, 3)), step
                    )
                tf.summary.scalar(f"feature_maps/{layer}/dead_fraction", seed + 0.1 * step, step)
    writer.close()


def grid_rows(text: str, heading: str) -> list[tuple[str, str, list[str | None]]]:
    """`(probe image, run, [src or None per column])` of a report section's grid."""
    part = text[text.index(heading) :]
    part = part[part.index('<table class="grid">') : part.index("</table>")]
    rows = []
    for label, run, cells in re.findall(
        r'<tr><th>([^<]*)<br><span class="run">([^<]*)</span></th>(.*?)</tr>', part
    ):
        srcs = [
            (re.search(r'src="([^"]+)"', cell) or [None, None])[1]
            for cell in re.findall(r"<td data-col=\"\d+\">(.*?)</td>", cells)
        ]
        rows.append((label, run, srcs))
    return rows


def test_report_compares_a_second_run_row_by_row(tmp_path, capsys):
    logs = tmp_path / "logs"
    write_run(logs / "lr=1e-3" / "feature_maps", steps=range(3), seed=1)
    write_run(logs / "lr=1e-2" / "feature_maps", steps=range(2), seed=2)  # one epoch less
    writer = tf.summary.create_file_writer(str(logs / "lr=1e-3" / "grad_cam"))
    with writer.as_default():  # a kind the other run lacks
        for step in range(3):
            tf.summary.image("grad_cam/conv/image_0", np.zeros((1, 4, 4, 3)), step)
    writer.close()
    stored = {
        group: {
            s.tag: [base64.b64encode(v[0]).decode() for v in s.values]
            for s in events.read_run(str(logs), f"{group}/feature_maps")
            if s.kind == "images"
        }
        for group in ("lr=1e-3", "lr=1e-2")
    }

    def check(text: str, names: tuple[str, str]) -> None:
        rows = grid_rows(text, "Feature maps / conv")
        assert [(label, run) for label, run, _ in rows] == [
            ("image_0", names[0]),
            ("image_0", names[1]),
            ("image_1", names[0]),
            ("image_1", names[1]),
        ]
        for (label, _, srcs), group in zip(rows, ("lr=1e-3", "lr=1e-2") * 2):
            blobs = stored[group][f"feature_maps/conv/{label}"]
            # The same epochs across: the other run's missing last epoch is an empty cell.
            assert srcs == [f"data:image/png;base64,{b}" for b in blobs] + [None] * (3 - len(blobs))
        plot = re.search(
            r"<code>dead_fraction</code>.*?</svg><div class=\"legend\">.*?</div>", text, re.S
        ).group(0)
        assert plot.count("<polyline") == 2  # both runs' lines in one plot
        assert plot.count('stroke-dasharray="5,3"') == 1  # the other run's dashed
        assert f"</i>{names[0]}</span>" in plot and f"</i>{names[1]}</span>" in plot
        assert f"{names[1]} has no pictures of Grad-CAM / conv." in text

    # A run of the log directory: the report shows the others against it.
    kcv.export(logs, tmp_path / "a", formats=["html"], compare="lr=1e-2")
    text = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert text.count('<section class="kind"') == 2  # lr=1e-3's two kinds only
    check(text, ("lr=1e-3", "lr=1e-2"))
    # Another log directory.
    kcv.export(logs / "lr=1e-3", tmp_path / "b", formats=["html"], compare=logs / "lr=1e-2")
    check((tmp_path / "b" / "report.html").read_text(encoding="utf-8"), ("lr=1e-3", "lr=1e-2"))

    args = ["export", str(logs), "--out", str(tmp_path / "c"), "--format", "html"]
    assert main([*args, "--compare", "lr=1e-2"]) == 0
    check((tmp_path / "c" / "report.html").read_text(encoding="utf-8"), ("lr=1e-3", "lr=1e-2"))
    with pytest.raises(ValueError, match=r"`compare` shows a second run in the report"):
        kcv.export(logs, tmp_path / "d", formats=["gif"], compare="lr=1e-2")
    capsys.readouterr()
    assert main([*args, "--compare", "lr=1e-1"]) == 2
    error = capsys.readouterr().err
    assert "--compare must be a run of LOGDIR (its runs: lr=1e-2, lr=1e-3)" in error
    assert "Received: --compare='lr=1e-1'" in error

    # In a browser the slider moves the other run's pictures too; where it has none, none.
    browser_path = chromium()
    if browser_path is None:
        return
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto((tmp_path / "a" / "report.html").as_uri())
            section = page.locator("section.kind").filter(has_text="Feature maps").first
            other = section.locator('img.shown-image[data-row="1"]')
            assert "missing" in other.get_attribute("class")  # epoch 3: lr=1e-2 has none
            section.locator("input.epoch").focus()
            page.keyboard.press("Home")
            assert section.locator("output").inner_text() == "epoch 1 (step 0)"
            cell = section.locator('table.grid img[data-row="1"][data-col="0"]')
            assert "missing" not in other.get_attribute("class")
            assert other.get_attribute("src") == cell.get_attribute("src")
        finally:
            browser.close()


def _trained_report(tmp_path, model, epochs, **options):
    """A short `ConvViz` training of `model` on a learnable task, exported as a report;
    `options`: more of `ConvViz`'s arguments."""
    rng = np.random.default_rng(3)
    x = rng.random((128, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 3, 128)
    x[np.arange(128), :16, :16, y] += 0.5  # the class: the channel brightened in a corner
    callback = kcv.ConvViz(tmp_path / "logs" / "run", (x[:8], y[:8]), occlusion=False, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broken training's alerts
        model.fit(x - 0.5, y, epochs=epochs, verbose=0, callbacks=[callback])
    kcv.export(tmp_path / "logs", tmp_path / "out", formats=["html"])
    return (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_the_report_opens_with_the_diagnosis(tmp_path):
    model = small_cnn(num_classes=3)
    kernel, bias = model.get_layer("conv_b").get_weights()
    model.get_layer("conv_b").set_weights([kernel, np.full_like(bias, -1000.0)])
    text = _trained_report(tmp_path, model, epochs=2)
    page = Page(text)
    assert page.headings[0] == "Diagnosis"  # first, above the contents and the sections
    diagnosis = text[text.index('<section id="diagnosis"') : text.index("<nav>")]
    lines = re.findall(r"<li>(.*?)</li>", diagnosis.split("<ol>", 1)[1])
    words = [re.sub(r"<[^>]+>", "", line) for line in lines]
    # The dead layer is the root: what, since when, where, what to try, and what follows.
    assert words[0].startswith(
        "Most channels (units) are dead since epoch 1, in layer conv_b.Try: lower the learning rate"
    )
    follows = words[0].split("Follows from it: ", 1)[1]
    assert "epoch 1: The CAM map is empty in layer conv_b" in follows  # conv_b: no evidence
    assert "epoch 2: A trainable layer does not move in layer conv_a" in follows
    # It links to the section that shows it: the feature maps of conv_b.
    (anchor,) = re.findall(r'<a href="#(section-\d+)">', lines[0])
    heading = re.search(rf'id="{anchor}"[^>]*><h2>(.*?)</h2>', text).group(1)
    assert re.sub(r"<[^>]+>", "", heading) == "Feature maps / conv_b run/feature_maps"
    # One line per root cause: the stalled layers below it are not lines of their own.
    assert not [w for w in words if w.startswith("A trainable layer does not move")], words


def test_a_healthy_training_reports_nothing_wrong(tmp_path):
    text = _trained_report(tmp_path, small_cnn(num_classes=3), epochs=3)
    assert not (tmp_path / "logs" / "run" / "alerts").exists()
    section = text[text.index('<section id="diagnosis"') : text.index("<nav>")]
    assert re.sub(r"<[^>]+>", "", section) == "DiagnosisNothing wrong: no alert fired."


def test_the_report_plots_in_region_beside_its_floor_and_says_nothing_when_alerts_were_off(
    tmp_path,
):
    boxes = np.tile([[0, 0, 16, 16]], (8, 1))  # the corner that holds each image's class
    text = _trained_report(tmp_path, small_cnn(num_classes=3), 2, regions=boxes, alerts=False)
    # No rule watched: no diagnosis, rather than "nothing wrong".
    assert '<section id="diagnosis"' not in text
    plots = dict(re.findall(r'<div class="plot"><div><code>(.*?)</code></div>(.*?)</div>', text))
    for quantity in ("in_region", "pointing"):
        legend = re.findall(r"</i>(.*?)</span>", plots[quantity])
        assert legend == ["this map", "uniform map"], quantity
        assert plots[quantity].count("<polyline") == 2  # two epochs, two lines
    legend = re.findall(r"</i>(.*?)</span>", plots["in_region, per image"])
    assert legend == [f"image_{i}" for i in range(8)]
    # The floor is the regions' area share; the floors' own runs make no plots of their own.
    logs = tmp_path / "logs"
    series = [s for run in events.find_runs(logs) for s in events.read_run(logs, run)]
    sections, other = build_sections(series, lambda p: True)
    (cam,) = [s for s in sections if s.run == "run/grad_cam"]
    floor = cam.scalars["in_region"]["uniform map"]
    assert floor[0] == [0, 1] and floor[1] == pytest.approx([0.25, 0.25])
    assert not [tag for tag in other if tag.endswith(("in_region", "pointing"))]
