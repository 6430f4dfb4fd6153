"""Notebooks: `ConvViz(display=True)` and `kcv.show`, run in a real notebook on a real
kernel (nbclient, ipykernel), and the notebook saved and read back."""

from __future__ import annotations

import base64
import re
import shutil
import sys
from html import escape

import numpy as np
import pytest
from conftest import read_runs, small_cnn

import keras_convviz as kcv
from keras_convviz.alerts import Alert, Monitor
from keras_convviz.exports import events
from keras_convviz.exports.events import read_alerts

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EPOCHS = 3
_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")

# A tiny model and probe: the kernel's start and TensorFlow's import are most of the time.
TRAIN = """\
import numpy as np
import keras
import keras_convviz as kcv

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.random((16, 16, 16, 3), dtype=np.float32)
y = rng.integers(0, 3, size=16).astype(np.int32)
inputs = keras.Input((16, 16, 3))
h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
h = keras.layers.GlobalAveragePooling2D()(h)
model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
model.compile("adam", "sparse_categorical_crossentropy")
callback = kcv.ConvViz(
    LOG_DIR, (x[:2], y[:2]), occlusion=False, filter_weights=False, budget=None, display=True
)
model.fit(x, y, epochs=EPOCHS, verbose=0, callbacks=[callback])
"""


def pngs(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in _PNG.findall(html)]


def html_outputs(cell) -> list[str]:
    return [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]


