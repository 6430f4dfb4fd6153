"""The ConvViz tab of TensorBoard: probe images down, epochs across, for a kind and layer.

TensorBoard finds the plugin through the `tensorboard_plugins` entry point
(`loader.ConvVizLoader`); the loader imports the rest (`plugin`) only when TensorBoard asks
for the plugin, so nothing here imports TensorFlow at TensorBoard's start-up.
"""
