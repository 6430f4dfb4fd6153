"""The shared compiled pass: activations, scores, Grad-CAM and occlusion in `tf.function`s.

Plan once, run many: a `Core` is made once per model and compiles each
pass the first time it is asked for; afterwards every call reuses the traced graph. Nothing
here writes files; callbacks and the functional explainers turn the results into images or
numpy arrays.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from keras_convviz._model_graph import Head, LayerRef, ModelGraph
from keras_convviz._probe import Probe, check_input_fits, check_probe_fits

# Occlusion chunks in flight. One holds the least memory but cannot build the next chunk
# while the current one is scored (5-25 % slower on 2 CPU cores); TensorFlow's default, 10,
# holds up to ten. Two keeps the overlap, and the peak stays flat in the number of chunks
# (BENCHMARKS.md, occlusion memory).
CHUNKS_IN_FLIGHT = 2


def compile_once(fn, **options):
    """`tf.function(fn, **options)` for a function each instance traces once.

    TensorFlow counts traces per Python code object across every `tf.function` made from
    it and warns of "excessive retracing" when a process makes several (several callbacks,
    models or notebook runs), although each of ours is traced once. The flag is the one
    TensorFlow sets on the functions it restores from a SavedModel.
    """
    compiled = tf.function(fn, **options)
    compiled._omit_frequent_tracing_warning = True
    return compiled


@dataclass(frozen=True)
class CamRequest:
    """One Grad-CAM to compute: a layer and the targets it is computed for."""

    ref: LayerRef
    targets: tuple[int, ...]  # -1: the predicted class of that image


@dataclass(frozen=True)
class Binding:
    """How a probe feeds a model: the compiled passes are specialised on it.

    Attributes:
        image_index: the position of the image input in `model.inputs`.
        image_shape: `(height, width, channels)` of the probe images.
        extra_specs: `(shape without batch, dtype name)` of each other input, in
            `model.inputs` order; empty for a single-input model.
        head: the output read as class scores, or `None` when no scores are needed.
    """

    image_index: int
    image_shape: tuple[int, ...]
    extra_specs: tuple[tuple[tuple[int, ...], str], ...]
    head: Head | None


@dataclass(frozen=True, eq=False)
class Bound:
    """A probe bound to a model: the tensors every compiled pass is called with.

    Attributes:
        binding: the `Binding`.
        images: `(batch, height, width, channels)` float32 images.
        extras: the other model inputs, in `model.inputs` order (fixed for every image
            and every occluded copy of it).
    """

    binding: Binding
    images: tf.Tensor
    extras: tuple[tf.Tensor, ...]


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets of occlusion windows along one axis, covering every pixel.

    The last window is aligned with the far edge when the stride does not land on it, so no
    pixel is left without a score.
    """
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


