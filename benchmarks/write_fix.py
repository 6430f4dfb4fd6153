"""Evidence for a proposed fix: how the callbacks write their images.

    python benchmarks/write_fix.py [--reps 7]

`SnapshotCallback._write` (keras_convviz/_base.py) calls `tf.summary.image(tag, data,
max_outputs=1)` once per image, eagerly: each call PNG-encodes one image on one core, with
the summary op's own overhead. This script renders one snapshot of
`ConvViz(occlusion_freq=0)` on the benchmark workload (35 images, 24 scalars) and times
writing its images:

- current: the `tf.summary.image` loop, as `_write` does it;
- encode in tf.function: every PNG encoded by `tf.io.encode_png` in one compiled function
  (the graph runs them on all cores), then `tf.summary.write(tag, [width, height, png],
  metadata=<image plugin metadata>)`, which is what `tf.summary.image` writes;
- the same with `encode_png(compression=1)` (a faster zlib level, larger files).

The scalars' writing is shown for scale. It uses the callbacks' private `_snapshot`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tensorflow as tf  # noqa: E402
import timing  # noqa: E402
import workload  # noqa: E402
from tensorboard.plugins.image import metadata as image_metadata  # noqa: E402

import keras_convviz as kcv  # noqa: E402


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
        summaries = [s for cb in members for s in cb._snapshot(0)]
        pictures = [s for s in summaries if hasattr(s, "data")]
        scalars = [s for s in summaries if not hasattr(s, "data")]
        writer = tf.summary.create_file_writer(os.path.join(log_dir, "bench"))
        metadata = image_metadata.create_summary_metadata(display_name=None, description=None)
        datas = [p.data for p in pictures]

        def encoder(compression):
            @tf.function
            def encode_all(batch):
                return [tf.io.encode_png(d[0], compression=compression) for d in batch]

            return encode_all

        def current():
            with writer.as_default(step=1):
                for p in pictures:
                    tf.summary.image(p.tag, p.data, max_outputs=1)
            writer.flush()

        def compiled(encode_all):
            def write():
                pngs = encode_all(datas)
                with writer.as_default(step=1):
                    for p, png in zip(pictures, pngs):
                        size = [str(int(p.data.shape[2])), str(int(p.data.shape[1]))]
                        tf.summary.write(p.tag, tf.stack([*size, png]), metadata=metadata)
                writer.flush()

            return write

        def write_scalars():
            with writer.as_default(step=1):
                for s in scalars:
                    tf.summary.scalar(s.tag, s.value)
            writer.flush()

        times = timing.interleave(
            {
                "tf.summary.image loop (current)": current,
                "encode in tf.function + tf.summary.write": compiled(encoder(-1)),
                "... with compression=1": compiled(encoder(1)),
                f"the {len(scalars)} scalars (for scale)": write_scalars,
            },
            args.reps,
            1,
        )
        callback.on_train_end()
    base = times["tf.summary.image loop (current)"]
    print(f"Writing the {len(pictures)} images of one snapshot, ms per snapshot\n")
    print("| method | ms | vs current |")
    print("|---|---|---|")
    for name, values in times.items():
        ratio = timing.paired_ratio(values, base)
        print(f"| {name} | {timing.median(values) * 1e3:.0f} | {ratio:.2f} |")
    print(f"\nload average {timing.load()} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
