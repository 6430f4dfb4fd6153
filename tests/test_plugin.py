"""The ConvViz tab: its routes in TensorBoard's own app, a real `tensorboard`, a real browser.

One short real training writes the logs every test reads (session fixture): a small CNN, 12
epochs (more than TensorBoard's default of 10 images per tag), every kind of picture, beside
`keras.callbacks.TensorBoard`'s own runs; a copy of them is a second experiment whose
directory name is an HTML tag.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import read_runs, small_cnn, stop_process
from tensorboard import default, program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from werkzeug import test as werkzeug_test

import keras_convviz as kcv
from keras_convviz import _tags
from keras_convviz import kinds as registry
from keras_convviz.tensorboard_plugin import loader as plugin_loader

EPOCHS = 12
PROBES = 3
# A second experiment's directory (so a run name) that is HTML: it must stay text in the tab.
EVIL = "<img src=x onerror=window.__convviz_xss=1>"
LAYER = "conv-b.2"
PREFIX = "data/plugin/convviz"


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    """`<root>/exp_a/<runs>` from a real training, and a copy as a second experiment.

    `CONVVIZ_PLUGIN_LOGS=DIR` writes them into DIR, or reads them from there when DIR holds
    them already (scripts/plugin_compat.py: TensorBoard 2.16 beside a TensorFlow that
    cannot run this training).
    """
    given = os.environ.get("CONVVIZ_PLUGIN_LOGS")
    root = Path(given) if given else tmp_path_factory.mktemp("convviz_logs")
    if (root / EVIL).is_dir():
        return root
    rng = np.random.default_rng(0)
    x = rng.random((24, 24, 24, 3), dtype=np.float32)
    y = rng.integers(0, 3, size=24).astype(np.int32)
    log_dir = root / "exp_a"
    callbacks = [
        keras.callbacks.TensorBoard(str(log_dir)),
        kcv.ConvViz(
            str(log_dir),
            (x[:PROBES], y[:PROBES]),
            grad_cam={"method": ["gradcam", "layercam"]},
            saliency={"method": "gradient"},
            health={"gradients": True},
            activation_maximization={"filters": 4, "steps": 8},
            max_channels=4,
            budget=None,  # every kind at every epoch
        ),
    ]
    _model().fit(x, y, epochs=EPOCHS, batch_size=12, verbose=0, callbacks=callbacks)
    shutil.copytree(log_dir, root / EVIL)
    return root


@pytest.fixture(scope="session")
def written(logdir):
    """{(tensorboard run, tag): steps} of every picture, read back by TensorBoard's reader."""
    out = {}
    for group in ("exp_a", EVIL):
        for run, tags in read_runs(logdir / group).items():
            for tag, series in tags.items():
                if series["kind"] == "images":
                    out[(f"{group}/{run}", tag)] = series["steps"]
    return out


