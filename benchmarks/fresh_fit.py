"""The demo's `fit` with and without `ConvViz` in a fresh process (run by section 8).

The training rows of section 8 run every fit in one process after a warm-up fit, so what
keras_convviz traces once per process (the feature-map and filter drawing per layer shape,
the heat-map panel) is paid there once, as in a notebook's later fits. A user's first fit
in a new process pays it too; this worker measures that fit. It makes one warm-up fit
without `ConvViz` (TensorFlow's and Keras's own first-time work), then the two fits in the
order given, each on a fresh model, and prints one JSON line: each fit's seconds up to the
end of its last callback's `on_train_end` (as in section 8), and the first snapshot's time
on the training thread.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-val", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--convviz-first", action="store_true")
    args = parser.parse_args()

    import warnings

    import keras

    import keras_convviz as kcv
    from keras_convviz.datasets import make_shapes
    from keras_convviz.demo import train_demo_model

    warnings.simplefilter("ignore")  # the alerts of an early, untrained model
    train = make_shapes(args.n_train, image_size=64, seed=0)
    val = make_shapes(args.n_val, image_size=64, seed=10_000)
    probe = (val.images[:8], val.labels[:8])

    class Mark(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_end = []
            self.train_end = None

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_end.append(time.perf_counter())

        def on_train_end(self, logs=None):
            self.train_end = time.perf_counter()

    def fit(with_convviz: bool) -> dict:
        before, after = Mark(), Mark()
        callbacks = [before]
        if with_convviz:
            log_dir = tempfile.mkdtemp(prefix="fresh_fit_")
            callbacks.append(kcv.ConvViz(log_dir, probe=probe, freq=1))
        callbacks.append(after)
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        train_demo_model(
            train,
            epochs=args.epochs,
            validation_data=(val.images, val.labels),
            callbacks=callbacks,
        )
        return {
            "fit": after.train_end - start,
            "first_held": after.epoch_end[0] - before.epoch_end[0],
        }

    fit(False)  # warm-up: TensorFlow's and Keras's first-time work, not ours
    order = (True, False) if args.convviz_first else (False, True)
    result = {("convviz" if flag else "none"): fit(flag) for flag in order}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
