"""`GradCAM`: where the evidence for the target class lies in a conv layer (the CAM family)."""

from __future__ import annotations

import tensorflow as tf

from keras_convviz import _rendering, _tags
from keras_convviz._args import check_layer_name, check_methods, check_positive_int
from keras_convviz.callbacks.maps import MapCallback
from keras_convviz.core.geometry import MAX_SLICES
from keras_convviz.core.passes import compile_once, count_non_finite
from keras_convviz.health import map_change
from keras_convviz.methods.cam import CAM_METHODS, Cam
from keras_convviz.summary_io import Image, Scalar


class GradCAM(MapCallback):
    """Writes Grad-CAM (or another CAM method's) heatmaps of each probe image to TensorBoard.

    Grad-CAM (Selvaraju et al. 2017): ReLU(sum_c mean_hw(dS/dA_c) * A_c) on a layer's output A,
    for the target score S taken before a final softmax/sigmoid (a saturated softmax has
    no gradient), upsampled bilinearly to the input size. `method` picks another member of
    the CAM family, or several side by side: `"gradcam++"` (Chattopadhay et al. 2018),
    `"layercam"` (Jiang et al. 2021), `"hirescam"` (Draelos & Carin 2020), `"eigencam"`
    (Muhammad & Yeasin 2020, no gradient) and `"scorecam"` (Wang et al. 2020: one forward
    pass per channel and image, `batch_size` at a time). All methods on one layer share one
    gradient. At the end of every `freq` epochs it writes, into one run per method
    (`log_dir/grad_cam`, `log_dir/grad_cam_plus_plus`, `log_dir/layer_cam`,
    `log_dir/hires_cam`, `log_dir/eigen_cam`, `log_dir/score_cam`), one panel per probe
    image: the image and the map overlaid on it, each map scaled by its own maximum; that
    raw maximum is written as a scalar so the strength of the evidence can be followed
    across epochs.

    Tags: `<run>/<layer>/image_<i>` (images), `<run>/<layer>/image_<i>/max`,
    `<run>/<layer>/image_<i>/change` (from the method's second snapshot on: 1 - the
    correlation of the map with its previous snapshot's, so a model that keeps changing its
    mind shows)
    and `<run>/<layer>/non_finite` (scalars). The same tag in each method's run, so
    TensorBoard shows the methods side by side. Step = epoch - 1 (Keras's "Epoch 1" is step 0).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: images, `(images, labels)` or a `tf.data.Dataset` (first batch).
        layer_name: str or None. The layer to explain, by name or nested path. Defaults to
            `None`: the last layer before the head whose output keeps at least 2
            positions along each spatial axis, after its activation (pooling layers
            skipped, never a 1x1 map such as a classifier conv after global pooling; for a
            vision transformer, the input of its last attention layer; for a segmentation
            output, the layer before it). Where later layers are passed over, one warning
            at train begin says which layer and why.
        class_index: int, `"predicted"` or None. The class whose score is explained for
            every image; `"predicted"`: each image's predicted class. Defaults to `None`:
            each image's true label when the probe has labels, else its predicted class.
            For a segmentation output the score is the class's, summed over a region of
            each image (the caption gives its size): `None`, the largest labelled region
            other than class 0 in the probe's masks; an int, that class's labelled region;
            `"predicted"` (or no masks), the region the model predicts (for an int, where
            it predicts that class; else its largest predicted region other than class 0).
            A predicted region is found afresh at every snapshot from the output of the
            snapshot's own pass, not once at train begin: a model trained from scratch
            predicts noise at first, and the region worth explaining is the one it
            predicts now.
        class_names: list of str or None. The classes' names, for the caption under each
            panel (target, predicted class and its probability). Defaults to `None`: the
            class indices.
        method: str or list of str. One of `"gradcam"`, `"gradcam++"`, `"layercam"`,
            `"hirescam"`, `"eigencam"`, `"scorecam"`, or a list of them. Defaults to
            `None`: `"gradcam"`, or `"layercam"` for a segmentation output, whose weight per
            position keeps a region's map on the region: Grad-CAM's one weight per channel
            is averaged over the whole output (on a U-Net trained on shapes, 32 of 32 maps
            peaked inside the region with LayerCAM at every seed, 20-27 with Grad-CAM;
            BENCHMARKS.md, "Segmentation truth").
        batch_size: int. Masked images scored per model call by `"scorecam"`; bounds its
            memory. Defaults to `256`.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input: str, int or None. For a model with several inputs, the one that takes
            the images (name or position); the probe then gives every input, `x` as a dict
            or list. Defaults to `None`: the only input with spatial axes.
        score_output: str, int or None. For a model with several outputs, the one that
            holds the class scores (name or position). Defaults to `None`: the only
            (batch, units) output.
        grid: bool. One picture per layer with every probe image in it, one below the
            other (tag `.../all_images`), instead of one card per probe image: for large
            probes. Defaults to `False`.
        scale: `"image"` or `"run"`. `"image"`: each picture scaled on its own (best
            contrast); `"run"`: each map's scale is its running maximum over the training
            run (the colour bar says it), so a map that fades is seen to fade. Defaults to
            `"image"`.
        faithfulness: bool or dict. Also score each map by deletion and insertion
            (`kcv.faithfulness`: the target's probability as the pixels the map ranks first
            are removed, or added to a blank image; deletion lower and insertion higher is
            better), beside a seeded random map and an edge map scored the same way: the
            probe's mean as scalars `<map tag>/deletion` and `.../insertion`, the floors
            under the same tags in the runs `floor_random` and `floor_edge`. A dict sets
            `steps`, `baseline`, `sigma`, `batch_size`. It scores 2 * steps - 1 images
            per probe image for the map and for each floor. Defaults to `False`.
        max_slices: int. The depth slices of a volume (Conv3D input) its pictures show
            at most, evenly spaced from the first to the last, as a montage. Defaults to
            `8`.
        regions: array or None. Where the object is on each probe sample: masks
            `(batch, *spatial)` (bool or 0/1; `(..., 1)` accepted) or boxes
            `(batch, 4)` as `(y0, x0, y1, x1)` pixels, ends exclusive (for sequences
            `(start, end)`, for volumes `(z0, y0, x0, z1, y1, x1)`; see
            `kcv.localization`). With regions each map is also scored at every snapshot:
            `<map tag>/in_region` (the probe's mean share of the map's positive mass
            inside the region), `<map tag>/pointing` (the share of images whose map
            peaks inside), `<picture tag>/in_region` per image, and what a uniform map
            scores (the region's area share) under the same tags in the run
            `floor_uniform`. Defaults to `None`.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[
        kcv.GradCAM("logs/run1", probe=(x_val[:8], y_val[:8]), method=["gradcam", "layercam"])])
    ```
    """

    def __init__(
        self,
        log_dir,
        probe,
        layer_name: str | None = None,
        class_index: int | str | None = None,
        method=None,
        batch_size: int = 256,
        class_names=None,
        freq: int = 1,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
        grid: bool = False,
        faithfulness=False,
        scale: str = "image",
        max_slices: int = MAX_SLICES,
        regions=None,
    ):
        super().__init__(
            log_dir,
            probe,
            class_index,
            class_names,
            freq,
            on_error,
            image_input,
            score_output,
            grid,
            faithfulness,
            scale,
            max_slices=max_slices,
            regions=regions,
        )
        self.layer_name = check_layer_name(layer_name)
        self._method_given = method is not None
        self.methods = check_methods("gradcam" if method is None else method, CAM_METHODS)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.run_name = _tags.cam_run(self.methods[0])
        # The argument name errors use: `ConvViz` passes its `cam_layer` as `layer_name`.
        self._layer_argument = "layer_name"

    def run_names(self):
        return (*(_tags.cam_run(m) for m in self.methods), *self._floor_runs())

    def _map_run(self, need):
        return _tags.cam_run(need.method)

    def _prepare(self, model):
        shared, target = self._join_target(model)
        graph, geometry = shared.core.graph, shared.bound.binding.geometry
        if self.layer_name is None:
            ref, why = graph.cam_layer_choice(geometry, shared.bound.binding.head)
            if why is not None:
                self._notice(f"{why}. Pass `{self._layer_argument}` to choose another.")
        else:
            ref = graph.find_spatial(self.layer_name, self._layer_argument, geometry)
        head = shared.bound.binding.head
        if not self._method_given:  # see `method`
            self.methods = ("layercam",) if head.dense else ("gradcam",)
            self.run_name = _tags.cam_run(self.methods[0])
        layout = graph.layout(ref, geometry)
        self._map_needs = tuple(Cam(ref, m, target, self.batch_size, layout) for m in self.methods)
        # No AutoGraph: straight-line TF ops (see _rendering), and converting them took most
        # of the first snapshot's time.
        self._render = compile_once(self._render_panels, autograph=False)
        # Each map at its last snapshot, for its change: kept across `fit`s of the model.
        if getattr(self, "_previous_model", None) is not model:
            self._previous = {}
        self._previous_model = model

    def _render_panels(self, images, cams, previous, scales, caption_input):
        """The caption and, per method, the numbers beside its panels (the panels
        themselves are drawn by the shared `_rendering.draw_heatmap_panels`)."""
        out = []
        for i, (maps, before) in enumerate(zip(cams, previous)):
            scale = None
            if scales is not None:  # scale="run": the running maximum
                scale = tf.maximum(scales[i], _rendering.map_scale(maps, symmetric=False))
            peaks = tf.reduce_max(maps, axis=tuple(range(1, maps.shape.rank)))
            out.append((peaks, count_non_finite(maps), map_change(maps, before), scale))
        return self._caption(caption_input), out

    def _snapshot(self, epoch, result):
        needs = self._maps_in(result)  # a costly method's only where the budget admits it
        maps = [result[n] for n in needs]
        previous = [self._previous.get(n, m) for n, m in zip(needs, maps)]
        scales = self._running_scales(needs)
        images = self._shared.bound.images
        caption, rendered = self._render(
            images, maps, previous, scales, self._caption_input(result)
        )
        items = []
        for need, cam, (peaks, non_finite, change, scale) in zip(needs, maps, rendered):
            first = need not in self._previous
            panels = self._draw_panels(cam, False, caption, scale)
            run, path = self._map_run(need), need.ref.path
            items.append(Scalar(_tags.tag(run, path, _tags.NON_FINITE), non_finite, sparse=True))
            items += self._faithfulness_items(result, need, run, path)
            items += self._region_items(result, cam, run, path)
            for i in range(self.probe.size):
                items.append(Image(_tags.tag(run, path, i), panels[i : i + 1]))
                items.append(Scalar(_tags.tag(run, path, i, "max"), peaks[i]))
                if not first:  # a change is measured between snapshots
                    items.append(Scalar(_tags.tag(run, path, i, "change"), change[i]))
        self._previous.update(zip(needs, maps))
        self._keep_scales(needs, [r[3] for r in rendered])
        return items
