"""`FeatureMaps`: the activations of conv layers on the probe images, as tiled grids."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_convviz import _rendering, _tags, kinds
from keras_convviz._args import check_layer_names, check_positive_int
from keras_convviz.callbacks.base import ProbeCallback, default_conv_layers
from keras_convviz.core.geometry import MAX_SLICES, Geometry
from keras_convviz.core.graph import NotServed, output_activation
from keras_convviz.core.needs import Activations
from keras_convviz.core.passes import compile_once, count_non_finite
from keras_convviz.health import activation_health
from keras_convviz.summary_io import Image, Scalar


class FeatureMaps(ProbeCallback):
    """Writes the feature maps of conv layers for each probe image to TensorBoard.

    At the end of every `freq` epochs it runs the probe through the model (inference mode)
    and writes, into the run `log_dir/feature_maps`, one image per (layer, probe image): a
    grid of the first `max_channels` channels, each normalised on its own and small maps
    upsampled with nearest neighbour. Beside them, per layer, its health numbers on the
    probe (`keras_convviz.health.activation_health`), so dying, exploding or saturating
    layers show up across epochs: `near_zero_fraction`, `mean`, `std`, `max_activation`
    (the largest magnitude); for a bounded activation (sigmoid, hard sigmoid, tanh, relu6)
    `saturated_fraction`; and where a channel can die, `dead_fraction` (channels never
    above 0): on a layer whose own activation is a ReLU (relu, relu6), or whose output
    flows into one through normalisation layers (conv -> BatchNormalization -> ReLU),
    counted on that ReLU's output. A linear conv (a bottleneck's projection, a `logits`
    conv), or one with leaky ReLU, ELU, GELU or swish, has no `dead_fraction`: its
    negative values still pass a gradient.

    Tags: `feature_maps/<layer>/image_<i>` (images), `feature_maps/<layer>/<quantity>`
    (scalars). Step = epoch - 1 (Keras's "Epoch 1" is step 0).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: the samples to look at: an array `(batch, *spatial, channels)`, a tuple
            `(images, labels)`, or a `tf.data.Dataset` (its first batch is used).
        layer_names: list of str or None. Layers to show, by name or nested path
            (`"base_model/conv"`). Defaults to `None`: every conv layer whose output lays
            out over the input (at most `max_layers`, see there), and a vision
            transformer's block outputs. A sequence's layer is drawn as one channels x
            steps strip, a volume's channels as montages of depth slices, tokens on their
            patch grid (each token's norm first).
        max_layers: int. Without `layer_names`, the most conv layers shown: a model with
            more shows one per resolution stage (the last conv before the resolution drops;
            convs on 1x1 maps, as squeeze-excite branches, left out), spread evenly over the
            stages when there are more. Defaults to `8`.
        max_channels: int. Channels shown per layer (the first ones). Defaults to `32`.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input: str, int or None. For a model with several inputs, the one that takes
            the images (name or position); the probe then gives every input, `x` as a dict
            or list. Defaults to `None`: the only input with spatial axes.
        score_output: str, int or None. For a model with several outputs, the one that
            holds the class scores; only used to share a pass with `GradCAM` and
            `OcclusionSensitivity`. Defaults to `None`.
        grid: bool. One picture per layer with every probe image in it, one below the
            other (tag `.../all_images`), instead of one card per probe image: for large
            probes. Defaults to `False`.
        scale: `"image"` or `"run"`. `"image"`: each tile min-max scaled on its own (best
            contrast); `"run"`: each channel's range is its running range over the probe
            and the training run, so a channel that fades is seen to fade. Defaults to
            `"image"`.
        max_slices: int. The depth slices of a volume (Conv3D input) its pictures show
            at most, evenly spaced from the first to the last, as a montage. Defaults to
            `8`.

    Example:

    ```python
    model.fit(x, y, epochs=10,
              callbacks=[kcv.FeatureMaps("logs/run1", probe=(x_val[:8], y_val[:8]))])
    ```
    """

    run_name = kinds.FEATURE_MAPS.run
    needs_scores = False

    def __init__(
        self,
        log_dir,
        probe,
        layer_names: list[str] | None = None,
        max_layers: int = 8,
        max_channels: int = 32,
        freq: int = 1,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
        grid: bool = False,
        scale: str = "image",
        max_slices: int = MAX_SLICES,
    ):
        super().__init__(
            log_dir,
            probe,
            freq,
            on_error,
            image_input,
            score_output,
            grid,
            scale,
            max_slices=max_slices,
        )
        self.layer_names = check_layer_names(layer_names)
        self.max_layers = check_positive_int(max_layers, "max_layers")
        self.max_channels = check_positive_int(max_channels, "max_channels")
        self._needs: tuple = ()

    def _prepare(self, model):
        shared = self._join(model)
        graph, geometry = shared.core.graph, shared.bound.binding.geometry
        if self.layer_names is None:
            refs = default_conv_layers(self, graph, geometry, self.max_layers)
            refs += graph.token_layers(geometry)
            if not refs:
                raise NotServed(
                    f"model {model.name!r} has no convolution whose output lays out over its "
                    f"{geometry.describe()} input; pass `layer_names` to choose layers"
                )
        else:
            refs = [graph.find_spatial(n, "layer_names", geometry) for n in self.layer_names]
        self._needs = tuple(Activations(ref) for ref in refs)
        self._layouts = {ref.path: graph.layout(ref, geometry) for ref in refs}
        # Where a layer's output flows into a ReLU of another layer (conv -> BN -> ReLU),
        # its dead channels are counted on that ReLU's output, recorded by the same pass.
        self._rectified = {}
        for ref in refs:
            after = graph.rectified(ref)
            if after is not None and after is not ref:
                self._rectified[ref.path] = Activations(after)

    def needs(self):
        return self._needs + tuple(dict.fromkeys(self._rectified.values()))

    def _snapshot(self, epoch, result):

        def empty_range(need):
            channels = int(need.ref.output_shape[-1])
            return (tf.fill([channels], np.inf), tf.fill([channels], -np.inf))

        ranges = self._running_scales(self._needs, empty_range) or [None] * len(self._needs)
        rendered = {
            need.ref.path: draw_layer(
                result[need],
                self.max_channels,
                output_activation(need.ref.layer),
                channel_range,
                self._layouts[need.ref.path].key,
                rectified=(
                    result[self._rectified[need.ref.path]]
                    if need.ref.path in self._rectified
                    else None
                ),
            )
            for need, channel_range in zip(self._needs, ranges)
        }
        self._keep_scales(self._needs, [r[3] for r in rendered.values()])
        run = self.run_name
        items = []
        for path, (grids, health, non_finite, _) in rendered.items():
            items += [
                Image(_tags.tag(run, path, i), grids[i : i + 1]) for i in range(self.probe.size)
            ]
            items += [Scalar(_tags.tag(run, path, name), value) for name, value in health.items()]
            items.append(Scalar(_tags.tag(run, path, _tags.NON_FINITE), non_finite, sparse=True))
        return items


def _render_layer(maps, max_channels, activation, running_range, layout_key, rectified=None):
    """One layer's pictures (uint8), health numbers, NaN/Inf count and, with a running
    range (`scale="run"`), that range widened by these maps. `rectified`: the output of
    the ReLU the layer's output flows into, where its dead channels are counted.

    `layout_key` (a `Geometry.key`) says how the output lays out: a grid of channel tiles
    for 2-D maps and tokens on their patch grid, each tile a montage of depth slices for a
    volume, one channels x steps strip for a sequence."""
    layout = Geometry(*layout_key)
    maps = layout.on_grid(maps)
    channels = maps.shape[-1]
    if channels is None:  # traced for any layer (`draw_layer`): `max_channels` are shown
        channels = tf.shape(maps)[-1]
        shown = tf.ensure_shape(maps[..., :max_channels], (None, None, None, max_channels))
    else:
        shown = maps
    # The numbers are over every position, whatever the rank: (batch, 1, positions, channels).
    flat = tf.reshape(maps, (tf.shape(maps)[0], 1, -1, channels))
    channel_range = None
    if running_range is not None:  # scale="run": the running range of each channel
        values = tf.cast(flat, tf.float32)
        finite = tf.math.is_finite(values)
        low = tf.reduce_min(tf.where(finite, values, np.inf), axis=(0, 1, 2))
        high = tf.reduce_max(tf.where(finite, values, -np.inf), axis=(0, 1, 2))
        channel_range = (
            tf.minimum(running_range[0], low),
            tf.maximum(running_range[1], high),
        )
    if layout.rank == 1:
        pictures = _rendering.render_feature_strips(maps, max_channels, channel_range=channel_range)
    elif layout.is_tokens:
        # Each token's norm first (where a block puts its weight), then the channels; with a
        # running range the norm's tile is scaled on this snapshot's own range.
        norm = tf.norm(tf.cast(maps, tf.float32), axis=-1, keepdims=True)
        shown = tf.concat([norm, tf.cast(maps[..., : max_channels - 1], tf.float32)], -1)
        shown_range = None
        if channel_range is not None:
            edges = (tf.zeros(1), tf.reduce_max(norm)[None])
            shown_range = tuple(
                tf.concat([edge, part[: max_channels - 1]], 0)
                for edge, part in zip(edges, channel_range)
            )
        pictures = _rendering.render_feature_grid(shown, max_channels, channel_range=shown_range)
    else:
        pictures = _rendering.render_feature_grid(
            layout.picture(shown), max_channels, channel_range=channel_range
        )
    health = activation_health(flat, activation, rectified)
    return (
        tf.image.convert_image_dtype(pictures, tf.uint8),
        health,
        count_non_finite(maps),
        channel_range,
    )


# One function for the process, shared by every FeatureMaps callback and fit. No AutoGraph:
# straight-line TF ops (see _rendering), and converting them took most of the first
# snapshot's time.
render_layer = compile_once(_render_layer, autograph=False)


def draw_layer(maps, max_channels, activation, running_range, layout_key, rectified=None):
    """`render_layer` of one layer's maps `(batch, height, width, channels)`, traced once
    per picture (channels shown, activation, options) for layers of any size and depth: a
    deep model's layers differ in size and depth, and tracing and optimising the drawing per
    layer shape took seconds of the first snapshot beside the next epoch's training
    (BENCHMARKS.md, 12b). Sequences, volumes and tokens keep one trace per shape."""
    layout = Geometry(*layout_key)
    if layout.rank != 2 or layout.is_tokens:
        return render_layer(maps, max_channels, activation, running_range, layout_key, rectified)
    shown = min(int(maps.shape[-1]), max_channels)
    ranges = None
    if running_range is not None:
        ranges = tuple(tf.TensorSpec((None,), r.dtype) for r in running_range)
    any_size = tf.TensorSpec((None,) * 4, maps.dtype)
    rectified_spec = None if rectified is None else tf.TensorSpec((None,) * 4, rectified.dtype)
    concrete = render_layer.get_concrete_function(
        any_size, shown, activation, ranges, layout_key, rectified_spec
    )
    return concrete(maps, shown, activation, running_range, layout_key, rectified)
