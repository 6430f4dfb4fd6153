"""The ConvViz tab's backend: the kinds, an index of our runs, their images by step, a
layer's scalars and alerts.

The kinds (`keras_convviz.kinds`: run, label, layout) are served to the tab's JavaScript,
which keeps no copy of them; alerts are read as the JSON records `alerts.Monitor` writes.

Everything is read through TensorBoard's data provider (the same one the Images tab reads),
so the plugin works with either loader (`--load_fast`) and never opens a path taken from a
request. A request names a TensorBoard run and a tag the index lists; anything else gets a
4xx with a one-line message.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from importlib import resources

import numpy as np
from tensorboard import context as tb_context
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from keras_convviz import _tags, diagnosis, kinds
from keras_convviz.tensorboard_plugin.loader import DEFAULT_IMAGE_SAMPLES, PLUGIN_NAME

_IMAGES = "images"
_SCALARS = "scalars"
# The layouts the tab's JavaScript tells apart, by their names in `kinds`.
_LAYOUT_NAMES = ("LAYER_AND_PROBE", "PROBE", "LAYER", "NO_PICTURES")
# Points per scalar series: the plots are small.
_SCALAR_SAMPLES = 1000
# A step's image never changes once written, so the browser may keep it while scrubbing.
_IMAGE_MAX_AGE_S = 3600
# Each data-provider call costs tens of ms (TensorBoard's data server is a gRPC process), so
# the blob keys a sheet read are kept this long for the sheet's image requests; a step that
# is not among them (a new epoch) reads the sequence again.
_KEYS_TTL_S = 60
_KEYS_MAX = 20_000
_STATIC = {"index.js": "text/javascript", "style.css": "text/css"}
_MIME = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)

logger = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request the tab cannot answer; `code` is the HTTP status, the message says why."""

    def __init__(self, message: str, code: int = 400):
        super().__init__(message)
        self.code = code


def _route(method):
    """Turns `method(self, request) -> (body, mime[, max_age])` into a safe WSGI app."""

    @wrappers.Request.application
    @functools.wraps(method)
    def app(self, request):
        try:
            body, mime, *max_age = method(self, request)
        except BadRequest as e:
            return http_util.Respond(request, str(e), "text/plain", code=e.code)
        except errors.PublicError as e:  # e.g. the provider's NotFoundError
            return http_util.Respond(request, str(e), "text/plain", code=e.http_code)
        except Exception:  # never a traceback to the browser
            logger.exception("keras_convviz: %s failed", request.path)
            return http_util.Respond(request, "Internal error", "text/plain", code=500)
        if mime == "application/json":
            body = json.dumps(body)
        return http_util.Respond(request, body, mime, expires=max_age[0] if max_age else 0)

    return app


