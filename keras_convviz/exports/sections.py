"""What the exports show: image series grouped by kind and layer, with their scalars.

The names follow `keras_convviz/_tags.py`: a picture tag is `<run>/<layer>/image_<i>`,
`<run>/image_<i>`, `<run>/<layer>` (one picture per layer) or `.../all_images`; a scalar
beside it is `<picture tag>/<quantity>` or `<run>/[<layer>/]<quantity>`. A run named after a
kind of `keras_convviz.kinds` is read with that kind's layout and headed by its label (a
kind drawn once per layer takes the whole rest of the tag as the layer). Tags of other
writers (a custom loop's `tf.summary.image`) are grouped the same way, read from the tag
alone; a summary holding several images per step gives one picture per image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from keras_convviz import _tags, kinds
from keras_convviz.exports.events import Series, decode_png, unique_steps

_PROBE = re.compile(rf"^(?:image_\d+|{_tags.ALL_IMAGES})$")


@dataclass
class Picture:
    """One image time series: a tag (or one image of a tag holding several per step)."""

    run: str
    tag: str
    sample: int | None
    layer: str | None
    row: str
    steps: list[int]
    blobs: list[bytes]
    sizes: list[tuple[int, int]]
    _decoded: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The tag, with the image's index when its summary holds several."""
        return self.tag if self.sample is None else f"{self.tag}/sample_{self.sample}"

    def image(self, step: int):
        """The decoded picture at `step`, `(height, width[, channels])` uint8."""
        if step not in self._decoded:
            i = self.steps.index(step)
            self._decoded[step] = decode_png(self.blobs[i], self.sizes[i])
        return self._decoded[step]

    def forget_decoded(self) -> None:
        """Frees the decoded pictures (the PNG bytes stay)."""
        self._decoded.clear()

    def blob(self, step: int) -> bytes:
        return self.blobs[self.steps.index(step)]


