"""`ActivationMaximization`: what each filter looks for, while it learns, as tiled grids."""

from __future__ import annotations

import math

import tensorflow as tf

from keras_convviz import _rendering, _tags, kinds
from keras_convviz._args import (
    check_filters,
    check_input_range,
    check_layer_names,
    check_positive_int,
    check_seed,
    check_size,
)
from keras_convviz.callbacks.base import SnapshotCallback, default_conv_layers
from keras_convviz.core.passes import compile_once
from keras_convviz.core.probe import make_probe
from keras_convviz.core.shared import core_for
from keras_convviz.methods import actmax
from keras_convviz.summary_io import Image, Scalar

# Tiles smaller than this (pixels, shorter side) are upsampled (nearest) to reach it.
MIN_TILE = 48


class ActivationMaximization(SnapshotCallback):
    """Writes, for each layer, the image each of its filters responds to most.

    At the end of every `freq` epochs it runs activation maximisation
    (`kcv.activation_maximization`: Olah et al. 2017's feature visualisation, one compiled
    loop per layer, traced once and rerun with the current weights) and writes, into the
    run `log_dir/activation_maximization`, one grid per layer: a tile per filter, each tile
    stretched to its own range for display, and beside it each filter's score (its
    channel's mean activation on its image) as a scalar, so a filter that learns to respond
    strongly is seen to. Step = epoch - 1 (Keras's "Epoch 1" is step 0).

    It is the costliest view: a snapshot runs `steps` forward and backward passes of a
    batch of `filters` images through the layers up to each layer (on the demo model at
    64x64, about 0.4 of a demo epoch for one layer at the defaults; BENCHMARKS.md). `freq`,
    `steps` and `warm_start` trade it down.

    Tags: `activation_maximization/<layer>` (image), `activation_maximization/<layer>/
    filter_<f>` (scalars; `class_<c>` for the score output).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        layer_names: list of str or None. Layers to show, by name or nested path; the score
            output's name shows what the model takes each class to look like. Defaults to
            `None`: every 2-D conv layer (at most `max_layers`, see there).
        max_layers: int. Without `layer_names`, the most conv layers shown: a model with
            more shows one per resolution stage (the last conv before the resolution drops;
            convs on 1x1 maps, as squeeze-excite branches, left out), spread evenly over the
            stages when there are more. Defaults to `8`.
        filters: int or list of int. The first so many filters of each layer, or these
            indices. Defaults to `16`.
        steps: int. Adam steps per snapshot. Defaults to `128`.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        probe: images of the training data (an array, `(x, y)` or a `tf.data.Dataset`):
            their range per channel is the pictures' range, their colour correlations the
            colour basis. Defaults to `None`.
        input_range: `(low, high)`, numbers or one per channel: the values the model's
            input takes (e.g. `(0, 255)`), overriding the probe's. Defaults to `None`: the
            probe's range, else `(0, 1)`.
        size: int or `(height, width)`, for a model whose input size is free. Defaults to
            `None`: the model's input size.
        warm_start: bool. Start each snapshot from the previous snapshot's images (the same
            filters, a little further trained), with `warm_steps` steps: cheaper, and the
            pictures evolve smoothly. Defaults to `False`: every snapshot starts afresh from
            the same seed.
        warm_steps: int or None. Steps of a warm-started snapshot. Defaults to `None`: a
            quarter of `steps`.
        seed: int. The random start and transformations. Defaults to `0`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[
        kcv.ActivationMaximization("logs/run1", layer_names=["conv3"], probe=x_val[:64])])
    ```
    """

    run_name = kinds.ACTIVATION_MAXIMIZATION.run

    def __init__(
        self,
        log_dir,
        layer_names: list[str] | None = None,
        max_layers: int = 8,
        filters=16,
        steps: int = actmax.STEPS,
        freq: int = 1,
        probe=None,
        input_range=None,
        size=None,
        warm_start: bool = False,
        warm_steps: int | None = None,
        seed: int = 0,
        on_error: str = "warn",
    ):
        super().__init__(log_dir, freq=freq, on_error=on_error)
        self.layer_names = check_layer_names(layer_names)
        self.max_layers = check_positive_int(max_layers, "max_layers")
        self.filters = check_filters(filters, count=True)
        if self.filters is None:
            raise ValueError(
                "`filters` must be an int >= 1 or a list of filter indices. Received: filters=None"
            )
        self.steps = check_positive_int(steps, "steps")
        if not isinstance(warm_start, bool):
            raise TypeError(
                f"`warm_start` must be True or False. Received: warm_start={warm_start!r}"
            )
        self.warm_start = warm_start
        self.warm_steps = (
            max(1, self.steps // 4)
            if warm_steps is None
            else check_positive_int(warm_steps, "warm_steps")
        )
        self.seed = check_seed(seed)
        self.size = check_size(size)
        self.input_range = check_input_range(input_range)
        self.probe = None if probe is None else make_probe(probe)

    def _prepare(self, model):
        core = core_for(model)
        graph = core.graph
        rank = graph.geometry.name if graph.geometry is not None else None
        if rank is not None and rank not in kinds.ACTIVATION_MAXIMIZATION.ranks:
            raise ValueError(
                "ActivationMaximization draws the inputs of 2-D (height, width) image models "
                f"so far; model {model.name!r} takes {graph.geometry.describe()} input."
            )
        if self.layer_names is None:
            names = [
                ref.path for ref in default_conv_layers(self, graph, max_layers=self.max_layers)
            ]
            if not names:
                raise ValueError(
                    f"ActivationMaximization found no 2-D conv layer in model {model.name!r}; "
                    "pass `layer_names`."
                )
        else:
            names = self.layer_names
        size = actmax.resolve_size(graph, self.size)
        channels = int(graph.input_shapes[0][-1])
        images = None if self.probe is None else self.probe.images
        self._low, self._high = actmax.resolve_range(self.input_range, images, channels)
        self._colour = actmax.colour_sqrt(channels, images, self._low, self._high)
        robustness = actmax.robustness(size, None, (0.95, 1.05), 5.0)
        layers = {}
        for name in names:
            ref, head = actmax.resolve_target(graph, name, "layer_names")
            units = actmax.units_of(ref, head)
            filters = actmax.resolve_filters(self.filters, units, ref, head, "filters", count=True)
            maximizer = actmax.maximizer_for(
                core, ref, head, filters, size, robustness, actmax.LEARNING_RATE
            )
            layers[ref.path] = (maximizer, "class" if head is not None else "filter")
        # Warm starts continue the same model's, layers' and filters' images only.
        if (
            getattr(self, "_layers", None) is None
            or set(layers) != set(self._layers)
            or any(layers[p][0] is not self._layers[p][0] for p in layers)
        ):
            self._starts: dict = {}
        self._layers = layers
        self._render = compile_once(render_grid, autograph=False)

    def _capture(self, epoch):
        # The ascent runs the model's layers: on the training thread, with these weights.
        found = {}
        for path, (maximizer, _) in self._layers.items():
            start = self._starts.get(path) if self.warm_start else None
            steps = self.steps if start is None else self.warm_steps
            params, images, scores = maximizer(
                steps, self.seed, self._low, self._high, self._colour, start=start
            )
            if self.warm_start:
                self._starts[path] = params
            found[path] = (images, scores)
        return found

    def _snapshot(self, epoch, found):
        run = self.run_name
        items = []
        for path, (images, scores) in found.items():
            maximizer, unit = self._layers[path]
            items.append(Image(_tags.tag(run, path), self._render(images)))
            items += [
                Scalar(_tags.tag(run, path, f"{unit}_{f}"), scores[i])
                for i, f in enumerate(maximizer.filters)
            ]
        return items


def render_grid(images: tf.Tensor) -> tf.Tensor:
    """One picture of the images, a tile each, each stretched to its own range.

    Args:
        images: `(filters, height, width, channels)` float32 in the model's input space.

    Returns:
        `(1, H, W, 3)` uint8: tiles row-major in `ceil(sqrt(filters))` columns, upsampled
        (nearest) to at least `MIN_TILE` pixels, 1-pixel white separators.
    """
    count, height, width = (int(d) for d in images.shape[:3])
    tiles = _rendering.display_images(images)
    factor = max(1, math.ceil(MIN_TILE / min(height, width)))
    tiles = _rendering.upsample_nearest(tiles, factor)
    grid = _rendering.tile(tiles, math.isqrt(count - 1) + 1 if count > 1 else 1)
    return tf.image.convert_image_dtype(grid, tf.uint8)
