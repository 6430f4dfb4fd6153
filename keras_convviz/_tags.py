"""Every TensorBoard run and tag name, built here and nowhere else.

A callback writes into the run directory `log_dir/<run>`; its tags start with the run's
name, then what the picture shows, so each thing a user wants to scrub through with the
step slider is one time series:

    <run>/<layer>/image_<i>           one probe image (`kinds.LAYER_AND_PROBE`: feature
                                      maps, CAM maps)
    <run>/image_<i>                   one probe image (`kinds.PROBE`: occlusion, saliency)
    <run>/<layer>                     one picture per layer (`kinds.LAYER`: filter weights)
    <run>/[<layer>/]all_images        every probe image in one picture (`grid=True`)
    <picture tag>/<quantity>          a scalar beside a picture (e.g. .../image_3/max)
    <run>/[<layer>/]non_finite        NaN/Inf values in what the picture was drawn from
    <map tag>/deletion, .../insertion the probe's mean faithfulness scores of a map; the
                                      floors (random and edge maps) write the same tags in
                                      their own runs, `floor_random` and `floor_edge`, so
                                      TensorBoard draws map and floors in one chart
    <map tag>/in_region, .../pointing with `regions=`: the probe's mean share of the map's
                                      positive mass on the object and of maps peaking
                                      there; per image `<picture tag>/in_region`; the
                                      floor (area share) under the same tags in the run
                                      `floor_uniform`

Which layout a run has is read from its kind in `keras_convviz.kinds`, so a kind added there
is built and parsed here with no other change.

Step = the epoch index (0-based; Keras prints "Epoch 1/N" for step 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_convviz import kinds

# The runs of the kinds every callback writes to (`kinds` has them all, with their layouts).
FEATURE_MAPS = kinds.FEATURE_MAPS.run
FILTER_WEIGHTS = kinds.FILTER_WEIGHTS.run
OCCLUSION = kinds.OCCLUSION.run
ACTIVATION_MAXIMIZATION = kinds.ACTIVATION_MAXIMIZATION.run  # one picture per layer
HEALTH = kinds.HEALTH.run  # the model's numbers on the probe, and the table of every layer's
ALERTS = kinds.ALERTS.run  # what the alerts write (`keras_convviz.alerts`)
NON_FINITE = kinds.NON_FINITE
ALL_IMAGES = "all_images"  # every probe image in one picture (`grid=True`)
DELETION = kinds.DELETION
INSERTION = kinds.INSERTION
IN_REGION = kinds.IN_REGION
POINTING = kinds.POINTING
FLOOR_UNIFORM = kinds.FLOOR_UNIFORM.run
# The TensorBoard plugin name of the alerts as structured data (JSON string tensors), which
# the ConvViz tab reads; not the tab's own name, so alerts alone do not turn the tab on.
ALERTS_PLUGIN = "convviz_alerts"
# The probe's regions (`regions=`) as `(batch, height, width)` uint8 masks, written once per
# map tag under `<map tag>/region` in the `floor_uniform` run, with the boxes of the map's
# panel parts as JSON in the plugin's content: the tab draws their outlines over the panels.
REGIONS_PLUGIN = "convviz_regions"
REGION = "region"
# The rules that watched a training (`alerts.Monitor`), one JSON list written at its first
# check under `health/rules`: the tab and the report tell "alerts were off" from "no alert
# fired" by it.
RULES_PLUGIN = "convviz_rules"
# The subjects of the rules that read no snapshot: the training's set-up at train begin and
# `fit`'s own logs (`keras_convviz.checks`). Their numbers are read, not written.
SETUP = "setup"
FIT = "fit"


def floor_run(name: str) -> str:
    """The run a faithfulness floor (`"random"`, `"edge"`) writes its scores to."""
    return kinds.for_method("floor", name).run


def cam_run(method: str) -> str:
    """The run of a CAM method (`"gradcam"` writes `grad_cam`)."""
    return kinds.for_method("cam", method).run


def saliency_run(method: str) -> str:
    return kinds.for_method("saliency", method).run


def tag(run: str, *parts: str | int) -> str:
    """`run/part/part...`; an int part is a probe image index, written `image_<i>`."""
    return "/".join([run, *(f"image_{p}" if isinstance(p, int) else p for p in parts)])


# Reading names back (the TensorBoard plugin, exports): the inverse of `tag`.

_PROBE_PREFIX = "image_"


@dataclass(frozen=True)
class PictureTag:
    """What a picture tag names: `run` (the kind), `layer`, and which probe image.

    `layer` is `None` for runs with one picture per probe image and no layer (occlusion,
    saliency); `probe` is `None` for one picture of every probe image (`all_images`) and for
    filter weights (one picture per layer).
    """

    run: str
    layer: str | None
    probe: int | None


def _runs(layout: str) -> tuple[str, ...]:
    return tuple(k.run for k in kinds.with_layout(layout))


def layer_runs() -> tuple[str, ...]:
    """Runs whose pictures are per (layer, probe image): feature maps and every CAM method."""
    return _runs(kinds.LAYER_AND_PROBE)


def probe_runs() -> tuple[str, ...]:
    """Runs whose pictures are per probe image, with no layer: occlusion and saliency."""
    return _runs(kinds.PROBE)


def layer_picture_runs() -> tuple[str, ...]:
    """Runs with one picture per layer, of no probe image: the kernels, and what the filters
    respond to most."""
    return _runs(kinds.LAYER)


def all_runs() -> tuple[str, ...]:
    """Every run keras_convviz writes pictures into, in the registry's order."""
    return tuple(k.run for k in kinds.picture_kinds())


