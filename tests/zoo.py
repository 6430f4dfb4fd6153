"""Small versions of the models people train beyond image classifiers, with data to fit.

Each builder returns `(model, x, y)`: a compiled model and a few samples shaped as `fit`
takes them. Sizes are small so a test fits each in seconds on 2 CPU cores; the layouts are
those of the real architectures (a Conv1D sequence classifier, a Conv3D volume classifier,
a U-Net with a per-pixel softmax, a model with a class head and a regression head, a small
vision transformer with a class token).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

N = 16


def sequence(steps: int = 64, channels: int = 3, classes: int = 3, seed: int = 0):
    """Conv1D blocks on `(steps, channels)` sensor sequences."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((steps, channels))
    x = keras.layers.Conv1D(8, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="sequence")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, steps, channels)).astype(np.float32)
    y = rng.integers(0, classes, N).astype(np.int32)
    return model, x, y


def volume(shape=(8, 16, 16, 1), classes: int = 2, seed: int = 0):
    """Conv3D blocks on `(depth, height, width, channels)` volumes."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    x = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling3D(2)(x)
    x = keras.layers.Conv3D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling3D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="volume")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.random((N, *shape), dtype=np.float32)
    y = rng.integers(0, classes, N).astype(np.int32)
    return model, x, y


def unet(size: int = 32, classes: int = 3, seed: int = 0):
    """A two-level U-Net with a per-pixel softmax; labels are integer masks."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    c1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="down1")(inputs)
    p1 = keras.layers.MaxPooling2D()(c1)
    c2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="down2")(p1)
    u1 = keras.layers.Conv2DTranspose(8, 2, strides=2, padding="same", name="up1")(c2)
    m1 = keras.layers.Concatenate()([u1, c1])
    c3 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="up_conv")(m1)
    outputs = keras.layers.Conv2D(classes, 1, activation="softmax", name="mask")(c3)
    model = keras.Model(inputs, outputs, name="unet")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.random((N, size, size, 3), dtype=np.float32)
    y = rng.integers(0, classes, (N, size, size)).astype(np.int32)
    return model, x, y


def two_heads(size: int = 32, classes: int = 4, seed: int = 0):
    """A CNN with a class head and a regression head; labels are a dict per output."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    label = keras.layers.Dense(classes, activation="softmax", name="label")(x)
    value = keras.layers.Dense(1, name="value")(x)
    model = keras.Model(inputs, {"label": label, "value": value}, name="two_heads")
    model.compile("adam", loss={"label": "sparse_categorical_crossentropy", "value": "mse"})
    rng = np.random.default_rng(seed)
    x = rng.random((N, size, size, 3), dtype=np.float32)
    y = {
        "label": rng.integers(0, classes, N).astype(np.int32),
        "value": rng.normal(size=(N, 1)).astype(np.float32),
    }
    return model, x, y


class ClassToken(keras.layers.Layer):
    """Prepends a learned class token to `(batch, tokens, dim)`."""

    def build(self, input_shape):
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros")

    def call(self, tokens):
        batch = tf.shape(tokens)[0]
        return tf.concat([tf.tile(self.token, [batch, 1, 1]), tokens], axis=1)


def vit(size: int = 32, patch: int = 8, dim: int = 16, blocks: int = 2, classes: int = 3,
        seed: int = 0):  # fmt: skip
    """A small vision transformer: patch embedding conv, class token, pre-norm blocks of
    attention and MLP with residual sums, the class token read by the head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    grid = size // patch
    x = keras.layers.Conv2D(dim, patch, strides=patch, name="patch_embed")(inputs)
    x = keras.layers.Reshape((grid * grid, dim), name="tokens")(x)
    x = ClassToken(name="class_token")(x)
    for i in range(blocks):
        y = keras.layers.LayerNormalization(name=f"block{i}_norm1")(x)
        y = keras.layers.MultiHeadAttention(2, dim // 2, name=f"block{i}_attention")(y, y)
        x = keras.layers.Add(name=f"block{i}_add1")([x, y])
        y = keras.layers.LayerNormalization(name=f"block{i}_norm2")(x)
        y = keras.layers.Dense(2 * dim, activation="gelu", name=f"block{i}_mlp1")(y)
        y = keras.layers.Dense(dim, name=f"block{i}_mlp2")(y)
        x = keras.layers.Add(name=f"block{i}_out")([x, y])
    x = keras.layers.LayerNormalization(name="final_norm")(x)
    x = keras.layers.Lambda(lambda t: t[:, 0], name="class_output")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="vit")
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.random((N, size, size, 3), dtype=np.float32)
    y = rng.integers(0, classes, N).astype(np.int32)
    return model, x, y


MODELS = {
    "sequence": sequence,
    "volume": volume,
    "unet": unet,
    "two_heads": two_heads,
    "vit": vit,
}
