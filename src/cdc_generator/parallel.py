"""Run one function over a few shards of work, one forked process per extra shard.

`generate` renders thousands of manifests with pure Python (Jinja2), which one
interpreter runs on one core. Forking after the config is loaded and planned
lets every core render and write its share of the files, with no re-import,
re-load or pickling of the plan: the child starts with the parent's memory.
Only each shard's result (small: paths and statuses) travels back, pickled,
through a pipe.

Shard 0 runs in the calling process. Without `os.fork` (not Linux/macOS), in a
process with other threads, or with one shard, everything runs in the calling
process, in order. An exception
in a child is re-raised in the parent once every child has finished; a child
never outlives a parent killed with SIGKILL (Linux PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar, cast

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


@contextmanager
def long_lived() -> Iterator[None]:
    """Build data that lives to the end of the run (config, plan) inside this.

    Python's recipe for processes that fork workers (see gc.freeze): no cyclic
    collection while building, as the data is all kept and every collection
    would re-scan it; then freeze it, so no later collection here or in a forked
    worker walks it again (in a worker that would also write to, and so copy,
    every page shared with the parent). `thaw` ends it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def thaw() -> None:
    """Let the collector see what `long_lived` froze again (a library caller may
    run many generates in one process)."""
    gc.unfreeze()


def map_shards(func: Callable[[T], R], shards: Sequence[T]) -> list[R]:
    """`[func(s) for s in shards]`, shards[1:] each in a forked child."""
    if len(shards) <= 1 or not can_fork():
        return [func(s) for s in shards]
    children: list[tuple[int, int]] = []  # (pid, read end of its pipe)
    try:
        for shard in shards[1:]:
            children.append(_spawn(func, shard))
        first_error: BaseException | None = None
        results: list[R] = []
        try:
            results.append(func(shards[0]))
        except BaseException as exc:  # still collect the children first
            first_error = exc
        for pid, fd in children:
            outcome = _collect(pid, fd)
            if isinstance(outcome, _Failed):
                first_error = first_error or outcome.error
            else:
                results.append(cast(R, outcome.value))
        children = []
        if first_error is not None:
            raise first_error
        return results
    finally:
        for pid, fd in children:  # only after an error in the parent itself
            _kill_quietly(pid)
            os.close(fd)


class _Done:
    def __init__(self, value: object) -> None:
        self.value = value


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _spawn(func: Callable[[T], R], shard: T) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _die_with_parent(parent)
        status = 0
        try:
            try:
                payload = pickle.dumps(_Done(func(shard)), pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # sent back whole, or as its traceback
                status = 1
                payload = _pickle_error(exc)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(status)  # no atexit handlers, no buffered output of the parent
    os.close(write_fd)
    return pid, read_fd


def _pickle_error(exc: BaseException) -> bytes:
    try:
        return pickle.dumps(_Failed(exc), pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle: keep its story
        text = "".join(traceback.format_exception(exc))
        return pickle.dumps(_Failed(WorkerError(text)), pickle.HIGHEST_PROTOCOL)


def _collect(pid: int, fd: int) -> _Done | _Failed:
    with os.fdopen(fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return _Failed(WorkerError(
            f"a generate worker process ended without a result ({_describe(status)})"))
    outcome = pickle.loads(data)  # our own child, through our own pipe
    if not isinstance(outcome, _Done | _Failed):
        return _Failed(WorkerError(f"unexpected worker result {type(outcome).__name__}"))
    return outcome


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this child when the parent dies, so no writer outlives a kill."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    pr_set_pdeathsig = 1
    prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
