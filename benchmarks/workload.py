"""The benchmark workload and "the floor": plain TensorFlow/Keras, no keras_convviz import.

This module is imported by the main harness and by the peer workers that run inside their
own virtual environments (tf-explain, xplique), so every tool sees the same model, the same
weights and the same images. It needs only numpy, tensorflow and keras.

The floor is the least work any occlusion or Grad-CAM implementation has to do: one
compiled `tf.function` that runs the model (`training=False`) over exactly the occluded
images our occlusion pass builds (pre-built here, outside the timing) in the same chunk
size, and takes the same target-logit reduction; for Grad-CAM, one compiled forward and
backward pass on the probe. Score-CAM's floor is the same forward floor over its masked
inputs; SmoothGrad's and Integrated Gradients' is one compiled forward + backward (input
gradient) over their noisy or path inputs, pre-built the same way, in the same chunks.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

NUM_CLASSES = 10
CAM_LAYER = "conv3"


# ---- model and images ---------------------------------------------------------------------


def build_cnn(image_size: int = 64, num_classes: int = NUM_CLASSES, seed: int = 0) -> keras.Model:
    """The small benchmark CNN: Conv 16/32/64 3x3 ReLU, max pooling between, GAP, Dense.

    The head is a plain Dense layer (logits), so every tool explains the same scores:
    xplique ignores `output_layer=` and would otherwise explain softmax probabilities.
    Weights are drawn from a seeded numpy generator (He-normal kernels, small biases), so
    every process and every Keras version gets bit-identical weights.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name=CAM_LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name="bench_cnn")
    model.set_weights(seeded_weights(model, seed))
    return model


def seeded_weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim >= 2:  # kernels: He-normal on the fan-in
            fan_in = int(np.prod(w.shape[:-1]))
            weights.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape).astype(np.float32))
        else:  # biases
            weights.append(rng.normal(0.0, 0.01, w.shape).astype(np.float32))
    return weights


def build_mobilenet(image_size: int = 128, num_classes: int = NUM_CLASSES, seed: int = 0):
    """MobileNetV2 (weights=None) ending in logits, seeded."""
    keras.utils.set_random_seed(seed)
    return keras.applications.MobileNetV2(
        input_shape=(image_size, image_size, 3),
        weights=None,
        classes=num_classes,
        classifier_activation=None,
    )


ARCHITECTURES = ("cnn", "vgg16", "resnet50", "mobilenetv2", "efficientnetb0")


def build_model(arch: str = "cnn", image_size: int = 64, seed: int = 0) -> keras.Model:
    """The small CNN, or a keras.applications model (weights=None, 10 classes, logits),
    seeded, by name (one of `ARCHITECTURES`)."""
    if arch == "cnn":
        return build_cnn(image_size, seed=seed)
    keras.utils.set_random_seed(seed)
    builders = {
        "vgg16": keras.applications.VGG16,
        "resnet50": keras.applications.ResNet50,
        "mobilenetv2": keras.applications.MobileNetV2,
        "efficientnetb0": keras.applications.EfficientNetB0,
    }
    return builders[arch](
        input_shape=(image_size, image_size, 3),
        weights=None,
        classes=NUM_CLASSES,
        classifier_activation=None,
    )


def probe_images(n: int = 8, image_size: int = 64, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (n, image_size, image_size, 3)).astype(np.float32)


# ---- occlusion geometry, as keras_convviz defines it ----------------------------------------


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def occluded_images(
    images: np.ndarray, patch: int, stride: int, fill: np.ndarray | None = None
) -> np.ndarray:
    """Every occluded image, image-major then window row-major.

    The same images, in the same order, as keras_convviz's compiled occlusion pass builds.
    `fill` is what a window shows: `(batch, height, width, channels)` one image per probe
    image (keras_convviz's default, each image blurred), `(height, width, channels)` or
    `(channels,)`; `None`: the per-channel mean of the probe (its `baseline="mean"`).
    """
    n, height, width, _ = images.shape
    tops = window_starts(height, patch, stride)
    lefts = window_starts(width, patch, stride)
    if fill is None:
        fill = images.astype(np.float64).mean(axis=(0, 1, 2)).astype(np.float32)
    fill = np.asarray(fill, np.float32)
    if fill.ndim < 4:
        fill = np.broadcast_to(fill, images.shape[1:])[None].repeat(n, axis=0)
    out = np.repeat(images, len(tops) * len(lefts), axis=0)
    k = 0
    for i in range(n):
        for top in tops:
            for left in lefts:
                window = (slice(top, top + patch), slice(left, left + patch))
                out[(k, *window)] = fill[(i, *window)]
                k += 1
    return out


