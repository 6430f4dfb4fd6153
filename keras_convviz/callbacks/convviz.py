"""`ConvViz`: the one-line entry point, the callbacks with sensible defaults on one probe."""

from __future__ import annotations

import functools
import inspect
import math
import warnings

import keras

from keras_convviz import kinds
from keras_convviz._args import (
    check_bool,
    check_budget,
    check_freq,
    check_log_dir,
    check_positive_int,
)
from keras_convviz._warn import user_stacklevel
from keras_convviz.alerts import Monitor, check_stop_on, rules_from
from keras_convviz.callbacks import background
from keras_convviz.callbacks.activation_maximization import ActivationMaximization
from keras_convviz.callbacks.base import Notices, ProbeCallback, _is_chief
from keras_convviz.callbacks.budget import Budget
from keras_convviz.callbacks.feature_maps import FeatureMaps
from keras_convviz.callbacks.filter_weights import FilterWeights
from keras_convviz.callbacks.grad_cam import GradCAM
from keras_convviz.callbacks.maps import MapCallback
from keras_convviz.callbacks.model_health import ModelHealth
from keras_convviz.callbacks.occlusion_sensitivity import OcclusionSensitivity
from keras_convviz.callbacks.saliency import Saliency
from keras_convviz.checks import FitNumbers, chance_classes, learning_rate, setup_numbers
from keras_convviz.core.geometry import MAX_SLICES
from keras_convviz.core.probe import make_probe, warn_large_probe
from keras_convviz.core.shared import core_for

# The hooks a callback may have; ConvViz forwards each one some child implements. Hooks no
# child implements stay Keras's defaults: a batch-level hook would turn off Keras 3's async
# dispatch of the training loop.
_HOOKS = tuple(
    name
    for name, _ in inspect.getmembers(keras.callbacks.Callback, inspect.isfunction)
    if name.startswith("on_")
)


def _implements(callback, hook: str) -> bool:
    return not getattr(getattr(callback, hook), "_is_default", False)