def make_app(logdir, *flags):
    """TensorBoard's own WSGI app over `logdir`, with the plugins it finds (ours by entry point)."""
    tb = program.TensorBoard()
    tb.configure(
        argv=["", "--logdir", str(logdir), "--load_fast=false", "--reload_task=blocking",
              "--reload_interval=0", *flags]
    )  # fmt: skip
    ingester = data_ingester.LocalDataIngester(tb.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(
        tb.flags,
        tb.plugin_loaders,
        ingester.data_provider,
        tb.assets_zip_provider,
        ingester.deprecated_multiplexer,
    )
    return tb.flags, werkzeug_test.Client(app)


@pytest.fixture(scope="session")
def client(logdir):
    return make_app(logdir)[1]


def get_json(client, route, **params):
    response = client.get(f"/{PREFIX}/{route}", query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data())


def sheets(index):
    """Every (run, layer) sheet the index lists."""
    return [(r["run"], g["layer"]) for r in index["runs"] for g in r["layers"]]


# Tag names: built and parsed in one place.


def test_tags_parse_back_what_they_build():
    parse = _tags.parse_picture_tag
    cam = _tags.cam_run("layercam")
    assert parse(_tags.tag(_tags.FEATURE_MAPS, "base/conv1", 3)) == _tags.PictureTag(
        _tags.FEATURE_MAPS, "base/conv1", 3
    )
    assert parse(_tags.tag(cam, "conv", _tags.ALL_IMAGES)) == _tags.PictureTag(cam, "conv", None)
    assert parse(_tags.tag(_tags.FILTER_WEIGHTS, "image_1")) == _tags.PictureTag(
        _tags.FILTER_WEIGHTS, "image_1", None
    )
    assert parse(_tags.tag(_tags.OCCLUSION, 0)) == _tags.PictureTag(_tags.OCCLUSION, None, 0)
    actmax = _tags.ACTIVATION_MAXIMIZATION
    assert parse(_tags.tag(actmax, "base/conv")) == _tags.PictureTag(actmax, "base/conv", None)
    assert _tags.parse_scalar_tag(_tags.tag(actmax, "base/conv", "filter_3")) == (
        _tags.PictureTag(actmax, "base/conv", None),
        "filter_3",
    )
    for other in ("train/epoch_loss", "feature_maps", "feature_maps/conv", "grad_cam/image_01",
                  "occlusion_sensitivity/conv/image_0", "feature_maps//image_0"):  # fmt: skip
        assert parse(other) is None, other
    assert _tags.parse_scalar_tag(_tags.tag(cam, "conv", 2, "max")) == (
        _tags.PictureTag(cam, "conv", 2),
        "max",
    )
    assert _tags.parse_scalar_tag(_tags.tag(_tags.FEATURE_MAPS, "conv", "dead_fraction")) == (
        _tags.PictureTag(_tags.FEATURE_MAPS, "conv", None),
        "dead_fraction",
    )
    assert _tags.parse_scalar_tag(_tags.tag(_tags.OCCLUSION, _tags.NON_FINITE)) == (
        _tags.PictureTag(_tags.OCCLUSION, None, None),
        _tags.NON_FINITE,
    )


# The loader: light, sets the images cap only when the user did not, never fatal.


def test_entry_point_module_imports_no_tensorflow():
    code = (
        "import sys, keras_convviz.tensorboard_plugin.loader as m; "
        "heavy = [n for n in ('tensorflow', 'keras', 'numpy') if n in sys.modules]; "
        "assert not heavy, heavy; print(m.ConvVizLoader.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from importlib.metadata import entry_points

    (point,) = [e for e in entry_points(group="tensorboard_plugins") if e.name == "convviz"]
    assert point.load() is plugin_loader.ConvVizLoader
    assert plugin_loader.ConvVizLoader in default.get_plugins()  # what `tensorboard` loads


@pytest.mark.parametrize(
    ("argv", "images"),
    [
        ([], plugin_loader.DEFAULT_IMAGE_SAMPLES),
        (["--convviz_image_samples", "40"], 40),
        (["--samples_per_plugin", "images=5"], 5),
        (["--samples_per_plugin", "images=0", "--convviz_image_samples", "40"], 0),
        (["--samples_per_plugin", "scalars=7"], plugin_loader.DEFAULT_IMAGE_SAMPLES),
    ],
)
def test_cap_flag(argv, images):
    tb = program.TensorBoard()
    tb.configure(argv=["", "--logdir", "unused", *argv])
    assert tb.flags.samples_per_plugin["images"] == images


def test_broken_plugin_leaves_tensorboard_running(logdir, monkeypatch, caplog):
    # A plugin module that cannot be imported (a broken install): `None` in sys.modules
    # makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "keras_convviz.tensorboard_plugin.plugin", None)
    _, client = make_app(logdir)
    listing = json.loads(client.get("/data/plugins_listing").get_data())
    assert "convviz" not in listing
    assert listing["images"]["enabled"]
    assert client.get("/data/plugin/images/tags").status_code == 200
    assert "ConvViz tab failed to load" in caplog.text


# Routes, in process.


def test_plugin_listed_and_active_only_with_our_runs(client, tmp_path):
    listing = json.loads(client.get("/data/plugins_listing").get_data())
    assert listing["convviz"]["enabled"]
    assert listing["convviz"]["tab_name"] == "ConvViz"
    assert listing["convviz"]["loading_mechanism"]["module_path"] == f"/{PREFIX}/index.js"
    # Logs of a plain keras.callbacks.TensorBoard: the tab is listed but inactive.
    keras.utils.set_random_seed(0)
    model = _model()
    x = np.zeros((4, 24, 24, 3), np.float32)
    model.fit(x, np.zeros(4), epochs=1, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])  # fmt: skip
    _, plain = make_app(tmp_path)
    listing = json.loads(plain.get("/data/plugins_listing").get_data())
    assert listing["convviz"]["enabled"] is False
    assert get_json(plain, "index") == {"runs": []}


def test_index_lists_every_picture_once(client, written):
    index = get_json(client, "index")
    kinds = [r["kind"] for r in index["runs"]]
    # Ordered as _tags lists the kinds; the first is what the tab opens on.
    assert kinds == sorted(kinds, key=_tags.all_runs().index)
    assert kinds[0] == _tags.FEATURE_MAPS
    listed = {}
    for run in index["runs"]:
        assert run["group"] in ("exp_a", EVIL)
        assert run["run"] == f"{run['group']}/{run['kind']}"
        for layer in run["layers"]:
            for row in layer["rows"]:
                listed[(run["run"], row["tag"])] = layer["layer"]
    assert set(listed) == set(written)
    assert listed[("exp_a/feature_maps", f"feature_maps/{LAYER}/image_2")] == LAYER
    assert listed[("exp_a/filter_weights", f"filter_weights/{LAYER}")] is None  # one sheet
    actmax = f"{_tags.ACTIVATION_MAXIMIZATION}/{LAYER}"
    assert listed[(f"exp_a/{_tags.ACTIVATION_MAXIMIZATION}", actmax)] is None  # the same
    assert listed[(f"{EVIL}/occlusion_sensitivity", "occlusion_sensitivity/image_0")] is None
    fm = next(r for r in index["runs"] if r["run"] == "exp_a/feature_maps")
    assert [g["layer"] for g in fm["layers"]] == ["conv-b.2", "conv_a"]
    assert [row["label"] for row in fm["layers"][1]["rows"]] == ["image 0", "image 1", "image 2"]


def test_every_epoch_of_every_tag_served_without_a_flag(client, written):
    index = get_json(client, "index")
    served = {}
    for run, layer in sheets(index):
        sheet = get_json(client, "sheet", run=run, **({} if layer is None else {"layer": layer}))
        assert sheet["steps"] == list(range(EPOCHS))
        for row in sheet["rows"]:
            served[(run, row["tag"])] = row["steps"]
    assert served == written
    assert all(steps == list(range(EPOCHS)) for steps in written.values())
    # The bytes are the PNG written at that step.
    run, tag = "exp_a/grad_cam", f"grad_cam/{LAYER}/image_1"
    for step in (0, EPOCHS - 1):
        response = client.get(
            f"/{PREFIX}/image", query_string={"run": run, "tag": tag, "step": step}
        )
        assert response.status_code == 200
        assert response.mimetype == "image/png"
        assert response.get_data().startswith(b"\x89PNG")
    first = client.get(f"/{PREFIX}/image", query_string={"run": run, "tag": tag, "step": 0})
    assert first.get_data() != response.get_data()


def test_explicit_samples_flag_wins(logdir):
    flags, client = make_app(logdir / "exp_a", "--samples_per_plugin", "images=5")
    assert flags.samples_per_plugin["images"] == 5
    sheet = get_json(client, "sheet", run="feature_maps", layer="conv_a")
    assert len(sheet["steps"]) == 5
    assert all(len(row["steps"]) == 5 for row in sheet["rows"])
    # The stock Images tab keeps the same 5.
    images = client.get(
        "/data/plugin/images/images",
        query_string={"run": "feature_maps", "tag": "feature_maps/conv_a/image_0"},
    )
    assert len(json.loads(images.get_data())) == 5


def test_scalars_of_a_layer(client):
    data = get_json(client, "scalars", run="exp_a/feature_maps", layer="conv_a")
    plots = {p["quantity"]: p["series"] for p in data["plots"]}
    # The layer's health numbers, and its loss gradient from the health run.
    health = {"dead_fraction", "near_zero_fraction", "mean", "std", "max_activation"}
    assert set(plots) == health | {"gradient_norm", "gradient_ratio"}
    (series,) = plots["max_activation"]
    assert [p[0] for p in series["points"]] == list(range(EPOCHS))
    assert all(v is not None and v > 0 for _, v in series["points"])
    cam = get_json(client, "scalars", run=f"{EVIL}/layer_cam", layer=LAYER)
    plots = {p["quantity"]: p["series"] for p in cam["plots"]}
    # The last conv: its ratio to the dense head's (every trainable layer, graph order).
    assert set(plots) == {"max", "change", "gradient_norm", "gradient_ratio"}
    assert [s["label"] for s in plots["max"]] == [f"image {i}" for i in range(PROBES)]
    weights = get_json(client, "scalars", run="exp_a/filter_weights")
    plots = {p["quantity"]: p["series"] for p in weights["plots"]}
    assert set(plots) == {"max_abs", "norm", "relative_update"}
    assert sorted(s["label"] for s in plots["norm"]) == sorted(["conv_a", LAYER])
    occlusion = get_json(client, "scalars", run="exp_a/occlusion_sensitivity")
    assert [p["quantity"] for p in occlusion["plots"]] == ["max"]


def test_every_scalar_written_is_a_quantity_its_kind_declares(logdir):
    found = set()
    for run, tags in read_runs(logdir / "exp_a").items():
        kind = registry.get(run)
        for tag, series in tags.items():
            if kind is None or series["kind"] != "scalars":
                continue
            quantity = tag.rpartition("/")[2]
            assert kind.writes(quantity), (run, tag)
            found.add(run)
    assert {"feature_maps", "filter_weights", "grad_cam", "health"} <= found


def test_kinds_route_serves_the_registry(client):
    data = get_json(client, "kinds")
    assert data["kinds"] == [kind.as_json() for kind in registry.picture_kinds()]
    assert data["layouts"]["LAYER"] == registry.LAYER
    assert set(data["layouts"].values()) == set(registry.LAYOUTS)


def _write_pictures(run_dir, tags, steps=2):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for step in range(steps):
            for tag in tags:
                tf.summary.image(tag, np.full((1, 4, 6, 3), step / steps, np.float32), step)
    writer.close()


def test_a_new_kind_appears_in_the_tab(tmp_path, monkeypatch):
    # One registry entry: the tab lists it with its label and layout, reads its tags.
    new = registry.Kind("toy_maps", "Toy maps", "actmax", registry.LAYER)
    _write_pictures(tmp_path / "exp" / new.run, ["toy_maps/conv_a", "toy_maps/block/conv_b"])
    _, client = make_app(tmp_path)
    assert get_json(client, "index") == {"runs": []}
    assert new.as_json() not in get_json(client, "kinds")["kinds"]
    monkeypatch.setitem(registry.KINDS, new.run, new)
    assert get_json(client, "kinds")["kinds"][-1] == new.as_json()
    (run,) = get_json(client, "index")["runs"]
    assert (run["run"], run["group"], run["kind"]) == ("exp/toy_maps", "exp", "toy_maps")
    # One picture per layer: one sheet (layer None), a row per layer.
    assert [g["layer"] for g in run["layers"]] == [None]
    sheet = get_json(client, "sheet", run="exp/toy_maps")
    assert [r["label"] for r in sheet["rows"]] == ["block/conv_b", "conv_a"]
    assert sheet["steps"] == [0, 1] and {(r["width"], r["height"]) for r in sheet["rows"]} == {
        (6, 4)
    }


def test_per_filter_scores_in_filter_order(tmp_path):
    # Twelve filters' scores: filter_10 and filter_11 come after filter_9, not after filter_1.
    callback = kcv.ActivationMaximization(str(tmp_path), ["conv_b"], filters=12, steps=2)
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    small_cnn(input_shape=(16, 16, 3)).fit(
        x, np.zeros(4), epochs=1, verbose=0, callbacks=[callback]
    )
    run = _tags.ACTIVATION_MAXIMIZATION
    data = get_json(make_app(tmp_path)[1], "scalars", run=run)  # every layer, as filter_weights
    assert [p["quantity"] for p in data["plots"]] == [f"filter_{f}" for f in range(12)]


@pytest.mark.parametrize(
    ("route", "params", "code"),
    [
        ("sheet", {}, 400),
        ("sheet", {"run": "exp_a/nope"}, 404),
        ("sheet", {"run": "exp_a/train"}, 404),  # keras's run: not ours
        ("sheet", {"run": "exp_a/feature_maps", "layer": "gone"}, 404),
        ("image", {"run": "exp_a/grad_cam", "tag": "grad_cam/conv_a/image_0"}, 400),
        ("image", {"run": "exp_a/grad_cam", "tag": f"grad_cam/{LAYER}/image_0", "step": "x"}, 400),
        ("image", {"run": "exp_a/grad_cam", "tag": f"grad_cam/{LAYER}/image_0", "step": 99}, 404),
        ("image", {"run": "exp_a/grad_cam", "tag": f"grad_cam/{LAYER}/image_9", "step": 0}, 404),
        ("image", {"run": "exp_a/grad_cam", "tag": "../../etc/passwd", "step": 0}, 404),
        ("image", {"run": "exp_a/train", "tag": "epoch_loss", "step": 0}, 404),
        ("image", {"run": "exp_a/feature_maps", "tag": "grad_cam/conv_a/image_0", "step": 0}, 404),
        ("scalars", {}, 400),
        ("nothing", {}, 404),
    ],
)
def test_bad_or_stale_requests_get_a_short_4xx(client, route, params, code):
    response = client.get(f"/{PREFIX}/{route}", query_string=params)
    assert response.status_code == code
    text = response.get_data(as_text=True)
    assert len(text) < 300 and "Traceback" not in text


def test_frontend_is_served_as_files(client):
    js = client.get(f"/{PREFIX}/index.js")
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert b"export async function render" in js.get_data()
    assert b"innerHTML" not in js.get_data()  # names are set as text
    css = client.get(f"/{PREFIX}/style.css")
    assert css.status_code == 200 and b"prefers-color-scheme: dark" in css.get_data()
    entry = client.get("/data/plugin_entry.html", query_string={"name": "convviz"})
    assert entry.status_code == 200 and b"./index.js" in entry.get_data()


# A real `tensorboard` on 127.0.0.1 (its default loader), and a real browser on it.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (localhost)
        return response.read()


@pytest.fixture(scope="session")
def server(logdir, tmp_path_factory):
    """`tensorboard --logdir LOGDIR --host 127.0.0.1 --port P`, as a user starts it."""
    with _tensorboard(logdir, tmp_path_factory) as url:
        yield url


@contextlib.contextmanager
def _tensorboard(logdir, tmp_path_factory, path_prefix=""):
    """The URL of a real `tensorboard` over `logdir`, once it lists an enabled ConvViz tab."""
    exe = shutil.which("tensorboard", path=str(Path(sys.executable).parent))
    assert exe, "the tensorboard command is not installed"
    port = _free_port()
    log = open(tmp_path_factory.mktemp("tb") / "tensorboard.log", "w+b")  # noqa: SIM115
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [exe, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)]
    if path_prefix:
        command.append(f"--path_prefix={path_prefix}")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}{path_prefix}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"tensorboard exited: {log.read().decode()[-2000:]}")
            with contextlib.suppress(OSError):
                listing = json.loads(_get(f"{url}/data/plugins_listing", timeout=5))
                # The data server ingests in the background; wait for our runs.
                if listing.get("convviz", {}).get("enabled"):
                    break
            if time.monotonic() > deadline:
                pytest.fail("tensorboard did not list an enabled ConvViz tab in 180 s")
            time.sleep(0.5)
        yield url
    finally:
        stop_process(process)
        log.close()
    assert process.returncode is not None


