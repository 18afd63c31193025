"""Child processes that die with their parent (Linux PR_SET_PDEATHSIG).

A test runner or `generate` killed with SIGKILL cannot clean up after itself; a
child that asked the kernel for a signal on its parent's death goes too.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def on_parent_death(sig: signal.Signals) -> Callable[[], None] | None:
    """A function for a freshly forked child (a worker, or a `preexec_fn`): ask
    Linux to send `sig` to it when this process dies, and exit at once if this
    process already has. Call this in the parent, before forking; None where
    Linux's prctl is not there.

    The signal fires when the *thread* that forked exits, so fork from a thread
    that lives as long as the child should.
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
