"""The callbacks beside `keras.callbacks.TensorBoard` on one `log_dir`, then shared: a GIF
of one Grad-CAM map over the epochs, contact sheets and an offline HTML report.

Keras writes its runs `train/` and `validation/` (loss, accuracy); each keras_convviz
callback writes its own run (`feature_maps/`, `grad_cam/`...), so TensorBoard shows them
side by side. The export reads the event files alone; the same from the shell:

    convviz export logs/shared --out share --tags "grad_cam/bn4/image_0$" --format gif
    convviz export logs/shared --out share --format sheet,html

Run:  python examples/tensorboard_and_export.py
Then: convviz tensorboard logs/shared, and open share/report.html in any browser (one
      file, no server, no network).

CONVVIZ_EXAMPLE_QUICK=1 trains on a few images for two epochs (how CI runs it).
"""

import os

import keras

import keras_convviz as kcv
from keras_convviz.datasets import CLASS_NAMES, make_shapes
from keras_convviz.demo import build_demo_model

QUICK = os.environ.get("CONVVIZ_EXAMPLE_QUICK") == "1"
LOG_DIR = "logs/shared"

keras.utils.set_random_seed(0)
train, val = make_shapes(64 if QUICK else 3000, seed=0), make_shapes(16 if QUICK else 300, seed=1)
model = build_demo_model()  # conv1..conv4, each with batch norm bn1..bn4
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(
    train.images,
    train.labels,
    epochs=2 if QUICK else 8,
    verbose=2,
    validation_data=(val.images, val.labels),
    callbacks=[
        keras.callbacks.TensorBoard(LOG_DIR),  # train/ and validation/
        kcv.ConvViz(LOG_DIR, (val.images[:4], val.labels[:4]), class_names=list(CLASS_NAMES)),
    ],
)
print(f"See it all with:  convviz tensorboard {LOG_DIR}")

gifs = kcv.export(LOG_DIR, "share", tags=r"grad_cam/bn4/image_0$", formats=["gif"])
print("GIF:", *gifs["gif"])
# Keras's loss and accuracy curves land under "Other scalars" in the report.
written = kcv.export(LOG_DIR, "share", formats=["sheet", "html"])
print("Contact sheets:", *written["sheet"], sep="\n  ")
print("Report:", *written["html"])