def _natural(text: str | None) -> list:
    """Sort key that puts `conv2` before `conv10`."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text or "")]


def _split_run(run: str, kind: str) -> str | None:
    """The group of a TensorBoard run that ends in our run `kind` (`logs/a/grad_cam` -> `a`)."""
    if run == kind:
        return ""
    for sep in ("/", "\\"):
        if run.endswith(sep + kind):
            return run[: -len(kind) - 1]
    return None


def _sibling(run: str, name: str) -> str:
    """Our run `name` in the same group as the TensorBoard run `run` (`a/grad_cam` -> `a/name`)."""
    cut = max(run.rfind("/"), run.rfind("\\"))
    return name if cut < 0 else run[: cut + 1] + name


def _parse_picture(run: str, tag: str) -> _tags.PictureTag | None:
    picture = _tags.parse_picture_tag(tag)
    if picture is None or _split_run(run, picture.run) is None:
        return None
    return picture


def _one_per_layer(run: str) -> bool:
    """Whether the kind `run` draws one picture per layer (its rows are layers)."""
    kind = kinds.get(run)
    return kind is not None and kind.layout == kinds.LAYER


def _row_label(picture: _tags.PictureTag) -> str:
    if _one_per_layer(picture.run):
        return picture.layer
    return "all images" if picture.probe is None else f"image {picture.probe}"


def _arg(request, name: str, required: bool = True) -> str | None:
    value = request.args.get(name)
    if value is None and required:
        raise BadRequest(f"Missing query parameter '{name}'.")
    return value


class ConvVizPlugin(base_plugin.TBPlugin):
    """The ConvViz tab: for a kind and layer, the probe images down and the epochs across."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context):
        self._provider = context.data_provider
        if self._provider is None:
            raise ValueError("The ConvViz tab needs TensorBoard's data provider.")
        hint = (context.sampling_hints or {}).get(_IMAGES, DEFAULT_IMAGE_SAMPLES)
        # `images=0` keeps every image at ingestion (and empties the Images tab); here it
        # means "serve all of them".
        self._downsample = hint if hint and hint > 0 else 1_000_000
        self._keys = {}  # (experiment, run, tag) -> (time read, {step: blob key})
        self._sizes = {}  # (experiment, run, tag) -> (width, height) of its pictures

    def get_plugin_apps(self):
        return {
            "/index.js": self._serve_static,
            "/style.css": self._serve_static,
            "/kinds": self._serve_kinds,
            "/index": self._serve_index,
            "/sheet": self._serve_sheet,
            "/image": self._serve_image,
            "/scalars": self._serve_scalars,
            "/alerts": self._serve_alerts,
            "/diagnosis": self._serve_diagnosis,
            "/regions": self._serve_regions,
        }

    def is_active(self):
        # Called without a request: the default experiment, as the core's listing does.
        ctx = tb_context.RequestContext()
        mapping = self._provider.list_blob_sequences(ctx, experiment_id="", plugin_name=_IMAGES)
        return any(
            _parse_picture(run, tag) is not None for run, tags in mapping.items() for tag in tags
        )

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="ConvViz")

    # The kinds: what the tab calls each run and how its pictures are laid out.

    @_route
    def _serve_kinds(self, request):
        return {
            "kinds": [kind.as_json() for kind in kinds.picture_kinds()],
            "layouts": {name: getattr(kinds, name) for name in _LAYOUT_NAMES},
        }, "application/json"

    # The index: which runs, kinds, layers and rows there are.

    def _pictures(self, request):
        """{run: {tag: PictureTag}} of our image tags."""
        mapping = self._provider.list_blob_sequences(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name=_IMAGES,
        )
        out = {}
        for run, tags in mapping.items():
            parsed = {tag: _parse_picture(run, tag) for tag in tags}
            parsed = {tag: p for tag, p in parsed.items() if p is not None}
            if parsed:
                out[run] = parsed
        return out

    def _index(self, request) -> list[dict]:
        order = {kind: i for i, kind in enumerate(_tags.all_runs())}
        runs = []
        for run, pictures in self._pictures(request).items():
            kind = next(iter(pictures.values())).run
            layers: dict[str | None, list] = {}
            for tag, picture in pictures.items():
                # A picture per layer (filter weights): one sheet whose rows are the layers.
                layer = None if _one_per_layer(kind) else picture.layer
                layers.setdefault(layer, []).append(
                    {"tag": tag, "label": _row_label(picture), "probe": picture.probe}
                )
            for rows in layers.values():
                rows.sort(key=lambda r: (r["probe"] is None, r["probe"] or 0, _natural(r["label"])))
            runs.append(
                {
                    "run": run,
                    "group": _split_run(run, kind),
                    "kind": kind,
                    "layers": [
                        {"layer": layer, "rows": layers[layer]}
                        for layer in sorted(layers, key=_natural)
                    ],
                }
            )
        runs.sort(key=lambda r: (order.get(r["kind"], len(order)), _natural(r["group"])))
        return runs

    @_route
    def _serve_index(self, request):
        return {"runs": self._index(request)}, "application/json"

    # A sheet: every row's steps.

    def _rows(self, request, run: str, layer: str | None, index=None) -> list[dict]:
        for entry in index if index is not None else self._index(request):
            if entry["run"] != run:
                continue
            for group in entry["layers"]:
                if group["layer"] == layer:
                    return group["rows"]
            raise BadRequest(f"Run {run!r} has no layer {layer!r}.", code=404)
        raise BadRequest(f"No ConvViz run {run!r}.", code=404)

    def _group_steps(self, request, run: str, index) -> list[int]:
        """Every step some picture run of `run`'s experiment (its group) has pictures at:
        a kind with fewer (thinned by `ConvViz`'s budget, or its own `freq`) says so."""
        group = next(e["group"] for e in index if e["run"] == run)
        # One tag per run tells its steps: a callback writes all of its tags at a snapshot.
        tags = {
            e["run"]: e["layers"][0]["rows"][0]["tag"]
            for e in index
            if e["group"] == group and e["layers"] and e["layers"][0]["rows"]
        }
        data = self._provider.read_blob_sequences(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name=_IMAGES,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=list(tags), tags=list(set(tags.values()))),
        )
        return sorted(
            {d.step for other, tag in tags.items() for d in data.get(other, {}).get(tag, [])}
        )

    def _sequences(self, request, run: str, tags: list[str]) -> dict:
        data = self._provider.read_blob_sequences(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name=_IMAGES,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags),
        ).get(run, {})
        if len(self._keys) > _KEYS_MAX:
            self._keys.clear()
        now, experiment = time.monotonic(), plugin_util.experiment_id(request.environ)
        for tag, sequence in data.items():
            # values: width, height, then the encoded images (we write one).
            keys = {d.step: d.values[2].blob_key for d in sequence if len(d.values) > 2}
            self._keys[(experiment, run, tag)] = (now, keys)
        return data

    @_route
    def _serve_sheet(self, request):
        run = _arg(request, "run")
        layer = _arg(request, "layer", required=False) or None
        index = self._index(request)
        rows = self._rows(request, run, layer, index)
        sequences = self._sequences(request, run, [r["tag"] for r in rows])
        out = []
        for row in rows:
            sequence = sequences.get(row["tag"], [])
            steps = sorted({datum.step for datum in sequence})
            width, height = self._size(request, run, row["tag"], sequence)
            out.append({**row, "steps": steps, "width": width, "height": height})
        steps = sorted({s for row in out for s in row["steps"]})
        sheet = {"run": run, "layer": layer, "rows": out, "steps": steps}
        sheet["group_steps"] = self._group_steps(request, run, index)
        return sheet, "application/json"

    def _size(self, request, run: str, tag: str, sequence) -> tuple[int | None, int | None]:
        """(width, height) of a tag's pictures, from its first PNG's header (read once)."""
        key = (plugin_util.experiment_id(request.environ), run, tag)
        if key not in self._sizes:
            datum = next((d for d in sequence if len(d.values) > 2), None)
            if datum is None:
                return None, None
            blob = self._provider.read_blob(
                plugin_util.context(request.environ), blob_key=datum.values[2].blob_key
            )
            size = (None, None)
            if blob.startswith(_MIME[0][0]) and len(blob) >= 24:  # IHDR: width, height
                size = (int.from_bytes(blob[16:20], "big"), int.from_bytes(blob[20:24], "big"))
            if len(self._sizes) > _KEYS_MAX:
                self._sizes.clear()
            self._sizes[key] = size
        return self._sizes[key]

    # One image.

    @_route
    def _serve_image(self, request):
        run, tag, step = _arg(request, "run"), _arg(request, "tag"), _arg(request, "step")
        try:
            step = int(step)
        except ValueError:
            raise BadRequest(f"'step' must be an integer. Received: {step!r}") from None
        if _parse_picture(run, tag) is None:
            raise BadRequest(f"{tag!r} is not a ConvViz picture of run {run!r}.", code=404)
        key = (plugin_util.experiment_id(request.environ), run, tag)
        read, keys = self._keys.get(key, (0.0, {}))
        if step not in keys or time.monotonic() - read > _KEYS_TTL_S:
            if tag not in self._sequences(request, run, [tag]):
                raise BadRequest(f"No pictures for run {run!r}, tag {tag!r}.", code=404)
            keys = self._keys.get(key, (0.0, {}))[1]
        if step not in keys:
            raise BadRequest(f"No picture at step {step} of {tag!r}.", code=404)
        blob = self._provider.read_blob(plugin_util.context(request.environ), blob_key=keys[step])
        mime = next((m for magic, m in _MIME if blob.startswith(magic)), None)
        if mime is None:
            raise BadRequest(f"The picture at step {step} of {tag!r} is not an image.", 415)
        return blob, mime, _IMAGE_MAX_AGE_S

    # The layer's scalars, grouped into one small plot per quantity.

    def _read_scalars(self, request, wanted: dict) -> dict:
        """`{(run, tag): [[step, value], ...]}` for `wanted` `{(run, tag): ...}`, one
        provider call per run."""
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        by_run: dict[str, list] = {}
        for run, tag in wanted:
            by_run.setdefault(run, []).append(tag)
        out = {}
        for run, tags in by_run.items():
            data = self._provider.read_scalars(
                ctx,
                experiment_id=experiment,
                plugin_name=_SCALARS,
                downsample=_SCALAR_SAMPLES,
                run_tag_filter=provider.RunTagFilter(runs=[run], tags=tags),
            ).get(run, {})
            for tag in tags:
                out[(run, tag)] = [[d.step, _finite(d.value)] for d in data.get(tag, [])]
        return out

    def _list_scalars(self, request, run: str) -> dict:
        return self._provider.list_scalars(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name=_SCALARS,
            run_tag_filter=provider.RunTagFilter(runs=[run]),
        ).get(run, {})

    @_route
    def _serve_scalars(self, request):
        run = _arg(request, "run")
        layer = _arg(request, "layer", required=False) or None
        listed = self._list_scalars(request, run)
        wanted = {}  # (run, tag) -> (quantity, label)
        floor_keys = set()  # the floors' series, marked `floor`
        for tag in listed:
            parsed = _tags.parse_scalar_tag(tag)
            if parsed is None or _split_run(run, parsed[0].run) is None:
                continue
            picture, quantity = parsed
            per_layer = _one_per_layer(picture.run)
            if not per_layer and picture.layer != layer:
                continue
            if per_layer and layer is not None:
                continue
            # One line per probe image (or filter-weights layer); a layer's own scalar
            # (dead_fraction, non_finite) is the only line of its plot.
            per_row = picture.probe is not None or per_layer
            label = _row_label(picture) if per_row else ""
            floors = [f for f in kinds.of_family("floor") if f.writes(quantity)]
            if floors and picture.probe is None:
                # A map's score (faithfulness, localization) beside its floors, written
                # under the same tag in their runs: one chart.
                label = "this map"
                for floor in floors:
                    key = (_sibling(run, floor.run), tag)
                    wanted[key] = (quantity, floor.label)
                    floor_keys.add(key)
            elif floors:
                # Each probe image's score in a chart of its own, the probe's mean and
                # its floor stay readable.
                quantity = f"{quantity}, per image"
            wanted[(run, tag)] = (quantity, label)
        if layer is not None:  # the layer's loss gradient (ModelHealth)
            health = _sibling(run, _tags.HEALTH)
            prefix = _tags.tag(_tags.HEALTH, layer) + "/"
            for tag in self._list_scalars(request, health):
                if tag.startswith(prefix) and "/" not in tag[len(prefix) :]:
                    wanted[(health, tag)] = (tag[len(prefix) :], "")
        data = self._read_scalars(request, wanted) if wanted else {}
        plots: dict[str, list] = {}
        for key, (quantity, label) in wanted.items():
            points = data.get(key, [])
            if points:
                series = {"label": label, "points": points, "floor": key in floor_keys}
                plots.setdefault(quantity, []).append(series)
        out = [
            {"quantity": q, "series": sorted(s, key=lambda x: _natural(x["label"]))}
            for q, s in sorted(plots.items(), key=lambda item: _natural(item[0]))
        ]
        return {"run": run, "layer": layer, "plots": out}, "application/json"

    def _alert_records(self, request, run: str) -> list[dict]:
        """Every alert record of the run's group, in the order they fired."""
        alerts_run = _sibling(run, _tags.ALERTS)
        data = self._provider.read_tensors(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name=_tags.ALERTS_PLUGIN,
            downsample=self._downsample,
            run_tag_filter=provider.RunTagFilter(runs=[alerts_run]),
        ).get(alerts_run, {})
        found = {}
        for datums in data.values():
            for datum in datums:
                alert = _alert_record(datum.numpy)
                if alert is not None:
                    # A rule fires once per subject; a log directory reused by a second
                    # training may hold it twice.
                    found[(alert["rule"], alert["subject"], alert["step"])] = alert
        return sorted(found.values(), key=lambda a: (a["step"], a["rule"], a["subject"]))

    @_route
    def _serve_alerts(self, request):
        """The alerts of the run's group that concern the layer (or the whole model)."""
        run = _arg(request, "run")
        layer = _arg(request, "layer", required=False) or ""
        alerts = [a for a in self._alert_records(request, run) if a["layer"] in (layer, "")]
        return {"run": run, "layer": layer or None, "alerts": alerts}, "application/json"

    def _watched(self, request, run: str) -> bool:
        """Whether rules watched the training of the run's group: `alerts.Monitor` wrote
        their names (`_tags.RULES_PLUGIN`) into its health run."""
        health = _sibling(run, _tags.HEALTH)
        listed = self._provider.list_tensors(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name=_tags.RULES_PLUGIN,
            run_tag_filter=provider.RunTagFilter(runs=[health]),
        )
        return bool(listed.get(health))

    @_route
    def _serve_diagnosis(self, request):
        """The diagnosis of the run's group: one line per root cause of its alerts
        (`keras_convviz.diagnosis`); no lines when nothing fired. `watched` is false when
        no rule watched the training (`ConvViz(alerts=False)`): no alert says nothing."""
        run = _arg(request, "run")
        records = self._alert_records(request, run)
        lines = [line.as_json() for line in diagnosis.diagnose(records)]
        watched = bool(records) or self._watched(request, run)
        return {"run": run, "lines": lines, "watched": watched}, "application/json"

    @_route
    def _serve_regions(self, request):
        """The outline of each probe image's region over its panel, from the masks a map
        callback with `regions=` wrote (`_tags.REGIONS_PLUGIN`): `{"outlines": {probe
        index: SVG path in the panel's pixels, over its image and its overlay}}`, empty
        where the run has none."""
        run = _arg(request, "run")
        layer = _arg(request, "layer", required=False) or None
        kind = next((k for k in kinds.picture_kinds() if _split_run(run, k.run) is not None), None)
        if kind is None:
            raise BadRequest(f"No ConvViz run {run!r}.", code=404)
        tag = _tags.tag(*(p for p in (kind.run, layer) if p), _tags.REGION)
        floor = _sibling(run, _tags.FLOOR_UNIFORM)
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        wanted = provider.RunTagFilter(runs=[floor], tags=[tag])
        listed = self._provider.list_tensors(
            ctx, experiment_id=experiment, plugin_name=_tags.REGIONS_PLUGIN, run_tag_filter=wanted
        )
        series = listed.get(floor, {}).get(tag)
        outlines = {}
        if series is not None:
            data = self._provider.read_tensors(
                ctx,
                experiment_id=experiment,
                plugin_name=_tags.REGIONS_PLUGIN,
                downsample=1,
                run_tag_filter=wanted,
            )
            datums = data.get(floor, {}).get(tag, [])
            boxes = _region_boxes(series.plugin_content)
            if datums and boxes:
                masks = np.asarray(datums[-1].numpy)
                if masks.ndim == 3:
                    # Over the image and its overlay: the map beside them stays clean.
                    outlines = {str(i): outline_path(m > 0, boxes[:2]) for i, m in enumerate(masks)}
        return {"run": run, "layer": layer, "outlines": outlines}, "application/json"

    @_route
    def _serve_static(self, request):
        name = request.path.rsplit("/", 1)[-1]
        if name not in _STATIC:
            raise BadRequest("Not found.", code=404)
        path = resources.files(__package__).joinpath("static", name)
        return path.read_bytes(), _STATIC[name]