class Core:
    """Compiled passes over one model, specialised per layers and `Binding`.

    Args:
        graph: the resolved model.
    """

    def __init__(self, graph: ModelGraph):
        self.graph = graph
        self._snapshot_fns: dict[tuple, tf.types.experimental.GenericFunction] = {}
        self._occlusion_fns: dict[tuple, tf.types.experimental.GenericFunction] = {}

    # ---- input ------------------------------------------------------------------------

    def bind(
        self,
        probe: Probe,
        image_input=None,
        score_output=None,
        scores: bool = True,
        argument: str = "probe",
    ) -> Bound:
        """Check a probe against the model and say how it feeds the model's inputs.

        Args:
            probe: the probe.
            image_input: the model input that takes the images (name or position); `None`
                picks the only input, the probe's own choice, or the only 4-D input.
            score_output: the output that holds the class scores (name or position); `None`
                picks the only output, or the only (batch, units) output.
            scores: whether the scores are needed (Grad-CAM, occlusion); when False an
                ambiguous `score_output=None` means "no scores".
            argument: the name of the probe argument, for messages.
        """
        graph = self.graph
        names = graph.input_names
        if image_input is None and probe.inputs is not None:
            key = probe.image_key
            if (isinstance(key, str) and key in names) or (
                isinstance(key, int) and key < len(names)
            ):
                image_input = key
        index = graph.image_input(image_input)
        extras = _extra_inputs(graph, probe, index, argument)
        check_probe_fits(probe, graph.input_shapes[index], argument)
        binding = Binding(
            image_index=index,
            image_shape=probe.image_shape,
            extra_specs=tuple((tuple(a.shape[1:]), a.dtype.name) for a in extras),
            head=graph.head(score_output, required=scores),
        )
        return Bound(binding, as_float_images(probe.images), tuple(tf.constant(a) for a in extras))

    def _specs(self, binding: Binding) -> list:
        return [
            tf.TensorSpec((None, *binding.image_shape), tf.float32),
            tuple(tf.TensorSpec((None, *shape), dtype) for shape, dtype in binding.extra_specs),
        ]

    def _inputs(self, binding: Binding, images, extras) -> list:
        """One tensor per model input, in `model.inputs` order, in the input's dtype."""
        inputs = list(extras)
        inputs.insert(binding.image_index, images)
        dtypes = self.graph.input_dtypes
        return [tf.cast(x, dtype) if dtype else x for x, dtype in zip(inputs, dtypes)]

    # ---- forward (+ backward) pass -----------------------------------------------------

    def snapshot_fn(
        self,
        feature_refs: tuple[LayerRef, ...],
        cam_refs: tuple[LayerRef, ...],
        binding: Binding,
    ):
        """The compiled pass for these layers: `fn(images, extras, targets) -> dict`.

        Args:
            feature_refs: layers whose activations are returned.
            cam_refs: layers for Grad-CAM, one per row of `targets` (needs `binding.head`).
            binding: how the probe feeds the model (`Core.bind`).

        Returns:
            A `tf.function` taking `images` `(batch, height, width, channels)` float32, the
            `extras` of a `Bound`, and `targets` `(len(cam_refs), batch)` int32 (-1 =
            predicted class), and returning a dict: `"logits"` `(batch, classes)` (when the
            binding has a head), `"activations"` path -> `(batch, h, w, c)` float32, `"cams"`
            list of `(batch, height, width)` raw Grad-CAM maps at the input size.
        """
        key = (tuple(r.path for r in feature_refs), tuple(r.path for r in cam_refs), binding)
        fn = self._snapshot_fns.get(key)
        if fn is None:
            fn = compile_once(
                lambda images, extras, targets: self._snapshot(
                    images, extras, targets, feature_refs, cam_refs, binding
                ),
                input_signature=[
                    *self._specs(binding),
                    tf.TensorSpec((len(cam_refs), None), tf.int32),
                ],
                reduce_retracing=True,
            )
            self._snapshot_fns[key] = fn
        return fn

    def _snapshot(self, images, extras, targets, feature_refs, cam_refs, binding):
        taps = {r.path: r.layer for r in (*feature_refs, *cam_refs)}
        inputs = self._inputs(binding, images, extras)
        with tf.GradientTape(persistent=len(cam_refs) > 1) as tape:
            # Watching the input makes every activation differentiable even when the
            # layers are frozen (trainable=False), as in a fine-tuned keras.applications base.
            tape.watch(inputs[binding.image_index])
            logits, recorded = self.graph.run(inputs, taps, binding.head)
            scores = []
            if cam_refs:
                predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
                resolved = tf.where(targets < 0, predicted[None, :], targets)
                scores = [
                    tf.reduce_sum(tf.gather(logits, resolved[i], axis=1, batch_dims=1))
                    for i in range(len(cam_refs))
                ]
        cams = []
        for i, ref in enumerate(cam_refs):
            activation = recorded[ref.path]
            grads = tape.gradient(scores[i], activation)
            cams.append(self._grad_cam(activation, grads, tf.shape(images)[1:3]))
        out = {"activations": _as_float(recorded, feature_refs), "cams": cams}
        if logits is not None:  # no score output is read for feature maps alone
            out["logits"] = logits
        return out

    @staticmethod
    def _grad_cam(activation, grads, size):
        """Grad-CAM (Selvaraju et al. 2017): ReLU(sum_c mean_hw(dS/dA_c) * A_c), upsampled.

        Args:
            activation: `(batch, h, w, channels)` layer output A.
            grads: `(batch, h, w, channels)` dS/dA.
            size: `(height, width)` to upsample to.

        Returns:
            `(batch, height, width)` float32 raw map.
        """
        activation = tf.cast(activation, tf.float32)
        if grads is None:  # the score does not depend on this layer at all
            grads = tf.zeros_like(activation)
        weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2))
        cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", activation, weights))
        return tf.image.resize(cam[..., None], size, method="bilinear")[..., 0]

    # ---- occlusion --------------------------------------------------------------------

    def occlusion_fn(
        self,
        patch: tuple[int, int],
        stride: tuple[int, int],
        batch_size: int,
        binding: Binding,
    ):
        """The compiled occlusion pass: `fn(images, extras, targets, logits, baseline) -> maps`.

        Every occluded image is built and scored inside the graph, `batch_size` at a time.

        Args:
            patch: `(height, width)` of the occluding window.
            stride: `(rows, cols)` between windows.
            batch_size: occluded images scored per model call.
            binding: how the probe feeds the model (`Core.bind`), with a head.

        Returns:
            A `tf.function` taking `images` `(batch, height, width, channels)`, the `extras`
            of a `Bound` (each occluded copy gets its image's other inputs), `targets`
            `(batch,)` (-1 = predicted class), `logits` `(batch, classes)` (the scores of the
            unoccluded images, from the snapshot pass) and `baseline` `(height, width,
            channels)`, returning `(batch, height, width)` maps of score(original) -
            score(occluded), overlapping windows averaged per pixel.
        """
        key = (patch, stride, batch_size, binding)
        fn = self._occlusion_fns.get(key)
        if fn is None:
            fn = compile_once(
                lambda images, extras, targets, logits, baseline: self._occlusion(
                    images, extras, targets, logits, baseline, patch, stride, batch_size, binding
                ),
                input_signature=[
                    *self._specs(binding),
                    tf.TensorSpec((None,), tf.int32),
                    tf.TensorSpec((None, binding.head.num_classes), tf.float32),
                    tf.TensorSpec(binding.image_shape, tf.float32),
                ],
            )
            self._occlusion_fns[key] = fn
        return fn

    def _occlusion(
        self, images, extras, targets, logits, baseline, patch, stride, batch_size, binding
    ):
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        targets = tf.where(targets < 0, predicted, targets)
        base_scores = tf.gather(logits, targets, axis=1, batch_dims=1)
        height, width = int(images.shape[1]), int(images.shape[2])
        tops = window_starts(height, patch[0], stride[0])
        lefts = window_starts(width, patch[1], stride[1])
        rows_in = _window_masks(tops, patch[0], height)  # (n_rows, height) bool
        cols_in = _window_masks(lefts, patch[1], width)  # (n_cols, width) bool
        per_image = len(tops) * len(lefts)
        n = tf.shape(images)[0]
        total = n * per_image
        num_chunks = (total + batch_size - 1) // batch_size
        drops = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        baseline = tf.cast(baseline, images.dtype)
        build_chunk = _occluded_chunk_xla if xla_available() else _occluded_chunk
        for chunk in tf.range(num_chunks):
            tf.autograph.experimental.set_loop_options(parallel_iterations=CHUNKS_IN_FLIGHT)
            index = tf.range(chunk * batch_size, tf.minimum((chunk + 1) * batch_size, total))
            image_index = index // per_image
            window = index % per_image
            occluded = build_chunk(
                images,
                image_index,
                window // len(lefts),
                window % len(lefts),
                rows_in,
                cols_in,
                baseline,
            )
            inputs = self._inputs(
                binding, occluded, [tf.gather(extra, image_index) for extra in extras]
            )
            chunk_logits = self.graph.run(inputs, {}, binding.head)[0]
            chunk_targets = tf.gather(targets, image_index)
            scores = tf.gather(chunk_logits, chunk_targets, axis=1, batch_dims=1)
            drops = drops.write(chunk, tf.gather(base_scores, image_index) - scores)
        drops = tf.reshape(drops.concat(), (n, len(tops), len(lefts)))
        rows = tf.cast(rows_in, tf.float32)
        cols = tf.cast(cols_in, tf.float32)
        # Scatter each window's drop over its pixels and average where windows overlap.
        summed = tf.einsum("ay,nab,bx->nyx", rows, drops, cols)
        count = tf.einsum("ay,bx->yx", rows, cols)
        return summed / count