class Recording(nbclient.NotebookClient):
    """Keeps every HTML the kernel sent to a display (its updates included), in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, str]] = []

    def process_message(self, msg, cell, cell_index):
        data = msg.get("content", {}).get("data", {})
        if msg.get("msg_type") in ("display_data", "update_display_data") and "text/html" in data:
            self.sent.append((msg["msg_type"], data["text/html"]))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run once on a kernel, saved: `(path, client, log_dir)`."""
    folder = tmp_path_factory.mktemp("notebook")
    log_dir = folder / "logs"
    source = TRAIN.replace("LOG_DIR", repr(str(log_dir))).replace("EPOCHS", str(EPOCHS))
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(source),
        nbformat.v4.new_code_cell(f"kcv.show({str(log_dir)!r})"),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    client = Recording(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    path = folder / "live.ipynb"
    nbformat.write(notebook, str(path))
    return path, client, log_dir


def stored_pngs(log_dir, run: str, tag: str) -> dict[int, bytes]:
    """`{step: PNG}` of an image tag, as TensorBoard's reader reads it."""
    series = [s for s in events.read_run(str(log_dir), run) if s.tag == tag]
    assert len(series) == 1, tag
    return {step: values[0] for step, values in zip(series[0].steps, series[0].values)}


def check_outputs(notebook, log_dir) -> None:
    fit_cell, show_cell = notebook.cells
    assert not [o for o in fit_cell.outputs if o["output_type"] == "error"]
    # One output area for the whole fit, holding the last snapshot.
    live = html_outputs(fit_cell)
    assert len(live) == 1, [o["output_type"] for o in fit_cell.outputs]
    last = EPOCHS - 1
    assert f"epoch {EPOCHS} (step {last})" in live[0]
    expected = [
        stored_pngs(log_dir, "grad_cam", f"grad_cam/conv/image_{i}")[last] for i in range(2)
    ]
    assert pngs(live[0]) == expected  # the PNGs the event file holds, byte for byte
    assert "accuracy" in live[0] and "confidence" in live[0]  # the health numbers
    fired = read_alerts(str(log_dir), "alerts")  # every alert the training wrote, shown
    assert live[0].count("<li>") == len(fired)
    for alert in fired:
        assert escape(alert["title"]) in live[0], alert["title"]
    # kcv.show: every epoch of every probe image.
    (sheet,) = html_outputs(show_cell)
    shown = set(pngs(sheet))
    for i in range(2):
        every = stored_pngs(log_dir, "grad_cam", f"grad_cam/conv/image_{i}")
        assert sorted(every) == list(range(EPOCHS))
        assert set(every.values()) <= shown, i
    headers = re.findall(r"<th>epoch (\d+)</th>", sheet)
    assert headers == [str(k) for k in range(1, EPOCHS + 1)]
    assert "<script>" in sheet and 'class="epoch"' in sheet  # the slider
    for needle in ("http:", "https:", "//", "url(", "@import"):
        assert needle not in _PNG.sub("", sheet), needle


def test_live_view_and_show_in_an_executed_notebook(executed):
    path, client, log_dir = executed
    check_outputs(client.nb, log_dir)
    # The view was drawn once at train begin and updated after every snapshot, in order.
    sent = [(kind, html) for kind, html in client.sent if '<section class="live">' in html]
    kinds = [kind for kind, _ in sent]
    assert kinds == ["display_data"] + ["update_display_data"] * EPOCHS, kinds
    assert "waiting for the first snapshot" in sent[0][1]
    for epoch, (_, html) in enumerate(sent[1:], start=1):
        assert f"epoch {epoch} (step {epoch - 1})" in html
        assert len(pngs(html)) == 2
    runs = read_runs(log_dir)
    assert sorted(runs["grad_cam"]["grad_cam/conv/image_0"]["steps"]) == list(range(EPOCHS))


def test_saved_notebook_reopens_with_its_pictures(executed):
    path, _, log_dir = executed
    notebook = nbformat.read(str(path), as_version=4)
    nbformat.validate(notebook)
    check_outputs(notebook, log_dir)


def test_show_errors_name_the_argument_and_list_what_exists(executed, tmp_path):
    _, _, log_dir = executed
    with pytest.raises(ValueError, match=r"`kind` must be one of .*'grad_cam' \(Grad-CAM\)"):
        kcv.show(log_dir, kind="gradcam")
    with pytest.raises(ValueError, match=r"`run` must be one of .*'\.'. Received: run='other'"):
        kcv.show(log_dir, run="other")
    with pytest.raises(ValueError, match=r"`layer` must be one of .*'conv'. Received: layer='x'"):
        kcv.show(log_dir, layer="x")
    with pytest.raises(ValueError, match=r"`log_dir` must be a directory.*no such directory"):
        kcv.show(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"`every` must be an int >= 1"):
        kcv.show(log_dir, every=0)
    sheet = kcv.show(log_dir, kind="Feature maps", every=2)  # by label; epochs 1 and 3
    assert (sheet.kind, sheet.run, sheet.layer, sheet.steps) == (
        "feature_maps",
        ".",
        "conv",
        [0, 2],
    )
    assert re.findall(r"<th>epoch (\d+)</th>", sheet._repr_html_()) == ["1", "3"]


def test_display_outside_a_notebook_does_nothing_and_is_checked(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match=r"`display` must be True or False. Received: display=1"):
        kcv.ConvViz(tmp_path, np.zeros((1, 8, 8, 3), np.float32), display=1)
    # No IPython at all: importing it would fail, and nothing tries to.
    monkeypatch.setitem(sys.modules, "IPython", None)
    rng = np.random.default_rng(0)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 4, size=8).astype(np.int32)
    callback = kcv.ConvViz(tmp_path, (x[:2], y[:2]), occlusion=False, budget=None, display=True)
    small_cnn().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert callback._view is None
    assert all(child._viewer is None for child in callback.callbacks)
    assert read_runs(tmp_path)["grad_cam"]["grad_cam/conv_b/image_0"]["steps"] == [0]


