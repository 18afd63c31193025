"""Run one function over a few shards of work, the shards past the first in forked workers.

`generate` renders thousands of manifests with pure Python (Jinja2), which one
interpreter runs on one core. Forking after the config is loaded and planned
lets every core render and write its share of the files, with no re-import,
re-load or pickling of the plan: a worker starts with the parent's memory.
Only a shard's number goes to a worker and its result (small: paths and
statuses) comes back, pickled, through concurrent.futures' ProcessPoolExecutor
(fork context), which starts, feeds and reaps the workers.

Shard 0 runs in the calling process. Without `os.fork` (not Linux/macOS), in a
process with other threads, or with one shard, everything runs in the calling
process, in order. An exception in a worker is re-raised in the parent once
every shard has finished (errors that do not pickle as their traceback); a
worker never outlives a parent killed with SIGKILL (procs.on_parent_death) and
ignores Ctrl-C, which the parent handles.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from cdc_generator import procs
from cdc_generator.errors import CdcError

T = TypeVar("T")
R = TypeVar("R")

# Environment variable that sets the number of processes (`generate --jobs`).
JOBS_ENV = "CDC_GENERATOR_JOBS"


class WorkerError(RuntimeError):
    """A child failed with something that could not be sent back as it was."""


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    """fork() only where it exists, and only from a single-threaded process: a
    thread holding a lock at the fork would leave that lock held in the child
    forever (Python 3.12+ warns about it). The CLI has one thread; a library
    caller with more gets the shards run here, one after another."""
    import threading

    return hasattr(os, "fork") and sys.platform != "win32" and threading.active_count() == 1


class LongLived:
    """Build the data that lives to the end of the run (config, plan) inside this.

    Python's recipe for processes that fork workers (see gc.freeze): no cyclic
    collection while building, as the data is all kept and every collection
    would re-scan it; then, at `built()`, freeze it, so no later collection here
    or in a forked worker walks it again (in a worker that would also write to,
    and so copy, every page shared with the parent). Leaving unfreezes and puts
    the collector back as it was. A process that froze objects itself is left
    alone.
    """

    def __enter__(self) -> LongLived:
        self._enabled = gc.isenabled()
        self._ours = gc.get_freeze_count() == 0
        self._frozen = False
        if self._ours:
            gc.disable()
        return self

    def built(self) -> None:
        if self._ours:
            gc.freeze()
            self._frozen = True
            if self._enabled:
                gc.enable()

    def __exit__(self, *exc: object) -> None:
        if self._frozen:
            gc.unfreeze()
        if self._ours and self._enabled:
            gc.enable()


def map_shards(func: Callable[[T], R], shards: Sequence[T]) -> list[R]:
    """`[func(s) for s in shards]`, shards[1:] each in a forked worker."""
    if len(shards) <= 1 or not can_fork():
        return [func(s) for s in shards]
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    _work.append((func, shards))  # what the workers, forked below, find in their memory
    sys.stdout.flush()  # nothing buffered twice
    sys.stderr.flush()
    arm = procs.on_parent_death(signal.SIGKILL)  # set up here: the worker only runs it
    try:
        with ProcessPoolExecutor(len(shards) - 1, mp_context=get_context("fork"),
                                 initializer=_worker_start, initargs=(arm,)) as pool:
            # the pool forks its workers here, all of them, before any thread of its own
            futures = [pool.submit(_run_shard, i) for i in range(1, len(shards))]
            first_error: BaseException | None = None
            results: list[R] = []
            try:
                results.append(func(shards[0]))
            except BaseException as exc:  # still let the workers finish first
                first_error = exc
            for future in futures:
                try:
                    results.append(cast(R, future.result()))
                except BrokenProcessPool:
                    first_error = first_error or WorkerLost(
                        "a generate worker process ended without a result (killed by a "
                        "signal; out of memory?)")
                except BaseException as exc:
                    first_error = first_error or exc
    finally:
        _work.clear()
    if first_error is not None:
        raise first_error
    return results


# (func, shards) of the map_shards call in progress: set before its workers fork
_work: list[tuple[Callable[[Any], Any], Sequence[Any]]] = []


def _worker_start(arm: Callable[[], None] | None) -> None:
    if arm is not None:  # SIGKILL this worker when the parent dies
        arm()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _run_shard(index: int) -> object:
    """In a worker: shard `index` of the forked-in work; an error comes back whole,
    or as its traceback when it would not survive the trip."""
    [(func, shards)] = _work
    try:
        return func(shards[index])
    except BaseException as exc:
        raise _portable(exc) from None


class WorkerLost(CdcError):
    """A worker process ended without a result: killed (out of memory?) or crashed."""


def _portable(exc: BaseException) -> BaseException:
    """`exc` as it can travel back to the parent: pickled whole when it unpickles
    again, else a WorkerError with its story."""
    if not isinstance(exc, CdcError):  # a bug or an interrupt: keep where it happened
        exc.add_note("in a generate worker process:\n" + "".join(traceback.format_tb(
            exc.__traceback__)).rstrip())
    try:
        pickle.loads(pickle.dumps(exc, pickle.HIGHEST_PROTOCOL))
    except Exception:  # an exception that does not pickle, or not back: keep its story
        return WorkerError("".join(traceback.format_exception(exc)))
    return exc