def _occluded_chunk(images, image_index, row_index, col_index, rows_in, cols_in, baseline):
    """One chunk of occluded images: image `image_index[i]` with window `i` set to `baseline`.

    Args:
        images: `(batch, height, width, channels)` the unoccluded images.
        image_index: `(chunk,)` int32, which image each occluded copy is made from.
        row_index: `(chunk,)` int32, the window's row among the row starts.
        col_index: `(chunk,)` int32, the window's column among the column starts.
        rows_in: `(n_rows, height)` bool, the pixel rows each window row covers.
        cols_in: `(n_cols, width)` bool, the pixel columns each window column covers.
        baseline: `(height, width, channels)` the occluding values.

    Returns:
        `(chunk, height, width, channels)` occluded images, dtype of `images`.
    """
    mask = tf.gather(rows_in, row_index)[:, :, None] & tf.gather(cols_in, col_index)[:, None, :]
    return tf.where(mask[..., None], baseline, tf.gather(images, image_index))


# TensorFlow's CPU select kernel costs several copies of the chunk (a quarter to a third of
# the occlusion pass on a small CNN); XLA fuses gather, mask and select into one pass
# (benchmarks/occlusion_fix.py). It compiles once per chunk shape: full chunks and the last.
_occluded_chunk_xla = tf.function(_occluded_chunk, jit_compile=True, autograph=False)