def test_real_tensorboard_serves_every_epoch_of_every_tag(server, written):
    listing = json.loads(_get(f"{server}/data/plugins_listing"))
    assert listing["convviz"]["enabled"] and listing["convviz"]["tab_name"] == "ConvViz"
    index = json.loads(_get(f"{server}/{PREFIX}/index"))
    served, urls = {}, []
    for run, layer in sheets(index):
        params = {"run": run, **({} if layer is None else {"layer": layer})}
        sheet = json.loads(_get(f"{server}/{PREFIX}/sheet?{urllib.parse.urlencode(params)}"))
        for row in sheet["rows"]:
            served[(run, row["tag"])] = row["steps"]
            for step in row["steps"]:
                query = urllib.parse.urlencode({"run": run, "tag": row["tag"], "step": step})
                urls.append(f"{server}/{PREFIX}/image?{query}")
    # As a browser does: a few requests at a time.
    with ThreadPoolExecutor(6) as pool:
        assert all(png.startswith(b"\x89PNG") for png in pool.map(_get, urls))
    assert served == written
    with pytest.raises(urllib.error.HTTPError) as error:
        _get(f"{server}/{PREFIX}/image?run=exp_a/grad_cam&tag=nope&step=0")
    assert error.value.code == 404


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("the browser test needs Debian's `chromium` (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="install the `test` extra")
    return path, playwright


def _tab_frame(page):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for frame in page.frames:
            if "plugin_entry.html" in frame.url and frame.query_selector("#sheet"):
                return frame
        page.wait_for_timeout(200)
    raise AssertionError(f"no ConvViz frame among {[f.url for f in page.frames]}")


def texts(frame, selector):
    return frame.eval_on_selector_all(selector, "n => n.map(x => x.textContent)")


_DECODED = """([rows, cols]) => {
  const decoded = (i) => i.complete && i.naturalWidth > 0;
  const imgs = [...document.querySelectorAll('#sheet img')];
  return imgs.length === rows * cols && imgs.every(decoded)
    && [...document.querySelectorAll('#now img:not([hidden])')].every(decoded);
}"""


def test_tab_in_a_real_browser(server):
    errors = []
    with _browser(f"{server}/#convviz", errors) as (_, page):
        frame = _tab_frame(page)
        # Opens on the first kind and layer: probes down, epochs across, all decoded.
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS], timeout=60_000)
        assert frame.locator("#kind").input_value() == "feature_maps"
        # The kinds' labels come from the served registry.
        labels = {k.run: k.label for k in registry.picture_kinds()}
        options = frame.eval_on_selector_all(
            "#kind option", "n => n.map(o => [o.value, o.textContent])"
        )
        assert len(options) > 5 and all(labels[value] == text for value, text in options)
        # Experiments sort by name: "<" before "e".
        assert frame.locator("#run").input_value() == f"{EVIL}/feature_maps"
        assert frame.locator("#layer").input_value() == LAYER
        rows = texts(frame, "#sheet tr th.rowlabel")
        assert rows == ["probe", "image 0", "image 1", "image 2"]
        # The HTML run name is text: in the selector, never an element or a script run.
        assert EVIL in texts(frame, "#run option")
        assert frame.evaluate("window.__convviz_xss") is None
        assert frame.query_selector("img[src='x']") is None
        # The alerts panel: "None for this layer." or one line per alert, as text (a
        # model trained on random labels may rightly be told it collapsed).
        items = texts(frame, "#alerts li")
        if items:
            assert all(re.match(r"epoch \d+( \(since epoch \d+\))?: \S", i) for i in items)
        else:
            assert frame.locator("#alerts").text_content() == "None for this layer."

        # The now row shows the last epoch; Home scrubs to the first.
        now = "n => n.map(i => i.getAttribute('src'))"
        last = frame.eval_on_selector_all("#now img", now)
        assert all(f"step={EPOCHS - 1}" in src for src in last)
        frame.locator("#sheet").click()
        page.keyboard.press("Home")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        first = frame.eval_on_selector_all("#now img", now)
        assert all("step=0" in src for src in first) and first != last
        page.keyboard.press("ArrowRight")
        assert "epoch 2 " in frame.locator("#epoch").text_content()
        frame.locator("#scrub").fill("5")
        frame.wait_for_function("document.querySelector('#now img').src.includes('step=5')")

        # Another layer: other tags, decoded.
        tags = "n => n.map(i => i.dataset.tag)"
        before = set(frame.eval_on_selector_all("#sheet img", tags))
        frame.locator("#layer").select_option("conv_a")
        frame.wait_for_function(
            "document.querySelector('#sheet img').dataset.tag.includes('conv_a')"
        )
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        after = set(frame.eval_on_selector_all("#sheet img", tags))
        assert after and not after & before
        assert all("/conv_a/" in t for t in after)

        # Another kind keeps the experiment; filter weights: one row per layer.
        frame.locator("#run").select_option("exp_a/feature_maps")
        frame.locator("#kind").select_option("filter_weights")
        frame.wait_for_function(_DECODED, arg=[2, EPOCHS])
        assert frame.locator("#run").input_value() == "exp_a/filter_weights"
        rows = texts(frame, "#sheet tr th.rowlabel")
        assert rows == ["layer", LAYER, "conv_a"]
        # max_abs, norm and relative_update: one line per layer each.
        assert frame.locator("#scalars svg path.series").count() == 3 * 2

        # Smaller cells than fit: every epoch stays; a narrow window thins them out.
        page.set_viewport_size({"width": 700, "height": 900})
        frame.wait_for_function(
            f"document.querySelectorAll('#sheet tr:first-child th.epoch').length < {EPOCHS}"
        )
        assert "showing" in frame.locator("h2 .hint").text_content()
        # The current epoch's column, or the nearest one shown, stays marked.
        assert frame.locator("#sheet th.current, #sheet th.near").count() == 1
    assert errors == []


