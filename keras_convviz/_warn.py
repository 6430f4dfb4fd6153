"""Warnings that name the user's line: the `model.fit(...)` whose callback warns, the
constructor call whose argument is questioned, rather than a line inside this package."""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading


def _internal_prefixes() -> tuple[str, ...]:
    prefixes = [os.path.dirname(os.path.abspath(__file__)) + os.sep]
    # The frames between a user's `fit` and a callback, and those of the writer thread.
    for name in ("keras", "tensorflow", "tf_keras"):
        module = sys.modules.get(name)
        if getattr(module, "__file__", None):
            prefixes.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    prefixes.append(os.path.dirname(os.path.abspath(concurrent.futures.__file__)) + os.sep)
    prefixes.append(os.path.abspath(threading.__file__))
    return tuple(prefixes)


def user_stacklevel() -> int:
    """The `stacklevel` for the `warnings.warn` its caller makes: the first frame outside
    this package, Keras, TensorFlow and the writer thread's machinery; 1 (the caller's own
    line) where there is none (a warning given on the writer thread)."""
    prefixes = _internal_prefixes()
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(prefixes):
        frame = frame.f_back
        level += 1
    return level if frame is not None else 1