@functools.cache
def xla_available() -> bool:
    """Whether XLA compiles on this process's default device (some device plugins cannot)."""
    try:
        with tf.init_scope():  # run it now, also when asked while a pass is traced
            probe = tf.function(
                lambda x: tf.where(x > 0, x, 0.0), jit_compile=True, autograph=False
            )
            probe(tf.ones(2))
    except Exception:  # noqa: BLE001 - any failure: build the chunks with plain TF ops
        return False
    return True


def _extra_inputs(graph: ModelGraph, probe: Probe, index: int, argument: str) -> list:
    """The probe's arrays for the model's other inputs, in `model.inputs` order."""
    names = graph.input_names
    if len(names) == 1:
        if probe.inputs is not None and len(probe.inputs) > 1:
            raise ValueError(
                f"`{argument}` must give the one input of model {graph.model.name!r}. "
                f"Received: {len(probe.inputs)} inputs {list(probe.inputs)}"
            )
        return []
    listed = ", ".join(f"{n!r} {tuple(s)}" for n, s in zip(names, graph.input_shapes))
    if probe.inputs is None:
        raise ValueError(
            f"`{argument}` must give every input of model {graph.model.name!r} ({listed}): "
            "x as a dict keyed by input name or a list in input order, in (x,) or "
            "(x, labels). Received: one image array"
        )
    keys = names if isinstance(probe.image_key, str) else list(range(len(names)))
    missing = [k for k in keys if k not in probe.inputs]
    if missing or len(probe.inputs) != len(names):
        raise ValueError(
            f"`{argument}` must give every input of model {graph.model.name!r} ({listed}), "
            f"by name in a dict or by position in a list. Received: inputs {list(probe.inputs)}"
        )
    if keys[index] != probe.image_key:
        raise ValueError(
            f"`image_input` must be the same input in the model and the probe: the model's "
            f"image input is {names[index]!r} (position {index}), the probe's images are its "
            f"input {probe.image_key!r}. Pass `image_input` to choose."
        )
    extras = []
    for position, key in enumerate(keys):
        if position != index:
            array = probe.inputs[key]
            check_input_fits(array, graph.input_shapes[position], names[position], argument)
            extras.append(array)
    return extras


def _as_float(recorded: dict, refs) -> dict:
    return {r.path: tf.cast(recorded[r.path], tf.float32) for r in refs}


def count_non_finite(x: tf.Tensor) -> tf.Tensor:
    """Number of NaN/Inf values in `x`, as float32 (a diverging model shows up here)."""
    return tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.float32))


