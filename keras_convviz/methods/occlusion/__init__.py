"""Occlusion sensitivity and its incremental engine.

- `windows`: where the windows start, the occluded copies of a chunk, and the reducer that
  averages window scores into a map.
- `incremental`: exact incremental inference (Krypton): the plan made from the calls the
  pass recorded, its cost model, and the scorer that recomputes only each window's
  rectangle.
- `need`: the `Occlusion` need, which scores the windows one way or the other.

The baselines that fill a window live in `methods.perturb`, shared with the faithfulness
scores.
"""

from keras_convviz.methods.occlusion.need import Occlusion

__all__ = ["Occlusion"]