def test_show_lists_the_alerts_of_its_layer_and_of_the_whole_model(executed, tmp_path):
    log_dir = tmp_path / "logs"
    shutil.copytree(executed[2], log_dir)
    before = re.findall(r"<li>(.*?)</li>", kcv.show(log_dir)._repr_html_())  # training's own
    monitor = Monitor(str(log_dir), {})
    for rule, layer, subject, step in (
        ("dead_channels", "conv", "feature_maps/conv", 2),
        ("dead_channels", "other", "feature_maps/other", 1),
        ("loss_at_chance", "", "fit", 2),
    ):
        alert = Alert(
            rule=rule,
            title=f"<b>{rule}</b>",
            subject=subject,
            layer=layer,
            quantity="dead_fraction",
            value=0.75,
            threshold=0.5,
            condition="more than half",
            step=step,
            epoch=step + 1,
            since_epoch=step,
            evidence=f"{subject}/dead_fraction",
            meaning="m",
            advice="try something",
        )
        with pytest.warns(UserWarning):
            monitor._raise(alert, None)
    html = kcv.show(log_dir)._repr_html_()
    items = [item for item in re.findall(r"<li>(.*?)</li>", html) if item not in before]
    assert len(items) == 2, items  # conv's and the model's; not the other layer's
    text = re.sub(r"<[^>]+>", "", " ".join(items))
    assert "epoch 3 (since epoch 2): &lt;b&gt;dead_channels&lt;/b&gt; in layer conv" in text
    assert "loss_at_chance" in text and "other" not in text


def test_two_show_outputs_in_one_page_each_move_their_own_slider(executed, tmp_path):
    # As a notebook front end puts them: side by side in one document, the style scoped.
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    _, _, log_dir = executed
    outputs = [kcv.show(log_dir)._repr_html_() for _ in range(2)]
    page_path = tmp_path / "page.html"
    page_path.write_text(
        "<!DOCTYPE html><html><body><p id='outside'>text of the page</p>"
        + "".join(f"<div class='output'>{html}</div>" for html in outputs)
        + "</body></html>",
        encoding="utf-8",
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri())
            first, second = page.locator("div.keras-convviz").all()
            for output in (first, second):
                text = output.locator("output").inner_text()
                assert text == f"epoch {EPOCHS} (step {EPOCHS - 1})"
            first.locator("input.epoch").focus()
            page.keyboard.press("Home")
            assert first.locator("output").inner_text() == "epoch 1 (step 0)"
            assert second.locator("output").inner_text() == f"epoch {EPOCHS} (step {EPOCHS - 1})"
            shown = first.locator("img.shown-image").first.get_attribute("src")
            cell = first.locator('table.grid img[data-row="0"][data-col="0"]')
            assert shown == cell.get_attribute("src")
            # The page's own style is untouched by the outputs' (scoped) style.
            margin = page.evaluate("getComputedStyle(document.body).margin")
            assert margin == "8px", margin
        finally:
            browser.close()


def test_show_compares_another_run_under_each_probe_image(executed, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(executed[2], sweep / "a")
    # A second run of the same model, another seed, in this process.
    source = TRAIN.replace("LOG_DIR", repr(str(sweep / "b"))).replace("EPOCHS", str(EPOCHS))
    exec(source.replace("set_random_seed(0)", "set_random_seed(1)"), {})
    html = kcv.show(sweep, run="a", compare="b")._repr_html_()
    shown = pngs(html)
    for run in ("a", "b"):
        for i in range(2):
            every = stored_pngs(sweep, f"{run}/grad_cam", f"grad_cam/conv/image_{i}")
            assert set(every.values()) <= set(shown), (run, i)
    ours = stored_pngs(sweep, "a/grad_cam", "grad_cam/conv/image_0")
    theirs = stored_pngs(sweep, "b/grad_cam", "grad_cam/conv/image_0")
    assert ours[EPOCHS - 1] != theirs[EPOCHS - 1]  # two trainings, two pictures
    # Each probe image's row, the other run's under it, named.
    rows = re.findall(r'<tr><th>(image_\d)<br><span class="run">(\w)</span>', html)
    assert rows == [("image_0", "a"), ("image_0", "b"), ("image_1", "a"), ("image_1", "b")]
    assert "compared with run b" in html
    # Two log directories work the same; a name that is neither is refused.
    other = kcv.show(sweep / "a", compare=sweep / "b")._repr_html_()
    assert set(pngs(other)) == set(shown)
    with pytest.raises(ValueError, match=r"`compare` must be a run of `log_dir` \(its runs: a, b"):
        kcv.show(sweep, run="a", compare="c")
