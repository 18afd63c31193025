"""Helpers for the child processes we start: a free port, a stop that escalates,
and children that die with their parent.

Shared by generate's forked workers (parallel.py), the throwaway PostgreSQL
(localpg) and the test suite's Kafka broker and Connect worker (tests/e2e).
`generate` imports this module, so what only the others need is imported
where it is used.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

LOCALHOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1

#: SIGTERM, then SIGKILL after `grace` seconds: `stop(popen, term_then_kill(10))`.
Escalation = Sequence[tuple[signal.Signals, float]]


class ProcessError(RuntimeError):
    """A child process could not be stopped, or no port could be found."""


def free_port(host: str = LOCALHOST, *, avoid: int | None = None) -> int:
    """A TCP port on `host` that was free a moment ago (not `avoid`)."""
    import socket

    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != avoid:
            return port
    raise ProcessError(f"could not find a free TCP port on {host}")


def term_then_kill(grace: float) -> Escalation:
    return ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0))


def stop(popen: subprocess.Popen[Any], escalation: Escalation, *, name: str = "") -> bool:
    """Send each signal of `escalation` in turn, waiting up to its seconds for the
    process to exit, and reap it. True when it was gone after the first signal
    (or before any); raises ProcessError if it outlives the last one."""
    import contextlib
    import logging
    import subprocess

    if popen.poll() is not None:
        return True
    who = f"{name or 'process'} (pid {popen.pid})"
    for step, (sig, wait) in enumerate(escalation):
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(sig)
        try:
            popen.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            logging.getLogger(__name__).warning("%s ignored %s for %gs", who, sig.name, wait)
            continue
        return step == 0
    raise ProcessError(f"{who} survived {escalation[-1][0].name}")


def on_parent_death(sig: signal.Signals) -> Callable[[], None] | None:
    """A function for a freshly forked child (a worker, or a `preexec_fn`): ask
    Linux (PR_SET_PDEATHSIG) to send `sig` to it when this process dies, and exit
    at once if this process already has. Call this in the parent, before forking;
    None where Linux's prctl is not there.

    The signal fires when the *thread* that forked exits, so fork from a thread
    that lives as long as the child should. A `preexec_fn` is unsafe in a process
    with threads: there, start the child through `die_with_parent_argv` instead.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the child: only prctl and getppid
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before that took effect
            os._exit(1)

    return arm


def die_with_parent_argv(sig: signal.Signals = signal.SIGTERM) -> list[str]:
    """An argv prefix (`setpriv --pdeathsig TERM --`) that gives an exec'd program
    the same death signal without a `preexec_fn`, for processes with threads;
    setpriv execs, so the child's PID is the program's. Empty when setpriv is
    missing or this is not the main thread (the signal follows the forking
    thread's death, and other threads end early). Unlike `on_parent_death`, a
    parent that dies before setpriv has run leaves the program running."""
    import shutil
    import threading

    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", sig.name.removeprefix("SIG"), "--"]
