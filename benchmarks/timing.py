"""Interleaved timing: every ratio comes from repetitions taken side by side in one process.

`interleave` runs each candidate once per repetition, alternating the order (A B, B A, ...)
so that a slow stretch of the machine (another process, frequency scaling) hits every
candidate alike. Ratios are the median of the per-repetition ratios. Needs only the
standard library, so the peer workers import it too.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable


def interleave(
    fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function, `reps` repetitions after `warmup` untimed calls."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def timed(fn: Callable[[], object], reps: int, warmup: int = 0) -> list[float]:
    return interleave({"fn": fn}, reps, warmup)["fn"]


def median(values) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-repetition ratios numerator[i] / denominator[i]."""
    return median([a / b for a, b in zip(numerator, denominator)])


def spread(values) -> float:
    """Relative half-range of the middle values: (q3 - q1) / (2 * median)."""
    if len(values) < 4:
        return (max(values) - min(values)) / (2 * median(values))
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / (2 * median(values))


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]
