"""`MapCallback`: what the heat-map callbacks share: their targets, the captions under
their panels, and the faithfulness scores of their maps."""

from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf
from tensorboard.compat.proto import summary_pb2

from keras_convviz import _rendering, _tags, kinds
from keras_convviz._args import (
    check_class_index,
    check_class_names,
    check_class_names_fit,
    check_regions,
    faithfulness_options,
    resolve_targets,
)
from keras_convviz._rendering import caption_codes, region_caption_codes, text_codes
from keras_convviz.callbacks.base import ProbeCallback
from keras_convviz.core import targets as targets_module
from keras_convviz.core.geometry import MAX_SLICES
from keras_convviz.core.needs import Classes, ClassScores, Need, RegionSizes
from keras_convviz.core.passes import compile_once
from keras_convviz.core.shared import SharedPass
from keras_convviz.methods import faithfulness as faithfulness_module
from keras_convviz.methods.localization import area_share, locate
from keras_convviz.methods.perturb import occlusion_baseline
from keras_convviz.summary_io import Scalar, Tensor

# Class names longer than this are cut in the captions.
MAX_NAME = 16


class MapCallback(ProbeCallback):
    """A probe callback that draws one heat map per probe image for a target class.

    It makes the target its maps explain (`core.targets`), reads the target's class
    scores from the shared pass, and captions every
    panel with the target class, the predicted class and its probability; for a
    segmentation output, the target class and its region's size, and the class the model's
    scores over the region favour.

    Args (besides `ProbeCallback`'s):
        class_index: the class explained for every image, or `None`.
        class_names: the classes' names for the captions, or `None` (their indices).
        faithfulness: `True` or a dict of `kcv.faithfulness` options (`steps`, `baseline`,
            `sigma`, `batch_size`): also score each map by deletion and insertion, beside
            a random and an edge map on the same images.
        max_slices: the depth slices a volume's pictures show at most.
        regions: where the object is on each probe sample (`_args.check_regions`: masks
            or boxes), or `None`: with regions, each map's `in_region` and `pointing`
            (`methods.localization`) beside it, and their floor in `floor_uniform`.
    """

    def __init__(
        self,
        log_dir,
        probe,
        class_index=None,
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
            freq,
            on_error,
            image_input,
            score_output,
            grid,
            scale,
            max_slices=max_slices,
        )
        check_class_index(class_index)
        self.class_index = self._class_index = class_index
        self.class_names = check_class_names(class_names)
        options = faithfulness_options(faithfulness)
        self.faithfulness = options
        if options is not None:
            self._faithfulness_args = {
                "steps": options.get("steps", faithfulness_module.STEPS),
                "baseline": occlusion_baseline(options.get("baseline"), self.probe),
                "sigma": options.get("sigma", faithfulness_module.SIGMA),
                "batch_size": options.get("batch_size", 256),
            }
        self._map_needs: tuple = ()
        self._head = None  # the output explained, once the model is known
        self.regions = regions
        self._masks = None  # the regions as 0/1 masks, once the probe fits the model
        self._outlined: set[str] = set()  # the map tags whose regions are written
        if regions is not None and self.probe.inputs is None:  # else once it is bound
            check_regions(regions, self.probe.size, self.probe.image_shape[:-1])

    def _join_target(self, model: keras.Model) -> tuple[SharedPass, targets_module.Target]:
        """Join the shared pass; the target the maps explain, for the needs."""
        shared = self._join(model)
        geometry = shared.bound.binding.geometry
        if self.faithfulness is not None and geometry.rank != 2:
            raise ValueError(
                "`faithfulness` scores maps of 2-D (height, width) images so far; the probe of "
                f"model {model.name!r} is {geometry.describe()}. Received: "
                f"faithfulness={self.faithfulness!r}"
            )
        head = shared.bound.binding.head
        classes = resolve_targets(self.probe, self.class_index, head.num_classes, "class_index")
        check_class_names_fit(self.class_names, head.num_classes)
        names = self.class_names or [str(c) for c in range(head.num_classes)]
        width = min(max(len(n) for n in names), MAX_NAME)
        self._names = tf.constant(np.stack([text_codes(n, width) for n in names]))
        if head.dense:  # the region caption: both names and the size on one line
            positions = int(np.prod(self.probe.image_shape[:-1]))
            fixed = len(f"class  {positions} px (100.0%)  pred ")  # the rest, at its longest
            width = max(3, min(width, (_rendering.CAPTION_CHARS - fixed) // 2))
            printable = ["".join(map(chr, text_codes(n, width))).rstrip() for n in names]
            self._region_names = tf.constant(printable)
            self._positions = positions
        self._head = head
        if self.regions is not None:
            masks = check_regions(self.regions, self.probe.size, self.probe.image_shape[:-1])
            self._masks = tf.constant(masks)
            self._areas = area_share(masks)
            # Straight-line reductions: no AutoGraph to convert.
            self._locate = compile_once(locate, autograph=False)
        self._target = targets_module.for_head(head, classes, self.probe.regions)
        return shared, self._target

    def needs(self):
        return (*self._map_needs, *self._faithfulness_needs(), *self._caption_needs())

    def needs_at(self, epoch: int) -> tuple:
        if self.costly_due(epoch):
            return self.needs()
        costly = set(self._costly_needs())  # they wait for the budget
        return tuple(need for need in self.needs() if need not in costly)

    def _map_run(self, need: Need) -> str:
        """The run a map need's pictures are written to: its kind's."""
        raise NotImplementedError

    def _costly_needs(self) -> tuple:
        """The needs of the costly kinds (`kinds.Kind.costly`): the maps of a costly
        method, and every faithfulness score (the floors' kinds are costly)."""
        maps = tuple(n for n in self._map_needs if kinds.get(self._map_run(n)).costly)
        return (*maps, *self._faithfulness_needs())

    def _maps_in(self, result) -> tuple:
        """The map needs `result` holds: the cheap ones at every snapshot, the costly ones
        where the budget admitted them (`needs_at`)."""
        return tuple(need for need in self._map_needs if need in result)

    def _caption_needs(self) -> tuple:
        needs = (ClassScores(self._target), Classes(self._target))
        if self._head is not None and self._head.dense:
            needs += (RegionSizes(self._target),)
        return needs

    def _caption_input(self, result):
        """What `_caption` reads of a pass: the target's class scores and classes, and a
        segmentation's region sizes."""
        return tuple(result[need] for need in self._caption_needs())

    def _draw_panels(self, maps, symmetric: bool, caption, scale) -> tf.Tensor:
        """The uint8 panels of maps `(batch, *spatial)` at the input's size over the probe,
        both laid out as a 2-D picture by the input's geometry (a sequence's channels x
        steps strip, a volume's depth slices side by side)."""
        bound = self._shared.bound
        geometry = bound.binding.geometry
        images = geometry.picture(bound.images)
        maps = geometry.map_picture(maps, bound.binding.image_shape[-1])
        return _rendering.draw_heatmap_panels(images, maps, symmetric, caption, scale)

    def _floor_runs(self) -> tuple[str, ...]:
        """The runs the floors are written to: the faithfulness floors with
        `faithfulness`, the uniform map's with `regions`."""
        runs = ()
        if self.faithfulness is not None:
            runs = tuple(_tags.floor_run(name) for name in faithfulness_module.FLOORS)
        if self.regions is not None:
            runs += (_tags.FLOOR_UNIFORM,)
        return runs

    def _region_items(self, result, maps, *tag_parts) -> list[Scalar]:
        """With `regions`: the probe's mean `in_region` and `pointing` of maps
        `(batch, *spatial)` at the input's size (`<map tag>/in_region`, `.../pointing`), each
        image's `in_region` (`<map tag>/image_<i>/in_region`), and the uniform map's under
        the same tags in `floor_uniform`. A map without positive mass has no `in_region`
        (NaN): its image's scalar is left out and the mean is over the other images."""
        if self._masks is None:
            return []
        self._note_accuracy(result)
        in_region, pointing = (v.numpy() for v in self._locate(maps, self._masks))
        items = []
        floor = _tags.FLOOR_UNIFORM
        for run, share, peak in ((None, in_region, pointing), (floor, self._areas, self._areas)):
            defined = np.flatnonzero(np.isfinite(share))
            if defined.size:
                mean = float(share[defined].mean())
                items.append(Scalar(_tags.tag(*tag_parts, _tags.IN_REGION), mean, run=run))
            if np.isfinite(peak).any():
                mean = float(np.nanmean(peak))
                items.append(Scalar(_tags.tag(*tag_parts, _tags.POINTING), mean, run=run))
            for i in defined:
                tag = _tags.tag(*tag_parts, int(i), _tags.IN_REGION)
                items.append(Scalar(tag, float(share[i]), run=run))
        return items + self._region_record(*tag_parts)

    def _region_record(self, *tag_parts) -> list[Tensor]:
        """The regions themselves, once per map tag (`<map tag>/region` in `floor_uniform`):
        the masks and where the panels put the image, overlay and map, so the tab draws
        the outlines (`_tags.REGIONS_PLUGIN`). Of 2-D images only: a sequence's or a
        volume's pictures are laid out otherwise."""
        tag = _tags.tag(*tag_parts, _tags.REGION)
        geometry = self._shared.bound.binding.geometry
        if tag in self._outlined or geometry.name != kinds.RANK_2D:
            return []
        self._outlined.add(tag)
        height, width = (int(n) for n in self._masks.shape[1:3])
        boxes = _rendering.heatmap_panel_boxes(height, width)
        masks = tf.cast(self._masks > 0, tf.uint8)
        return [Tensor(tag, masks, _region_metadata(boxes), run=_tags.FLOOR_UNIFORM)]

    def _note_accuracy(self, result) -> None:
        """Tell the alerts the probe's accuracy at this snapshot: `evidence_off_region`
        fires only on a model that is right on the probe (a class head with labels)."""
        if self._monitor is None or self.probe.labels is None or self._head.dense:
            return
        scores = result[ClassScores(self._target)]
        predicted = np.argmax(self._head.probabilities(scores), axis=-1)
        accuracy = float(np.mean(predicted == self.probe.labels))
        self._monitor.note({"probe_accuracy": accuracy})

    def _faithfulness_of(self, of: Need) -> faithfulness_module.Faithfulness:
        return faithfulness_module.Faithfulness(of, self._target, **self._faithfulness_args)

    def _faithfulness_needs(self) -> tuple:
        if self.faithfulness is None:
            return ()
        maps = (*self._map_needs, *faithfulness_module.FLOORS.values())
        return tuple(self._faithfulness_of(need) for need in maps)

    def _faithfulness_items(self, result, need: Need, *tag_parts) -> list[Scalar]:
        """The probe's mean deletion and insertion scores of a map, and of the floors
        under the same tags in their own runs: `<map tag>/deletion`, `.../insertion`."""
        if self.faithfulness is None or self._faithfulness_of(need) not in result:
            return []  # none, or not at this epoch (`needs_at`)
        floors = faithfulness_module.FLOORS
        sources = [(None, need), *((_tags.floor_run(n), f) for n, f in floors.items())]
        items = []
        for run, of in sources:
            scores = tf.reduce_mean(result[self._faithfulness_of(of)], axis=0)
            for column, curve in enumerate((_tags.DELETION, _tags.INSERTION)):
                items.append(Scalar(_tags.tag(*tag_parts, curve), scores[column], run=run))
        return items

    def _caption(self, caption_input) -> tf.Tensor:
        """`(batch, length)` caption codes: target, predicted class, its probability; for
        a segmentation, the target, its region's size and the class the region's summed
        scores favour (their softmax is no probability of a pixel, so none is given)."""
        scores, targets = caption_input[:2]
        probabilities = self._head.probabilities(scores)
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        if self._head.dense:
            sizes = caption_input[2]
            return region_caption_codes(
                targets, predicted, sizes, self._positions, self._region_names
            )
        confidence = tf.gather(probabilities, predicted, axis=1, batch_dims=1)
        return caption_codes(targets, predicted, confidence, self._names)


def _region_metadata(boxes) -> bytes:
    """The summary metadata of a region record: a tensor of the plugin
    `_tags.REGIONS_PLUGIN`, its content the panel's boxes as JSON."""
    content = json.dumps({"boxes": [list(box) for box in boxes]}).encode()
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=_tags.REGIONS_PLUGIN, content=content
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    ).SerializeToString()
