"""Process helpers: free ports, stops that escalate, children that die with their parent."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_generator import procs

# a child that says it is ready, then sleeps; with "ignore", it ignores SIGTERM
CHILD = """
import signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def _child(mode: str) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE,
                          text=True) as popen:
        assert popen.stdout is not None
        assert popen.stdout.readline() == "ready\n"
        try:
            yield popen
        finally:
            popen.kill()


def test_free_port_is_bindable_and_avoids() -> None:
    port = procs.free_port()
    with socket.socket() as sock:
        sock.bind((procs.LOCALHOST, port))
    assert procs.free_port(avoid=port) != port


def test_stop_on_the_first_signal_is_clean() -> None:
    with _child("plain") as popen:
        assert procs.stop(popen, procs.term_then_kill(10), name="child") is True
    assert popen.returncode == -signal.SIGTERM


def test_stop_escalates_when_a_signal_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    started = time.monotonic()
    with _child("ignore") as popen:
        assert procs.stop(popen, procs.term_then_kill(0.5), name="stubborn") is False
    assert popen.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5
    assert f"stubborn (pid {popen.pid}) ignored SIGTERM" in caplog.text


def test_stop_of_a_process_that_survives_everything_raises() -> None:
    with _child("ignore") as popen, pytest.raises(procs.ProcessError, match="survived SIGTERM"):
        procs.stop(popen, ((signal.SIGTERM, 0.2),), name="stubborn")


def test_stop_of_an_exited_process_is_clean() -> None:
    popen = subprocess.Popen([sys.executable, "-c", "pass"])
    popen.wait()
    assert procs.stop(popen, procs.term_then_kill(1)) is True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["preexec", "argv"])
def test_a_child_dies_with_its_parent(how: str) -> None:
    """SIGKILL a parent that started `sleep` either way: the sleep goes too."""
    if how == "argv" and not procs.die_with_parent_argv():
        pytest.skip("no setpriv on this machine")
    parent_code = f"""
import signal, subprocess, sys
from cdc_generator import procs
if {how!r} == "argv":
    child = subprocess.Popen([*procs.die_with_parent_argv(signal.SIGTERM), "sleep", "60"])
else:
    child = subprocess.Popen(["sleep", "60"],
                             preexec_fn=procs.on_parent_death(signal.SIGTERM))
print(child.pid, flush=True)
child.wait()
"""
    with subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE,
                          text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline  # setpriv has asked for the signal once it execs
            time.sleep(0.01)
        parent.kill()
    deadline = time.monotonic() + 10
    while _running(child):
        if time.monotonic() > deadline:
            subprocess.run(["kill", "-9", str(child)], check=False)
            pytest.fail("the child outlived its killed parent")
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status