def windows_per_image(image_size: int, patch: int, stride: int) -> int:
    return len(window_starts(image_size, patch, stride)) ** 2


# ---- the floors ------------------------------------------------------------------------------


def make_forward_floor(model: keras.Model, batch_size: int):
    """`fn(occluded, targets) -> (total,)` target logits, one compiled pass in chunks of B."""
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, *image_shape), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]
    )
    def floor(occluded, targets):
        total = tf.shape(occluded)[0]
        num_chunks = (total + batch_size - 1) // batch_size
        scores = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        for chunk in tf.range(num_chunks):
            start = chunk * batch_size
            stop = tf.minimum(start + batch_size, total)
            logits = tf.cast(model(occluded[start:stop], training=False), tf.float32)
            picked = tf.gather(logits, targets[start:stop], axis=1, batch_dims=1)
            scores = scores.write(chunk, picked)
        return scores.concat()

    return floor


def make_backward_floor(model: keras.Model, layer_name: str | None = None):
    """One compiled forward + backward pass of the target logit on a batch.

    `layer_name=None`: the gradient with respect to the input (a full backward pass).
    Otherwise the gradient with respect to that layer's output, the least Grad-CAM needs.
    Returns `fn(images, targets) -> gradient`.
    """
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    tap = None
    if layer_name is not None:
        tap = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.outputs[0]])

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, *image_shape), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]
    )
    def floor(images, targets):
        with tf.GradientTape() as tape:
            if tap is None:
                tape.watch(images)
                logits = model(images, training=False)
                wrt = images
            else:
                wrt, logits = tap(images, training=False)
            score = tf.reduce_sum(
                tf.gather(tf.cast(logits, tf.float32), targets, axis=1, batch_dims=1)
            )
        return tape.gradient(score, wrt)

    return floor


def make_gradient_floor(model: keras.Model, batch_size: int, per_image: int):
    """`fn(inputs, targets) -> (batch, h, w, c)`: one compiled forward + backward per chunk.

    The least SmoothGrad and Integrated Gradients can do: the gradient of the target logit
    with respect to each of `per_image` inputs per image (pre-built, image-major), in chunks
    of `batch_size`, summed per image.
    """
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, *image_shape), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]
    )
    def floor(inputs, targets):
        total = tf.shape(inputs)[0]
        n = total // per_image
        num_chunks = (total + batch_size - 1) // batch_size
        sums = tf.zeros((n, *image_shape), tf.float32)
        for chunk in tf.range(num_chunks):
            start = chunk * batch_size
            stop = tf.minimum(start + batch_size, total)
            x = inputs[start:stop]
            with tf.GradientTape() as tape:
                tape.watch(x)
                logits = tf.cast(model(x, training=False), tf.float32)
                score = tf.reduce_sum(tf.gather(logits, targets[start:stop], axis=1, batch_dims=1))
            grads = tape.gradient(score, x)
            sums += tf.math.unsorted_segment_sum(grads, tf.range(start, stop) // per_image, n)
        return sums

    return floor


# ---- the inputs the sampling methods score, as keras_convviz defines them ------------------


def noisy_inputs(images: np.ndarray, samples: int, noise: float, seed: int = 0) -> np.ndarray:
    """SmoothGrad's inputs, image-major: x_i + noise * (max - min of x_i) * z_k.

    The same draws as keras_convviz (`tf.random.stateless_normal`, seed `(seed, 0)`, one
    draw per sample shared by the images).
    """
    z = tf.random.stateless_normal((samples, *images.shape[1:]), seed=(seed, 0)).numpy()
    span = images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))
    scale = (noise * span)[:, None, None, None, None]
    return (images[:, None] + scale * z[None]).reshape(-1, *images.shape[1:]).astype(np.float32)


