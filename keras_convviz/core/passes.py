"""The compiled pass: one `tf.function` per (plan, binding) that computes every need.

Plan once, run many: a `Core` is made once per model; `Core.run(plan, bound)` compiles the
pass for that plan the first time and reuses the traced graph afterwards. The pass runs
the model once on the probe (inference mode) recording the layers the needs name, takes
each requested gradient of a target's scores once (one backward per target, `core.targets`,
however many needs explain it), and then
lets each need compute its value: from what was recorded, or by scoring more inputs in
bounded chunks with `Context.score_in_chunks`, the one loop every perturbation method
(occlusion, Score-CAM, SmoothGrad, Integrated Gradients, ...) shares. Nothing here writes
files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import tensorflow as tf

from keras_convviz.core.binding import Binding, Bound
from keras_convviz.core.graph import Head, LayerRef, ModelGraph, kernel_variable
from keras_convviz.core.needs import Plan, Result, Slot
from keras_convviz.core.recorder import Record, Recorder
from keras_convviz.core.targets import Target, pick
from keras_convviz.core.xla import xla_available  # noqa: F401  (imported from here)

# Chunks in flight in the chunked loop. One holds the least memory but cannot build the
# next chunk while the current one is scored (5-25 % slower on 2 CPU cores); TensorFlow's
# default, 10, holds up to ten. Two keeps the overlap, and the peak stays flat in the number
# of chunks (BENCHMARKS.md, occlusion memory).
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


def count_non_finite(x: tf.Tensor) -> tf.Tensor:
    """Number of NaN/Inf values in `x`, as float32 (a diverging model shows up here)."""
    return tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.float32))


class Context:
    """What a need (and a target) sees while the pass is traced.

    Attributes:
        images: `(batch, *spatial, channels)` float32 probe samples.
        scores: the head's scores on the probe (`Head.scores`: `(batch, classes)`, per
            position for a dense head), or `None` when the binding reads no scores.
    """

    def __init__(
        self, core: Core, binding: Binding, images, extras, consts, scores, recorded, calls=None
    ):
        self._core = core
        self._calls = calls
        self._binding = binding
        self.images = images
        self._extras = extras
        self._consts = consts
        self.scores = scores
        self._recorded = recorded
        self._gradients: dict = {}
        self._cached: dict = {}
        self._values: dict = {}
        self._losses: dict = {}

    def value(self, need) -> tf.Tensor:
        """A need's value in this pass, computed once however many needs read it."""
        if need not in self._values:
            self._values[need] = need.compute(self)
        return self._values[need]

    def cached(self, key, make: Callable[[], tf.Tensor]) -> tf.Tensor:
        """`make()`, computed once per pass for `key` (a target's resolved classes)."""
        if key not in self._cached:
            self._cached[key] = make()
        return self._cached[key]

    @property
    def geometry(self):
        """The probe input's `Geometry`."""
        return self._binding.geometry

    @property
    def spatial_size(self) -> tuple[int, ...]:
        """The probe input's spatial size (steps; height, width; depth, height, width)."""
        return tuple(self._binding.image_shape[:-1])

    def const(self, slot: Slot) -> tf.Tensor:
        return self._consts[slot.index]

    def classes(self, target: Target) -> tf.Tensor:
        """`(batch,)` int32 the class each probe sample's target score is read at."""
        return target.classes(self)

    def class_scores(self, target: Target) -> tf.Tensor:
        """`(batch, classes)` float32 the class scores the target reads on the probe."""
        return target.class_scores(self, self.scores)

    def target_scores(self, target: Target) -> tf.Tensor:
        """`(batch,)` the target's score of each probe sample."""
        return self.cached((target, "scores"), lambda: target.scores(self, self.scores))

    @property
    def model_output(self) -> tf.Tensor:
        """The head's output as the model computes it (float32, its final softmax or
        sigmoid applied): what its loss is computed on; per position for a dense head."""
        return self._binding.head.output(self.scores)

    def probabilities(self, target: Target) -> tf.Tensor:
        """`(batch, classes)` what the model outputs as probabilities (softmax, sigmoid)
        of the class scores a target reads."""
        return self._binding.head.probabilities(self.class_scores(target))

    def activation(self, ref: LayerRef) -> tf.Tensor:
        """A recorded layer output as float32 `(batch, h, w, channels)`."""
        return tf.cast(self._recorded[ref.path], tf.float32)

    def loss_gradient(self, labels: Slot) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The compiled loss on the probe for `labels` and its gradient with respect to
        each requested layer's kernel, by path (float32)."""
        return self._losses[labels]

    def gradient(self, ref: LayerRef | None, target: Target) -> tf.Tensor:
        """d(target score)/d(layer output), or d/d(images) for `ref=None`, float32."""
        return self._gradients[(None if ref is None else ref.path, target)]

    @property
    def head(self) -> Head | None:
        """The output read as scores (`None` when the binding reads no scores)."""
        return self._binding.head

    def recorded_calls(self) -> tuple[list[Record], tf.Tensor] | None:
        """Every leaf call of the model on the probe, in call order, and the image tensor
        they start from (the image input as the model received it), for a need that
        replays the model on parts of its inputs; `None` where the pass recorded none."""
        if self._calls is None:
            return None
        return self._calls.records, self._calls.inputs[self._binding.image_index]

    def score_in_chunks(
        self,
        per_image: int,
        batch_size: int,
        build: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
        target: Target,
        gradients: bool = False,
        probabilities: bool = False,
        scorer: Callable | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Score `per_image` built inputs per probe image, `batch_size` at a time.

        The general chunked loop (captum's `_batched_operator`): input `k` of image `i`
        has the flat index `i * per_image + k`; chunk `j` holds the flat indices
        `[j * batch_size, (j + 1) * batch_size)`. Each chunk is built, scored by the target
        as its images are (with the images' other inputs) and, with `gradients`, its
        gradient with respect to the built inputs is summed per probe image. At most
        `CHUNKS_IN_FLIGHT` chunks are alive at once, so memory is bounded by `batch_size`.

        Args:
            per_image: inputs built per probe image (a Python int).
            batch_size: inputs scored per model call.
            build: `build(image_index, k) -> (chunk, height, width, channels)`: the
                inputs of a chunk, from which probe image and which of its `per_image`.
            target: what is scored (`core.targets`), read for each input as for the
                probe image it is built from.
            gradients: also sum d(score)/d(input) per probe image.
            probabilities: score the target's probability (what the model outputs: softmax,
                sigmoid) instead of its score before the final activation.
            scorer: `None`, or `scorer(image_index, k)` -> the head's scores of the chunk
                (`Head.scores`), which replaces building the inputs and running the model
                on them (incremental occlusion, which never builds the full inputs);
                `build` is then unused.

        Returns:
            `(scores, gradient_sums)`: `(batch, per_image)` float32 target scores (or
            the probabilities of the target's classes), and `(batch, height, width, channels)`
            float32 sums of the input gradients over each image's inputs (or `None`
            without `gradients`).
        """
        images = self.images
        n = tf.shape(images)[0]
        total = n * per_image
        num_chunks = (total + batch_size - 1) // batch_size
        head = self._binding.head
        # What the target reads of the probe itself, resolved here (outside the loop,
        # whose body is another graph) and read by every chunk.
        target.classes(self)
        target.region(self)

        if scorer is not None and gradients:
            raise ValueError("A chunk scorer cannot take input gradients.")

        def read(scores, image_index):
            """The chunk's target scores (or probabilities) from the head's scores."""
            if not probabilities:
                return target.scores(self, scores, image_index)
            chosen = tf.gather(target.classes(self), image_index)
            return pick(head.probabilities(target.class_scores(self, scores, image_index)), chosen)

        def body(chunk, scores, sums):
            index = tf.range(chunk * batch_size, tf.minimum((chunk + 1) * batch_size, total))
            image_index = index // per_image
            if scorer is not None:
                score = read(scorer(image_index, index % per_image), image_index)
                return chunk + 1, scores.write(chunk, score), sums
            inputs = build(image_index, index % per_image)
            extras = [tf.gather(extra, image_index) for extra in self._extras]
            if gradients:
                with tf.GradientTape() as tape:
                    tape.watch(inputs)
                    score = read(self._core.scores_of(self._binding, inputs, extras), image_index)
                grads = tape.gradient(score, inputs)
                sums = sums + tf.math.unsorted_segment_sum(grads, image_index, n)
            else:
                score = read(self._core.scores_of(self._binding, inputs, extras), image_index)
            return chunk + 1, scores.write(chunk, score), sums

        scores = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        sums = tf.zeros_like(images) if gradients else tf.zeros((0,), tf.float32)
        _, scores, sums = tf.while_loop(
            lambda chunk, *_: chunk < num_chunks,
            body,
            (tf.constant(0), scores, sums),
            parallel_iterations=CHUNKS_IN_FLIGHT,
        )
        return tf.reshape(scores.concat(), (n, per_image)), sums if gradients else None


class Core:
    """The compiled passes over one model, one per (plan key, binding).

    Args:
        graph: the resolved model.
    """

    def __init__(self, graph: ModelGraph):
        self.graph = graph
        self.passes: dict[tuple, tf.types.experimental.GenericFunction] = {}

    def run(self, plan: Plan, bound: Bound) -> Result:
        """Compute every need of `plan` on a bound probe in one compiled call."""
        fn = self.compiled(plan, bound.binding)
        values = fn(bound.images, bound.extras, plan.feed())
        return Result(plan.needs, values)

    def compiled(self, plan: Plan, binding: Binding):
        """The compiled pass for a plan: `fn(images, extras, consts) -> [value per need]`."""
        key = (plan.key, binding)
        fn = self.passes.get(key)
        if fn is None:
            needs = plan.key
            # No AutoGraph: the pass is plain TF ops and one `tf.while_loop`, and converting
            # it cost most of the first snapshot's time.
            fn = compile_once(
                lambda images, extras, consts: self._pass(images, extras, consts, needs, binding),
                input_signature=[
                    tf.TensorSpec((None, *binding.image_shape), tf.float32),
                    tuple(tf.TensorSpec((None, *s), d) for s, d in binding.extra_specs),
                    plan.specs(),
                ],
                autograph=False,
                reduce_retracing=True,
            )
            self.passes[key] = fn
        return fn

    def _inputs(self, binding: Binding, images, extras) -> list:
        """One tensor per model input, in `model.inputs` order, in the input's dtype."""
        inputs = list(extras)
        inputs.insert(binding.image_index, images)
        dtypes = self.graph.input_dtypes
        return [tf.cast(x, dtype) if dtype else x for x, dtype in zip(inputs, dtypes)]

    def scores_of(self, binding: Binding, images, extras) -> tf.Tensor:
        """The head's scores (`Head.scores`) of the model on some inputs, inference mode."""
        return self.graph.run(self._inputs(binding, images, extras), {}, binding.head)[0]

    def _pass(self, images, extras, consts, needs, binding):
        taps = {ref.path: ref.layer for need in needs for ref in need.layers()}
        wanted = list(dict.fromkeys(pair for need in needs for pair in need.gradients()))
        for ref, _ in wanted:
            if ref is not None:
                taps[ref.path] = ref.layer
        by_target: dict[Target, list] = {}
        for ref, target in wanted:
            by_target.setdefault(target, []).append(ref)
        by_labels: dict[Slot, dict] = {}
        for need in needs:
            for slot, refs in need.loss_gradients():
                by_labels.setdefault(slot, {}).update({ref.path: ref for ref in refs})

        # A loss without layers to differentiate (the health numbers' loss alone) needs
        # only the forward.
        backwards = len(by_target) + sum(1 for refs in by_labels.values() if refs)
        tape = tf.GradientTape(persistent=backwards > 1) if backwards else None
        with tape or contextlib.nullcontext():
            if tape is not None:
                # Watching the images makes every activation differentiable even when the
                # layers are frozen (trainable=False), as in a fine-tuned keras.applications
                # base, and gives the input gradient for saliency.
                tape.watch(images)
                for refs in by_labels.values():  # frozen kernels too
                    tape.watch([kernel_variable(ref.layer) for ref in refs.values()])
            inputs = self._inputs(binding, images, extras)
            # Every call is recorded (cheap: references only) for needs that replay the
            # model on parts of its inputs; unused, it adds no op to the graph.
            calls = Recorder(inputs)
            scores, recorded = self.graph.run(inputs, taps, binding.head, wrap=calls)
            ctx = Context(self, binding, images, extras, consts, scores, recorded, calls)
            totals = {target: tf.reduce_sum(ctx.target_scores(target)) for target in by_target}
            losses = {
                slot: tf.cast(
                    self.graph.model.compute_loss(
                        y=ctx.const(slot), y_pred=ctx.model_output, training=False
                    ),
                    tf.float32,
                )
                for slot in by_labels
            }
        for slot, refs in by_labels.items():
            if not refs:
                ctx._losses[slot] = (losses[slot], {})
                continue
            # The loss's own backward, to the kernels (Grad-CAM's stops at its layer).
            kernels = [kernel_variable(ref.layer) for ref in refs.values()]
            grads = tape.gradient(losses[slot], kernels)
            ctx._losses[slot] = (
                losses[slot],
                {
                    path: tf.zeros_like(k, tf.float32) if g is None else tf.cast(g, tf.float32)
                    for path, k, g in zip(refs, kernels, grads)
                },
            )
        for target, refs in by_target.items():
            sources = [images if ref is None else recorded[ref.path] for ref in refs]
            # One backward per target, for every layer (and the input) that needs it.
            grads = tape.gradient(totals[target], sources)
            for ref, source, grad in zip(refs, sources, grads):
                if grad is None:  # the score does not depend on this layer at all
                    grad = tf.zeros_like(source)
                ctx._gradients[(None if ref is None else ref.path, target)] = tf.cast(
                    grad, tf.float32
                )
        return [ctx.value(need) for need in needs]
