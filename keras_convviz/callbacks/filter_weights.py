"""`FilterWeights`: every conv kernel, signed, on one symmetric colour scale per layer."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_convviz import _rendering, _tags, kinds
from keras_convviz._args import check_layer_names, check_positive_int
from keras_convviz.callbacks.base import SnapshotCallback, default_conv_layers
from keras_convviz.core.geometry import Geometry
from keras_convviz.core.graph import CONV_TYPES, NotServed, kernel_variable
from keras_convviz.core.passes import compile_once, count_non_finite
from keras_convviz.core.shared import core_for
from keras_convviz.health import trains, weight_health
from keras_convviz.summary_io import Image, Scalar


def kernel_view(layer) -> tf.Variable | tf.Tensor:
    """The kernel of a conv layer as a 2-D kernel `(rows, columns, in_channels, filters)`.

    Depthwise kernels (also the depthwise half of a separable conv) become one single-input
    filter per (channel, multiplier); transposed-conv kernels are reordered to put the
    input channels third. A 1-D window is one row, a 3-D window its depth slices side by
    side (`Geometry.kernel_picture`).
    """
    kernel = tf.convert_to_tensor(kernel_variable(layer))
    window = kernel.shape[:-2]
    depthwise = (
        keras.layers.DepthwiseConv1D,
        keras.layers.DepthwiseConv2D,
        keras.layers.SeparableConv1D,
        keras.layers.SeparableConv2D,
    )
    transposed = (
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.Conv3DTranspose,
    )
    if isinstance(layer, depthwise):
        cin, mult = kernel.shape[-2:]
        kernel = tf.reshape(kernel, (*window, 1, cin * mult))
    elif isinstance(layer, transposed):
        kernel = tf.experimental.numpy.swapaxes(kernel, -1, -2)
    return Geometry(len(window)).kernel_picture(kernel)


class FilterWeights(SnapshotCallback):
    """Writes the weights of every conv kernel to TensorBoard as images.

    Every kernel renders (unlike `keras.callbacks.TensorBoard(write_images=True)`, which
    skips most 4-D kernels and clips negative weights): layers with 1 or 3 input channels
    show one small grey/colour patch per filter; deeper layers show a grid with one row per
    filter and one column per input channel. Weights are signed on a diverging colour map
    (blue negative, white zero, red positive; for RGB patches grey is zero) with one symmetric
    scale per layer, written as the scalar `max_abs`. Beside it, the kernel's `norm` and,
    from the second snapshot on, its `relative_update` ||W - W_prev|| / ||W_prev|| since
    the previous snapshot (`keras_convviz.health.weight_health`). Written at the end of
    every `freq` epochs into the run `log_dir/filter_weights`; a layer that training does
    not update (not trainable, or inside a frozen base: `base.trainable = False`) is drawn
    at the first snapshot and again only when its kernel changed, without a
    `relative_update` (no training signal to judge); once unfrozen (fine-tuning) it is
    drawn at every snapshot again.

    Tags: `filter_weights/<layer>` (images) and `filter_weights/<layer>/<quantity>`
    (scalars: `max_abs`, `norm`, `relative_update`). Step = epoch - 1 (Keras's "Epoch 1" is step 0).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        layer_names: list of str or None. Conv layers to show, by name or nested path.
            Defaults to `None`: every conv layer whose output lays out over the input (at
            most `max_layers`, see there).
        max_layers: int. Without `layer_names`, the most conv layers shown: a model with
            more shows one per resolution stage (the last conv before the resolution drops;
            convs on 1x1 maps, as squeeze-excite branches, left out), spread evenly over the
            stages when there are more. Defaults to `8`.
        max_filters: int. Filters (output channels) shown per layer. Defaults to `64`.
        max_inputs: int. Input channels shown per filter in deep layers. Defaults to `32`.
        freq: int. Epochs between snapshots; `0` disables. Defaults to `1`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[kcv.FilterWeights("logs/run1")])
    ```
    """

    run_name = kinds.FILTER_WEIGHTS.run

    def __init__(
        self,
        log_dir,
        layer_names: list[str] | None = None,
        max_layers: int = 8,
        max_filters: int = 64,
        max_inputs: int = 32,
        freq: int = 1,
        on_error: str = "warn",
    ):
        super().__init__(log_dir, freq=freq, on_error=on_error)
        self.layer_names = check_layer_names(layer_names)
        self.max_layers = check_positive_int(max_layers, "max_layers")
        self.max_filters = check_positive_int(max_filters, "max_filters")
        self.max_inputs = check_positive_int(max_inputs, "max_inputs")

    def _prepare(self, model):
        graph = core_for(model).graph
        if self.layer_names is None:
            refs = default_conv_layers(self, graph, graph.geometry, self.max_layers)
            if not refs:
                raise NotServed(f"model {model.name!r} has no convolution to draw")
        else:
            refs = [graph.find(name, "layer_names") for name in self.layer_names]
            for ref in refs:
                if not isinstance(ref.layer, CONV_TYPES):
                    raise ValueError(
                        "`layer_names` must name conv layers for FilterWeights. Layer "
                        f"{ref.path!r} is a {type(ref.layer).__name__}. Conv layers: "
                        f"{[r.path for r in graph.conv_layers()]}. Received: "
                        f"layer_names={self.layer_names}"
                    )
        self._layers = {ref.path: ref.layer for ref in refs}
        # The kernels of the last snapshot, for the relative update: kept across `fit`s of
        # the same model, dropped for another model or other layers.
        previous = getattr(self, "_previous", None)
        if getattr(self, "_previous_model", None) is not model or set(previous or ()) != set(
            self._layers
        ):
            self._previous = None
        self._previous_model = model

    def _capture(self, epoch):
        # Reading a variable gives a tensor that later training steps do not change; whether
        # training updates the layer is read now too, as the user may unfreeze it later.
        trained = trains(self.model, list(self._layers.values()))
        return {
            path: (kernel_view(layer), trained[i])
            for i, (path, layer) in enumerate(self._layers.items())
        }

    def _snapshot(self, epoch, captured):
        previous = self._previous or {}
        run = self.run_name
        items = []
        for path, (kernel, trained) in captured.items():
            before = previous.get(path)
            if not trained and before is not None and bool(tf.reduce_all(kernel == before)):
                continue  # frozen and unchanged: its picture and numbers are the last ones
            image, scale, health, non_finite = draw_kernel(
                kernel, kernel if before is None else before, self.max_filters, self.max_inputs
            )
            items += [
                Image(_tags.tag(run, path), image),
                Scalar(_tags.tag(run, path, "max_abs"), scale),
                Scalar(_tags.tag(run, path, _tags.NON_FINITE), non_finite, sparse=True),
            ]
            for name, value in health.items():
                # No update before the first snapshot; a frozen layer's (set_weights, or
                # trained before it was frozen) is no training signal to judge.
                if name != "relative_update" or (trained and before is not None):
                    items.append(Scalar(_tags.tag(run, path, name), value))
            previous[path] = kernel
        self._previous = previous
        return items


def _render_kernel(kernel, previous, max_filters, max_inputs):
    """One layer's kernel picture (uint8), its colour scale, health numbers against the
    previous snapshot's kernel, and NaN/Inf count."""
    rows, columns, inputs, filters = kernel.shape
    shown = kernel
    if inputs is None:  # traced for any depth (`draw_kernel`): the first ones are shown
        shown = tf.ensure_shape(
            kernel[:, :, :max_inputs, :max_filters], (rows, columns, max_inputs, max_filters)
        )
    scale = _rendering.kernel_scale(kernel)  # of every weight, shown or not
    image = _rendering.render_kernels(shown, max_filters, max_inputs, scale=scale)
    return (
        tf.image.convert_image_dtype(image, tf.uint8),
        scale,
        weight_health(kernel, previous),
        count_non_finite(kernel),
    )


# One function for the process, shared by every FilterWeights callback and fit: the kernels
# are copied at the end of the epoch (`_capture`) and drawn from the copies. No AutoGraph:
# straight-line TF ops (see _rendering), and converting them took most of the first
# snapshot's time.
render_kernel = compile_once(_render_kernel, autograph=False)


def draw_kernel(kernel, previous, max_filters, max_inputs):
    """`render_kernel` of a 2-D kernel `(rows, columns, in_channels, filters)`, traced once
    per picture (window, filters and input channels shown) for kernels of any depth: a deep
    model's kernels differ in depth, and tracing and optimising the drawing per kernel shape
    took seconds of the first snapshot beside the next epoch's training (BENCHMARKS.md,
    12)."""
    rows, columns, inputs, filters = (int(d) for d in kernel.shape)
    shown_inputs = inputs if inputs in (1, 3) else min(inputs, max_inputs)
    if shown_inputs in (1, 3) and inputs not in (1, 3):
        # Cut to 1 or 3 inputs it would read as a patch of its own: drawn from its shape.
        return render_kernel(kernel, previous, max_filters, max_inputs)
    spec = tf.TensorSpec((rows, columns, None, None), kernel.dtype)
    shown_filters = min(filters, max_filters)
    concrete = render_kernel.get_concrete_function(spec, spec, shown_filters, shown_inputs)
    return concrete(kernel, previous, shown_filters, shown_inputs)