# Where people look: behind a proxy's path prefix, by a link, two runs side by side.

PATH_PREFIX = "/some/prefix"
# TensorBoard's own page asks for its fonts at /font-roboto/ whatever the prefix
# (TensorBoard's, not the tab's): every other request must stay under the prefix.
_TENSORBOARD_FONTS = "/font-roboto/"


@pytest.fixture(scope="session")
def prefixed_server(logdir, tmp_path_factory):
    """`tensorboard --path_prefix=/some/prefix`, as Jupyter's and Colab's proxies serve it."""
    with _tensorboard(logdir, tmp_path_factory, path_prefix=PATH_PREFIX) as url:
        yield url


@contextlib.contextmanager
def _browser(url, problems, width=2200, height=1400):
    """A page of TensorBoard at `url` in a `width` x `height` window; errors and failed
    requests go to `problems`."""
    path, playwright = _chromium()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda e: problems.append(str(e)))
            theirs = _TENSORBOARD_FONTS
            page.on(
                "response",
                lambda r: r.status >= 400 and theirs not in r.url and problems.append(r.url),
            )
            page.on(
                "requestfailed",
                lambda r: theirs not in r.url and problems.append(f"failed {r.url}"),
            )
            page.goto(url)
            yield browser, page
        finally:
            browser.close()


