"""The entry point TensorBoard imports at start-up: light, and it never takes TensorBoard down.

TensorBoard imports every `tensorboard_plugins` entry point before it starts and exits when
one fails to import, so this module imports only `base_plugin` (long stable) and loads the
plugin itself in `load`, where a failure turns the tab off with a logged error instead.
"""

from __future__ import annotations

import logging

from tensorboard.plugins import base_plugin

PLUGIN_NAME = "convviz"

# Images kept per tag when the user did not choose (`--samples_per_plugin images=N`).
# TensorBoard's own default (10) keeps 10 random epochs; every image kept costs its PNG in
# TensorBoard's memory (a few kB each for the demo's pictures).
DEFAULT_IMAGE_SAMPLES = 1000

_IMAGES = "images"  # the image plugin's name, as summaries carry it

logger = logging.getLogger(__name__)


class ConvVizLoader(base_plugin.TBLoader):
    """Loads the ConvViz tab and keeps every epoch's image unless the user said otherwise.

    Adds the flag `--convviz_image_samples N` (default `1000`): the images kept per tag
    when `--samples_per_plugin` does not name `images`. An explicit
    `--samples_per_plugin images=N` always wins.
    """

    def define_flags(self, parser):
        group = parser.add_argument_group(PLUGIN_NAME)
        group.add_argument(
            "--convviz_image_samples",
            metavar="N",
            type=int,
            default=DEFAULT_IMAGE_SAMPLES,
            help=(
                "Images kept per tag when --samples_per_plugin does not name `images` "
                "(TensorBoard's own default keeps 10 random steps). Every image kept stays in "
                "TensorBoard's memory. Default: %(default)s."
            ),
        )

    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if samples is None or isinstance(samples, str):
            # Not parsed (a caller building the flags by hand): leave it as it is.
            return
        if _IMAGES not in samples:
            wanted = getattr(flags, "convviz_image_samples", DEFAULT_IMAGE_SAMPLES)
            if wanted < 0:
                raise base_plugin.FlagsError(
                    f"--convviz_image_samples must be at least 0. Received: {wanted}"
                )
            samples[_IMAGES] = wanted

    def load(self, context):
        try:
            from keras_convviz.tensorboard_plugin.plugin import ConvVizPlugin

            return ConvVizPlugin(context)
        except Exception:  # a broken plugin must leave TensorBoard running
            logger.exception("keras_convviz: the ConvViz tab failed to load; it is turned off.")
            return None
