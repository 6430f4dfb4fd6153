"""Section 9b of BENCHMARKS.md (`--only scaling`): occlusion and Grad-CAM cost per work.

More probe images and larger images on the small CNN.
"""

from __future__ import annotations

import timing
import workload

import keras_convviz as kcv

from .common import ms, table, target
from .occlusion import occlusion_vs_floor


def run(cfg, ctx):
    reps = cfg["scaling_reps"]
    configs = [(n, 64) for n in cfg["scaling_probe"]]
    configs += [(8, s) for s in cfg["scaling_size"] if s != 64]
    configs.sort(key=lambda c: c[0] * c[1] * c[1])
    rows = []
    for n, size in configs:
        ctx["log"](f"  {n} images at {size}px")
        model = workload.build_cnn(image_size=size)
        images = workload.probe_images(n, size)
        patch = max(1, size // 8)
        occ = occlusion_vs_floor(model, images, patch, patch, 256, reps, breakdown=False)
        cam_times = timing.timed(lambda m=model, x=images: kcv.grad_cam(m, x), reps, warmup=1)
        work = occ["occluded_images"] * size * size / 1e6  # megapixels through the model
        rows.append(
            {
                "images": n,
                "size": size,
                "occluded_images": occ["occluded_images"],
                "work_mpx": round(work, 2),
                "ours_ms": occ["ours_ms"],
                "floor_ms": occ["floor_ms"],
                "ratio": occ["ratio"],
                "ms_per_mpx": round(occ["ours_ms"] / work, 1),
                "others_cores": occ["others_cores"],
                "tries": occ["tries"],
                "grad_cam_ms": ms(timing.median(cam_times)),
                "grad_cam_ms_per_mpx": round(
                    timing.median(cam_times) * 1e3 / (n * size * size / 1e6), 1
                ),
            }
        )
    reference = next((r for r in rows if r["images"] == 8 and r["size"] == 64), rows[0])
    for row in rows:
        row["cost_per_work_vs_8x64"] = round(row["ms_per_mpx"] / reference["ms_per_mpx"], 2)
    text = table(
        rows,
        [
            ("images", "images"),
            ("size", "px"),
            ("occluded_images", "occluded images"),
            ("work_mpx", "work Mpx"),
            ("ours_ms", "occlusion ms"),
            ("floor_ms", "floor ms"),
            ("ratio", "ours/floor"),
            ("ms_per_mpx", "occlusion ms/Mpx"),
            ("cost_per_work_vs_8x64", "per work vs 8x64"),
            ("grad_cam_ms", "Grad-CAM ms"),
            ("grad_cam_ms_per_mpx", "Grad-CAM ms/Mpx"),
        ],
    )
    return {
        "rows": rows,
        "table": text,
        "notes": [
            "Small CNN; occlusion with the default patch (1/8 of the side, 64 windows per "
            "image), B=256; work = occluded images x pixels (for Grad-CAM: probe images x "
            "pixels). Linear scaling = constant ms/Mpx; 'per work vs 8x64' compares the "
            "occlusion cost per Mpx with the 8-image 64px case."
        ],
        "targets": [
            target(
                "occlusion cost per work, largest vs 8x64",
                rows[-1]["cost_per_work_vs_8x64"],
                "~1 (report)",
                None,
            )
        ],
    }