def _fragment(page) -> dict:
    """The tab's keys of the TensorBoard page's fragment, as TensorBoard itself reads them
    (tf_storage: what plugin_lib's getURLPluginData hands a plugin)."""
    keys = page.evaluate("window.tensorboard.tf_storage.getUrlHashDict()")
    return {k[len("p.convviz.") :]: v for k, v in keys.items() if k.startswith("p.convviz.")}


def _view(frame) -> dict:
    view = {key: frame.locator(f"#{key}").input_value() for key in ("kind", "run", "layer")}
    view["compare"] = frame.locator("#compare").input_value()
    view["cell"] = frame.locator("#cell").input_value()
    view["epoch"] = frame.locator("#epoch").text_content()
    return view


def test_tab_under_a_path_prefix(prefixed_server):
    problems, requests = [], []
    with _browser(f"{prefixed_server}/#convviz", problems) as (_, page):
        page.on("request", lambda r: requests.append(r.url))
        frame = _tab_frame(page)
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS], timeout=60_000)
        assert frame.url.startswith(f"{prefixed_server}/data/plugin_entry.html")
        frame.locator("#kind").select_option("grad_cam")
        frame.wait_for_selector("#sheet img[data-tag^='grad_cam/']")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        assert frame.locator("#scalars svg path.series").count() > 0
    ours = [u for u in requests if u.startswith(f"{prefixed_server}/data/plugin/convviz/")]
    assert any("/image?" in u for u in ours) and any("/sheet?" in u for u in ours)
    outside = [u for u in requests if not u.startswith(f"{prefixed_server}/")]
    assert all(_TENSORBOARD_FONTS in u for u in outside), outside
    assert problems == []


def test_a_link_keeps_the_view(prefixed_server):
    problems = []
    with _browser(f"{prefixed_server}/#convviz", problems) as (browser, page):
        frame = _tab_frame(page)
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS], timeout=60_000)
        # The view as the tab opens is in the link already.
        page.wait_for_function("location.hash.includes('p.convviz.layer=')")
        assert _fragment(page)["run"] == f"{EVIL}/feature_maps"
        frame.locator("#run").select_option("exp_a/feature_maps")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        frame.locator("#layer").select_option("conv_a")
        frame.wait_for_selector("#sheet img[data-tag*='/conv_a/']")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        frame.locator("#compare").select_option(f"{EVIL}/feature_maps")
        frame.wait_for_function(_DECODED, arg=[2 * PROBES, EPOCHS])
        frame.locator("#scrub").fill("3")
        frame.locator("#cell").fill("56")
        wanted = {
            "kind": "feature_maps",
            "run": "exp_a/feature_maps",
            "layer": "conv_a",
            "compare": f"{EVIL}/feature_maps",
            "cell": "56",
            "epoch": f"epoch 4 (step 3) · 4/{EPOCHS}",
        }
        assert _view(frame) == wanted
        # Epochs as Keras counts them; the step where TensorBoard's numbers are.
        assert texts(frame, "#sheet th.epoch.current") == ["epoch 4"]
        assert frame.locator("#sheet th.epoch.current").get_attribute("title") == "step 3"
        assert frame.locator("#now img").first.get_attribute("alt") == "image 0, epoch 4 (step 3)"
        page.wait_for_function("location.hash.includes('p.convviz.cell=56')")
        link = {**{k: v for k, v in wanted.items() if k != "epoch"}, "epoch": "4"}
        assert _fragment(page) == link
        assert page.url.startswith(f"{prefixed_server}/#convviz&")

        page.reload()
        frame = _tab_frame(page)
        frame.wait_for_function(_DECODED, arg=[2 * PROBES, EPOCHS], timeout=60_000)
        assert _view(frame) == wanted
        shared = page.url

        # The back button: the view before the comparison, and forward again.
        page.go_back()
        frame = _tab_frame(page)
        frame.wait_for_function("document.querySelector('#compare').value === ''")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        assert _view(frame)["layer"] == "conv_a"
        page.go_forward()
        frame = _tab_frame(page)
        frame.wait_for_function("document.querySelector('#compare').value !== ''")
        frame.wait_for_function(_DECODED, arg=[2 * PROBES, EPOCHS])
        assert _view(frame) == wanted

        # A link sent to a colleague: a new browser context, the same view.
        other = browser.new_context(viewport={"width": 2200, "height": 1400}).new_page()
        other.goto(shared)
        frame = _tab_frame(other)
        frame.wait_for_function(_DECODED, arg=[2 * PROBES, EPOCHS], timeout=60_000)
        assert _view(frame) == wanted
        assert frame.locator("#notice").is_hidden()
    assert problems == []


def test_a_link_to_what_is_not_there_falls_back_with_a_notice(prefixed_server):
    problems = []
    bad = "p.convviz.run=exp_a%2Ffeature_maps&p.convviz.layer=gone&p.convviz.epoch=99"
    with _browser(f"{prefixed_server}/#convviz&{bad}", problems) as (_, page):
        frame = _tab_frame(page)
        # The first layer and the last epoch, pictures and all: never a blank tab.
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS], timeout=60_000)
        assert frame.locator("#run").input_value() == "exp_a/feature_maps"
        assert frame.locator("#layer").input_value() == LAYER
        assert frame.locator("#epoch").text_content().startswith(f"epoch {EPOCHS} ")
        notice = frame.locator("#notice")
        assert notice.is_visible()
        assert notice.text_content() == (
            f"The link's layer “gone” is not here: showing {LAYER}. "
            f"The link's epoch “99” is not here: showing epoch {EPOCHS}."
        )
        # The link now names what is shown; the user's next choice drops the notice.
        page.wait_for_function(f"location.hash.includes('p.convviz.layer={LAYER}')")
        assert _fragment(page)["epoch"] == str(EPOCHS)
        frame.locator("#layer").select_option("conv_a")
        frame.wait_for_selector("#sheet img[data-tag*='/conv_a/']")
        assert notice.is_hidden()
        # An address edited in the open tab (no reload): an unknown kind, the first kind.
        frame.locator("#kind").select_option("grad_cam")
        frame.wait_for_selector("#sheet img[data-tag^='grad_cam/']")
        page.goto(f"{prefixed_server}/#convviz&p.convviz.kind=no_such_kind")
        frame.wait_for_function("document.querySelector('#notice').textContent !== ''")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        assert frame.locator("#kind").input_value() == "feature_maps"
        assert frame.locator("#notice").text_content() == (
            "The link's kind “no_such_kind” is not here: showing Feature maps."
        )
    assert problems == []