@dataclass
class Section:
    """One kind and layer of one run: its pictures (probe images down) and scalars.

    `scalars` maps a quantity (`"max"`, `"dead_fraction"`) to `{row: (steps, values)}`.
    """

    run: str
    layer: str | None
    pictures: list[Picture] = field(default_factory=list)
    scalars: dict[str, dict[str, tuple[list[int], list[float]]]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.run if self.layer is None else f"{self.run} / {self.layer}"

    @property
    def kind(self) -> kinds.Kind | None:
        """The kind the run is named after, or `None` (another writer's run)."""
        return kinds.get(run_base(self.run))

    @property
    def label(self) -> str:
        """What the section shows: its kind's label, or the run's name."""
        return self.run if self.kind is None else self.kind.label

    @property
    def heading(self) -> str:
        """The label and the layer (`Grad-CAM / conv4`)."""
        return self.label if self.layer is None else f"{self.label} / {self.layer}"

    @property
    def steps(self) -> list[int]:
        return sorted({s for p in self.pictures for s in p.steps})


def epoch_of(step: int) -> int:
    """The epoch a person reads for a TensorBoard step: Keras's log says "Epoch 1/N" for
    step 0, and so do the tab, the report, the GIFs, the sheets and `kcv.show`."""
    return step + 1


def run_base(run: str) -> str:
    """The last component of a run's path: the name its tags start with."""
    return run.rsplit("/", 1)[-1]


def _rest(run: str, tag: str) -> str:
    base = run_base(run)
    return tag[len(base) + 1 :] if tag.startswith(base + "/") else tag


def _one_per_layer(run: str) -> bool:
    kind = kinds.get(run_base(run))
    return kind is not None and kind.layout == kinds.LAYER


def split_image_tag(run: str, tag: str) -> tuple[str | None, str]:
    """`(layer, row)` of a picture tag: `row` is `image_<i>`, `all_images` or `""`."""
    parts = _rest(run, tag).split("/")
    if _PROBE.match(parts[-1]) and not _one_per_layer(run):
        return "/".join(parts[:-1]) or None, parts[-1]
    return "/".join(parts), ""


def split_scalar_tag(run: str, tag: str) -> tuple[str | None, str, str]:
    """`(layer, row, quantity)` of a scalar tag."""
    parts = _rest(run, tag).split("/")
    picture, quantity = parts[:-1], parts[-1]
    if picture and _PROBE.match(picture[-1]) and not _one_per_layer(run):
        return "/".join(picture[:-1]) or None, picture[-1], quantity
    return "/".join(picture) or None, "", quantity


def _row_key(row: str):
    """Rows in natural order: the layer's one picture, image_0, image_1, ... image_10, all."""
    rank = 0 if row == "" else 2 if row == _tags.ALL_IMAGES else 1
    return rank, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", row)]


def pictures_of(series: Series) -> list[Picture]:
    """The pictures of an image series: one per image a step holds."""
    series = unique_steps(series)
    layer, row = split_image_tag(series.run, series.tag)
    count = max((len(v) for v in series.values), default=0)
    found = []
    for k in range(count):
        keep = [i for i, v in enumerate(series.values) if len(v) > k]
        found.append(
            Picture(
                run=series.run,
                tag=series.tag,
                sample=None if count == 1 else k,
                layer=layer,
                row=row if count == 1 else f"{row} {k}".strip() if row else f"sample_{k}",
                steps=[series.steps[i] for i in keep],
                blobs=[series.values[i][k] for i in keep],
                sizes=[series.sizes[i] for i in keep],
            )
        )
    return found


def build_sections(
    series_list: list[Series], keep
) -> tuple[list[Section], dict[str, dict[str, tuple[list[int], list[float]]]]]:
    """Groups series by run and layer.

    Args:
        series_list: Every series read, runs in order, each run's tags in writing order.
        keep: `keep(picture) -> bool`, which pictures to export.

    Returns:
        `(sections, other_scalars)`: the sections that keep a picture, in writing order,
        each with its rows sorted (`image_0`, `image_1`, ... `image_10`) and its scalars;
        and the scalars of no kept section (e.g. `train/epoch_loss`), as
        `{tag: {run: (steps, values)}}`.
    """
    sections: dict[tuple[str, str | None], Section] = {}
    for series in series_list:
        if series.kind != "images":
            continue
        for picture in pictures_of(series):
            if keep(picture):
                key = (picture.run, picture.layer)
                sections.setdefault(key, Section(*key)).pictures.append(picture)
    other: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    floors: dict[tuple, dict] = {}  # (map run, layer, quantity) -> {floor's label: line}
    for series in series_list:
        if series.kind != "scalars":
            continue
        series = unique_steps(series)
        line = (series.steps, series.values)
        floor = _floor_of(series, sections)
        if floor is not None:
            key, row, label = floor
            if row == "":  # the probe's mean; a floor per image would crowd the plot
                floors.setdefault(key, {})[label] = line
            continue
        layer, row, quantity = split_scalar_tag(series.run, series.tag)
        section = sections.get((series.run, layer))
        if section is not None:
            section.scalars.setdefault(quantity, {})[row] = line
        else:
            other.setdefault(series.tag, {})[series.run] = line
    for section in sections.values():
        section.pictures.sort(key=lambda p: _row_key(p.row))
        for quantity, rows in section.scalars.items():
            section.scalars[quantity] = dict(sorted(rows.items(), key=lambda r: _row_key(r[0])))
        _beside_floors(section, floors)
    return list(sections.values()), other


def _floor_of(series: Series, sections: dict) -> tuple | None:
    """`((map run, layer, quantity), row, floor's label)` of a floor's scalar, written
    under the tag of a map a section shows (`floor_uniform`'s `grad_cam/conv/in_region`);
    `None` for any other scalar."""
    kind = kinds.get(run_base(series.run))
    if kind is None or kind.family != "floor":
        return None
    base = series.tag.split("/", 1)[0]
    cut = series.run.rfind("/")
    run = base if cut < 0 else series.run[: cut + 1] + base
    layer, row, quantity = split_scalar_tag(run, series.tag)
    if (run, layer) not in sections:
        return None
    return (run, layer, quantity), row, kind.label


def _beside_floors(section: Section, floors: dict) -> None:
    """A map's scores with floors (deletion, insertion, in_region, pointing): the probe's
    mean as "this map" beside its floors in one plot, each probe image's in a plot of its
    own (`"<quantity>, per image"`), as the tab shows them."""
    scalars = {}
    for quantity, rows in section.scalars.items():
        beside = floors.get((section.run, section.layer, quantity))
        if not beside:
            scalars[quantity] = rows
            continue
        mean = {"this map": rows[""]} if "" in rows else {}
        scalars[quantity] = {**mean, **beside}
        per_image = {row: line for row, line in rows.items() if row != ""}
        if per_image:
            scalars[f"{quantity}, per image"] = per_image
    section.scalars = scalars
