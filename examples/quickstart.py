"""The quickstart from the README: a Sequential CNN, two lines of keras_convviz.

Run:  python examples/quickstart.py
Then: tensorboard --logdir logs/quickstart --samples_per_plugin images=100
"""

import keras

import keras_convviz as kcv
from keras_convviz.datasets import make_shapes

train, val = make_shapes(2000, seed=0), make_shapes(200, seed=1)
model = keras.Sequential(
    [
        keras.Input((64, 64, 3)),
        keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="softmax"),
    ]
)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

probe = (val.images[:8], val.labels[:8])
model.fit(
    train.images,
    train.labels,
    epochs=5,
    validation_data=(val.images, val.labels),
    callbacks=[kcv.ConvViz("logs/quickstart", probe)],
)
