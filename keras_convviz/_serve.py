"""`convviz tensorboard`: TensorBoard started with the settings these logs need.

TensorBoard keeps 10 images per tag unless told `--samples_per_plugin images=N`; with
TensorBoard 2.21, `images=0` serves none, so N must be at least the number of snapshots.
Its fast loader serves more than 10 per tag only from runs holding one event file, so a
run with several (a script run twice into one `log_dir`) needs `--load_fast=false`.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading

from keras_convviz.exports.events import event_file_counts, find_runs, read_run

MIN_SAMPLES = 1000  # room for the epochs a run still training will add


def snapshot_count(logdir) -> int:
    """The most steps any image tag under `logdir` holds (0 when there are none)."""
    most = 0
    for run in find_runs(logdir) if os.path.isdir(logdir) else []:
        for series in read_run(logdir, run):
            if series.kind == "images":
                most = max(most, len(set(series.steps)))
    return most


def tensorboard_flags(logdir, port: int | None = None, host: str | None = None) -> list[str]:
    """The TensorBoard flags that serve every snapshot under `logdir`.

    Args:
        logdir: The log directory.
        port: TensorBoard's `--port`; `None` lets TensorBoard pick (6006 or the next free).
        host: TensorBoard's `--host`; `None` is TensorBoard's default (localhost).

    Returns:
        The flags, e.g. `["--logdir", "logs", "--samples_per_plugin", "images=1000"]`.
    """
    logdir = os.fspath(logdir)
    flags = ["--logdir", logdir]
    flags += ["--samples_per_plugin", f"images={max(MIN_SAMPLES, snapshot_count(logdir))}"]
    if os.path.isdir(logdir) and any(n > 1 for n in event_file_counts(logdir).values()):
        flags.append("--load_fast=false")
    if port is not None:
        flags += ["--port", str(port)]
    if host is not None:
        flags += ["--host", host]
    return flags


def serve(logdir, port: int | None = None, host: str | None = None) -> int:
    """Starts TensorBoard on `logdir` in this process, prints its address, serves until
    interrupted (Ctrl+C or SIGTERM).

    Returns:
        The exit status, 0 on Ctrl+C.
    """
    from tensorboard import default, program

    logdir = os.fspath(logdir)
    if not os.path.isdir(logdir) or not find_runs(logdir):
        print(
            f"Note: no event files under {logdir} yet; TensorBoard shows them once written.",
            file=sys.stderr,
        )
    flags = tensorboard_flags(logdir, port, host)
    server = program.TensorBoard(plugins=default.get_plugins())
    server.configure(argv=[None, *flags])
    try:
        url = server.launch()
    except program.TensorBoardServerException as error:  # e.g. the port is taken
        print(f"convviz tensorboard: error: {error.msg}", file=sys.stderr)
        return 2
    print(f"TensorBoard {url}", flush=True)
    print(f"  the same as: tensorboard {shlex.join(flags)}\n  (Press Ctrl+C to quit)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        return 0
    return 0
