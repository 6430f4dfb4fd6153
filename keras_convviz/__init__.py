"""keras_convviz: see inside a convolutional network while it trains, in TensorBoard.

Keras callbacks that write feature maps, filter weights, occlusion sensitivity and Grad-CAM
of a fixed probe batch at the end of every N epochs, plus functional explainers that return
the same maps as numpy arrays.
"""

from keras_convviz.convviz import ConvViz
from keras_convviz.explain import feature_maps, grad_cam, occlusion_sensitivity
from keras_convviz.feature_maps import FeatureMaps
from keras_convviz.filter_weights import FilterWeights
from keras_convviz.grad_cam import GradCAM
from keras_convviz.occlusion_sensitivity import OcclusionSensitivity

__version__ = "0.1.0"

__all__ = [
    "ConvViz",
    "FeatureMaps",
    "FilterWeights",
    "GradCAM",
    "OcclusionSensitivity",
    "feature_maps",
    "grad_cam",
    "occlusion_sensitivity",
]
