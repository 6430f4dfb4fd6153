"""Transfer learning: a `keras.applications` base nested in a Functional model, Grad-CAM
and LayerCAM on a layer inside the base, feature maps of two inner layers.

As in Keras's transfer-learning guide: first the new head trains on the frozen base, then
the whole model is fine-tuned at a low learning rate. The callbacks go into both `fit`s;
the second continues their steps. `weights=None` keeps this example offline; use
`weights="imagenet"` (a download) for real work.

Run:  python examples/transfer_learning.py
Then: convviz tensorboard logs/transfer

CONVVIZ_EXAMPLE_QUICK=1 trains on a few images for one epoch (how CI runs it).
"""

import os

import keras

import keras_convviz as kcv
from keras_convviz.datasets import CLASS_NAMES, make_shapes

QUICK = os.environ.get("CONVVIZ_EXAMPLE_QUICK") == "1"
SIZE = 96

keras.utils.set_random_seed(0)
train = make_shapes(64 if QUICK else 2000, image_size=SIZE, seed=0)
val = make_shapes(16 if QUICK else 200, image_size=SIZE, seed=1)

base = keras.applications.MobileNetV2(
    input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, alpha=0.35
)
base.trainable = False
inputs = keras.Input((SIZE, SIZE, 3), name="image")
x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)  # images in [0, 1] -> MobileNetV2's [-1, 1]
x = base(x)
x = keras.layers.GlobalAveragePooling2D()(x)
outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax")(x)
model = keras.Model(inputs, outputs)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

# A layer inside the base is addressed by its path; Keras names the base after its
# settings (here "mobilenetv2_0.35_96"), so build the path from `base.name`.
cam_layer = f"{base.name}/block_13_expand_relu"  # 6x6 at 96x96: coarse but localised
print("Grad-CAM on", cam_layer)
probe = (val.images[:4], val.labels[:4])
callbacks = [
    kcv.GradCAM(
        "logs/transfer",
        probe,
        layer_name=cam_layer,
        method=["gradcam", "layercam"],
        class_names=list(CLASS_NAMES),
    ),
    kcv.FeatureMaps(
        "logs/transfer",
        probe,
        layer_names=[f"{base.name}/Conv1", f"{base.name}/block_6_expand"],
        max_channels=16,
    ),
]
data = dict(x=train.images, y=train.labels, validation_data=(val.images, val.labels), verbose=2)
model.fit(**data, epochs=1 if QUICK else 5, callbacks=callbacks)

if not QUICK:  # fine-tune everything, gently; steps continue after the first fit's
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(**data, epochs=10, initial_epoch=5, callbacks=callbacks)
