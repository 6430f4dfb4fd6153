"""keras_convviz: see inside a convolutional network while it trains, in TensorBoard.

Keras callbacks that write feature maps, filter weights, CAM maps (Grad-CAM and its
family), occlusion sensitivity and gradient saliency of a fixed probe batch at the end of
every N epochs, plus functional explainers that return the same maps as numpy arrays,
and `export`, which turns the logs into GIFs, contact sheets and an offline HTML report.
"""

from keras_convviz.callbacks.convviz import ConvViz
from keras_convviz.callbacks.feature_maps import FeatureMaps
from keras_convviz.callbacks.filter_weights import FilterWeights
from keras_convviz.callbacks.grad_cam import GradCAM
from keras_convviz.callbacks.occlusion_sensitivity import OcclusionSensitivity
from keras_convviz.callbacks.saliency import Saliency
from keras_convviz.explain import feature_maps, grad_cam, occlusion_sensitivity, saliency
from keras_convviz.exports import export
from keras_convviz.methods.cam import CAM_METHODS
from keras_convviz.methods.saliency import SALIENCY_METHODS

__version__ = "0.2.0.dev0"

__all__ = [
    "CAM_METHODS",
    "SALIENCY_METHODS",
    "ConvViz",
    "FeatureMaps",
    "FilterWeights",
    "GradCAM",
    "OcclusionSensitivity",
    "Saliency",
    "export",
    "feature_maps",
    "grad_cam",
    "occlusion_sensitivity",
    "saliency",
]