def test_runs_side_by_side(server):
    problems = []
    with _browser(f"{server}/#convviz", problems) as (_, page):
        frame = _tab_frame(page)
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS], timeout=60_000)
        frame.locator("#kind").select_option("grad_cam")
        frame.wait_for_selector("#sheet img[data-tag^='grad_cam/']")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        main = f"{EVIL}/grad_cam"
        assert frame.locator("#run").input_value() == main
        # Only another experiment's run of the same kind to compare with.
        options = frame.eval_on_selector_all("#compare option", "n => n.map(o => o.value)")
        assert options == ["", "exp_a/grad_cam"]
        series = frame.locator("#scalars path.series").count()
        frame.locator("#compare").select_option("exp_a/grad_cam")
        frame.wait_for_function(_DECODED, arg=[2 * PROBES, EPOCHS])
        # Each probe image's row, the compared run's row under it, at the same epochs.
        runs = frame.eval_on_selector_all("#sheet tr[data-run]", "n => n.map(r => r.dataset.run)")
        assert runs == [main, "exp_a/grad_cam"] * PROBES
        labels = texts(frame, "#sheet th.rowlabel")
        assert labels[1:3] == [f"image 0{EVIL}", "image 0exp_a"]
        for tr in frame.locator("#sheet tr[data-run]").all():
            run = tr.get_attribute("data-run")
            imgs = tr.locator("img")
            assert imgs.count() == EPOCHS
            assert {i.get_attribute("data-run") for i in imgs.all()} == {run}
            for img in imgs.all():
                query = urllib.parse.urlsplit(img.get_attribute("src")).query
                assert urllib.parse.parse_qs(query)["run"] == [run]
        now = frame.eval_on_selector_all("#now img", "n => n.map(i => i.dataset.run)")
        assert now == [main, "exp_a/grad_cam"] * PROBES
        # Each run's scalars in the same plots: the compared run's lines dashed.
        assert frame.locator("#scalars path.series.compared").count() == series
        assert frame.locator("#scalars path.series").count() == 2 * series
        assert texts(frame, "#scalars .legend.runs span") == [EVIL, "exp_a"]
        # A kind switch keeps comparing the same experiment.
        frame.locator("#kind").select_option("feature_maps")
        frame.wait_for_selector("#sheet img[data-tag^='feature_maps/']")
        frame.wait_for_function(_DECODED, arg=[2 * PROBES, EPOCHS])
        assert frame.locator("#compare").input_value() == "exp_a/feature_maps"
        frame.locator("#compare").select_option("")
        frame.wait_for_function(_DECODED, arg=[PROBES, EPOCHS])
        assert frame.locator("#sheet tr.compared").count() == 0
    assert problems == []


@pytest.fixture(scope="session")
def sick_logdir(tmp_path_factory):
    """A run whose layer `conv_b` is dead (alerts fire), with faithfulness and health on."""
    root = tmp_path_factory.mktemp("sick_logs")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    kernel, bias = model.get_layer("conv_b").get_weights()
    model.get_layer("conv_b").set_weights([kernel, np.full_like(bias, -1000.0)])
    rng = np.random.default_rng(2)
    x = rng.random((12, 16, 16, 3), dtype=np.float32)
    y = np.arange(12) % 3
    callback = kcv.ConvViz(
        str(root / "sick"),
        (x[:3], y[:3]),
        occlusion=False,
        faithfulness={"steps": 4},
        health={"gradients": True},
        budget=None,  # every kind at every epoch
    )
    with pytest.warns(UserWarning):
        model.fit(x, y, epochs=2, batch_size=6, verbose=0, callbacks=[callback])
    return root


@pytest.fixture(scope="session")
def sick_client(sick_logdir):
    return make_app(sick_logdir)[1]


def test_alerts_of_a_layer(sick_client):
    data = get_json(sick_client, "alerts", run="sick/grad_cam", layer="conv_b")
    by_rule = {a["rule"]: a for a in data["alerts"]}
    assert {"dead_channels", "empty_explanation"} <= set(by_rule)
    dead = by_rule["dead_channels"]
    assert (dead["layer"], dead["epoch"], dead["since_epoch"], dead["step"]) == ("conv_b", 1, 1, 0)
    assert dead["title"] == "Most channels (units) are dead"
    # Read from the JSON record, every field as the alert had it.
    assert (dead["subject"], dead["quantity"], dead["value"]) == (
        "feature_maps/conv_b",
        "dead_fraction",
        1.0,
    )
    assert dead["evidence"] == "feature_maps/conv_b/dead_fraction"
    assert "evidence: `feature_maps/conv_b/dead_fraction`" in dead["text"]
    assert len(data["alerts"]) == len({(a["rule"], a["subject"]) for a in data["alerts"]})
    # Another layer's alerts are not listed; the model's own (layer "") would be.
    assert all(a["layer"] in ("conv_b", "") for a in data["alerts"])
    other = get_json(sick_client, "alerts", run="sick/feature_maps", layer="conv_a")
    assert "dead_channels" not in {a["rule"] for a in other["alerts"]}


def test_a_maps_scores_beside_its_floors_and_the_layers_gradient(sick_client):
    data = get_json(sick_client, "scalars", run="sick/grad_cam", layer="conv_b")
    plots = {p["quantity"]: p["series"] for p in data["plots"]}
    for curve in ("deletion", "insertion"):
        labels = sorted(s["label"] for s in plots[curve])
        assert labels == ["edge map", "random map", "this map"], curve
        assert all([p[0] for p in s["points"]] == [0, 1] for s in plots[curve])
    (gradient,) = plots["gradient_norm"]  # from the health run, for this layer
    assert [p[0] for p in gradient["points"]] == [0, 1]


