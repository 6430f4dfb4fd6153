"""Drawing, encoding and writing a snapshot off the training thread.

A snapshot has two parts. What reads the model (the shared compiled pass, a copy of the
kernels) runs on the training thread at the end of the epoch, because the next training
step changes the weights. Everything after it reads only those tensors: the compiled
renderers, the PNG encoder, the event-file writes and the alert rules. Where the model
trains on an accelerator, that part is a job for one writer thread per process, so
training goes on while it runs on the otherwise idle CPU. Where it trains on the CPU, it
runs in place (`draw_off_thread`).

The guarantees of writing in place are kept:
- one thread, jobs in submission order: every run's events keep their order, and a
  callback's state between snapshots (running scales, the previous maps and kernels)
  advances one snapshot at a time;
- at most one snapshot per callback in flight: a callback waits for its previous snapshot
  before it submits the next (an epoch is far longer than a snapshot, so it rarely waits),
  so a killed run loses at most the snapshot in flight;
- `on_train_end` waits for the callback's snapshots, so when `fit` returns everything is
  on disk; after a `fit` that raised, the thread still finishes what was submitted, and it
  is not a daemon, so the interpreter waits for it before it exits.
"""

from __future__ import annotations

import collections
import functools
import threading

import tensorflow as tf

# Seconds the idle thread waits for work before it ends (a new job starts a new one).
IDLE_SECONDS = 2.0


class Job:
    """One submitted piece of work; `wait()` returns once it ran."""

    def __init__(self, fn):
        self.fn = fn
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits
            self.error = error
        finally:
            self.fn = None  # the captured tensors are freed as soon as they are written
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self) -> None:
        self._done.wait()


class WriterThread:
    """A FIFO of jobs run by one thread that starts on demand and ends when idle."""

    def __init__(self):
        self._jobs: collections.deque[Job] = collections.deque()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._last: Job | None = None

    def submit(self, fn) -> Job:
        job = Job(fn)
        with self._lock:
            self._jobs.append(job)
            self._last = job
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="keras_convviz-writer", daemon=False
                )
                self._thread.start()
            self._lock.notify()
        return job

    def wait_idle(self) -> None:
        """Wait until every job submitted so far has run."""
        with self._lock:
            last = self._last
        if last is not None:
            last.wait()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._lock.wait(IDLE_SECONDS)
                if not self._jobs:
                    self._thread = None
                    return
                job = self._jobs.popleft()
            job.run()


# The process's writer thread, shared by every callback.
WRITER = WriterThread()


@functools.cache
def draw_off_thread() -> bool:
    """Whether snapshots are drawn on the writer thread by default: only where training
    runs on an accelerator (a GPU or TPU), whose CPU idles while the steps run.

    Training on the CPU splits every kernel over all cores, and the writer's work (its TF
    ops on the same thread pool, the PNG encoder, Python under the interpreter lock) then
    takes its CPU time out of the next epoch's, and more: on 2 cores the epoch after a
    snapshot trained 1.3-1.6x as long, on a frozen MobileNetV2 base 4 steps at 64 px
    (BENCHMARKS.md, 12b). Drawn in place, the snapshot holds training for about the same
    CPU time once and the next epoch trains undisturbed.
    """
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
