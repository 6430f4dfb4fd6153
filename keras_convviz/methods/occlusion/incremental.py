"""Exact incremental occlusion: recompute only what a window changes (Krypton).

Nakandala, Kumar & Papakonstantinou, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations", SIGMOD 2019.

An occluded image differs from the original only inside its window. Through convolutions,
pools and element-wise layers that difference spreads to a known rectangle per layer (grown
by the kernel's halo, shrunk by strides), so the pass records every layer output on the
unoccluded probe once, and for a chunk of windows recomputes, layer by layer, only each
window's rectangle: cut from the cached map (with the layer's halo and padding), with the
recomputed rectangle of the layer before spliced in. Where a rectangle covers its whole
map, or a layer is of a kind whose output a rectangle cannot describe (global pooling,
attention, a custom layer), the rectangle is spliced into the cached map and the rest of
the model runs on full maps. The scores are those of the plain path up to float rounding:
the plain path (`Context.score_in_chunks` over the occluded images) is the oracle.

How it is built: the pass runs the model on the probe through `ModelGraph.run` with a
`core.recorder.Recorder`, which keeps every leaf call (nested models walked into);
`plan_in_pass` hands those calls to `make_plan`, which walks them once, in Python, while the
pass is traced, and decides per layer output whether it is unchanged (static), a rectangle
or a full map, with every gather index a constant built once per (image size, patch,
stride); `IncrementalScorer` runs the plan for one chunk of windows inside the general
chunked loop (`Context.score_in_chunks`), so the window builder's geometry and the
scatter-average reducer are shared with the naive path. One trace, reused every snapshot; no
Python loop over windows.

Memory: a chunk holds `batch_size` rectangles per layer (at most `batch_size` full maps, as
the naive path); besides, the probe's own activations of the layers before the switch to
full maps (one forward's worth per probe image, and a padded copy where a layer pads) stay
alive while the chunks are scored.

Supported on rectangles: `Conv2D` (any kernel, stride, dilation; 'same'/'valid'; groups=1),
`DepthwiseConv2D`, `SeparableConv2D`, max and average pooling, `ZeroPadding2D`; per-pixel
layers (`BatchNormalization` in inference mode, `Activation`, `ReLU`, `LeakyReLU`, `ELU`,
`PReLU` shared over space, `Softmax`/`LayerNormalization` over channels, `Rescaling`,
`Normalization` per channel, dropout and noise layers, which are identities here); joins of
same-sized maps (`Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`,
`Concatenate` on channels), whose rectangle is the union of their inputs'. All in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_convviz.core.recorder import Record
from keras_convviz.core.xla import xla_available

# The cost model, per window, in multiply-adds of a dense convolution: writing one element
# (batch norm, activations, pools, depthwise convolutions are bound by memory, not by
# arithmetic) costs about as much as ELEMENT_COST multiply-adds on a CPU, and cutting or
# splicing one element (gathers and a select) about SPLICE_COST. Fitted (least squares on
# the log of the speed-up) to the speed-ups measured in BENCHMARKS.md section 1b: the small
# CNN at several windows, VGG16, MobileNetV2, ResNet50 and EfficientNetB0 at 224x224.
ELEMENT_COST = 256.0
SPLICE_COST = 256.0
# `method="auto"` takes the incremental path where its estimated cost (`Plan.cost_ratio`)
# is at most this fraction of the naive path's: the cheaper path by the estimate. Where
# the estimate is within a few percent of 1, the two measured within a few percent too.
AUTO_MAX_RATIO = 0.95

_ELEMENTWISE = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.BatchNormalization,
    keras.layers.Rescaling,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
_JOINS = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Concatenate,
)


# ---- geometry ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Axis:
    """Where a map changes along one axis, per window row (or column).

    Attributes:
        size: the map's size along the axis.
        lo: `(windows,)` first changed index.
        hi: `(windows,)` one past the last changed index.
        start: `(windows,)` start of the fixed-length container that holds `[lo, hi)`.
        length: the container's length (the same for every window).
    """

    size: int
    lo: np.ndarray
    hi: np.ndarray
    start: np.ndarray
    length: int

    @property
    def whole(self) -> bool:
        return self.length >= self.size


def container(lo, hi, size: int) -> Axis | None:
    """The fixed-length container of the ranges `[lo, hi)` (clipped to the map), or `None`
    when no window changes anything along this axis."""
    lo = np.clip(np.asarray(lo), 0, size)
    hi = np.clip(np.asarray(hi), 0, size)
    length = int(np.max(hi - lo))
    if length <= 0:
        return None
    start = np.clip(lo, 0, size - length)
    return Axis(size, lo, hi, start, length)


@dataclass(frozen=True)
class Local:
    """A sliding-window layer along both axes: output `o` reads the padded input
    `[o * stride, o * stride + kernel)` (the kernel dilated)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]
    pad_value: float
    macs_per_output: float  # multiply-adds per output pixel (all channels)


