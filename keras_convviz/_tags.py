"""Every TensorBoard run and tag name, built here and nowhere else.

A callback writes into the run directory `log_dir/<run>`; its tags start with the run's
name, then what the picture shows, so each thing a user wants to scrub through with the
step slider is one time series:

    <run>/<layer>/image_<i>           one probe image (feature maps, CAM maps)
    <run>/image_<i>                   one probe image (occlusion, saliency)
    <run>/<layer>                     one picture per layer (filter weights)
    <run>/[<layer>/]all_images        every probe image in one picture (`grid=True`)
    <picture tag>/<quantity>          a scalar beside a picture (e.g. .../image_3/max)
    <run>/[<layer>/]non_finite        NaN/Inf values in what the picture was drawn from
    <map tag>/deletion, .../insertion the probe's mean faithfulness scores of a map; the
                                      floors (random and edge maps) write the same tags in
                                      their own runs, `floor_random` and `floor_edge`, so
                                      TensorBoard draws map and floors in one chart

Step = the epoch index (0-based; Keras prints "Epoch 1/N" for step 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from keras_convviz.methods.cam import CAM_METHODS
from keras_convviz.methods.saliency import SALIENCY_METHODS

FEATURE_MAPS = "feature_maps"
FILTER_WEIGHTS = "filter_weights"
OCCLUSION = "occlusion_sensitivity"
ACTIVATION_MAXIMIZATION = "activation_maximization"  # one picture per layer, as filter_weights
NON_FINITE = "non_finite"
ALL_IMAGES = "all_images"  # every probe image in one picture (`grid=True`)
HEALTH = "health"  # the model's numbers on the probe, and the table of every layer's
ALERTS = "alerts"  # what the alerts write (`keras_convviz.alerts`)
DELETION = "deletion"
INSERTION = "insertion"


def floor_run(name: str) -> str:
    """The run a faithfulness floor (`"random"`, `"edge"`) writes its scores to."""
    return f"floor_{name}"


def cam_run(method: str) -> str:
    """The run of a CAM method (`"gradcam"` writes `grad_cam`)."""
    return CAM_METHODS[method].run


def saliency_run(method: str) -> str:
    return SALIENCY_METHODS[method].run


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


def layer_runs() -> tuple[str, ...]:
    """Runs whose pictures are per (layer, probe image): feature maps and every CAM method."""
    return (FEATURE_MAPS, *(m.run for m in CAM_METHODS.values()))


def probe_runs() -> tuple[str, ...]:
    """Runs whose pictures are per probe image, with no layer: occlusion and saliency."""
    return (OCCLUSION, *(m.run for m in SALIENCY_METHODS.values()))


# Runs with one picture per layer, of no probe image: the kernels, and what the filters
# respond to most.
LAYER_PICTURE_RUNS = (FILTER_WEIGHTS, ACTIVATION_MAXIMIZATION)


def all_runs() -> tuple[str, ...]:
    """Every run keras_convviz writes pictures into."""
    return (*layer_runs(), *LAYER_PICTURE_RUNS, *probe_runs())


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
    if run in LAYER_PICTURE_RUNS:
        return PictureTag(run, "/".join(rest), None)
    probe = _probe(rest[-1])
    if probe is False:
        return None
    if run in layer_runs() and len(rest) >= 2:
        return PictureTag(run, "/".join(rest[:-1]), probe)
    if run in probe_runs() and len(rest) == 1:
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
    if picture is not None and picture.run not in LAYER_PICTURE_RUNS:
        return picture, quantity
    run, _, layer = owner.partition("/")
    if run in (*layer_runs(), *LAYER_PICTURE_RUNS) and layer:
        return PictureTag(run, layer, None), quantity
    if run in probe_runs() and not layer:
        return PictureTag(run, None, None), quantity
    return None