def _region_boxes(content: bytes) -> list:
    """The panel's boxes `[[x, y, width, height], ...]` of a region record's plugin
    content, or `[]` when it holds none."""
    try:
        boxes = json.loads(content.decode("utf-8"))["boxes"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return []
    good = all(
        isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) for v in b) for b in boxes
    )
    return boxes if isinstance(boxes, list) and good else []


def outline_path(mask: np.ndarray, boxes) -> str:
    """The SVG path of a mask's outline `(height, width)` drawn into each box `[x, y,
    width, height]` (pixels of the panel): the edges between pixels in and out of the
    mask, those along a row (or a column) joined into one line."""
    height, width = mask.shape
    padded = np.pad(mask.astype(bool), 1)
    across = padded[1:, 1:-1] != padded[:-1, 1:-1]  # (height + 1, width): row edges
    down = padded[1:-1, 1:] != padded[1:-1, :-1]  # (height, width + 1): column edges
    parts = []
    for x0, y0, bw, bh in boxes:
        sx, sy = bw / width, bh / height
        for y, row in enumerate(across):
            for start, end in _runs(row):
                parts.append(f"M{x0 + start * sx:g} {y0 + y * sy:g}H{x0 + end * sx:g}")
        for x, column in enumerate(down.T):
            for start, end in _runs(column):
                parts.append(f"M{x0 + x * sx:g} {y0 + start * sy:g}V{y0 + end * sy:g}")
    return "".join(parts)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """`[(start, end), ...]` of the runs of True in a 1-D bool array, ends exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _finite(value: float) -> float | None:
    """JSON has no NaN or Inf: they become `null` (a gap in the plot)."""
    return value if value == value and abs(value) != float("inf") else None


# What an alert record must hold for the tab (`alerts.Alert.record`); others are passed on.
_ALERT_FIELDS = {
    "rule": str,
    "title": str,
    "subject": str,
    "layer": str,
    "step": int,
    "epoch": int,
    "since_epoch": int,
    "text": str,
}


def _alert_record(value) -> dict | None:
    """An alert's JSON record as a dict, or `None` (logged) when it is not one."""
    text = value.item() if hasattr(value, "item") else value
    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
        record = json.loads(text, parse_constant=str)  # no NaN to the browser
    except (UnicodeDecodeError, ValueError):
        record = None
    if not isinstance(record, dict) or not all(
        isinstance(record.get(name), kind) for name, kind in _ALERT_FIELDS.items()
    ):
        logger.warning("keras_convviz: skipped an alert record that is not one: %.200r", text)
        return None
    return record
