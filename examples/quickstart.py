"""The quickstart from the README: a Sequential CNN, two lines of keras_convviz.

Run:  python examples/quickstart.py
Then: convviz tensorboard logs/quickstart
      (or: tensorboard --logdir logs/quickstart --samples_per_plugin images=1000)

CONVVIZ_EXAMPLE_QUICK=1 trains on a few images for one epoch (how CI runs it).
"""

import os

import keras

import keras_convviz as kcv
from keras_convviz.datasets import make_shapes

QUICK = os.environ.get("CONVVIZ_EXAMPLE_QUICK") == "1"

keras.utils.set_random_seed(0)
train, val = make_shapes(64 if QUICK else 3000, seed=0), make_shapes(16 if QUICK else 300, seed=1)
layers = [keras.Input((64, 64, 3))]
for filters, pool in ((16, True), (32, True), (64, False)):
    layers += [
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        keras.layers.BatchNormalization(),
    ]
    layers += [keras.layers.MaxPooling2D()] if pool else []
layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")]
model = keras.Sequential(layers)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

probe = (val.images[:8], val.labels[:8])  # eight images and their labels
model.fit(
    train.images,
    train.labels,
    epochs=1 if QUICK else 8,
    verbose=2,
    validation_data=(val.images, val.labels),
    callbacks=[kcv.ConvViz("logs/quickstart", probe)],
)
