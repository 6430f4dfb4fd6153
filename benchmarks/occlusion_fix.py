"""Evidence for the XLA-compiled construction of occluded images (now in the package).

    python benchmarks/occlusion_fix.py [--reps 11]

`Core._occlusion` (keras_convviz/_core.py) used to build each chunk of occluded images with

    occluded = tf.where(mask[..., None], baseline, tf.gather(images, image_index))

TensorFlow's CPU select kernel is slow: several times a plain copy of the chunk, a large
part of the model's own time on a small CNN. The package now runs the same gather + mask +
select inside a nested `tf.function(jit_compile=True)` (`_core._occluded_chunk_xla`), which
XLA fuses into one pass over the chunk, and keeps the plain ops (`_core._occluded_chunk`)
as the fallback where XLA is unavailable. Part 1 times only the construction of the
occluded images (the same ops as `_core`, no model) for the plain select, the XLA one and
a scatter alternative, which all give the same images bit for bit:

- where (plain): the fallback, TensorFlow's select kernel;
- scatter: gather the images, then `tf.tensor_scatter_nd_update` writes the baseline into
  the patch pixels only (patch^2 pixels per image instead of a select over all H*W);
- xla: the package's way.

Part 2 times the public `kcv.occlusion_sensitivity` end to end against the floor, once as
the package is (XLA) and once on a second model instance whose occlusion pass is traced
with `_core.xla_available` patched to `False`, i.e. the plain-ops fallback (the code before
the fix). The package's files are not changed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import timing  # noqa: E402
import workload  # noqa: E402

import keras_convviz as kcv  # noqa: E402
from keras_convviz import _core  # noqa: E402

# ---- part 1: building the occluded images alone ------------------------------------------


def construction_fn(method: str, image_size: int, patch: int, stride: int, batch_size: int):
    """A compiled loop over all chunks that only builds the occluded images."""
    tops = workload.window_starts(image_size, patch, stride)
    rows_in = _core._window_masks(tops, patch, image_size)
    per_image = len(tops) ** 2
    tops_t = tf.constant(tops)

    @tf.function
    def build_all(images, baseline):
        total = tf.shape(images)[0] * per_image
        num_chunks = (total + batch_size - 1) // batch_size
        out = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        dy, dx = tf.meshgrid(tf.range(patch), tf.range(patch), indexing="ij")
        for chunk in tf.range(num_chunks):
            index = tf.range(chunk * batch_size, tf.minimum((chunk + 1) * batch_size, total))
            image_index = index // per_image
            row, col = (index % per_image) // len(tops), (index % per_image) % len(tops)
            if method == "where (plain)":
                occluded = _core._occluded_chunk(
                    images, image_index, row, col, rows_in, rows_in, baseline
                )
            elif method == "scatter":
                ys = tf.gather(tops_t, row)[:, None, None] + dy
                xs = tf.gather(tops_t, col)[:, None, None] + dx
                batch = tf.broadcast_to(tf.range(tf.size(row))[:, None, None], tf.shape(ys))
                occluded = tf.tensor_scatter_nd_update(
                    tf.gather(images, image_index),
                    tf.stack([batch, ys, xs], axis=-1),
                    tf.gather_nd(baseline, tf.stack([ys, xs], axis=-1)),
                )
            elif method == "xla":
                occluded = _core._occluded_chunk_xla(
                    images, image_index, row, col, rows_in, rows_in, baseline
                )
            else:  # "gather only": the copy any construction makes, no occlusion
                occluded = tf.gather(images, image_index)
            out = out.write(chunk, tf.reduce_sum(occluded, axis=[1, 2, 3]))
        return out.concat()

    return build_all


def part1(reps: int) -> None:
    images = tf.constant(workload.probe_images())
    baseline = tf.constant(np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32))
    print("Part 1: building the occluded images only (8 images 64x64, B=256), ms per call\n")
    print("| patch/stride | images | gather only | where (plain) | scatter | xla | same |")
    print("|---|---|---|---|---|---|---|")
    methods = ("gather only", "where (plain)", "scatter", "xla")
    for patch, stride in ((8, 8), (8, 4), (4, 4)):
        fns = {m: construction_fn(m, 64, patch, stride, 256) for m in methods}
        ref = fns["where (plain)"](images, baseline).numpy()
        same = all(np.array_equal(ref, fns[m](images, baseline).numpy()) for m in methods[1:])
        times = timing.interleave(
            {m: (lambda f=f: f(images, baseline).numpy()) for m, f in fns.items()}, reps, 2
        )
        med = {m: timing.median(v) * 1e3 for m, v in times.items()}
        n = 8 * workload.windows_per_image(64, patch, stride)
        print(
            f"| {patch}/{stride} | {n} | "
            + " | ".join(f"{med[m]:.1f}" for m in methods)
            + f" | {same} |",
            flush=True,
        )


# ---- part 2: the public call, with XLA (the package) and with the plain-ops fallback ------


def part2(reps: int) -> None:
    images = workload.probe_images()
    xla_model, plain_model = workload.build_cnn(), workload.build_cnn()
    predicted = workload.predicted_classes(xla_model, images)
    print("\nPart 2: kcv.occlusion_sensitivity end to end vs the floor, ms per call\n")
    print(
        "| patch/stride | images | xla (package) | plain (fallback) | floor | xla/floor "
        "| plain/floor | same maps |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for patch, stride in ((8, 8), (8, 4), (4, 4)):

        def call(model, p=patch, s=stride):
            return kcv.occlusion_sensitivity(model, images, patch_size=p, stride=s)

        ours = call(xla_model)
        available = _core.xla_available
        _core.xla_available = lambda: False  # only while the second model's pass is traced
        try:
            theirs = call(plain_model)
        finally:
            _core.xla_available = available
        per_image = workload.windows_per_image(64, patch, stride)
        occluded = tf.constant(workload.occluded_images(images, patch, stride))
        targets = tf.constant(np.repeat(predicted, per_image))
        floor = workload.make_forward_floor(xla_model, 256)
        times = timing.interleave(
            {
                "xla": lambda: call(xla_model),
                "plain": lambda: call(plain_model),
                "floor": lambda f=floor, o=occluded, t=targets: f(o, t).numpy(),
            },
            reps,
            1,
        )
        med = {k: timing.median(v) * 1e3 for k, v in times.items()}
        print(
            f"| {patch}/{stride} | {8 * per_image} | {med['xla']:.0f} | {med['plain']:.0f} "
            f"| {med['floor']:.0f} | {timing.paired_ratio(times['xla'], times['floor']):.2f} "
            f"| {timing.paired_ratio(times['plain'], times['floor']):.2f} "
            f"| {np.array_equal(ours, theirs)} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=11)
    args = parser.parse_args()
    part1(args.reps)
    part2(args.reps)
    print(f"\nload average {timing.load()} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
