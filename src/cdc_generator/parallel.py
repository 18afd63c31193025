"""Run one function over a few shards of work, one forked process per extra shard.

`generate` renders thousands of manifests with pure Python (Jinja2), which one
interpreter runs on one core. Forking after the config is loaded and planned
lets every core render and write its share of the files, with no re-import,
re-load or pickling of the plan: the child starts with the parent's memory.
Only each shard's result (small: paths and statuses) travels back, pickled,
through a pipe.

Shard 0 runs in the calling process. Without `os.fork` (not Linux/macOS), in a
process with other threads, or with one shard, everything runs in the calling
process, in order. An exception in a child is re-raised in the parent once
every child has finished; a child never outlives a parent killed with SIGKILL
(procs.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

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
    """`[func(s) for s in shards]`, shards[1:] each in a forked child."""
    if len(shards) <= 1 or not can_fork():
        return [func(s) for s in shards]
    arm = procs.on_parent_death(signal.SIGKILL)  # set up here: the child only runs it
    children: list[_Child] = []
    try:
        for shard in shards[1:]:
            children.append(_spawn(func, shard, arm))
        first_error: BaseException | None = None
        results: list[R] = []
        try:
            results.append(func(shards[0]))
        except BaseException as exc:  # still collect the children first
            first_error = exc
        while children:
            outcome = children[0].collect()
            children.pop(0)
            if isinstance(outcome, _Failed):
                first_error = first_error or outcome.error
            else:
                results.append(cast(R, outcome.value))
        if first_error is not None:
            raise first_error
        return results
    finally:
        for child in children:  # only when the parent itself failed or was interrupted
            child.kill()


class WorkerLost(CdcError):
    """A worker process ended without a result: killed (out of memory?) or crashed."""


class _Done:
    def __init__(self, value: object) -> None:
        self.value = value


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Child:
    """A forked worker: its pid and the read end of the pipe it answers through."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd = pid, fd
        self.reaped = False

    def collect(self) -> _Done | _Failed:
        """Read the whole answer, reap the child, unpickle the answer."""
        with os.fdopen(self.fd, "rb") as pipe:
            self.fd = -1
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        if not data or not os.WIFEXITED(status):  # killed, perhaps mid-answer
            return _Failed(WorkerLost(
                f"a generate worker process ended without a result ({_describe(status)})"))
        try:
            outcome = pickle.loads(data)  # our own child, through our own pipe
        except Exception as exc:  # e.g. an exception class that does not unpickle
            return _Failed(WorkerError(f"unreadable worker result: {exc!r}"))
        if not isinstance(outcome, _Done | _Failed):
            return _Failed(WorkerError(f"unexpected worker result {type(outcome).__name__}"))
        return outcome

    def kill(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.reaped = True


def _spawn(func: Callable[[T], R], shard: T, arm: Callable[[], None] | None) -> _Child:
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()  # nothing buffered twice
    sys.stderr.flush()
    try:
        pid = os.fork()
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # the child: whatever happens, it ends here and never returns
        status = 1
        try:
            os.close(read_fd)
            if arm is not None:  # SIGKILL this child when the parent dies
                arm()
            try:
                payload = pickle.dumps(_Done(func(shard)), pickle.HIGHEST_PROTOCOL)
                status = 0
            except BaseException as exc:  # sent back whole, or as its traceback
                payload = _pickle_error(exc)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(status)  # no atexit handlers, no buffered output of the parent
    os.close(write_fd)
    return _Child(pid, read_fd)


def _pickle_error(exc: BaseException) -> bytes:
    if not isinstance(exc, CdcError):  # a bug or an interrupt: keep where it happened
        exc.add_note("in a generate worker process:\n" + "".join(traceback.format_tb(
            exc.__traceback__)).rstrip())
    try:
        return pickle.dumps(_Failed(exc), pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle: keep its story
        text = "".join(traceback.format_exception(exc))
        return pickle.dumps(_Failed(WorkerError(text)), pickle.HIGHEST_PROTOCOL)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
