"""The methods: pure TensorFlow functions (tensors in, maps out), each citing its paper.

- `cam`: the CAM family (Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM, Eigen-CAM, Score-CAM).
- `occlusion`: occlusion sensitivity and its incremental engine (a package).
- `perturb`: the baselines that fill a perturbed region (occlusion, faithfulness).
- `saliency`: gradient saliency (gradient, gradient x input, SmoothGrad, Integrated
  Gradients).

Each method's module ends with the `Need` that runs it on the shared pass (occlusion's is
`occlusion.need`).
"""
