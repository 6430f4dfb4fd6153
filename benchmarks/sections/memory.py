"""Section 7 of BENCHMARKS.md (`--only memory`): occlusion's peak memory.

Each size in a fresh process (`memory_worker.py`).
"""

from __future__ import annotations

import json
import subprocess
import sys

from .common import HERE, table, target


def run(cfg, ctx):
    rows = []
    batch_size = 256
    for patch in cfg["memory_patches"]:
        windows = (64 // patch) ** 2
        command = [sys.executable, str(HERE / "memory_worker.py"), "--relay"]
        command += ["--patch", str(patch), "--batch-size", str(batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            rows.append({"patch": patch, "windows": windows, "error": done.stderr[-400:]})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        occluded = 8 * windows
        row = {
            "patch": patch,
            "windows": windows,
            "occluded_images": occluded,
            "chunks": -(-occluded // batch_size),
            "maxrss_before_mb": result["baseline_mb"],
            "maxrss_after_mb": result["peak_mb"],
            "maxrss_growth_mb": round(result["peak_mb"] - result["baseline_mb"], 1),
            "rss_before_mb": result.get("rss_before_mb"),
            "call_peak_mb": result.get("call_peak_mb"),
            "prebuilt_mb": round(occluded * 64 * 64 * 3 * 4 / 2**20, 1),
            "seconds": result["seconds"],
        }
        if row["call_peak_mb"] is not None and row["rss_before_mb"] is not None:
            row["call_extra_mb"] = round(row["call_peak_mb"] - row["rss_before_mb"], 1)
        rows.append(row)
    good = [r for r in rows if "maxrss_after_mb" in r]
    growth = None
    if len(good) >= 2:
        growth = round(good[-1]["maxrss_after_mb"] - good[0]["maxrss_after_mb"], 1)
    text = table(
        rows,
        [
            ("patch", "patch (= stride)"),
            ("windows", "windows/image"),
            ("occluded_images", "occluded images"),
            ("chunks", "chunks of 256"),
            ("maxrss_before_mb", "ru_maxrss before MB"),
            ("maxrss_after_mb", "ru_maxrss after MB"),
            ("call_extra_mb", "call peak above RSS before MB"),
            ("prebuilt_mb", "all occluded images MB"),
            ("seconds", "call s (incl. tracing)"),
        ],
    )
    first, last = (good[0], good[-1]) if good else ({}, {})
    return {
        "rows": rows,
        "table": text,
        "notes": [
            "Each size in a fresh process (memory_worker.py, started through a small relay "
            "process so that ru_maxrss is the worker's own): 8 images 64x64, batch_size=256. "
            "ru_maxrss 'before' = after TensorFlow, the model and one Grad-CAM call; 'after' "
            "= after one occlusion call, its tracing included. 'call peak above RSS before' "
            "= VmHWM reset just before the call (/proc/self/clear_refs) minus VmRSS before "
            "it. The last-but-one column is what pre-building every occluded image would "
            "hold, for scale."
        ],
        "targets": [
            target(
                f"occlusion peak RSS growth, {last.get('windows', '?')} vs "
                f"{first.get('windows', '?')} windows/image (MB)",
                growth,
                "flat (report)",
                None,
            )
        ],
    }
