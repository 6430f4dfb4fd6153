"""Every kind of run keras_convviz writes: its name, label, layout, quantities and ranks.

The single source the callbacks, `_tags`, the exports, the alerts and the ConvViz tab read
(the tab's JavaScript gets it from the `/kinds` route): a new kind is one entry in `KINDS`,
its callback and its renderer. The method registries (`methods.cam.CAM_METHODS`,
`methods.saliency.SALIENCY_METHODS`) take their run names from here. Imports no TensorFlow,
no Keras and no method module, so TensorBoard's plugin and the exports can read it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

# How a kind's pictures are laid out in tags (`_tags.tag`), hence in the tab and the exports.
LAYER_AND_PROBE = "layer_and_probe"  # <run>/<layer>/image_<i>: per layer and probe image
PROBE = "probe"  # <run>/image_<i>: per probe image, no layer
LAYER = "layer"  # <run>/<layer>: one picture per layer, of no probe image
NO_PICTURES = "none"  # scalars or text only (floors, health, alerts)
LAYOUTS = (LAYER_AND_PROBE, PROBE, LAYER, NO_PICTURES)

# The input layouts a kind can draw (`core.geometry.Geometry.name`): sequences, images,
# volumes, and layers of tokens on a patch grid (a vision transformer's blocks).
RANK_1D = "1d"
RANK_2D = "2d"
RANK_3D = "3d"
RANK_TOKENS = "tokens"
EVERY_RANK = (RANK_1D, RANK_2D, RANK_3D)

# Families: the method registry or callback a kind belongs to.
FAMILIES = (
    "feature_maps",
    "filters",
    "cam",
    "occlusion",
    "saliency",
    "actmax",
    "floor",
    "health",
    "alerts",
)

# Scalars beside pictures, shared by several kinds.
NON_FINITE = "non_finite"
DELETION = "deletion"
INSERTION = "insertion"
# Where the probe's objects are known (`regions=`): the share of a map's positive mass on
# the object, and whether its maximum is there (`methods.localization`).
IN_REGION = "in_region"
POINTING = "pointing"
# A map per probe image, with faithfulness and localization.
_MAP = ("max", NON_FINITE, DELETION, INSERTION, IN_REGION, POINTING)


@dataclass(frozen=True)
class Kind:
    """One kind of run.

    Attributes:
        run: the TensorBoard run its callback writes to (`log_dir/<run>`), also the first
            part of each of its tags.
        label: what the tab and the exports call it.
        family: one of `FAMILIES`.
        layout: one of `LAYOUTS`.
        quantities: the scalars written beside its pictures, the last part of their tags
            (`fnmatch` patterns, e.g. `filter_*`).
        ranks: the input layouts it can draw (`RANK_1D`, `RANK_2D`, `RANK_3D`: sequences,
            images, volumes) and, with `RANK_TOKENS`, whether it draws layers of tokens.
        method: its key in its family's method registry (`"gradcam"`), or `None`.
        costly: whether it costs many extra passes of the model per snapshot (perturbed
            or noisy copies of each probe image, optimisation steps), so `ConvViz`'s
            `budget` may run it less often than the cheap kinds.
    """

    run: str
    label: str
    family: str
    layout: str
    quantities: tuple[str, ...] = ()
    ranks: tuple[str, ...] = (RANK_2D,)
    method: str | None = None
    costly: bool = False

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={self.layout!r}")
        if self.family not in FAMILIES:
            raise ValueError(
                f"`family` must be one of {FAMILIES}. Received: family={self.family!r}"
            )
        if not self.run or "/" in self.run or "\\" in self.run:
            raise ValueError(
                f"`run` must be a non-empty name without '/'. Received: run={self.run!r}"
            )

    @property
    def pictures(self) -> bool:
        return self.layout != NO_PICTURES

    def writes(self, quantity: str) -> bool:
        """Whether `quantity` is among the scalars this kind declares."""
        return any(fnmatch.fnmatchcase(quantity, q) for q in self.quantities)

    def as_json(self) -> dict:
        return {
            "run": self.run,
            "label": self.label,
            "family": self.family,
            "layout": self.layout,
            "quantities": list(self.quantities),
            "ranks": list(self.ranks),
            "method": self.method,
            "costly": self.costly,
        }


FEATURE_MAPS = Kind(
    "feature_maps",
    "Feature maps",
    "feature_maps",
    LAYER_AND_PROBE,
    (
        "dead_fraction",
        "near_zero_fraction",
        "mean",
        "std",
        "max_activation",
        "saturated_fraction",
        NON_FINITE,
    ),
    ranks=(*EVERY_RANK, RANK_TOKENS),
)


def _cam(run: str, label: str, method: str, costly: bool = False) -> Kind:
    return Kind(
        run,
        label,
        "cam",
        LAYER_AND_PROBE,
        ("change", *_MAP),
        ranks=(*EVERY_RANK, RANK_TOKENS),
        method=method,
        costly=costly,
    )


GRAD_CAM = _cam("grad_cam", "Grad-CAM", "gradcam")
GRAD_CAM_PLUS_PLUS = _cam("grad_cam_plus_plus", "Grad-CAM++", "gradcam++")
LAYER_CAM = _cam("layer_cam", "LayerCAM", "layercam")
HIRES_CAM = _cam("hires_cam", "HiResCAM", "hirescam")
EIGEN_CAM = _cam("eigen_cam", "Eigen-CAM", "eigencam")
SCORE_CAM = _cam("score_cam", "Score-CAM", "scorecam", costly=True)  # a pass per channel
FILTER_WEIGHTS = Kind(
    "filter_weights",
    "Filter weights",
    "filters",
    LAYER,
    ("max_abs", "norm", "relative_update", NON_FINITE),
    ranks=EVERY_RANK,
)
# What each filter (or class, on the head) responds to most: its score per filter.
ACTIVATION_MAXIMIZATION = Kind(
    "activation_maximization",
    "Activation maximisation",
    "actmax",
    LAYER,
    ("filter_*", "class_*"),
    costly=True,
)
# Windows of any rank: along a sequence's steps, an image's rows and columns, a volume's
# depth, rows and columns (`core.geometry.Geometry.name` of the probe).
OCCLUSION = Kind(
    "occlusion_sensitivity",
    "Occlusion",
    "occlusion",
    PROBE,
    _MAP,
    ranks=EVERY_RANK,
    costly=True,
)


def _saliency(run: str, label: str, costly: bool = False) -> Kind:
    return Kind(run, label, "saliency", PROBE, _MAP, ranks=EVERY_RANK, method=run, costly=costly)


GRADIENT = _saliency("gradient", "Gradient")
GRADIENT_X_INPUT = _saliency("gradient_x_input", "Gradient × input")
SMOOTHGRAD = _saliency("smoothgrad", "SmoothGrad", costly=True)  # a pass per noisy copy
INTEGRATED_GRADIENTS = _saliency("integrated_gradients", "Integrated Gradients", costly=True)

# The faithfulness floors: a map's deletion and insertion scores under the map's own tags,
# in these runs, so TensorBoard draws map and floors in one chart.
# Where they are written, deletion and insertion curves are scored (2 * steps - 1 images per
# probe image and map): the callback's faithfulness is costly.
FLOOR_RANDOM = Kind(
    "floor_random",
    "random map",
    "floor",
    NO_PICTURES,
    (DELETION, INSERTION),
    method="random",
    costly=True,
)
FLOOR_EDGE = Kind(
    "floor_edge",
    "edge map",
    "floor",
    NO_PICTURES,
    (DELETION, INSERTION),
    method="edge",
    costly=True,
)
# The localization floor: what a uniform map scores under a map's `in_region` and
# `pointing` tags (the region's area share), in its own run, as the faithfulness floors.
FLOOR_UNIFORM = Kind(
    "floor_uniform",
    "uniform map",
    "floor",
    NO_PICTURES,
    (IN_REGION, POINTING),
    ranks=EVERY_RANK,
    method="uniform",
)
HEALTH = Kind(
    "health",
    "Model health",
    "health",
    NO_PICTURES,
    (
        "confidence",
        "majority_fraction",
        "probability",
        "accuracy",
        "label_majority_fraction",
        "pixel_accuracy",
        "mean_iou",
        "loss",
        "gradient_norm",
        "gradient_ratio",
        "no_gradient",
        # Of the trainable layers no picture shows (dense layers), as feature maps and
        # filter weights give them for convs.
        "dead_fraction",
        "saturated_fraction",
        "max_activation",
        "relative_update",
        NON_FINITE,
    ),
)
ALERTS = Kind("alerts", "Alerts", "alerts", NO_PICTURES, ranks=EVERY_RANK)

# In the order the tab lists them.
KINDS: dict[str, Kind] = {
    kind.run: kind
    for kind in (
        FEATURE_MAPS,
        GRAD_CAM,
        GRAD_CAM_PLUS_PLUS,
        LAYER_CAM,
        HIRES_CAM,
        EIGEN_CAM,
        SCORE_CAM,
        FILTER_WEIGHTS,
        ACTIVATION_MAXIMIZATION,
        OCCLUSION,
        GRADIENT,
        GRADIENT_X_INPUT,
        SMOOTHGRAD,
        INTEGRATED_GRADIENTS,
        FLOOR_RANDOM,
        FLOOR_EDGE,
        FLOOR_UNIFORM,
        HEALTH,
        ALERTS,
    )
}


def serves(run: str, rank: str) -> bool:
    """Whether the kind of a run draws inputs of a rank (`Geometry.name`); runs without
    pictures serve every rank."""
    kind = get(run)
    return kind is None or kind.layout == NO_PICTURES or rank in kind.ranks


def get(run: str) -> Kind | None:
    """The kind whose run is `run`, or `None`."""
    return KINDS.get(run)


def picture_kinds() -> tuple[Kind, ...]:
    """Every kind that writes pictures, in the tab's order."""
    return tuple(k for k in KINDS.values() if k.pictures)


def with_layout(layout: str) -> tuple[Kind, ...]:
    return tuple(k for k in KINDS.values() if k.layout == layout)


def of_family(family: str) -> tuple[Kind, ...]:
    return tuple(k for k in KINDS.values() if k.family == family)


def for_method(family: str, method: str) -> Kind:
    """The kind of `method` in `family` (`for_method("cam", "gradcam")` is `GRAD_CAM`)."""
    for kind in of_family(family):
        if kind.method == method:
            return kind
    methods = [k.method for k in of_family(family)]
    raise ValueError(
        f"`method` must be one of {methods} for the {family!r} family. Received: method={method!r}"
    )
