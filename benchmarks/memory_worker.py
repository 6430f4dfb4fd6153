"""Peak memory of one occlusion call, in a fresh process (one per size, run by section 7).

Prints one JSON line: the peak resident set size (`ru_maxrss`) after TensorFlow, the model
and a Grad-CAM call are set up (`baseline_mb`), and after one occlusion call (`peak_mb`);
and the peak during the call alone (`call_peak_mb`: the kernel's high-water mark VmHWM,
reset just before the call through /proc/self/clear_refs, where the kernel allows it).

Linux carries `ru_maxrss` over from the parent into a child forked from it (at exec, the
high-water mark of the forked copy of the parent's memory is kept), so a worker started
straight from the benchmark (over 1 GB by then) would report the benchmark's size.
`sections/memory.py` therefore starts this script with `--relay`: a small Python process
without TensorFlow that starts the real worker, whose `ru_maxrss` is then its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patch", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--relay", action="store_true", help="start the worker from here")
    args = parser.parse_args()
    if args.relay:
        argv = [a for a in sys.argv[1:] if a != "--relay"]
        sys.exit(subprocess.run([sys.executable, __file__, *argv]).returncode)

    import workload

    import keras_convviz as kcv

    model = workload.build_cnn(image_size=args.size)
    x = workload.probe_images(args.images, args.size)
    kcv.grad_cam(model, x)  # TensorFlow's runtime and a first compiled pass are set up
    baseline = maxrss_mb()
    rss_before = status_mb("VmRSS")
    reset = reset_high_water_mark()
    start = time.perf_counter()
    maps = kcv.occlusion_sensitivity(model, x, patch_size=args.patch, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    peak = maxrss_mb()
    call_peak = status_mb("VmHWM") if reset else None
    print(
        json.dumps(
            {
                "baseline_mb": round(baseline, 1),
                "peak_mb": round(peak, 1),
                "rss_before_mb": None if rss_before is None else round(rss_before, 1),
                "call_peak_mb": None if call_peak is None else round(call_peak, 1),
                "seconds": round(seconds, 3),
                "finite": bool(maps.size and (maps == maps).all()),
            }
        )
    )


if __name__ == "__main__":
    main()
