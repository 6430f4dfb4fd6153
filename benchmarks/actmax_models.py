"""Activation maximisation vs its floor on three models (a side check of section 10).

    python benchmarks/actmax_models.py demo conv4
    python benchmarks/actmax_models.py mobilenet block_6_expand_relu
    python benchmarks/actmax_models.py cnn conv3

16 filters, 32 steps, the public call against `workload.make_actmax_floor`, 7 interleaved
repetitions after a warm-up; prints ms per step and the median per-repetition ratio.
"""

import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import timing  # noqa: E402
import workload  # noqa: E402

import keras_convviz as kcv  # noqa: E402
from keras_convviz.demo import build_demo_model  # noqa: E402

which = sys.argv[1]
layer = sys.argv[2]
steps = 32
if which == "demo":
    keras.utils.set_random_seed(0)
    model = build_demo_model(64)
    size = 64
elif which == "mobilenet":
    model = workload.build_mobilenet(128)
    size = 128
else:
    model = workload.build_cnn()
    size = 64
images = workload.probe_images(8, size)
filters = list(range(16))


def ours():
    return kcv.activation_maximization(model, layer, filters=filters, steps=steps, probe=images)


floor_fn = workload.make_actmax_floor(model, layer, filters)
x0 = tf.constant(np.repeat(images[:1], 16, 0))
t = timing.interleave(
    {"ours": ours, "floor": lambda: floor_fn(x0, tf.constant(steps)).numpy()}, 7, warmup=1
)
for k, v in t.items():
    print(
        which,
        layer,
        k,
        f"{timing.median(v) / steps * 1e3:.1f} ms/step",
        f"ratio to floor {timing.paired_ratio(v, t['floor']):.2f}",
    )