class ConvViz(keras.callbacks.Callback):
    """Feature maps, filter weights, Grad-CAM, occlusion and saliency in one callback.

    Runs `FeatureMaps`, `FilterWeights`, `GradCAM` and `OcclusionSensitivity` (and
    `Saliency` when asked) on one probe; they share one compiled pass, so a snapshot costs
    one forward and backward pass on the probe plus the occlusion pass. Each writes into
    its own run directory under `log_dir` (`feature_maps/`, `filter_weights/`, `grad_cam/`,
    `occlusion_sensitivity/`, ...), beside the `train/` and `validation/` runs of
    `keras.callbacks.TensorBoard(log_dir)`. Every Keras hook is forwarded to the children.

    The costly kinds (occlusion; Score-CAM, SmoothGrad, Integrated Gradients, faithfulness
    and activation maximisation when asked) run as often as `budget` allows: by default their
    snapshots hold training at most a tenth of its time.

    Each child can be switched off (`occlusion=False`) or given any of its own arguments as
    a dict, which override the shared ones (`grad_cam={"method": ["gradcam", "scorecam"]}`,
    `occlusion={"stride": 4, "batch_size": 64}`, `saliency={"method": "smoothgrad"}`).

    Args:
        log_dir: str or path. The TensorBoard log directory.
        probe: samples (images, sequences, volumes), `(samples, labels)` with the labels as
            `fit` takes them (class ids, one-hot, segmentation masks, a dict per output), or
            a `tf.data.Dataset` (its first batch is used).
        freq: int. Epochs between snapshots for all of them; `0` disables. Defaults to `1`.
        layer_names: list of str or None. Layers for feature maps and filters. Defaults to
            `None`: every conv layer whose output lays out over the input (at most
            `max_layers`, see there), and a vision transformer's block outputs.
        max_layers: int. Without `layer_names`, the most conv layers shown: a model with
            more shows one per resolution stage (the last conv before the resolution drops;
            convs on 1x1 maps, as squeeze-excite branches, left out), spread evenly over the
            stages when there are more. Defaults to `8`.
        cam_layer: str or None. The Grad-CAM layer. Defaults to `None`: the last layer
            before the head whose output keeps at least 2 positions along each spatial
            axis, after its activation (see `GradCAM`).
        class_index: int, `"predicted"` or None. Target class for Grad-CAM, occlusion and
            saliency; `"predicted"`: each sample's predicted class. Defaults to `None`: the
            true label when the probe has labels, else the predicted class. For a
            segmentation output, the region explained (see `GradCAM`).
        max_channels: int. Feature-map channels shown per layer. Defaults to `32`.
        patch_size: int, tuple or None. Occlusion window, one length per spatial axis.
            Defaults to `None`: an eighth of the shorter image side (of a sequence's steps),
            a quarter of each side of a volume.
        occlusion_freq: int or None. Epochs between occlusion snapshots (occlusion scores
            many images, so it may run less often). Defaults to `None`: same as `freq`.
        on_error: `"warn"` or `"raise"`, what a failing snapshot does. Defaults to `"warn"`.
        image_input: str, int or None. For a model with several inputs, the one that takes
            the images (name or position); the probe then gives every input, `x` as a dict
            keyed by input name or a list in input order. Defaults to `None`: the only input
            with spatial axes.
        score_output: str, int or None. For a model with several outputs, the one that
            holds the class scores (name or position). Defaults to `None`: the only
            (batch, units) output.
        class_names: list of str or None. The classes' names, for the captions of the
            heat maps (target, predicted class and its probability). Defaults to `None`:
            the class indices.
        grid: bool. One picture per layer and kind with every probe image in it, instead
            of one card per probe image: for large probes. Defaults to `False`.
        alerts: bool or dict. Watch the children's health numbers and say when a layer
            goes wrong (`keras_convviz.alerts.RULES`: dead channels, NaN/Inf, exploding
            activations, saturated activations, weight updates far too large or none on a
            trainable layer, an empty CAM map): a Markdown text summary `alerts/<rule>` in
            the run `alerts/` at the snapshot a rule first fires for a layer, one warning
            in the training log, and at every snapshot a table of every layer's numbers
            (`health/layers` in the run `health/`). A dict sets a rule's threshold or
            switches it off (`{"dead_channels": 0.8, "stalled_updates": False}`).
            Defaults to `True`.
        on_alert: callable or None. Called with each `Alert` when it first fires: for
            the rules on the snapshots on the thread that writes them (the writer thread
            where the model trains on an accelerator, else the training thread), for those
            on the set-up and on `fit`'s loss on the training thread (see `stop_on` to stop
            training).
        stop_on: rule names (e.g. `("non_finite",)`) that stop training when they fire,
            as `EarlyStopping` does. Defaults to `()`.
        scale: `"image"` or `"run"`: how feature maps and heat maps are scaled (see
            `FeatureMaps` and `GradCAM`). Defaults to `"image"`.
        faithfulness: bool or dict. Deletion and insertion scores of the Grad-CAM,
            occlusion and saliency maps beside a random and an edge map (see `GradCAM`);
            the floors are scored once for all of them. Defaults to `False`.
        feature_maps, filter_weights, grad_cam, occlusion: bool or dict. `False` leaves
            that child out; a dict gives it arguments of its own. Defaults to `True`.
        health: bool or dict. `ModelHealth`: accuracy, confidence and each image's target
            probability on the probe (numbers only, from the pass's logits), and the loss
            on a labelled probe. `{"gradients": True}` adds the per-layer norms of the
            loss's gradient (one more backward pass). Defaults to `True`.
        saliency: bool or dict. `Saliency` (SmoothGrad by default; it scores `samples`
            noisy copies of each probe image with a backward pass each, so it is off unless
            asked). Defaults to `False`.
        activation_maximization: bool or dict. `ActivationMaximization`: the image each
            filter of `layer_names` responds to most, found by `steps` forward and backward
            passes of a batch of `filters` images per layer at each snapshot (about 0.4 of a
            demo epoch per layer at its defaults), so it is off unless asked. Defaults to
            `False`.
        max_slices: int. The depth slices of a volume (Conv3D input) that feature maps and
            heat maps show at most, evenly spaced from the first to the last, as a montage.
            Defaults to `8`.
        budget: float in (0, 1] or None. The largest share of the training time that
            snapshots may hold the training thread. The costly kinds (occlusion, Score-CAM,
            SmoothGrad, Integrated Gradients, faithfulness, activation maximisation: many
            extra passes each) then run only as often as keeps the time all snapshots held
            (the first included) within `budget` of the training time so far; the cheap
            ones (feature maps, filters, gradient CAMs, plain gradient saliency, health)
            run at every `freq`, also beside a costly kind of the same child: with
            `grad_cam={"method": ["gradcam", "scorecam"]}` Grad-CAM's maps exist at every
            `freq` and Score-CAM's where the budget admits it, and Grad-CAM's and
            saliency's maps run at every `freq` while their faithfulness scores are
            thinned. Each costly kind's first snapshot of a training always runs, and one
            warning names the kinds thinned and says how often they run. Measured as
            training goes, in wall time on the training thread: held is the time inside
            `ConvViz`'s hooks (the shared pass, waiting for the previous snapshot's
            writing, tracing a new plan), training time the rest since training began; a
            child's costly kinds run together, and their cost is what their snapshots held
            beyond the cheapest snapshot without a costly kind. A kind given
            a `freq` of its own (`occlusion_freq`, `saliency={"freq": 5}`) is left out of
            the budget. `None` runs everything at its `freq`. Defaults to `0.1`.
        display: bool. In a notebook (Jupyter, JupyterLab, Colab, VS Code), one output
            of the cell running `fit` shows, updated after every snapshot, the latest
            pictures of the Grad-CAM layer (the first feature-map layer without Grad-CAM),
            the model's health numbers and the alerts so far. It shows the PNGs the
            snapshot wrote: no drawing of its own. Outside a notebook it does nothing.
            `kcv.show(log_dir)` shows every epoch afterwards. Defaults to `False`.
        regions: array or None. Where the object is on each probe sample, as masks
            `(batch, *spatial)` (bool or 0/1) or boxes `(batch, 4)` as `(y0, x0, y1, x1)`
            pixels (see `GradCAM`). Every map (Grad-CAM, occlusion, saliency) is then scored
            at each snapshot by the share of its positive mass inside the region
            (`<map tag>/in_region`) and whether it peaks there (`<map tag>/pointing`),
            beside a uniform map's score (the region's area share) in the run
            `floor_uniform`; the alert `evidence_off_region` says when the model is right
            on the probe for reasons outside the objects (a shortcut). Defaults to `None`.

    Example:

    ```python
    probe = (x_val[:8], y_val[:8])
    model.fit(x, y, epochs=30, callbacks=[kcv.ConvViz("logs/run1", probe)])
    # tensorboard --logdir logs --samples_per_plugin images=1000
    ```
    """

    def __init__(
        self,
        log_dir,
        probe,
        freq: int = 1,
        layer_names: list[str] | None = None,
        max_layers: int = 8,
        cam_layer: str | None = None,
        class_index: int | str | None = None,
        max_channels: int = 32,
        patch_size=None,
        occlusion_freq: int | None = None,
        on_error: str = "warn",
        image_input=None,
        score_output=None,
        class_names=None,
        grid: bool = False,
        scale: str = "image",
        faithfulness=False,
        alerts=True,
        on_alert=None,
        stop_on=(),
        feature_maps=True,
        filter_weights=True,
        grad_cam=True,
        occlusion=True,
        saliency=False,
        health=True,
        activation_maximization=False,
        max_slices: int = MAX_SLICES,
        budget: float | None = 0.1,
        display: bool = False,
        regions=None,
    ):
        super().__init__()
        self.display = check_bool(display, "display")
        self._view = None  # the notebook's live view of this fit (`notebook.LiveView`)
        freq = check_freq(freq)
        max_slices = check_positive_int(max_slices, "max_slices")
        self.budget = Budget(check_budget(budget))
        # The costly kinds run as the budget admits, unless given a `freq` of their own.
        own_freq = {"occlusion": occlusion_freq is not None or _gives_freq(occlusion)}
        occlusion_freq = (
            freq if occlusion_freq is None else check_freq(occlusion_freq, "occlusion_freq")
        )
        shared = {"log_dir": log_dir, "on_error": on_error, "freq": freq}
        on_probe = {
            **shared,
            "probe": make_probe(probe, image_input),
            "image_input": image_input,
            "score_output": score_output,
            "grid": grid,
            "scale": scale,
            "max_slices": max_slices,
        }
        on_maps = {
            **on_probe,
            "class_index": class_index,
            "class_names": class_names,
            "faithfulness": faithfulness,
            "regions": regions,
        }
        children = (
            (
                "feature_maps",
                feature_maps,
                FeatureMaps,
                {
                    **on_probe,
                    "layer_names": layer_names,
                    "max_layers": max_layers,
                    "max_channels": max_channels,
                },
            ),
            (
                "filter_weights",
                filter_weights,
                FilterWeights,
                {**shared, "layer_names": layer_names, "max_layers": max_layers},
            ),
            ("grad_cam", grad_cam, GradCAM, {**on_maps, "layer_name": cam_layer}),
            (
                "occlusion",
                occlusion,
                OcclusionSensitivity,
                {**on_maps, "patch_size": patch_size, "freq": occlusion_freq},
            ),
            ("saliency", saliency, Saliency, on_maps),
            (
                "health",
                health,
                ModelHealth,
                {
                    k: v
                    for k, v in on_maps.items()
                    if k
                    not in ("class_names", "faithfulness", "grid", "scale", "max_slices", "regions")
                },
            ),
            (
                "activation_maximization",
                activation_maximization,
                ActivationMaximization,
                {
                    **shared,
                    "layer_names": layer_names,
                    "max_layers": max_layers,
                    "probe": on_probe["probe"],
                },
            ),
        )
        self.callbacks = [
            cls(**_arguments(argument, choice, cls, defaults))
            for argument, choice, cls, defaults in children
            if choice is not False
        ]
        self._notices = Notices()
        for (argument, choice, *_), child in zip(
            (c for c in children if c[1] is not False), self.callbacks
        ):
            if not (own_freq.get(argument) or _gives_freq(choice)):
                child._budget = self.budget
                self.budget.arguments[child] = (
                    "`occlusion_freq=n`"
                    if argument == "occlusion"
                    else f"`{argument}={{'freq': n}}`"
                )
        self._budgeted = [c for c in self.callbacks if c._budget is not None]
        for child in self.callbacks:
            child._parent_warns = True  # one warning for all of them (`_forward`)
            child._notices = self._notices
            if isinstance(child, ProbeCallback) and not isinstance(child, MapCallback):
                child._class_index = class_index  # one binding, one pass for all
            if isinstance(child, GradCAM) and not (
                isinstance(grad_cam, dict) and "layer_name" in grad_cam
            ):
                child._layer_argument = "cam_layer"
        rules = rules_from(alerts)
        stop_on = check_stop_on(stop_on, rules)
        self.monitor = None
        if rules and freq:  # freq=0 writes nothing at all, alerts included
            self.monitor = Monitor(check_log_dir(log_dir), rules, on_alert, stop_on)
            for child in self.callbacks:
                # Activation maximisation's scores are no health numbers: not in the table.
                if not isinstance(child, ActivationMaximization):
                    child._monitor = self.monitor
        self._table = None  # the health table's job in flight (`background`)
        self._probe = on_probe["probe"]
        self._score_output = score_output
        self._fit_numbers = FitNumbers(None)
        self._offset: int | None = None  # step - epoch in the current fit
        self._setup_checked = False
        self._told_large = False
        _install_hooks(self)

    def settle(self) -> None:
        """Wait for every child's snapshot in flight and then the health table's."""
        for child in self.callbacks:
            child.settle()
        self._settle_table()

    def _settle_table(self) -> None:
        if self._table is not None:
            self._table.wait()
            self._table = None

    def _forward(self, hook: str, *args, **kwargs):
        if hook in ("on_train_begin", "on_train_end"):
            self._call(hook, *args, **kwargs)
            if hook == "on_train_begin":
                self.budget.begin(c for c in self._budgeted if c._active)
            return
        # The time the training thread spends here is what snapshots hold it (`budget`).
        self.budget.hold()
        try:
            self._call(hook, *args, **kwargs)
        finally:
            epoch = args[0] if args else kwargs.get("epoch")
            snapshot = hook == "on_epoch_end" and any(c._scheduled(epoch) for c in self.callbacks)
            self.budget.release(hook == "on_epoch_end", snapshot)

    def _call(self, hook: str, *args, **kwargs):
        if hook in ("on_epoch_end", "on_train_end"):
            self._settle_table()  # at most one snapshot in flight, its table included
        # The chief alone checks and writes, as the children do (`_is_chief`).
        watching = self.monitor is not None and _is_chief(self.model)
        if hook == "on_epoch_end" and watching:
            self._never_stop(
                functools.partial(self._observe_fit, *args, **kwargs), "read fit's numbers"
            )
        for child in self.callbacks:
            getattr(child, hook)(*args, **kwargs)
        if hook == "on_train_begin":
            self._warn_not_served()
            self._warn_large_probe()
            if watching:
                self._never_stop(self._check_setup, "check the training's set-up")
        self._notices.flush()
        if hook == "on_epoch_end" and (self.monitor is not None or self._view is not None):
            # After the children's snapshots, on the same writer thread.
            if any(child.off_thread() for child in self.callbacks):
                self._table = background.WRITER.submit(self._end_snapshot)
            else:
                self._end_snapshot()
            if self.monitor is not None and self.monitor.stop_on:
                self.settle()  # an alert that stops training stops it at this epoch
        if hook == "on_train_begin" and self.display:
            self._start_view()
        if hook == "on_train_end" and self._view is not None:
            self._view.update()  # the last snapshot, settled by the children above
            for child in self.callbacks:
                child._viewer = None
            self._view = None

    def _warn_large_probe(self) -> None:
        """The large-probe warning once for all children, once the probe fits the model."""
        bound = [c for c in self.callbacks if getattr(c, "_shared", None) is not None]
        if bound and not self._told_large:
            warn_large_probe(bound[0].probe)
        self._told_large = self._told_large or bool(bound)

    def _warn_not_served(self) -> None:
        """One warning for the children that switched themselves off, grouped by why."""
        reasons: dict[str, list[str]] = {}
        for child in self.callbacks:
            if child.not_served is not None:
                reasons.setdefault(child.not_served, []).append(type(child).__name__)
        if not reasons:
            return
        on = [type(c).__name__ for c in self.callbacks if c.not_served is None and c.freq]
        parts = [f"{', '.join(names)}: {reason}" for reason, names in reasons.items()]
        warnings.warn(
            f"ConvViz serves this model in part; off for this training: {'; '.join(parts)}. "
            f"On: {', '.join(on) or 'none'}.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

    def _never_stop(self, job, what: str) -> None:
        """Run `job`; a failure warns instead of ending `fit` (as a snapshot's does)."""
        try:
            job()
        except Exception as error:  # noqa: BLE001 - a check must never end the run
            warnings.warn(
                f"ConvViz could not {what}: {type(error).__name__}: {error}. Training goes on.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def _check_setup(self) -> None:
        """The set-up rules, once per `fit`, on what the model, its compiled loss and
        optimizer and the probe show before the first step (`checks.setup_numbers`); and
        the chance level the `fit` rules compare the loss with. A model first built by its
        first training step is checked at the end of its first epoch."""
        self._offset = None
        self._setup_checked = self.model.built
        if not self._setup_checked:
            return
        graph = core_for(self.model).graph
        try:
            head = graph.head(self._score_output, required=False)
        except ValueError:  # several outputs, none chosen: no labels to check
            head = None
        probe = self._probe.for_head(head) if head is not None else self._probe
        self._fit_numbers = FitNumbers(chance_classes(graph, head))
        if self._fit_numbers.classes:
            self.monitor.note({"chance_loss": math.log(self._fit_numbers.classes)})
        step = min((c._floor for c in self.callbacks), default=0)
        # The learning rate against its default tells the causes "too large" from "too small".
        rate = learning_rate(self.model)
        if rate is not None:
            self.monitor.note({"learning_rate": rate[0], "default_learning_rate": rate[1]})
        numbers = setup_numbers(graph, probe, head)
        self.monitor.observe(step, 0, numbers, self.model, table=False)

    def _observe_fit(self, epoch: int, logs=None) -> None:
        """The rules on `fit`'s own numbers at an epoch's end, before the children's
        snapshots: a loss at chance or exploding is the evidence their alerts' causes read
        (`alerts.Cause`), so it is known first. On the training thread: the previous
        snapshot's jobs, which also touch the monitor, have settled."""
        if not self._setup_checked:
            self._check_setup()
        if self._offset is None:  # the children's step for this epoch (`on_epoch_end`)
            self._offset = max(0, min((c._floor for c in self.callbacks), default=0) - epoch)
        logs = logs or {}
        if "loss" in logs:
            self.monitor.note({"training_loss": float(logs["loss"])})
        numbers = self._fit_numbers.of(logs)
        self.monitor.observe(epoch + self._offset, epoch, numbers, self.model, table=False)

    def _end_snapshot(self) -> None:
        if self._view is not None:
            self._view.update()  # never raises
        if self.monitor is None:
            return
        try:
            self.monitor.end_snapshot()
        except Exception as error:  # noqa: BLE001 - a snapshot must never end the run
            warnings.warn(
                f"ConvViz could not write its health table: {type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )

    def _start_view(self) -> None:
        """With `display=True` in a notebook, the output area this `fit` updates."""
        from keras_convviz import notebook  # the exports' reader, only for notebooks

        self._view = None
        on = [c for c in self.callbacks if c._active and c.freq]
        pictures = [c for c in on if any(_draws(run) for run in c.run_names())]
        if not pictures or not notebook.in_notebook():
            return
        source = next(
            (c for kind in (GradCAM, FeatureMaps) for c in pictures if type(c) is kind),
            pictures[0],
        )
        health = next((c for c in on if isinstance(c, ModelHealth)), None)
        self._never_stop(
            lambda: setattr(
                self, "_view", notebook.LiveView(source, health, self.monitor, source.log_dir)
            ),
            "show its notebook view",
        )
        for child in self.callbacks:
            child._viewer = self._view

    def set_model(self, model):
        super().set_model(model)
        for child in self.callbacks:
            child.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for child in self.callbacks:
            child.set_params(params)


def _draws(run: str) -> bool:
    known = kinds.get(run)
    return known is not None and known.pictures


def _gives_freq(choice) -> bool:
    return isinstance(choice, dict) and "freq" in choice


def _install_hooks(convviz: ConvViz) -> None:
    """Forward each hook some child implements (and only those) to every child."""
    for hook in _HOOKS:
        if any(_implements(child, hook) for child in convviz.callbacks):
            setattr(convviz, hook, functools.partial(convviz._forward, hook))


def _arguments(argument: str, choice, cls, defaults: dict) -> dict:
    """A child's arguments: the shared ones, overridden by the user's dict for it."""
    if choice is True:
        return defaults
    if not isinstance(choice, dict):
        raise TypeError(
            f"`{argument}` must be True, False or a dict of {cls.__name__} arguments. "
            f"Received: {argument}={choice!r}"
        )
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(choice) - set(accepted))
    if unknown:
        raise TypeError(
            f"`{argument}` must hold arguments of {cls.__name__}: {accepted}. "
            f"Received unknown: {unknown}"
        )
    if "probe" in choice:
        choice = {**choice, "probe": make_probe(choice["probe"], choice.get("image_input"))}
    return {key: value for key, value in {**defaults, **choice}.items() if key in accepted}
