"""Interleaved timing: every ratio comes from repetitions taken side by side in one process.

`interleave` runs each candidate once per repetition, alternating the order (A B, B A, ...)
so that a slow stretch of the machine (another process, frequency scaling) hits every
candidate alike. Ratios are the median of the per-repetition ratios. Needs only the
standard library, so the peer workers import it too.
"""

from __future__ import annotations

import os
import random
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
    # A seeded shuffle per repetition: with three candidates, alternating forward and
    # backward kept the middle one in the middle every time.
    rng = random.Random(0)
    for _ in range(reps):
        order = list(names)
        rng.shuffle(order)
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


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class CpuMeter:
    """Average cores busy on the whole machine and in this process over a stretch of time.

    `others` = machine - this process (its waited-for children and `extra_seconds` of CPU
    used by helpers it ran, e.g. a peer's worker, included): what other processes on the
    machine took while the benchmark ran.
    """

    def __init__(self):
        self.start_wall = time.perf_counter()
        self.start_cpu = _cpu_times()
        self.start_own = _own_seconds()

    def stop(self, extra_seconds: float = 0.0) -> dict:
        wall = time.perf_counter() - self.start_wall
        end_cpu = _cpu_times()
        own = _own_seconds() - self.start_own + extra_seconds
        cores = os.cpu_count() or 1
        result = {"own_cores": round(own / wall, 2) if wall > 0 else None}
        if self.start_cpu and end_cpu and end_cpu[1] > self.start_cpu[1]:
            share = (end_cpu[0] - self.start_cpu[0]) / (end_cpu[1] - self.start_cpu[1])
            result["machine_cores"] = round(share * cores, 2)
            if result["own_cores"] is not None:
                result["others_cores"] = round(max(0.0, share * cores - own / wall), 2)
        return result


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) a running process has used so far (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def busy_cores(interval: float = 2.0) -> float | None:
    """Cores kept busy over the next `interval` seconds (Linux /proc/stat), this process idle.

    Called while the benchmark waits, so it measures the other processes on the machine;
    `None` where /proc/stat cannot be read.
    """
    before = _cpu_times()
    time.sleep(interval)
    after = _cpu_times()
    if before is None or after is None or after[1] == before[1]:
        return None
    busy = (after[0] - before[0]) / (after[1] - before[1])
    return round(busy * (os.cpu_count() or 1), 2)
