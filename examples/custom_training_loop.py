"""A custom training loop: the functional explainers (`kcv.grad_cam`,
`kcv.occlusion_sensitivity`) return raw maps as numpy arrays; `tf.summary` writes them.

The tags follow the callbacks' names (`<kind>/<layer>/image_<i>`), so `convviz export`
groups them the same way.

Run:  python examples/custom_training_loop.py
Then: convviz tensorboard logs/custom

CONVVIZ_EXAMPLE_QUICK=1 trains on a few images for two epochs (how CI runs it).
"""

import os

import keras
import matplotlib
import numpy as np
import tensorflow as tf

import keras_convviz as kcv
from keras_convviz.datasets import make_shapes

QUICK = os.environ.get("CONVVIZ_EXAMPLE_QUICK") == "1"
EPOCHS = 2 if QUICK else 8

keras.utils.set_random_seed(0)
train, val = make_shapes(64 if QUICK else 3000, seed=0), make_shapes(16 if QUICK else 300, seed=1)
inputs = keras.Input((64, 64, 3))
x = inputs
for index, filters in enumerate((16, 32, 64)):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{index}")(x)
    x = keras.layers.MaxPooling2D()(x) if index < 2 else x
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))  # logits, no softmax
optimizer = keras.optimizers.Adam(1e-3)
loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@tf.function
def train_step(images, labels):
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model(images, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss


def overlay(images: np.ndarray, maps: np.ndarray, cmap: str) -> np.ndarray:
    """Each image beside its map drawn over it, `(n, h, 2w, 3)` in [0, 1]."""
    scale = np.abs(maps).max(axis=(1, 2), keepdims=True) + 1e-12
    if cmap == "turbo":  # Grad-CAM: positive evidence, 0 .. max
        heat = matplotlib.colormaps[cmap](np.clip(maps / scale, 0, 1))[..., :3]
    else:  # occlusion: signed, -max .. max
        heat = matplotlib.colormaps[cmap](0.5 + 0.5 * maps / scale)[..., :3]
    return np.concatenate([images, 0.5 * images + 0.5 * heat], axis=2)


probe_images, probe_labels = val.images[:4], val.labels[:4]
dataset = tf.data.Dataset.from_tensor_slices((train.images, train.labels)).shuffle(512).batch(32)
writer = tf.summary.create_file_writer("logs/custom/explain")
for epoch in range(EPOCHS):
    losses = [float(train_step(images, labels)) for images, labels in dataset]
    # Raw maps, one per probe image: (n, 64, 64). Repeated calls reuse the compiled pass.
    cams = kcv.grad_cam(model, (probe_images, probe_labels), layer_name="conv2")
    occlusion = kcv.occlusion_sensitivity(model, (probe_images, probe_labels), patch_size=8)
    with writer.as_default(step=epoch):
        tf.summary.scalar("loss", np.mean(losses))
        for i in range(len(probe_images)):
            tf.summary.image(
                f"grad_cam/conv2/image_{i}", overlay(probe_images, cams, "turbo")[i : i + 1]
            )
            tf.summary.scalar(f"grad_cam/conv2/image_{i}/max", cams[i].max())
            tf.summary.image(
                f"occlusion/image_{i}", overlay(probe_images, occlusion, "RdBu_r")[i : i + 1]
            )
    writer.flush()
    print(f"epoch {epoch + 1}/{EPOCHS}  loss {np.mean(losses):.3f}")
writer.close()
