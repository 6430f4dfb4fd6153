"""The methods: pure TensorFlow functions (tensors in, maps out), each citing its paper.

- `cam`: the CAM family (Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM, Eigen-CAM, Score-CAM).
- `perturb`: occlusion sensitivity.
- `saliency`: gradient saliency (gradient, gradient x input, SmoothGrad, Integrated
  Gradients).

Each module ends with the `Need` that runs its methods on the shared pass.
"""