def _same_pads(size: int, out: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _local_out(axis: Axis, kernel: int, stride: int, pad: int, out: int) -> Axis | None:
    """The output range a changed input range reaches through a sliding window."""
    lo = -((-(axis.lo + pad - kernel + 1)) // stride)  # ceil
    hi = (axis.hi - 1 + pad) // stride + 1
    return container(np.maximum(lo, 0), np.minimum(hi, out), out)


def _window_rows(out: Axis, kernel: int, stride: int) -> np.ndarray:
    """`(windows, span)` padded input indices an output container reads."""
    span = (out.length - 1) * stride + kernel
    return out.start[:, None] * stride + np.arange(span)[None, :]


def _sources(rows: np.ndarray, pad: int, inner: Axis | None) -> np.ndarray:
    """For padded input indices, the index inside the input's container, or -1 where the
    value is the cached one."""
    if inner is None:
        return np.full_like(rows, -1)
    src = rows - pad - inner.start[:, None]
    return np.where((src >= 0) & (src < inner.length), src, -1)


def _spatial(tensor) -> tuple[int, int] | None:
    shape = tensor.shape
    if shape.rank != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(int(v) for v in value)


def _float32(layer) -> bool:
    return getattr(layer, "compute_dtype", "float32") == "float32" and not getattr(
        layer, "quantization_mode", None
    )


def local_kind(layer, x, y) -> Local | None:
    """How a sliding-window layer maps input `x` to output `y`, or `None` when it is not
    one this module recomputes by rectangles."""
    if getattr(layer, "data_format", "channels_last") != "channels_last" or not _float32(layer):
        return None
    size, out = _spatial(x), _spatial(y)
    if size is None or out is None:
        return None
    cin, cout = int(x.shape[-1]), int(y.shape[-1])
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (t, b), (left, r) = layer.padding
        return Local((1, 1), (1, 1), ((t, b), (left, r)), 0.0, 0.0)
    if isinstance(layer, _CONVS) and not isinstance(layer, keras.layers.Conv2DTranspose):
        if getattr(layer, "groups", 1) != 1 or layer.padding not in ("same", "valid"):
            return None
        separable = isinstance(layer, keras.layers.SeparableConv2D)
        shape = tuple((layer.depthwise_kernel if separable else layer.kernel).shape)
        kernel, dilation = _pair(shape[:2]), _pair(layer.dilation_rate)
        if isinstance(layer, keras.layers.SeparableConv2D):
            macs = kernel[0] * kernel[1] * cin * layer.depth_multiplier + cin * (
                layer.depth_multiplier * cout
            )
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            macs = kernel[0] * kernel[1] * cout
        else:
            macs = kernel[0] * kernel[1] * cin * cout
        kernel = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
        pad_value = 0.0
    elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        if layer.padding not in ("same", "valid"):
            return None
        kernel = _pair(layer.pool_size)
        macs = kernel[0] * kernel[1] * cout
        pad_value = -np.inf if isinstance(layer, keras.layers.MaxPooling2D) else 0.0
    else:
        return None
    stride = _pair(layer.strides)
    if layer.padding == "same":
        pads = tuple(_same_pads(s, o, k, st) for s, o, k, st in zip(size, out, kernel, stride))
    else:
        pads = ((0, 0), (0, 0))
    for s, o, k, st, (before, after) in zip(size, out, kernel, stride, pads):
        if (o - 1) * st + k > s + before + after:  # not the arithmetic we assume
            return None
    return Local(kernel, stride, pads, pad_value, float(macs))


def elementwise(layer, x, y) -> bool:
    """Whether `layer` maps each pixel on its own (same spatial size, per-channel
    parameters), so it can run on a rectangle."""
    if _spatial(x) is None or _spatial(x) != _spatial(y) or not _float32(layer):
        return False
    last = (-1, 3, [-1], [3], (-1,), (3,))
    if isinstance(layer, _ELEMENTWISE):
        if isinstance(layer, keras.layers.BatchNormalization):
            return layer.axis in last
        return True
    if isinstance(layer, keras.layers.Softmax | keras.layers.LayerNormalization):
        return layer.axis in last
    if isinstance(layer, keras.layers.Normalization):
        return list(getattr(layer, "_keep_axis", [])) in ([3], [-1])
    if isinstance(layer, keras.layers.PReLU):
        return sorted(layer.shared_axes or []) == [1, 2]
    return False


def join(layer, xs, y) -> bool:
    """Whether `layer` joins same-sized maps pixel by pixel (residual add, concat)."""
    if not isinstance(layer, _JOINS) or not _float32(layer) or len(xs) < 2:
        return False
    spatial = {_spatial(x) for x in xs} | {_spatial(y)}
    if len(spatial) != 1 or None in spatial:
        return False
    if isinstance(layer, keras.layers.Concatenate):
        return layer.axis in (-1, 3)
    return all(tuple(x.shape[1:]) == tuple(y.shape[1:]) for x in xs)


# ---- the plan ------------------------------------------------------------------------------


@dataclass(eq=False)
class Step:
    """What the scorer does with one record.

    Attributes:
        kind: `"local"` (a sliding-window layer on a rectangle), `"pixel"` (an element-wise
            layer or a join on rectangles), `"full"` (the layer on full maps).
        local: the sliding window, for `"local"`.
        out: the output's rectangle (rows, cols), for `"local"` and `"pixel"`.
        cuts: per tensor input, the `Cut` that makes it (or `None`: taken as it is).
    """

    rec: Record
    kind: str
    local: Local | None = None
    out: tuple[Axis, Axis] | None = None
    cuts: list = field(default_factory=list)  # per tensor input: a Cut, or None


@dataclass(eq=False)
class Cut:
    """Cut a window out of a cached map (padded), splicing a rectangle's values in.

    Index tables are per window row / column: `rows (n_rows, span)` padded row indices of
    the cached map, `src_rows (n_rows, span)` rows inside the rectangle or -1.
    """

    source: object  # the tensor whose cached value is cut
    pads: tuple
    pad_value: float
    rows: np.ndarray | None  # None: the whole map (a switch to full layers)
    cols: np.ndarray | None
    src_rows: np.ndarray | None  # None: nothing to splice (the input is unchanged)
    src_cols: np.ndarray | None
    scale: tuple | None = None  # average pooling with 'same' padding: per-row/col rescale


@dataclass(eq=False)
class Plan:
    """The incremental scorer's plan for one (model, image size, windows) triple.

    Attributes:
        steps: what to do per record.
        rect_layers: the records computed on rectangles.
        naive_cost: per window `[multiply-adds, elements written, elements cut or
            spliced]` of the naive path; incremental_cost likewise.
        first_full: the first layer computed on full maps (or `None`).
        image: the image tensor the records start from.
        fill_rows: `(n_rows, patch_rows)` the image rows each window row covers;
            fill_cols likewise.
        output: the score layer's output tensor.
    """

    steps: list
    rect_layers: list
    naive_cost: np.ndarray
    incremental_cost: np.ndarray
    first_full: str | None
    image: object
    fill_rows: np.ndarray
    fill_cols: np.ndarray
    output: object

    @property
    def cost_ratio(self) -> float:
        """The incremental path's estimated cost over the naive path's."""
        weights = np.array([1.0, ELEMENT_COST, SPLICE_COST])
        naive = float(self.naive_cost @ weights)
        return float(self.incremental_cost @ weights) / naive if naive else 1.0


def _name(op) -> str:
    return getattr(op, "name", type(op).__name__)


def plan_in_pass(ctx, tops, lefts, patch) -> Plan | None:
    """The plan for these windows from the calls the pass recorded while it ran the model
    on the probe (`ctx` the pass's `Context`; `None`: no calls recorded, no scores read,
    or the calls cannot be replayed)."""
    recorded = ctx.recorded_calls()
    if recorded is None or ctx.scores is None:
        return None
    records, image = recorded
    return make_plan(records, image, ctx.head.layer, tops, lefts, patch)


def make_plan(records, image, head_layer, tops, lefts, patch) -> Plan | None:
    """Walk the records once and decide, per layer output, how each window's copy is made.

    Args:
        records: the recorded calls (`Record`s, as `Recorder.records`).
        image: the image tensor the model was run on.
        head_layer: the layer that makes the scores (`Head.layer`).
        tops: window top offsets; lefts: window left offsets; patch: `(rows, cols)`.

    Returns:
        The plan, or `None` when the records cannot be replayed (the image is not seen by
        any call, or the score layer has several outputs): then only the plain path runs.
    """
    finals = [r for r in records if r.op is head_layer]
    if (
        _spatial(image) is None
        or not finals
        or len(finals[-1].outputs) != 1
        or not any(id(t) == id(image) for r in records for t in r.inputs)
    ):
        return None
    output = finals[-1].outputs[0]
    height, width = _spatial(image)
    tops, lefts = np.asarray(tops), np.asarray(lefts)
    states: dict[int, object] = {
        id(image): (
            container(tops, tops + patch[0], height),
            container(lefts, lefts + patch[1], width),
        )
    }
    FULL = "full"
    steps, rect_layers = [], []
    # Per window: [multiply-adds, elements written, elements cut or spliced].
    naive, incremental = np.zeros(3), np.zeros(3)
    first_full = None

    def full_cut(tensor):
        """A rectangle spliced into its whole cached map."""
        state = states.get(id(tensor))
        if state is None or state == FULL:
            return None
        ay, ax = state
        return Cut(
            tensor,
            ((0, 0), (0, 0)),
            0.0,
            None,
            None,
            _sources(np.broadcast_to(np.arange(ay.size), (len(tops), ay.size)), 0, ay),
            _sources(np.broadcast_to(np.arange(ax.size), (len(lefts), ax.size)), 0, ax),
        )

    for rec in records:
        ins = [states.get(id(t)) for t in rec.inputs]
        out_elements = sum(float(np.prod([d or 1 for d in t.shape[1:]])) for t in rec.outputs)
        if all(s is None for s in ins):  # unchanged by any window: the cached value serves
            continue
        layer, ys = rec.op, rec.outputs
        step = None
        kind = None
        if len(ys) == 1 and FULL not in ins:
            y = ys[0]
            tensors = rec.inputs
            if len(tensors) == 1 and (spec := local_kind(layer, tensors[0], y)) is not None:
                kind = "local"
            elif len(tensors) == 1 and elementwise(layer, tensors[0], y):
                kind = "pixel"
            elif join(layer, tensors, y):
                kind = "join"
        full_cost = np.array([_macs(layer, rec.inputs, ys), out_elements, 0.0])
        naive += full_cost
        if kind == "local":
            (ay, ax) = ins[0]
            h_out, w_out = _spatial(y)
            (pt, _), (pl, _) = spec.pads
            oy = _local_out(ay, spec.kernel[0], spec.stride[0], pt, h_out)
            ox = _local_out(ax, spec.kernel[1], spec.stride[1], pl, w_out)
            if oy is None or ox is None:  # the change reaches no output pixel: cached
                continue
            if not (oy.whole and ox.whole):
                rows = _window_rows(oy, spec.kernel[0], spec.stride[0])
                cols = _window_rows(ox, spec.kernel[1], spec.stride[1])
                cut = Cut(
                    tensors[0],
                    spec.pads,
                    spec.pad_value,
                    rows,
                    cols,
                    _sources(rows, pt, ay),
                    _sources(cols, pl, ax),
                )
                if isinstance(layer, keras.layers.AveragePooling2D) and layer.padding == "same":
                    cut.scale = _avg_scale(layer, tensors[0], y, oy, ox, spec)
                step = Step(rec, "local", spec, (oy, ox), [cut])
                states[id(y)] = (oy, ox)
                area = oy.length * ox.length
                channels = int(y.shape[-1])
                window = rows.shape[1] * cols.shape[1] * int(tensors[0].shape[-1])
                incremental += [spec.macs_per_output * area, area * channels, window]
        elif kind == "pixel":
            oy, ox = ins[0]
            step = Step(rec, "pixel", None, (oy, ox), [None])
            states[id(ys[0])] = (oy, ox)
            incremental += [0.0, oy.length * ox.length * int(ys[0].shape[-1]), 0.0]
        elif kind == "join":
            y = ys[0]
            h_out, w_out = _spatial(y)
            changed = [s for s in ins if s is not None]
            oy = container(
                np.min([s[0].lo for s in changed], 0), np.max([s[0].hi for s in changed], 0), h_out
            )
            ox = container(
                np.min([s[1].lo for s in changed], 0), np.max([s[1].hi for s in changed], 0), w_out
            )
            if not (oy.whole and ox.whole):
                cuts = []
                rows = _window_rows(oy, 1, 1)
                cols = _window_rows(ox, 1, 1)
                for t, s in zip(rec.inputs, ins):
                    cuts.append(
                        Cut(
                            t,
                            ((0, 0), (0, 0)),
                            0.0,
                            rows,
                            cols,
                            None if s is None else _sources(rows, 0, s[0]),
                            None if s is None else _sources(cols, 0, s[1]),
                        )
                    )
                step = Step(rec, "pixel", None, (oy, ox), cuts)
                states[id(y)] = (oy, ox)
                area = oy.length * ox.length
                cut = area * sum(int(t.shape[-1]) for t in rec.inputs)
                incremental += [0.0, area * int(y.shape[-1]), cut]
        if step is None:  # full maps from here on this branch
            cuts = [full_cut(t) for t in rec.inputs]
            for cut, t in zip(cuts, rec.inputs):
                if cut is not None:
                    incremental += [0.0, 0.0, float(np.prod(t.shape[1:]))]
            step = Step(rec, "full", None, None, cuts)
            for t in ys:
                states[id(t)] = FULL
            incremental += full_cost
            if first_full is None:
                first_full = _name(layer)
        else:
            rect_layers.append(_name(layer))
        steps.append(step)

    return Plan(
        steps=steps,
        rect_layers=rect_layers,
        naive_cost=naive,
        incremental_cost=incremental,
        first_full=first_full,
        image=image,
        fill_rows=tops[:, None] + np.arange(patch[0])[None, :],
        fill_cols=lefts[:, None] + np.arange(patch[1])[None, :],
        output=output,
    )


def _macs(layer, inputs, outputs) -> float:
    """Multiply-adds of a layer call on one image (convolutions, pools and dense layers;
    the rest is counted as memory traffic)."""
    if len(inputs) != 1 or len(outputs) != 1:
        return 0.0
    (x,), (y,) = inputs, outputs
    spec = local_kind(layer, x, y)
    if spec is not None:
        return spec.macs_per_output * float(np.prod(_spatial(y)))
    if isinstance(layer, keras.layers.Dense) and x.shape[-1] is not None:
        return float(np.prod([d or 1 for d in y.shape[1:]])) * int(x.shape[-1])
    return 0.0


def _avg_scale(layer, x, y, oy: Axis, ox: Axis, spec: Local):
    """Per output row/column, pool area / valid cells: 'same' average pooling divides by
    the cells inside the map, the recomputation by the whole window."""
    tables = []
    for axis, size, kernel, stride, (before, _) in zip(
        (oy, ox), _spatial(x), spec.kernel, spec.stride, spec.pads
    ):
        o = axis.start[:, None] + np.arange(axis.length)[None, :]
        first = o * stride - before
        count = np.minimum(first + kernel, size) - np.maximum(first, 0)
        tables.append((kernel / count).astype(np.float32))
    return tuple(tables)


# ---- the scorer ----------------------------------------------------------------------------


def _flat_index(base, rows, cols, height: int, width: int):
    """`(chunk, span_rows, span_cols)` flat indices `(base * height + row) * width + col`."""
    return ((base[:, None] * height + rows)[:, :, None]) * width + cols[:, None, :]


def cut_window(table, value, image_index, rows, cols, src_rows, src_cols, height, width):
    """Windows cut from cached maps, each with its rectangle spliced in.

    Args:
        table: `(n * height * width, channels)` the cached maps (padded), flattened.
        value: `(chunk, length_rows, length_cols, channels)` the recomputed rectangles, or
            `None` (nothing to splice).
        image_index: `(chunk,)` whose cached map each window is cut from.
        rows: `(chunk, span_rows)` padded rows of each window; cols likewise.
        src_rows: `(chunk, span_rows)` the row inside the rectangle, -1 outside; or `None`.

    Returns:
        `(chunk, span_rows, span_cols, channels)`.
    """
    cached = tf.gather(table, _flat_index(image_index, rows, cols, height, width))
    if value is None or src_rows is None:
        return cached
    return _splice(cached, value, src_rows, src_cols)


def splice_whole(source, value, image_index, src_rows, src_cols):
    """Each rectangle spliced into its image's whole cached map `(n, height, width, c)`."""
    cached = tf.gather(source, image_index)
    if value is None or src_rows is None:
        return cached
    return _splice(cached, value, src_rows, src_cols)


def _splice(cached, value, src_rows, src_cols):
    chunk = tf.shape(value)[0]
    lh, lw, c = int(value.shape[1]), int(value.shape[2]), int(value.shape[3])
    index = _flat_index(tf.range(chunk), tf.maximum(src_rows, 0), tf.maximum(src_cols, 0), lh, lw)
    spliced = tf.gather(tf.reshape(value, (-1, c)), index)
    mask = (src_rows >= 0)[:, :, None] & (src_cols >= 0)[:, None, :]
    return tf.where(mask[..., None], spliced, cached)


_cut_window_xla = tf.function(cut_window, jit_compile=True, autograph=False)
_splice_whole_xla = tf.function(splice_whole, jit_compile=True, autograph=False)
# Build the cuts with XLA (fused gathers and select) where XLA compiles.
XLA_CUTS = True


class IncrementalScorer:
    """Scores chunks of occluded copies by incremental inference.

    Made while the pass is traced (once), called per chunk inside the chunked loop.

    Args:
        plan: the `Plan`.
        fill: `(n_or_1, height, width, channels)` what fills a window (per image, or one
            for all).
        n_cols: windows per row of windows.
    """

    def __init__(self, plan: Plan, fill, n_cols: int):
        self.plan = plan
        self.fill = fill
        self.n_cols = n_cols
        self._tables: dict = {}
        xla = XLA_CUTS and xla_available()
        self._cut_window = _cut_window_xla if xla else cut_window
        self._splice_whole = _splice_whole_xla if xla else splice_whole

    def _table(self, tensor, pads, pad_value):
        """The cached map padded and flattened to `(n * rows * cols, channels)`, made once
        (outside the chunk loop: it is called while the scorer is prepared)."""
        key = (id(tensor), pads, pad_value)
        if key not in self._tables:
            padded = tensor
            if pads != ((0, 0), (0, 0)):
                padded = tf.pad(
                    tensor,
                    [[0, 0], list(pads[0]), list(pads[1]), [0, 0]],
                    constant_values=pad_value,
                )
            h, w = int(padded.shape[1]), int(padded.shape[2])
            self._tables[key] = (tf.reshape(padded, (-1, int(padded.shape[-1]))), h, w)
        return self._tables[key]

    def prepare(self) -> None:
        """Build the padded cached tables (outside the loop) and the index constants."""
        for step in self.plan.steps:
            for cut in step.cuts:
                if cut is not None and cut.rows is not None:
                    self._table(cut.source, cut.pads, cut.pad_value)

    def _cut(self, cut: Cut, value, image_index, row, col):
        src_rows = src_cols = None
        if cut.src_rows is not None:
            src_rows = tf.gather(tf.constant(cut.src_rows, tf.int32), row)
            src_cols = tf.gather(tf.constant(cut.src_cols, tf.int32), col)
        if cut.rows is None:  # the whole map
            return self._splice_whole(cut.source, value, image_index, src_rows, src_cols)
        table, h, w = self._table(cut.source, cut.pads, cut.pad_value)
        rows = tf.gather(tf.constant(cut.rows, tf.int32), row)
        cols = tf.gather(tf.constant(cut.cols, tf.int32), col)
        return self._cut_window(table, value, image_index, rows, cols, src_rows, src_cols, h, w)

    def output(self, image_index, window):
        """`(chunk, units)` the score layer's output (before a final softmax/sigmoid) on
        the occluded copies `window` of the images `image_index`."""
        plan = self.plan
        row, col = window // self.n_cols, window % self.n_cols
        fill_rows = tf.gather(tf.constant(plan.fill_rows, tf.int32), row)
        fill_cols = tf.gather(tf.constant(plan.fill_cols, tf.int32), col)
        fill = self.fill
        h, w = int(fill.shape[1]), int(fill.shape[2])
        fill_index = image_index if self._per_image else tf.zeros_like(image_index)
        table = tf.reshape(tf.cast(fill, plan.image.dtype), (-1, int(fill.shape[-1])))
        values: dict[int, tf.Tensor] = {
            id(plan.image): tf.gather(table, _flat_index(fill_index, fill_rows, fill_cols, h, w))
        }
        kinds: dict[int, str] = {id(plan.image): "rect"}

        def static(t):
            # Unchanged by the window: the cached value of the window's image.
            batched = t.shape.rank and t.shape[0] is None
            return tf.gather(t, image_index) if batched else t

        for step in plan.steps:
            rec = step.rec
            if step.kind == "full":
                replaced = {}
                for t, cut in zip(rec.inputs, step.cuts):
                    if id(t) in replaced:
                        continue
                    if cut is not None:
                        replaced[id(t)] = self._cut(cut, values[id(t)], image_index, row, col)
                    elif kinds.get(id(t)) == "full":
                        replaced[id(t)] = values[id(t)]
                    else:
                        replaced[id(t)] = static(t)
                args, kwargs = _substitute((rec.args, rec.kwargs), replaced)
                result = rec.leaf(*args, **kwargs)
                for t, v in zip(
                    rec.outputs, [v for v in keras.tree.flatten(result) if tf.is_tensor(v)]
                ):
                    values[id(t)] = v
                    kinds[id(t)] = "full"
                continue
            y = rec.outputs[0]
            if step.kind == "local":
                (cut,) = step.cuts
                x = rec.inputs[0]
                window_in = self._cut(cut, values[id(x)], image_index, row, col)
                out = _apply_local(rec.op, window_in, step.local)
                if cut.scale is not None:
                    sy = tf.gather(tf.constant(cut.scale[0]), row)
                    sx = tf.gather(tf.constant(cut.scale[1]), col)
                    out = out * sy[:, :, None, None] * sx[:, None, :, None]
            else:  # element-wise layer or join on rectangles
                if step.cuts == [None]:
                    replaced = {id(rec.inputs[0]): values[id(rec.inputs[0])]}
                else:
                    replaced = {}
                    for t, cut in zip(rec.inputs, step.cuts):
                        replaced[id(t)] = self._cut(cut, values.get(id(t)), image_index, row, col)
                args, kwargs = _substitute((rec.args, rec.kwargs), replaced)
                out = rec.leaf(*args, **kwargs)
            values[id(y)] = out
            kinds[id(y)] = "rect"

        out = plan.output
        return values[id(out)] if id(out) in values else static(out)

    @property
    def _per_image(self) -> bool:
        return self.fill.shape[0] is None or self.fill.shape[0] != 1


def _substitute(structure, replaced: dict):
    def swap(value):
        if tf.is_tensor(value) and id(value) in replaced:
            return replaced[id(value)]
        return value

    return keras.tree.map_structure(swap, structure)


def _apply_local(layer, x, spec: Local):
    """A sliding-window layer on a cut window, with 'valid' padding (the window carries
    the layer's own padding)."""
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return x
    if isinstance(layer, keras.layers.MaxPooling2D):
        return keras.ops.max_pool(x, layer.pool_size, layer.strides, padding="valid")
    if isinstance(layer, keras.layers.AveragePooling2D):
        return keras.ops.average_pool(x, layer.pool_size, layer.strides, padding="valid")
    if isinstance(layer, keras.layers.SeparableConv2D):
        out = keras.ops.separable_conv(
            x,
            layer.depthwise_kernel,
            layer.pointwise_kernel,
            layer.strides,
            "valid",
            dilation_rate=layer.dilation_rate,
        )
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        out = keras.ops.depthwise_conv(
            x, layer.kernel, layer.strides, "valid", dilation_rate=layer.dilation_rate
        )
    else:
        out = keras.ops.conv(
            x, layer.kernel, layer.strides, "valid", dilation_rate=layer.dilation_rate
        )
    if layer.use_bias:
        out = out + layer.bias
    if layer.activation is not None:
        out = layer.activation(out)
    return out


def takes_incremental(plan: Plan | None, method: str) -> bool:
    """Whether occlusion scores by incremental inference: always for `"incremental"` (when
    the model can be replayed), never for `"naive"`, and for `"auto"` where the plan's
    estimated cost is at most `AUTO_MAX_RATIO` of the naive path's."""
    if plan is None or method == "naive":
        return False
    return method == "incremental" or plan.cost_ratio <= AUTO_MAX_RATIO
