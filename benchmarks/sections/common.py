"""What the benchmark sections share: formatting, quiet re-measurement, the peers' processes,
the machine's description and merging results.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import peers
import tensorflow as tf
import timing

import keras_convviz as kcv
from keras_convviz import explain  # how the public calls build their plans
from keras_convviz.core.needs import Plan

# benchmarks/: the workers the sections start, and the repository's root.
HERE = Path(__file__).resolve().parent.parent
ROOT = HERE.parent


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def check(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "NO")


def check_goal(ratio: float, goal: float | None) -> str:
    return check(None if goal is None else ratio <= goal)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table; `columns` is a list of (key, header)."""

    def cell(value):
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(k, "")) for k, _ in columns) + " |")
    return "\n".join(lines)


def target(what: str, value, goal: str, met: bool | None) -> dict:
    return {"what": what, "value": value, "target": goal, "met": met}


# With --wait-idle: a measurement during which other processes kept at least this many cores
# busy on average is taken again (after waiting for them), up to QUIET["tries"] times in all;
# the quietest one is kept.
QUIET = {"limit": None, "tries": 3}


def quietly(measure) -> dict:
    """Run `measure() -> row` (a row with "others_cores"); again while others were busy."""
    limit = QUIET["limit"]
    best = measure()
    tries = 1

    def busy(row):
        return row.get("others_cores") or 0.0

    while limit is not None and busy(best) >= limit and tries < QUIET["tries"]:
        print(f"  others kept {busy(best)} cores busy: measuring again", file=sys.stderr)
        wait_idle(limit, lambda m: print(m, file=sys.stderr, flush=True))
        row = measure()
        tries += 1
        if busy(row) < busy(best):
            best = row
    best["tries"] = tries
    return best


def wait_idle(limit: float | None, log, patience: float = 600.0) -> float | None:
    """Cores other processes keep busy; with `limit`, first wait until they drop below it."""
    busy = timing.busy_cores()
    if limit is None:
        return busy
    waited = 0.0
    while busy is not None and busy >= limit and waited < patience:
        if waited == 0.0:
            log(f"  other processes keep {busy} cores busy; waiting for < {limit} ...")
        time.sleep(8.0)
        waited += 10.0
        busy = timing.busy_cores()
    if waited:
        log(f"  waited {waited:.0f} s; other processes now keep {busy} cores busy")
    return busy


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def core_call(build_needs, model, images, **setup):
    """The compiled pass of a public call alone: `core.run(plan, bound)`, built as explain.py.

    `build_needs(probe, core, bound) -> [Need]` makes the needs the public call would make;
    the probe, its binding and the plan are built once, outside the timing. Returns a
    function that runs the pass and reads its values (`.numpy()`), or `None` when the
    package's internals moved (then the breakdown is left out and the rest runs).
    """
    try:
        probe, core, bound = explain._setup(model, images, setup.get("image_input"), None)
        plan = Plan(build_needs(probe, core, bound))
    except (AttributeError, TypeError, ImportError):
        return None
    if not plan.needs:
        return None

    def run():
        result = core.run(plan, bound)
        return [result[need].numpy() for need in plan.needs]

    return run


def write_workload(model, images, path: Path, arch: str = "cnn") -> None:
    weights = model.get_weights()
    np.savez(
        path,
        images=images,
        image_size=images.shape[1],
        arch=arch,
        num_weights=len(weights),
        **{f"w{i}": w for i, w in enumerate(weights)},
    )


def rounds_vs_peer(*args, **kwargs) -> dict:
    return quietly(lambda: _rounds_vs_peer(*args, **kwargs))


def _rounds_vs_peer(peer, ours_fn, request: dict, rounds: int, reps: int) -> dict:
    """Alternating rounds: ours (this process) and the peer (its process), `reps` each."""
    peer.request(**request, reps=0, warmup=1)
    timing.timed(ours_fn, reps=0, warmup=1)
    meter, peer_start = timing.CpuMeter(), timing.process_cpu_seconds(peer.proc.pid)
    ours_all, peer_all, ratios = [], [], []
    for r in range(rounds):
        if r % 2 == 0:
            ours = timing.timed(ours_fn, reps)
            theirs = peer.request(**request, reps=reps, warmup=0)["times"]
        else:
            theirs = peer.request(**request, reps=reps, warmup=0)["times"]
            ours = timing.timed(ours_fn, reps)
        ours_all += ours
        peer_all += theirs
        ratios.append(timing.median(theirs) / timing.median(ours))
    peer_end = timing.process_cpu_seconds(peer.proc.pid)
    peer_cpu = peer_end - peer_start if peer_start is not None and peer_end is not None else 0.0
    return {
        "others_cores": meter.stop(peer_cpu).get("others_cores"),
        "ours_ms": ms(timing.median(ours_all)),
        "peer_ms": ms(timing.median(peer_all)),
        "speedup": round(timing.median(ratios), 2),
        "round_speedups": [round(v, 2) for v in ratios],
    }


def start_peer(name, ctx, workload_path, installs: dict, notes: list, if_missing: str = ""):
    """A peer's worker on the workload, or `None` (skipped, not installable, or its worker
    failed), with why in `installs[name]` and `notes`; its versions go to `installs`."""
    if ctx["args"].no_peers:
        installs[name] = "skipped (--no-peers)"
        return None
    ok, message = peers.ensure_peer(name, tf.__version__, log=ctx["log"])
    installs[name] = message
    if not ok:
        notes.append(f"{name} could not be installed: {message}.{if_missing}")
        return None
    try:
        peer = peers.PeerProcess(name, workload_path)
    except RuntimeError as error:
        installs[name] = f"installed, but its worker failed: {error}"
        notes.append(f"{name}: {installs[name]}")
        return None
    try:
        installs[name] = {"status": message, **peer.request(op="info")["versions"]}
    except RuntimeError:
        peer.close()
        raise
    return peer


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gb = None
    with contextlib.suppress(ValueError, OSError):
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
    }


def versions() -> dict:
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = (
            subprocess.run(
                ["git", "describe", "--always", "--dirty"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "keras_convviz": kcv.__version__,
        "git": commit,
    }


def merge_results(earlier: dict, results: dict, order) -> dict:
    """`results` over the `earlier` results file (`--update`): rerun sections replace theirs,
    the rest stay as they were, in the order `order` names them; the rerun is logged."""
    reruns = earlier.pop("reruns", [])
    reruns.append({k: results[k] for k in ("date_utc", "mode", "versions", "seconds")})
    reruns[-1]["sections"] = list(results["sections"])
    sections = {**earlier.get("sections", {}), **results["sections"]}
    merged = {**earlier, "reruns": reruns}
    merged["sections"] = {name: sections[name] for name in order if name in sections}
    return merged
