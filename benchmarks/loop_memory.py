"""Evidence: an occlusion loop with 10 chunks in flight holds up to 10 chunks in memory.

    python benchmarks/loop_memory.py

`Core._occlusion` (keras_convviz/_core.py) scores the chunks in `for chunk in
tf.range(num_chunks)`, which AutoGraph turns into a `tf.while_loop`. With TensorFlow's
default `parallel_iterations=10` up to 10 chunks (their images and activations) can be
alive at once, so the peak memory of an occlusion call grows with the number of chunks
until 10, instead of being bounded by one chunk of `batch_size` images. The package now
sets `parallel_iterations=2` (`_core.CHUNKS_IN_FLIGHT`): 1 holds the least memory, but in
the real pass it cannot build the next chunk while the current one is scored. This script
runs the same loop shape (gather a chunk of 256 images, run the benchmark CNN, reduce)
with `parallel_iterations` 10 (the default, the package before the fix), 2 (the package
now) and 1, each in a fresh process, and reports the peak resident memory of the call
(VmHWM, reset just before it) and its time. `memory_worker.py` measures the package's own
occlusion call the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(parallel_iterations: int, chunks: int, batch_size: int = 256) -> dict:
    sys.path.insert(0, str(HERE))
    import tensorflow as tf
    import timing
    import workload

    model = workload.build_cnn()
    images = tf.constant(workload.probe_images(8))

    @tf.function
    def loop(images):
        scores = tf.TensorArray(tf.float32, size=chunks)
        for chunk in tf.range(chunks):
            tf.autograph.experimental.set_loop_options(parallel_iterations=parallel_iterations)
            index = tf.range(chunk * batch_size, (chunk + 1) * batch_size) % tf.shape(images)[0]
            logits = model(tf.gather(images, index), training=False)
            scores = scores.write(chunk, tf.reduce_sum(logits))
        return scores.stack()

    loop.get_concrete_function(images)
    model(images)
    before = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark
    start = time.perf_counter()
    loop(images).numpy()
    first = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    seconds = timing.median(timing.timed(lambda: loop(images).numpy(), reps=5))
    return {
        "call_peak_above_rss_mb": round(peak - before, 1),
        "first_call_s": round(first, 3),
        "median_call_s": round(seconds, 3),
    }


def main() -> None:
    if len(sys.argv) == 3:
        print(json.dumps(worker(int(sys.argv[1]), int(sys.argv[2]))))
        return
    print("| parallel_iterations | chunks of 256 | call peak above RSS MB | median call s |")
    print("|---|---|---|---|")
    for parallel_iterations in (10, 2, 1):
        for chunks in (2, 8, 32):
            done = subprocess.run(
                [sys.executable, __file__, str(parallel_iterations), str(chunks)],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                print(f"| {parallel_iterations} | {chunks} | failed: {done.stderr[-200:]} | |")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {parallel_iterations} | {chunks} | {result['call_peak_above_rss_mb']} "
                f"| {result['median_call_s']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