def _layout(run: str) -> str | None:
    kind = kinds.get(run)
    return None if kind is None else kind.layout


def _probe(part: str) -> int | None | bool:
    """`image_<i>` -> i, `all_images` -> None, anything else -> False."""
    if part == ALL_IMAGES:
        return None
    digits = part[len(_PROBE_PREFIX) :]
    if part.startswith(_PROBE_PREFIX) and digits.isdigit() and str(int(digits)) == digits:
        return int(digits)
    return False


def parse_picture_tag(name: str) -> PictureTag | None:
    """The `PictureTag` of a picture tag `tag(...)` built, or `None` for any other name.

    Layer names may hold "/" (layers of a nested model), so the probe is read from the end.
    """
    run, *rest = name.split("/")
    if not rest or not all(rest):
        return None
    layout = _layout(run)
    if layout == kinds.LAYER:
        return PictureTag(run, "/".join(rest), None)
    probe = _probe(rest[-1])
    if probe is False:
        return None
    if layout == kinds.LAYER_AND_PROBE and len(rest) >= 2:
        return PictureTag(run, "/".join(rest[:-1]), probe)
    if layout == kinds.PROBE and len(rest) == 1:
        return PictureTag(run, None, probe)
    return None


def parse_scalar_tag(name: str) -> tuple[PictureTag, str] | None:
    """`(picture, quantity)` of a scalar beside a picture (`.../image_3/max`), else `None`.

    A scalar of a whole layer or run (`feature_maps/conv1/dead_fraction`,
    `occlusion_sensitivity/non_finite`) gets `probe=None`.
    """
    owner, _, quantity = name.rpartition("/")
    if not owner or not quantity:
        return None
    picture = parse_picture_tag(owner)
    if picture is not None and _layout(picture.run) != kinds.LAYER:
        return picture, quantity
    run, _, layer = owner.partition("/")
    layout = _layout(run)
    if layout in (kinds.LAYER_AND_PROBE, kinds.LAYER) and layer:
        return PictureTag(run, layer, None), quantity
    if layout == kinds.PROBE and not layer:
        return PictureTag(run, None, None), quantity
    return None
