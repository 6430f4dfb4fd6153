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

from keras_convviz.methods.cam import CAM_METHODS
from keras_convviz.methods.saliency import SALIENCY_METHODS

FEATURE_MAPS = "feature_maps"
FILTER_WEIGHTS = "filter_weights"
OCCLUSION = "occlusion_sensitivity"
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
