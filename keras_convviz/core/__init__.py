"""The shared compiled core: plan once, run many.

- `probe`: normalise the user's probe (array | (x, y) | tf.data) into fixed arrays.
- `graph`: find the layers of a model (nested models too) and run it with taps.
- `binding`: how a probe feeds the model (image input, other inputs, score output).
- `needs`: what a caller wants from a pass (`Need`s), their union (`Plan`) and the `Result`.
- `recorder`: every leaf call of one run of the model, for needs that replay it.
- `passes`: the compiled pass for a plan, with the one chunked loop every perturbation
  method shares.
- `shared`: one core per model, one pass per snapshot for all callbacks on a probe.
"""
