"""`GradCAM`: where the evidence for the target class lies in a conv layer."""

from __future__ import annotations

import tensorflow as tf

from keras_convviz import _rendering
from keras_convviz._base import Image, ProbeCallback, Scalar
from keras_convviz._core import CamRequest, compile_once, count_non_finite
from keras_convviz._probe import resolve_targets


class GradCAM(ProbeCallback):
    """Writes Grad-CAM heatmaps of each probe image to TensorBoard.

    Grad-CAM (Selvaraju et al. 2017): ReLU(sum_c mean_hw(dS/dA_c) * A_c) on a layer's output A,
    for the target score S taken before a final softmax/sigmoid (a saturated softmax has
    no gradient), upsampled bilinearly to the input size. At the end of every `freq` epochs
    it writes, into the run `log_dir/grad_cam`, one panel per probe image: the image and the
    map overlaid on it, each map scaled by its own maximum; that raw maximum is written as a
    scalar so the strength of the evidence can be followed across epochs.

    Tags: `grad_cam/<layer>/image_<i>` (images) and `grad_cam/<layer>/image_<i>/max`
    (scalars). Step = epoch.

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: images, `(images, labels)` or a `tf.data.Dataset` (first batch).
        layer_name: str or None. The layer to explain, by name or nested path. Defaults to
            `None`: the last layer with a 4-D output before the head (pooling layers skipped).
        class_index: int or None. The class whose score is explained for every image.
            Defaults to `None`: each image's true label when the probe has labels, else its
            predicted class.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input: str, int or None. For a model with several inputs, the one that takes
            the images (name or position); the probe then gives every input, `x` as a dict
            or list. Defaults to `None`: the only 4-D input.
        score_output: str, int or None. For a model with several outputs, the one that
            holds the class scores (name or position). Defaults to `None`: the only
            (batch, units) output.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[kcv.GradCAM("logs/run1", probe=(x_val[:8], y_val[:8]))])
    ```
    """

    run_name = "grad_cam"

    def __init__(
        self,
        log_dir,
        probe,
        layer_name: str | None = None,
        class_index: int | None = None,
        freq: int = 1,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
    ):
        super().__init__(log_dir, probe, freq, on_error, image_input, score_output)
        if layer_name is not None and not isinstance(layer_name, str):
            raise TypeError(f"`layer_name` must be a str or None. Received: {layer_name!r}")
        self.layer_name = layer_name
        resolve_targets(self.probe, class_index, None, "class_index")  # type and sign checks
        self.class_index = class_index
        self._request = None

    def _prepare(self, model):
        shared = self._join(model)
        graph = shared.core.graph
        ref = (
            graph.default_cam_layer()
            if self.layer_name is None
            else graph.find_spatial(self.layer_name, "layer_name")
        )
        num_classes = shared.bound.binding.head.num_classes
        targets = resolve_targets(self.probe, self.class_index, num_classes, "class_index")
        self._request = CamRequest(ref, tuple(int(t) for t in targets))
        # No AutoGraph: straight-line TF ops (see _rendering), and converting them took most
        # of the first snapshot's time.
        self._render = compile_once(self._render_panels, autograph=False)

    def cam_requests(self):
        return (self._request,)

    def _render_panels(self, images, cams):
        panels = _rendering.render_heatmap_panel(
            images, cams, symmetric=False, lut=_rendering.colormap(_rendering.DEFAULT_GRADCAM_CMAP)
        )
        peaks = tf.reduce_max(cams, axis=(1, 2))
        return tf.image.convert_image_dtype(panels, tf.uint8), peaks, count_non_finite(cams)

    def _snapshot(self, epoch):
        cams = self._shared.result(epoch)["cam_by_request"][self._request]
        panels, peaks, non_finite = self._render(self._shared.bound.images, cams)
        path = self._request.ref.path
        items = [Scalar(f"grad_cam/{path}/non_finite", non_finite)]
        for i in range(self.probe.size):
            items.append(Image(f"grad_cam/{path}/image_{i}", panels[i : i + 1]))
            items.append(Scalar(f"grad_cam/{path}/image_{i}/max", peaks[i]))
        return items
