"""Whether XLA compiles here (some device plugins cannot)."""

from __future__ import annotations

import functools

import tensorflow as tf


@functools.cache
def xla_available() -> bool:
    """Whether XLA compiles on this process's default device (some device plugins cannot)."""
    try:
        with tf.init_scope():  # run it now, also when asked while a pass is traced
            probe = tf.function(
                lambda x: tf.where(x > 0, x, 0.0), jit_compile=True, autograph=False
            )
            probe(tf.ones(2))
    except Exception:  # noqa: BLE001 - any failure: build the chunks with plain TF ops
        return False
    return True