def _window_masks(starts: list[int], patch: int, size: int) -> tf.Tensor:
    positions = np.arange(size)[None, :]
    starts_np = np.asarray(starts)[:, None]
    return tf.constant((positions >= starts_np) & (positions < starts_np + patch))


def as_float_images(images: np.ndarray) -> tf.Tensor:
    return tf.convert_to_tensor(np.asarray(images, dtype=np.float32))


# ---- cores shared per model ---------------------------------------------------------------

_CORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def core_for(model: keras.Model) -> Core:
    """The `Core` of a model, made once and reused by every callback and explainer call."""
    core = _CORES.get(model)
    if core is None:
        core = Core(ModelGraph(model))
        _CORES[model] = core
    return core


# ---- the pass shared by the callbacks watching one model and probe --------------------------


class SharedPass:
    """One forward (and backward) pass per snapshot for all callbacks on a model and probe.

    Each member callback says what it needs (`feature_refs()`, `cam_requests()`) and when it
    is due (`is_due(epoch)`); the first member to ask at an epoch runs the pass for the
    members due then, and the others read the cached result.
    """

    def __init__(self, core: Core, probe: Probe, bound: Bound):
        self.core = core
        self.probe = probe
        self.bound = bound
        self.members: list = []
        self.passes_run = 0
        self._cache: tuple[int, dict] | None = None

    def join(self, member) -> None:
        if member not in self.members:
            self.members.append(member)
        self._cache = None

    def leave(self, member) -> None:
        if member in self.members:
            self.members.remove(member)
        self._cache = None

    def result(self, epoch: int) -> dict:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        due = [m for m in self.members if m.is_due(epoch)]
        feature_refs = _unique_refs(ref for m in self.members for ref in m.feature_refs())
        # Grad-CAM requests of members not due this epoch are left out, so a pass without
        # them is the cheaper forward-only variant (each variant is traced once).
        requests = list(dict.fromkeys(req for m in due for req in m.cam_requests()))
        fn = self.core.snapshot_fn(feature_refs, tuple(r.ref for r in requests), self.bound.binding)
        targets = np.asarray([r.targets for r in requests], np.int32).reshape(
            len(requests), self.probe.size
        )
        out = fn(self.bound.images, self.bound.extras, tf.constant(targets))
        out["cam_by_request"] = dict(zip(requests, out["cams"]))
        self.passes_run += 1
        self._cache = (epoch, out)
        return out


def _unique_refs(refs) -> tuple[LayerRef, ...]:
    seen: dict[str, LayerRef] = {}
    for ref in refs:
        seen.setdefault(ref.path, ref)
    return tuple(seen.values())


_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def shared_pass(model: keras.Model, probe: Probe, bound: Bound) -> SharedPass:
    """The `SharedPass` for a model, probe content and binding, made on first use."""
    per_model = _SHARED.setdefault(model, {})
    key = (probe.key, bound.binding)
    shared = per_model.get(key)
    if shared is None:
        shared = SharedPass(core_for(model), probe, bound)
        per_model[key] = shared
    return shared


def occlusion_geometry(image_shape, patch_size, stride) -> tuple[tuple, tuple, int]:
    """Validate occlusion sizes against the image; returns (patch, stride, windows/image)."""
    height, width = image_shape[0], image_shape[1]
    patch = _pair(patch_size, "patch_size")
    stride = patch if stride is None else _pair(stride, "stride")
    if patch[0] > height or patch[1] > width:
        raise ValueError(
            f"`patch_size` must fit in the {height}x{width} probe images. "
            f"Received: patch_size={patch_size}"
        )
    if stride[0] > patch[0] or stride[1] > patch[1]:
        raise ValueError(
            "`stride` must be at most `patch_size` so every pixel is occluded. "
            f"Received: stride={stride}, patch_size={patch_size}"
        )
    count = len(window_starts(height, patch[0], stride[0])) * len(
        window_starts(width, patch[1], stride[1])
    )
    return patch, stride, count


def _pair(value, argument: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if (
        len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in pair)
        or min(pair) < 1
    ):
        raise ValueError(
            f"`{argument}` must be a positive int or a pair of positive ints. "
            f"Received: {argument}={value!r}"
        )
    return int(pair[0]), int(pair[1])
