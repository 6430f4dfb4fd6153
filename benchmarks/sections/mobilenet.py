"""Section 9a of BENCHMARKS.md (`--only mobilenet`): MobileNetV2 at 128x128.

Occlusion (section 1's measure) and Grad-CAM (section 2's) on a larger model.
"""

from __future__ import annotations

import keras
import workload

from keras_convviz.core.shared import core_for

from .common import check, table, target
from .grad_cam import GRAD_CAM_COLUMNS, grad_cam_vs_floor
from .occlusion import OCCLUSION_VS_FLOOR_COLUMNS, occlusion_vs_floor


def run(cfg, ctx):
    keras.utils.set_random_seed(0)
    model = workload.build_mobilenet(128)
    images = workload.probe_images(8, 128)
    reps = cfg["mobilenet_reps"]
    occ = occlusion_vs_floor(model, images, 16, 16, 256, reps)
    try:
        layer = core_for(model).graph.default_cam_layer().path
    except Exception:  # noqa: BLE001 - internals moved: MobileNetV2's last 4-D layer
        layer = "out_relu"
    cam = grad_cam_vs_floor(model, images, layer, reps)
    cam["model"] = "MobileNetV2 128px"
    occ["model"] = "MobileNetV2 128px"
    occ["met"] = check(occ["ratio"] <= 1.15)
    text = (
        table(
            [occ],
            [
                ("model", "model"),
                ("patch", "patch"),
                *OCCLUSION_VS_FLOOR_COLUMNS,
            ],
        )
        + "\n\n"
        + table([cam], GRAD_CAM_COLUMNS)
    )
    return {
        "rows": [occ, cam],
        "table": text,
        "notes": [
            "keras.applications.MobileNetV2(weights=None, 128x128, 10 classes, logits), "
            "seeded; 8 images; occlusion with the default patch (16 = 1/8 of the side), "
            f"B=256; Grad-CAM of its default layer ({layer})."
        ],
        "targets": [
            target(
                "MobileNetV2 occlusion vs floor", occ["ratio"], "<= 1.15x", occ["ratio"] <= 1.15
            ),
            target("MobileNetV2 Grad-CAM vs fwd+bwd(input)", cam["ratio_input"], "report", None),
        ],
    }
