"""`Saliency`: which input pixels the target score is sensitive to (gradient methods)."""

from __future__ import annotations

import tensorflow as tf

from keras_convviz import _rendering, _tags
from keras_convviz._args import check_methods, make_baseline, saliency_options
from keras_convviz.callbacks.maps import MapCallback
from keras_convviz.core.geometry import MAX_SLICES
from keras_convviz.core.needs import Const
from keras_convviz.core.passes import compile_once, count_non_finite
from keras_convviz.methods.saliency import SALIENCY_METHODS, saliency_need, saliency_view
from keras_convviz.summary_io import Image, Scalar


class Saliency(MapCallback):
    """Writes gradient saliency maps of each probe image to TensorBoard.

    `method` is one of, or a list of:
    `"gradient"` (Simonyan et al. 2014): dS/dx; `"gradient_x_input"`: x * dS/dx;
    `"smoothgrad"` (Smilkov et al. 2017): the mean of dS/dx over `samples` copies of the
    image with Gaussian noise of standard deviation `noise` x (max - min of the image);
    `"integrated_gradients"` (Sundararajan et al. 2017): (x - baseline) x the mean of dS/dx
    over `steps` points on the straight path from `baseline`. S is the target score before
    a final softmax/sigmoid. Noise samples and path points are scored in the compiled pass,
    `batch_size` at a time. At the end of every `freq` epochs it writes, into one run per
    method (`log_dir/gradient`, `log_dir/gradient_x_input`, `log_dir/smoothgrad`,
    `log_dir/integrated_gradients`), one panel per probe image: the image beside the map.
    Gradient and SmoothGrad show the largest magnitude over channels (warm = sensitive);
    the two input-weighted methods show the signed sum over channels (red raises the score,
    blue lowers it). The raw maximum magnitude is written as a scalar.

    Tags: `<run>/image_<i>` (images), `<run>/image_<i>/max` and `<run>/non_finite`
    (scalars). Step = epoch - 1 (Keras's "Epoch 1" is step 0).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: images, `(images, labels)` or a `tf.data.Dataset` (first batch).
        method: str or list of str. Defaults to `"smoothgrad"`.
        class_index: int, `"predicted"` or None. The class scored for every image;
            `"predicted"`: each image's predicted class. Defaults to `None`: the true label
            when the probe has labels, else the predicted class. For a segmentation output,
            the region whose score is explained (see `GradCAM`).
        samples: int. SmoothGrad's noisy copies per image. Defaults to `32`.
        noise: float. SmoothGrad's noise level, a fraction of each image's value range.
            Defaults to `0.15`.
        steps: int. Integrated Gradients' path points. Defaults to `32`.
        baseline: float or array broadcastable to `(height, width, channels)`. Integrated
            Gradients' starting image, in the model's input space. Defaults to `None`: zeros.
        seed: int. SmoothGrad's noise seed. Defaults to `0`.
        batch_size: int. Inputs scored per model call; bounds memory. Defaults to `256`.
        class_names: list of str or None. The classes' names, for the caption under each
            panel (target, predicted class and its probability). Defaults to `None`: the
            class indices.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input: str, int or None. For a model with several inputs, the one that takes
            the images (name or position). Defaults to `None`: the only input with spatial axes.
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
        kcv.Saliency("logs/run1", probe=(x_val[:8], y_val[:8]), method="smoothgrad")])
    ```
    """

    def __init__(
        self,
        log_dir,
        probe,
        method="smoothgrad",
        class_index: int | str | None = None,
        samples: int = 32,
        noise: float = 0.15,
        steps: int = 32,
        baseline=None,
        seed: int = 0,
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
        self.methods = check_methods(method, SALIENCY_METHODS)
        self.options = saliency_options(samples, noise, steps, seed, batch_size)
        self.baseline = make_baseline(0.0 if baseline is None else baseline, self.probe)
        self.run_name = _tags.saliency_run(self.methods[0])

    def run_names(self):
        return (*(_tags.saliency_run(m) for m in self.methods), *self._floor_runs())

    def _map_run(self, need):
        return _tags.saliency_run(need.method)

    def _prepare(self, model):
        _, target = self._join_target(model)
        baseline = Const(self.baseline)
        self._map_needs = tuple(
            saliency_need(m, target, baseline, **self.options) for m in self.methods
        )
        self._render = compile_once(self._render_panels, autograph=False)

    def _render_panels(self, images, methods, attributions, scales, caption_input):
        """The caption and, per method, its map, the numbers beside its panels (drawn by
        the shared `_rendering.draw_heatmap_panels`)."""
        out = []
        for i, (method, values) in enumerate(zip(methods, attributions)):
            maps, signed = saliency_view(method, values)
            scale = None
            if scales is not None:  # scale="run": the running maximum
                scale = tf.maximum(scales[i], _rendering.map_scale(maps, symmetric=signed))
            peaks = tf.reduce_max(tf.abs(maps), axis=tuple(range(1, maps.shape.rank)))
            out.append((maps, peaks, count_non_finite(values), scale))
        return self._caption(caption_input), out

    def _snapshot(self, epoch, result):
        needs = self._maps_in(result)  # a costly method's only where the budget admits it
        values = [result[n] for n in needs]
        scales = self._running_scales(needs)
        images = self._shared.bound.images
        methods = tuple(n.method for n in needs)
        caption, rendered = self._render(
            images, methods, values, scales, self._caption_input(result)
        )
        self._keep_scales(needs, [r[3] for r in rendered])
        items = []
        for need, (maps, peaks, non_finite, scale) in zip(needs, rendered):
            signed = SALIENCY_METHODS[need.method].signed
            panels = self._draw_panels(maps, signed, caption, scale)
            run = self._map_run(need)
            items.append(Scalar(_tags.tag(run, _tags.NON_FINITE), non_finite, sparse=True))
            items += self._faithfulness_items(result, need, run)
            items += self._region_items(result, maps, run)
            for i in range(self.probe.size):
                items.append(Image(_tags.tag(run, i), panels[i : i + 1]))
                items.append(Scalar(_tags.tag(run, i, "max"), peaks[i]))
        return items