def test_an_alert_record_that_is_not_one_is_skipped(caplog):
    from keras_convviz.tensorboard_plugin.plugin import _alert_record

    good = {"rule": "r", "title": "t", "subject": "s", "layer": "", "step": 0, "epoch": 1}
    good.update(since_epoch=1, text="**t**", value=float("nan"))
    assert _alert_record(np.array(json.dumps(good).encode()))["value"] == "NaN"
    for bad in (b"\xff", b"[1, 2]", b"{", json.dumps({**good, "step": "0"}).encode()):
        assert _alert_record(np.array(bad)) is None
    assert "skipped an alert record" in caplog.text


@pytest.fixture(scope="session")
def sparse_logdir(tmp_path_factory):
    """Occlusion at epochs 0 and 2 of 3 (its own freq; a budget thins it the same way)."""
    root = tmp_path_factory.mktemp("sparse_logs")
    rng = np.random.default_rng(0)
    x = rng.random((12, 24, 24, 3), dtype=np.float32)
    y = rng.integers(0, 3, size=12).astype(np.int32)
    callback = kcv.ConvViz(
        str(root / "exp"),
        (x[:2], y[:2]),
        occlusion_freq=2,
        filter_weights=False,
        alerts=False,
        max_channels=4,
    )
    _model().fit(x, y, epochs=3, batch_size=12, verbose=0, callbacks=[callback])
    return root


def test_a_kind_at_fewer_epochs_is_served_with_its_experiments_epochs(sparse_logdir):
    client = make_app(sparse_logdir)[1]
    occlusion = get_json(client, "sheet", run="exp/occlusion_sensitivity")
    assert occlusion["steps"] == [0, 2] and occlusion["group_steps"] == [0, 1, 2]
    maps = get_json(client, "sheet", run="exp/feature_maps", layer=LAYER)
    assert maps["steps"] == maps["group_steps"] == [0, 1, 2]


def test_a_kind_at_fewer_epochs_says_so_in_the_browser(sparse_logdir, tmp_path_factory):
    errors = []
    shots = Path(os.environ.get("CONVVIZ_SCREENSHOTS", tmp_path_factory.mktemp("shots")))
    with (
        _tensorboard(sparse_logdir, tmp_path_factory) as url,
        _browser(f"{url}/#convviz", errors, 1400, 900) as (_, page),
    ):
        frame = _tab_frame(page)
        frame.wait_for_function(_DECODED, arg=[2, 3], timeout=60_000)
        assert frame.locator("#kind-epochs").is_hidden()  # feature maps: every epoch
        # At epoch 2, switch to occlusion: it has none there; the nearest before is shown.
        frame.locator("#scrub").fill("1")
        frame.locator("#kind").select_option("occlusion_sensitivity")
        frame.wait_for_function(_DECODED, arg=[2, 2])
        note = frame.locator("#kind-epochs")
        assert note.is_visible()
        assert note.text_content() == (
            "Occlusion exists at epochs 1, 3 of the 3 epochs with snapshots (1-3): a "
            "costly kind, run less often by ConvViz's budget (or its own freq); the other "
            "epochs have no picture of it. Epoch 2 has none: showing epoch 1."
        )
        assert texts(frame, "#sheet th.epoch") == ["epoch 1", "epoch 3"]
        assert "epoch 1 " in frame.locator("#epoch").text_content()
        page.screenshot(path=str(shots / "kind_at_fewer_epochs.png"))
        page.keyboard.press("End")  # picking an epoch of the kind drops the "has none"
        frame.locator("#scrub").fill("1")
        frame.wait_for_function(
            "!document.querySelector('#kind-epochs').textContent.includes('has none')"
        )
    assert errors == []


def test_the_diagnosis_route_folds_alerts_under_their_root(sick_client):
    data = get_json(sick_client, "diagnosis", run="sick/grad_cam")
    roots = {line["rule"]: line for line in data["lines"]}
    dead = roots["dead_channels"]
    assert (dead["where"], dead["since_epoch"], dead["subjects"]) == (
        "layer `conv_b`",
        1,
        ["feature_maps/conv_b"],
    )
    assert dead["advice"].startswith("lower the learning rate")
    # What the dead layer causes (no gradient through it, kernels that stop) is folded
    # under it, not a line of its own.
    folded = {(f["rule"], f["subject"]) for f in dead["folded"]}
    assert ("stalled_updates", "filter_weights/conv_a") in folded
    assert ("no_gradient", "health/conv_a") in folded
    assert not {"stalled_updates", "no_gradient"} & set(roots)


def test_the_diagnosis_in_a_real_browser(sick_logdir, sparse_logdir, tmp_path_factory):
    problems = []
    with (
        _tensorboard(sick_logdir, tmp_path_factory) as url,
        _browser(f"{url}/#convviz", problems) as (_, page),
    ):
        frame = _tab_frame(page)
        frame.wait_for_selector("#diagnosis li")
        first = frame.locator("#diagnosis .diagnosis-lines > li").first
        assert first.locator(".evidence-link").text_content() == "Most channels (units) are dead"
        assert first.text_content().startswith(
            "Most channels (units) are dead since epoch 1, in layer conv_b"
        )
        assert first.locator(".try").text_content().startswith("Try: lower the learning")
        # The tab opens on the first layer; the line's link selects its evidence.
        assert frame.locator("#layer").input_value() == "conv_a"
        first.locator(".evidence-link").click()
        frame.wait_for_function("document.querySelector('#layer').value === 'conv_b'")
        assert frame.locator("#kind").input_value() == "feature_maps"
        frame.wait_for_selector("#scalars .plot.evidence")
        assert frame.locator("#scalars .plot.evidence h3").text_content() == "dead_fraction"
    with (
        _tensorboard(sparse_logdir, tmp_path_factory) as url,
        _browser(f"{url}/#convviz", problems) as (_, page),
    ):
        frame = _tab_frame(page)
        # `ConvViz(alerts=False)`: no rule watched, so no alert says nothing.
        frame.wait_for_selector("#diagnosis .diagnosis-off")
        assert frame.locator("#diagnosis").text_content() == (
            "DiagnosisAlerts were off for this training: nothing was checked."
        )
    assert problems == []


# Regions (`regions=`): the outline over the NOW pictures, `in_region` and `pointing`
# beside their floor. Boxes `(y0, x0, y1, x1)` on the 24 x 24 probe images.
REGION_BOXES = np.array([[4, 4, 12, 12], [8, 10, 20, 22], [0, 0, 24, 12]])


