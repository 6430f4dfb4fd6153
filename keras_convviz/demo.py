"""A small end-to-end demo: train a CNN on synthetic shapes while `ConvViz` logs to TensorBoard."""

from __future__ import annotations

import shlex
import time

import keras
import numpy as np

from keras_convviz.datasets import CLASS_NAMES, ShapesData, make_shortcut_shapes

# Seeds offset from the user's seed so the training and validation images differ.
_TRAIN_SEED_OFFSET = 0
_VAL_SEED_OFFSET = 10_000
_PROBE_PER_CLASS = 2


def build_demo_model(image_size: int = 64, num_classes: int = 4) -> keras.Model:
    """Builds the small Functional CNN that the demo trains.

    Four 3x3 ReLU convolutions named `"conv1"` to `"conv4"`, each followed by batch
    normalization, with max pooling after the first two. The last two convolutions keep a
    quarter of the input resolution (16x16 for 64x64 images) and only global average
    pooling follows them, so Grad-CAM of the last block (`"conv4"`, or `"bn4"`, which only
    rescales it per channel) can localise the object. The head ends in a softmax, whose
    input is the score Grad-CAM differentiates.

    Args:
        image_size: Height and width of the square RGB input images.
        num_classes: Number of output classes.

    Returns:
        An uncompiled `keras.Model`.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = inputs
    for index, (filters, pool) in enumerate(((16, True), (32, True), (64, False), (64, False))):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"conv{index + 1}"
        )(x)
        # Normalising after the ReLU keeps each conv layer's output the activation users
        # expect to see, and without it training idles for epochs before the shapes are
        # learnt. The low momentum lets the inference statistics catch up within a short run.
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index + 1}")(x)
        if pool:
            x = keras.layers.MaxPooling2D(name=f"pool{index + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="convviz_demo")


def train_demo_model(
    data: ShapesData,
    epochs: int = 6,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    validation_data=None,
    callbacks=(),
    verbose: int = 0,
):
    """Builds, compiles and trains the demo CNN on a synthetic data set.

    Args:
        data: the training images and labels, from `make_shapes`.
        epochs: Number of training epochs.
        batch_size: Training batch size.
        learning_rate: Initial learning rate of Adam, decayed to 5 % by the last step.
        validation_data: `(images, labels)` or `None`.
        callbacks: Keras callbacks for `fit`.
        verbose: Verbosity passed to `Model.fit`.

    Returns:
        `(model, history)`.
    """
    n_train, image_size = data.images.shape[0], data.images.shape[1]
    model = build_demo_model(image_size=image_size, num_classes=len(CLASS_NAMES))
    # Decaying the rate settles the weights (and the batch-norm statistics) by the last
    # epoch, so the final accuracy does not depend on where the last step happened to land.
    steps = epochs * -(-n_train // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(steps, 1), alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        data.images,
        data.labels,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=validation_data,
        callbacks=list(callbacks),
        verbose=verbose,
    )
    return model, history


def _probe_indices(labels: np.ndarray, per_class: int, num_classes: int) -> np.ndarray:
    """Indices of the first `per_class` images of each class, grouped by class."""
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    return np.concatenate(chosen)


def run_demo(
    log_dir: str = "logs/demo",
    epochs: int = 6,
    seed: int = 0,
    n_train: int = 4000,
    n_val: int = 800,
    image_size: int = 64,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    with_callbacks: bool = True,
    verbose: int = 2,
    shortcut: bool = False,
) -> dict:
    """Trains the demo CNN on synthetic shapes with `ConvViz` writing TensorBoard images.

    Prints training progress, the validation accuracy, the commands that show the logs
    (`convviz tensorboard`, or the plain `tensorboard` one) and the export command.
    `ConvViz` gets the probe shapes' masks as `regions`, so each map's share on the shape
    (`in_region`) is written beside it.

    With `shortcut=True` every image, training, validation and probe alike, also shows a
    small square of its class's colour in a corner (`make_shortcut_shapes`): a cue easier
    to learn than the shape, as a watermark or a hospital's token in real data. The
    validation accuracy looks perfect; the alert `evidence_off_region` says the maps lie
    off the shapes, and the demo prints when it fired and what the model predicts on
    validation images that show another class's cue.

    Args:
        log_dir: Directory the TensorBoard event files are written to.
        epochs: Number of training epochs.
        seed: Seed of the data and of Keras' random state; the same seed gives the same run.
        n_train: Number of training images.
        n_val: Number of validation images (the 8 probe images are taken from them).
        image_size: Height and width of the images, in pixels.
        batch_size: Training batch size.
        learning_rate: Learning rate of the Adam optimizer.
        with_callbacks: Whether to attach `ConvViz`; `False` trains without logging.
        verbose: Verbosity passed to `Model.fit` (0, 1 or 2).
        shortcut: Whether the images carry a class-specific cue (see above).

    Returns:
        A dict with `val_accuracy` and `val_loss` after the last epoch, `log_dir`,
        `epochs`, `seconds` (wall time of data generation plus training),
        `train_seconds` (training alone), the trained `model`, the `alerts` raised
        (`keras_convviz.alerts.Alert`) and, on images with another class's cue,
        `swapped_cue`: `{"follows_cue": share, "follows_shape": share}` of the predictions.
    """
    if epochs < 1:
        raise ValueError(f"`epochs` must be at least 1. Received: epochs={epochs}")
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    num_classes = len(CLASS_NAMES)
    cues = "label" if shortcut else None
    train_seed, val_seed = seed + _TRAIN_SEED_OFFSET, seed + _VAL_SEED_OFFSET
    train = make_shortcut_shapes(n_train, image_size=image_size, seed=train_seed, cues=cues)
    val = make_shortcut_shapes(n_val, image_size=image_size, seed=val_seed, cues=cues)
    probe = _probe_indices(val.labels, _PROBE_PER_CLASS, num_classes)
    x_probe, y_probe = val.images[probe], val.labels[probe]

    alerts = []
    callbacks = []
    if with_callbacks:
        # Imported here so the model and data helpers work without the callback module.
        from keras_convviz import ConvViz

        callbacks.append(
            ConvViz(
                log_dir=log_dir,
                probe=(x_probe, y_probe),
                class_names=list(CLASS_NAMES),
                faithfulness=True,
                # What conv4's filters respond to, evolving with training (its ascent
                # holds each epoch's end about a second: 32 warm-started steps).
                activation_maximization={"layer_names": ["conv4"], "warm_start": True},
                # Where the shapes are: each map's share on them, and the shortcut alert.
                regions=val.masks[probe],
                # A showcase of every kind at every epoch: its epochs are seconds long, so
                # the default budget would run the costly kinds at the first one only.
                budget=None,
                on_alert=alerts.append,
            )
        )

    cue = " each with its class's colour in a corner (a shortcut)" if shortcut else ""
    print(
        f"Training on {n_train} synthetic {image_size}x{image_size} images of "
        f"{', '.join(CLASS_NAMES)}{cue} for {epochs} epoch{'s' * (epochs != 1)}; "
        f"validating on {n_val}.",
        flush=True,
    )
    train_start = time.perf_counter()
    model, history = train_demo_model(
        train,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        validation_data=(val.images, val.labels),
        callbacks=callbacks,
        verbose=verbose,
    )
    end = time.perf_counter()
    val_accuracy = float(history.history["val_accuracy"][-1])
    val_loss = float(history.history["val_loss"][-1])

    print(f"Validation accuracy: {val_accuracy:.3f} ({end - start:.0f} s)")
    # The validation shapes with the cue of the next class: the shape or the cue?
    swapped_cues = (val.labels + 1) % num_classes
    swapped = make_shortcut_shapes(n_val, image_size=image_size, seed=val_seed, cues=swapped_cues)
    predicted = np.argmax(model.predict(swapped.images, verbose=0), axis=-1)
    swapped_cue = {
        "follows_cue": float(np.mean(predicted == swapped_cues)),
        "follows_shape": float(np.mean(predicted == val.labels)),
    }
    # Imported here so the model and data helpers work without the explainers.
    from keras_convviz import grad_cam, localization
    from keras_convviz.methods.localization import area_share

    regions = val.masks[probe]
    on_shapes = localization(grad_cam(model, (x_probe, y_probe)), regions)["in_region"]
    print(
        f"Grad-CAM puts {np.nanmean(on_shapes):.0%} of its positive evidence on the probe's "
        f"shapes; a map spread evenly would put {area_share(regions).mean():.0%} there."
    )
    off_region = [a for a in alerts if a.rule == "evidence_off_region"]
    if off_region:
        first = off_region[0]
        print(
            f"Alert evidence_off_region at epoch {first.epoch} (since epoch "
            f"{first.since_epoch}): {first.meaning}. Evidence: {first.evidence}."
        )
    elif with_callbacks:
        print("No evidence_off_region alert.")
    if shortcut:
        print(
            f"On the {n_val} validation images with another class's cue, the model predicts "
            f"the cue's class for {swapped_cue['follows_cue']:.0%} and the shape's class for "
            f"{swapped_cue['follows_shape']:.0%}."
        )
    if with_callbacks:
        # TensorBoard keeps only 10 images per tag unless told otherwise (and `images=0`
        # serves none in TensorBoard 2.21); `convviz tensorboard` sets it from the logs.
        from keras_convviz._serve import MIN_SAMPLES

        where = shlex.quote(str(log_dir))
        print("See the images with:")
        print(f"  convviz tensorboard {where}")
        print(
            f"  (or: tensorboard --logdir {where} "
            f"--samples_per_plugin images={max(MIN_SAMPLES, epochs)})"
        )
        print(f"Share them with:  convviz export {where} --out {where}_export")
    return {
        "val_accuracy": val_accuracy,
        "val_loss": val_loss,
        "log_dir": log_dir,
        "epochs": epochs,
        "seconds": end - start,
        "train_seconds": end - train_start,
        "model": model,
        "alerts": alerts,
        "swapped_cue": swapped_cue,
    }