def path_inputs(images: np.ndarray, steps: int, baseline: float = 0.0) -> np.ndarray:
    """Integrated Gradients' inputs, image-major: x' + (k + 1/2)/steps * (x - x')."""
    alpha = ((np.arange(steps) + 0.5) / steps).astype(np.float32)[None, :, None, None, None]
    out = baseline + alpha * (images[:, None] - baseline)
    return out.reshape(-1, *images.shape[1:]).astype(np.float32)


def score_cam_inputs(model: keras.Model, images: np.ndarray, layer_name: str):
    """Score-CAM's masked inputs, image-major then channel: x_i * m_c, and A.

    m_c = A_c (the layer's output, inference mode) upsampled bilinearly to the input size and
    min-max scaled to [0, 1] per image and channel, as keras_convviz builds them. Returns
    `(masked (batch * channels, h, w, c), activation (batch, h', w', channels))`.
    """
    tap = keras.Model(model.inputs, model.get_layer(layer_name).output)
    activation = tf.cast(tap(images, training=False), tf.float32)
    n, _, _, channels = activation.shape
    maps = tf.reshape(
        tf.transpose(activation, (0, 3, 1, 2)), (n * channels, *activation.shape[1:3])
    )
    masks = tf.image.resize(maps[..., None], images.shape[1:3], method="bilinear")
    low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
    high = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True)
    masks = tf.math.divide_no_nan(masks - low, high - low)
    masked = np.repeat(images, channels, axis=0) * masks.numpy()
    return masked.astype(np.float32), activation.numpy()


def predicted_classes(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.argmax(model(images, training=False).numpy(), axis=-1).astype(np.int32)


def curve_images(images: np.ndarray, maps: np.ndarray, steps: int, baseline: np.ndarray):
    """Deletion and insertion images of every image, as keras_convviz scores them.

    Image-major; per image the K + 1 deletion images, then the K + 1 insertion images.
    Pixels ordered by the map, highest first (stable), n_k = (k * H * W) // K.
    """
    n, h, w, c = images.shape
    out = np.empty((n, 2, steps + 1, h * w, c), np.float32)
    for i in range(n):
        order = np.argsort(-maps[i].ravel(), kind="stable")
        pixels, fill = images[i].reshape(-1, c), np.broadcast_to(baseline, images[i].shape)
        fill = fill.reshape(-1, c)
        for k in range(steps + 1):
            first = order[: (k * h * w) // steps]
            out[i, 0, k], out[i, 1, k] = pixels, fill
            out[i, 0, k][first] = fill[first]
            out[i, 1, k][first] = pixels[first]
    return out.reshape(n * 2 * (steps + 1), h, w, c)


# ---- activation maximisation ------------------------------------------------------------------


def make_actmax_floor(model: keras.Model, layer_name: str, filters: list[int]):
    """`fn(images, steps) -> images`: `steps` compiled forward + backward passes of the batch
    through the layers up to `layer_name`, each climbing image `i`'s channel `filters[i]`
    (mean over positions) by a plain gradient step, in one compiled loop.

    The least any activation maximisation does: no image parameterisation, no random
    transformations, no optimiser state.
    """
    cut = keras.Model(model.inputs, model.get_layer(layer_name).output)
    select = tf.one_hot(filters, int(cut.output.shape[-1]))
    image_shape = tuple(int(d) for d in model.inputs[0].shape[1:])

    @tf.function(
        input_signature=[
            tf.TensorSpec((len(filters), *image_shape), tf.float32),
            tf.TensorSpec((), tf.int32),
        ]
    )
    def floor(images, steps):
        x = images
        for _ in tf.range(steps):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                out = tf.cast(cut(x, training=False), tf.float32)
                score = tf.reduce_sum(tf.reduce_mean(out, axis=(1, 2)) * select)
            x = x + 0.01 * tape.gradient(score, x)
        return x

    return floor


def channel_scores(model: keras.Model, layer_name: str, filters: list[int], images) -> np.ndarray:
    """`(filters,)` image `i`'s mean of channel `filters[i]` over positions (inference mode)."""
    cut = keras.Model(model.inputs, model.get_layer(layer_name).output)
    means = np.asarray(cut(np.asarray(images, np.float32), training=False)).mean(axis=(1, 2))
    return means[np.arange(len(filters)), filters]
