"""`OcclusionSensitivity`: how much the target score drops when a patch is hidden."""

from __future__ import annotations

import tensorflow as tf

from keras_convviz import _rendering, _tags, kinds
from keras_convviz._args import check_occlusion_method, check_positive_int, occlusion_sizes
from keras_convviz.callbacks.maps import MapCallback
from keras_convviz.core.geometry import MAX_SLICES
from keras_convviz.core.graph import NotServed
from keras_convviz.core.passes import compile_once, count_non_finite
from keras_convviz.methods.occlusion import Occlusion
from keras_convviz.methods.perturb import occlusion_baseline
from keras_convviz.summary_io import Image, Scalar


class OcclusionSensitivity(MapCallback):
    """Writes occlusion-sensitivity maps of each probe image to TensorBoard.

    Each probe image is covered by a sliding `patch_size` window filled with `baseline`; the
    map at a pixel is score(original) - score(occluded) of the target class, averaged over
    the windows that cover it. Red: hiding the region lowers the score (evidence for the
    class); blue: hiding it raises the score. All occluded images are scored in one compiled
    pass, `batch_size` at a time; by default (`method="auto"`) each layer recomputes only
    the rectangle a window changes, where that is cheaper (the same map either way). At the
    end of every `freq` epochs it writes, into the run `log_dir/occlusion_sensitivity`, one
    panel per probe image (the image and the map overlaid, a symmetric colour scale per map)
    and the largest drop as a scalar.

    Any rank, as captum's `Occlusion(sliding_window_shapes, strides)`: a sequence
    `(steps, channels)` is occluded by windows along its steps (drawn as a strip under its
    channels), a volume `(depth, height, width, channels)` by boxes (drawn on a montage of
    its depth slices); the incremental path serves images only.

    Tags: `occlusion_sensitivity/image_<i>` (images) and `occlusion_sensitivity/image_<i>/max`
    (scalars). Step = epoch - 1 (Keras's "Epoch 1" is step 0).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: images, `(images, labels)` or a `tf.data.Dataset` (first batch).
        patch_size: int or tuple of ints, one per spatial axis (`(rows, cols)` for images,
            `(steps,)` for sequences, `(depth, rows, cols)` for volumes). The occluding
            window. Defaults to `None`: an eighth of the shorter side of an image (the steps
            of a sequence), a quarter of each side of a volume.
        stride: int or tuple of ints like `patch_size`, at most `patch_size`. Step between
            windows; windows that overlap are averaged per pixel. Defaults to `None`: equal
            to `patch_size`.
        baseline: `"blur"`, `"mean"`, a float or an array broadcastable to a probe sample
            (`(height, width, channels)` for images). What fills the window: `"blur"`, each
            sample blurred along its spatial axes by a Gaussian whose standard deviation is
            the patch's longest side, which adds no edge or colour that
            is not there (black stays black, white stays white); `"mean"`, the probe's
            per-channel mean (grey
            ink on a black or white background); a value in the model's input space (e.g.
            the background value of the data set). Defaults to `"blur"`.
        class_index: int, `"predicted"` or None. The class scored for every image;
            `"predicted"`: each image's predicted class. Defaults to `None`: the true label
            when the probe has labels, else the predicted class. For a segmentation output,
            the region whose score is explained (see `GradCAM`).
        batch_size: int. Occluded images scored per model call; bounds memory. Defaults to
            `256`.
        class_names: list of str or None. The classes' names, for the caption under each
            panel (target, predicted class and its probability). Defaults to `None`: the
            class indices.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input: str, int or None. For a model with several inputs, the one that takes
            the images (name or position); the probe then gives every input, `x` as a dict
            or list. Defaults to `None`: the only 4-D input.
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
        method: `"auto"`, `"incremental"` or `"naive"`. How the occluded copies are
            scored: `"incremental"` keeps the unoccluded activations and recomputes, layer
            by layer, only the rectangle each window changes (convolutions, pools, batch
            norm, activations, residual adds and concatenations; other layers run on full
            maps from where they stand), `"naive"` runs the model on every occluded copy.
            The maps are the same up to float rounding. `"auto"` takes the path a cost
            model (multiply-adds and memory traffic per layer, splicing included) finds
            cheaper: incremental on VGG16, ResNet50 or MobileNetV2 at 224x224 (2-11x
            faster), naive where a window covers most of a small image; naive for
            sequences and volumes (`"incremental"` is refused for them). Defaults to
            `"auto"`.
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
        kcv.OcclusionSensitivity("logs/run1", probe=x_val[:8], patch_size=8, freq=5)])
    ```
    """

    run_name = kinds.OCCLUSION.run

    def __init__(
        self,
        log_dir,
        probe,
        patch_size=None,
        stride=None,
        baseline="blur",
        class_index: int | str | None = None,
        batch_size: int = 256,
        class_names=None,
        freq: int = 1,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
        grid: bool = False,
        faithfulness=False,
        scale: str = "image",
        method: str = "auto",
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
        self.patch_size, self.stride = occlusion_sizes(self.probe.image_shape, patch_size, stride)
        self._baseline = occlusion_baseline(baseline, self.probe)
        self.baseline = baseline if isinstance(baseline, str) else self._baseline.value
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.method = check_occlusion_method(method, rank=len(self.patch_size))

    def _prepare(self, model):
        _, target = self._join_target(model)
        if not self.patch_size:  # samples without 1 to 3 spatial axes (`occlusion_sizes`)
            raise NotServed(
                f"the probe samples of shape {self.probe.image_shape} have no steps, "
                "height x width or depth x height x width to slide a window over"
            )
        self._map_needs = (
            Occlusion(
                self.patch_size, self.stride, self.batch_size, target, self._baseline, self.method
            ),
        )
        # No AutoGraph: straight-line TF ops (see _rendering), and converting them took most
        # of the first snapshot's time.
        self._render = compile_once(self._render_panels, autograph=False)

    def _render_panels(self, images, maps, scales, caption_input):
        """The caption and the numbers beside the panels (the panels themselves are drawn
        by the shared `_rendering.draw_heatmap_panels`)."""
        scale = None
        if scales is not None:  # scale="run": the running maximum
            scale = tf.maximum(scales[0], _rendering.map_scale(maps, symmetric=True))
        peaks = tf.reduce_max(maps, axis=tuple(range(1, maps.shape.rank)))
        return self._caption(caption_input), peaks, count_non_finite(maps), scale

    def run_names(self):
        return (self.run_name, *self._floor_runs())

    def _map_run(self, need):
        return self.run_name

    def _snapshot(self, epoch, result):
        maps = result[self._map_needs[0]]
        scales = self._running_scales(self._map_needs)
        images = self._shared.bound.images
        caption, peaks, non_finite, scale = self._render(
            images, maps, scales, self._caption_input(result)
        )
        self._keep_scales(self._map_needs, [scale])
        panels = self._draw_panels(maps, True, caption, scale)
        run = self.run_name
        items = [Scalar(_tags.tag(run, _tags.NON_FINITE), non_finite, sparse=True)]
        items += self._faithfulness_items(result, self._map_needs[0], run)
        items += self._region_items(result, maps, run)
        for i in range(self.probe.size):
            items.append(Image(_tags.tag(run, i), panels[i : i + 1]))
            items.append(Scalar(_tags.tag(run, i, "max"), peaks[i]))
        return items
