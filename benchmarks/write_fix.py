"""Evidence for how the callbacks write their images (the fix is now in the package).

    python benchmarks/write_fix.py [--reps 7]

`SnapshotCallback._write` (keras_convviz/_base.py) used to call `tf.summary.image(tag,
data, max_outputs=1)` once per image, eagerly: each call PNG-encoded one image on one core,
with the summary op's own overhead. It now encodes every PNG of a snapshot in one compiled
function (`_base.encode_images`: `tf.io.encode_png` at zlib level `_base.PNG_COMPRESSION`,
the graph runs them on all cores) and writes each with `tf.summary.write(tag, [width,
height, png], metadata=<image plugin metadata>)`, which is what `tf.summary.image` writes;
scalars likewise go through `tf.summary.write` with the scalar plugin's metadata made once.

This script renders one snapshot of `ConvViz(occlusion_freq=0)` on the benchmark workload
(35 images, 24 scalars) and times writing it:

- images, before: the `tf.summary.image` loop;
- images, package: `_write` with the snapshot's images (compiled encoder, level 1);
- images, default zlib level: the same compiled encoding at `encode_png`'s default level
  (6), the alternative to level 1;
- scalars, before (`tf.summary.scalar` loop) and package (`_write` with the scalars).

It also prints the PNG bytes per snapshot at both levels and checks that every PNG the
package writes decodes to the rendered pixels. It uses the callbacks' private `_snapshot`
and `_write`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import timing  # noqa: E402
import workload  # noqa: E402

import keras_convviz as kcv  # noqa: E402
from keras_convviz import _base  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    model, images = workload.build_cnn(), workload.probe_images()
    with tempfile.TemporaryDirectory() as log_dir:
        callback = kcv.ConvViz(log_dir, probe=images, occlusion_freq=0)
        callback.set_model(model)
        callback.on_train_begin()
        members = [cb for cb in callback.callbacks if cb.freq > 0]
        callback.on_epoch_end(0)
        snapshot = [(cb, cb._snapshot(0)) for cb in members]
        pictures = [
            (cb, [s for s in items if isinstance(s, _base.Image)]) for cb, items in snapshot
        ]
        scalars = [
            (cb, [s for s in items if isinstance(s, _base.Scalar)]) for cb, items in snapshot
        ]
        writer = tf.summary.create_file_writer(os.path.join(log_dir, "before"))
        datas = tuple(p.data for _, items in pictures for p in items)
        metadata = _base._IMAGE_METADATA
        level = _base.PNG_COMPRESSION

        @tf.function
        def encode_default_level(batch):
            return [tf.io.encode_png(d[0]) for d in batch]

        def images_before():
            with writer.as_default(step=1):
                for _, items in pictures:
                    for p in items:
                        tf.summary.image(p.tag, p.data, max_outputs=1)
            writer.flush()

        def images_package():
            for cb, items in pictures:
                cb._write(1, items)

        flat = [p for _, items in pictures for p in items]

        def images_default_level():
            pngs = encode_default_level(datas)
            with writer.as_default(step=1):
                for p, png in zip(flat, pngs):
                    size = [str(int(p.data.shape[2])), str(int(p.data.shape[1]))]
                    tf.summary.write(p.tag, tf.stack([*size, png]), metadata=metadata)
            writer.flush()

        def scalars_before():
            with writer.as_default(step=1):
                for _, items in scalars:
                    for s in items:
                        tf.summary.scalar(s.tag, s.value)
            writer.flush()

        def scalars_package():
            for cb, items in scalars:
                cb._write(1, items)

        n_images, n_scalars = len(datas), sum(len(items) for _, items in scalars)
        times = timing.interleave(
            {
                f"{n_images} images: tf.summary.image loop (before)": images_before,
                f"{n_images} images: package _write (level {level})": images_package,
                f"{n_images} images: compiled encoder, default level": images_default_level,
                f"{n_scalars} scalars: tf.summary.scalar loop (before)": scalars_before,
                f"{n_scalars} scalars: package _write": scalars_package,
            },
            args.reps,
            1,
        )
        package = [png[2].numpy() for png in _base.encode_images(datas)]
        same = all(
            np.array_equal(tf.io.decode_png(png).numpy(), d[0].numpy())
            for png, d in zip(package, datas)
        )
        default_bytes = sum(len(p.numpy()) for p in encode_default_level(datas))
        callback.on_train_end()
    names = list(times)
    print("Writing one snapshot, ms per snapshot\n")
    print("| what | ms | vs before |")
    print("|---|---|---|")
    for name in names:
        before = times[names[0]] if name.startswith(f"{n_images} images") else times[names[3]]
        ratio = timing.paired_ratio(times[name], before)
        print(f"| {name} | {timing.median(times[name]) * 1e3:.0f} | {ratio:.2f} |")
    print(
        f"\nPNG bytes per snapshot: level {level} {sum(map(len, package)) / 1024:.0f} KiB, "
        f"default level {default_bytes / 1024:.0f} KiB; package PNGs decode to the "
        f"rendered pixels: {same}"
    )
    print(f"load average {timing.load()} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