@pytest.fixture(scope="session")
def region_logdir(tmp_path_factory):
    """Grad-CAM of the small model with `regions=` (2 epochs), alerts on."""
    root = tmp_path_factory.mktemp("region_logs")
    rng = np.random.default_rng(3)
    x = rng.random((12, 24, 24, 3), dtype=np.float32)
    y = rng.integers(0, 3, size=12).astype(np.int32)
    fired = []
    callback = kcv.ConvViz(
        str(root / "exp"),
        (x[:PROBES], y[:PROBES]),
        occlusion=False,
        filter_weights=False,
        regions=REGION_BOXES,
        max_channels=4,
        on_alert=fired.append,
    )
    _model().fit(x, y, epochs=2, batch_size=12, verbose=0, callbacks=[callback])
    assert fired == []  # a healthy run: the diagnosis says nothing is wrong
    return root


@pytest.fixture(scope="session")
def region_client(region_logdir):
    return make_app(region_logdir)[1]


def test_each_probe_images_region_reaches_the_tab_as_its_outline(region_client, client):
    from keras_convviz._rendering import heatmap_panel_boxes

    data = get_json(region_client, "regions", run="exp/grad_cam", layer=LAYER)
    assert sorted(data["outlines"]) == ["0", "1", "2"]
    # Image 0's box [4, 12) x [4, 12), in the panel's pixels, over the image and the overlay.
    (x, y, w, _), (x2, *_), _ = heatmap_panel_boxes(24, 24)
    scale = w / 24
    segments = re.findall(r"M[^M]+", data["outlines"]["0"])
    top, bottom = 4 * scale, 12 * scale
    expected = {
        f"M{x + 4 * scale:g} {y + top:g}H{x + 12 * scale:g}",  # top edge, image
        f"M{x + 4 * scale:g} {y + bottom:g}H{x + 12 * scale:g}",
        f"M{x + 4 * scale:g} {y + top:g}V{y + bottom:g}",  # left edge
        f"M{x + 12 * scale:g} {y + top:g}V{y + bottom:g}",
        f"M{x2 + 4 * scale:g} {y + top:g}H{x2 + 12 * scale:g}",  # top edge, overlay
    }
    assert expected <= set(segments) and len(segments) == 8
    # Image 2's region touches the panel's left and top sides: its edges lie on them.
    assert f"M{x:g} {y:g}V{y + 24 * scale:g}" in data["outlines"]["2"]
    # No outline where no regions were given, nor on pictures that are no heat maps.
    assert get_json(region_client, "regions", run="exp/feature_maps", layer=LAYER)["outlines"] == {}
    assert get_json(client, "regions", run="exp_a/grad_cam", layer=LAYER)["outlines"] == {}


def test_in_region_and_pointing_beside_their_floor(region_client):
    data = get_json(region_client, "scalars", run="exp/grad_cam", layer=LAYER)
    plots = {p["quantity"]: p["series"] for p in data["plots"]}
    areas = (REGION_BOXES[:, 2] - REGION_BOXES[:, 0]) * (REGION_BOXES[:, 3] - REGION_BOXES[:, 1])
    for quantity in ("in_region", "pointing"):
        series = {s["label"]: s for s in plots[quantity]}
        assert sorted(series) == ["this map", "uniform map"], quantity
        assert series["uniform map"]["floor"] and not series["this map"]["floor"]
        # The floor: what a uniform map scores, the region's area share.
        floor = [p[1] for p in series["uniform map"]["points"]]
        assert floor == pytest.approx([np.mean(areas / 24**2)] * 2)
        assert [p[0] for p in series["this map"]["points"]] == [0, 1]
    # Each image's share in a plot of its own, without floors.
    labels = [s["label"] for s in plots["in_region, per image"]]
    assert labels == ["image 0", "image 1", "image 2"]


def test_the_diagnosis_tells_alerts_off_from_nothing_fired(region_client, sparse_logdir):
    healthy = get_json(region_client, "diagnosis", run="exp/grad_cam")
    assert (healthy["lines"], healthy["watched"]) == ([], True)
    off = get_json(make_app(sparse_logdir)[1], "diagnosis", run="exp/feature_maps")
    assert (off["lines"], off["watched"]) == ([], False)


def _outlines(frame, where: str = "#now") -> list:
    """`[(svg box, its picture's img box)]` of the outlines drawn in the NOW row (or in
    the sheet, `where="#sheet"`)."""
    return frame.eval_on_selector_all(
        f"{where} svg.region",
        """svgs => svgs.map((s) => {
          const box = (n) => { const r = n.getBoundingClientRect();
            return [r.x, r.y, r.width, r.height].map(Math.round); };
          return [box(s), box(s.parentNode.querySelector('img'))];
        })""",
    )


def test_the_region_outline_toggles_and_survives_a_reload(region_logdir, tmp_path_factory):
    problems = []
    with (
        _tensorboard(region_logdir, tmp_path_factory) as url,
        _browser(f"{url}/#convviz&p.convviz.kind=grad_cam", problems) as (_, page),
    ):
        frame = _tab_frame(page)
        frame.wait_for_function(_DECODED, arg=[PROBES, 2], timeout=60_000)
        frame.wait_for_selector("#diagnosis .diagnosis-ok")  # watched, and nothing fired
        toggle = frame.locator("#outline")
        assert toggle.is_visible() and toggle.get_attribute("aria-pressed") == "false"
        assert _outlines(frame) == []
        toggle.click()
        frame.wait_for_selector("#now svg.region")
        drawn = _outlines(frame)
        # One per probe image, laid exactly over its picture.
        assert len(drawn) == PROBES and all(svg == img for svg, img in drawn)
        # And over every epoch's picture of the sheet.
        frame.wait_for_function(_DECODED, arg=[PROBES, 2])
        cells = _outlines(frame, "#sheet")
        assert len(cells) == PROBES * 2 and all(svg == img for svg, img in cells)
        page.wait_for_function("location.hash.includes('p.convviz.outline=on')")
        assert _fragment(page)["outline"] == "on"
        # Under its floor's line, the map's own in one chart.
        plot = frame.locator("#scalars .plot", has=frame.locator("h3", has_text="in_region"))
        assert plot.first.locator("path.series.floor").count() == 1
        assert plot.first.locator("path.series:not(.floor)").count() == 1
        page.reload()
        frame = _tab_frame(page)
        frame.wait_for_selector("#now svg.region")
        assert frame.locator("#outline").get_attribute("aria-pressed") == "true"
        assert len(_outlines(frame)) == PROBES
        frame.locator("#outline").click()
        frame.wait_for_function("!document.querySelector('#now svg.region')")
        assert _outlines(frame, "#sheet") == []
        page.wait_for_function("!location.hash.includes('p.convviz.outline')")
        # Feature maps are no heat maps over the image: no outline to offer.
        frame.locator("#kind").select_option("feature_maps")
        frame.wait_for_selector("#sheet img[data-tag^='feature_maps/']")
        frame.wait_for_function("document.querySelector('#outline').hidden")
    assert problems == []
