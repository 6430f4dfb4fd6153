"""keras_convviz: see inside a convolutional network while it trains, in TensorBoard.

Keras callbacks that write feature maps, filter weights, CAM maps (Grad-CAM and its
family), occlusion sensitivity and gradient saliency of a fixed probe batch at the end of
every N epochs, plus functional explainers that return the same maps as numpy arrays and
their deletion/insertion faithfulness scores and how much of them lies on the object
(`localization`), `export`, which turns the logs into GIFs, contact sheets and an offline
HTML report, and `show`, the report's sheet in a notebook.
"""

# The public names load on first use (PEP 562), so importing a submodule that needs no
# TensorFlow (the TensorBoard plugin's entry point, which TensorBoard imports at start-up and
# which must not fail there) does not import TensorFlow through this package.
import importlib

__version__ = "0.2.0.dev0"

_PUBLIC = {
    "ActivationMaximization": "keras_convviz.callbacks.activation_maximization",
    "CAM_METHODS": "keras_convviz.methods.cam",
    "SALIENCY_METHODS": "keras_convviz.methods.saliency",
    "ConvViz": "keras_convviz.callbacks.convviz",
    "FeatureMaps": "keras_convviz.callbacks.feature_maps",
    "FilterWeights": "keras_convviz.callbacks.filter_weights",
    "GradCAM": "keras_convviz.callbacks.grad_cam",
    "ModelHealth": "keras_convviz.callbacks.model_health",
    "OcclusionSensitivity": "keras_convviz.callbacks.occlusion_sensitivity",
    "Saliency": "keras_convviz.callbacks.saliency",
    "activation_maximization": "keras_convviz.explain",
    "export": "keras_convviz.exports",
    "faithfulness": "keras_convviz.explain",
    "feature_maps": "keras_convviz.explain",
    "grad_cam": "keras_convviz.explain",
    "localization": "keras_convviz.methods.localization",
    "occlusion_sensitivity": "keras_convviz.explain",
    "saliency": "keras_convviz.explain",
    "show": "keras_convviz.notebook",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_convviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
