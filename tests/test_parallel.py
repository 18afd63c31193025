"""Forked shards of `generate`: results in order, errors carried back whole, no
orphan writers, and the same tree whatever the number of processes."""

from __future__ import annotations

import gc
import os
import signal
import threading
from pathlib import Path

import pytest
from benchmarks import synth

from cdc_generator import generate, parallel
from cdc_generator.cli import main
from cdc_generator.errors import ConfigError, Problem, UsageError
from tests.helpers import tree


def test_results_come_back_in_shard_order_from_other_processes() -> None:
    results = parallel.map_shards(lambda n: (n, os.getpid(), os.getppid()), [0, 1, 2, 3])
    assert [n for n, _pid, _parent in results] == [0, 1, 2, 3]
    assert results[0][1] == os.getpid(), "shard 0 runs here"
    for _n, pid, parent in results[1:]:
        assert (pid, parent) != (os.getpid(), os.getppid()), "shards 1.. run in forked workers"
        assert parent == os.getpid()


def test_one_shard_runs_in_this_process() -> None:
    assert parallel.map_shards(lambda n: os.getpid() + n, [0]) == [os.getpid()]


def test_a_config_error_in_a_child_arrives_with_its_problems() -> None:
    problem = Problem("templates/source-pipeline.yaml", 3, 1, "", "template syntax error: x")

    def shard(n: int) -> int:
        if n == 2:
            raise ConfigError([problem])
        return n

    with pytest.raises(ConfigError) as caught:
        parallel.map_shards(shard, [0, 1, 2])
    assert caught.value.problems == (problem,)


def test_an_unpicklable_error_arrives_as_its_traceback() -> None:
    class Local(Exception):  # defined in a function: pickle cannot find it
        pass

    def shard(n: int) -> int:
        if n == 1:
            raise Local("lock held")
        return n

    with pytest.raises(parallel.WorkerError, match="lock held"):
        parallel.map_shards(shard, [0, 1])


def test_a_child_killed_by_a_signal_is_an_error() -> None:
    def shard(n: int) -> int:
        if n == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return n

    with pytest.raises(parallel.WorkerLost, match=r"ended without a result \(killed by a signal"):
        parallel.map_shards(shard, [0, 1])


class TwoArgs(Exception):
    """Pickles, but does not unpickle: __init__ wants two arguments."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} {b}")


def test_a_result_that_does_not_unpickle_is_an_error_and_no_child_is_left(
        tmp_path: Path) -> None:
    def shard(n: int) -> int:
        (tmp_path / f"child-{n}").write_text(str(os.getpid()))
        if n == 1:
            raise TwoArgs("a", "b")
        return n

    with pytest.raises(parallel.WorkerError, match="TwoArgs: a b"):
        parallel.map_shards(shard, [0, 1, 2, 3])
    for pid_file in sorted(tmp_path.glob("child-*"))[1:]:
        with pytest.raises(ChildProcessError):
            os.waitpid(int(pid_file.read_text()), os.WNOHANG)


def test_a_bug_in_a_worker_says_where_it_happened() -> None:
    def shard(n: int) -> int:
        if n == 1:
            raise ValueError("broken")
        return n

    with pytest.raises(ValueError, match="broken") as caught:
        parallel.map_shards(shard, [0, 1])
    notes = "".join(getattr(caught.value, "__notes__", []))
    assert "in a generate worker process" in notes
    assert "test_parallel.py" in notes


def test_the_collector_is_left_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    synth.write(root, ESTATE)
    (root / "services" / "broken.yaml").write_text("service: broken\nserver_group: nope\n")
    for _ in range(2):
        assert main(["generate", "--root", str(root), "--jobs", "2"]) == 1
        assert gc.isenabled()
        assert gc.get_freeze_count() == 0
    (root / "services" / "broken.yaml").unlink()
    assert main(["generate", "--root", str(root), "--jobs", "2"]) == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_children_are_reaped_when_the_parent_shard_fails(tmp_path: Path) -> None:
    def shard(n: int) -> int:
        if n == 0:
            raise ValueError("parent failed")
        (tmp_path / f"child-{n}").write_text(str(os.getpid()))
        return n

    with pytest.raises(ValueError, match="parent failed"):
        parallel.map_shards(shard, [0, 1, 2])
    pids = [int(p.read_text()) for p in sorted(tmp_path.glob("child-*"))]
    assert len(pids) == 2, "the children ran to the end"
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left behind


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """SIGKILL the process that forked: its worker must not go on writing."""
    pid_file = tmp_path / "child.pid"
    parent = os.fork()
    if parent == 0:  # an intermediate process that runs map_shards and gets killed
        try:
            def shard(n: int) -> int:
                if n == 1:
                    pid_file.write_text(str(os.getpid()))
                threading.Event().wait(60)
                return n

            parallel.map_shards(shard, [0, 1])
        finally:
            os._exit(0)
    for _ in range(500):
        if pid_file.exists() and pid_file.read_text():
            break
        threading.Event().wait(0.01)
    child = int(pid_file.read_text())
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    for _ in range(500):
        if not _alive(child):
            break
        threading.Event().wait(0.01)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent")


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or dead and waiting for init to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state and "dead" not in state


ESTATE = synth.Estate(tenants=40, tables=5, shared_services=("directory", "catalog"))


@pytest.mark.parametrize("jobs", [2, 3, 7])
def test_any_number_of_processes_writes_the_same_tree(jobs: int, tmp_path: Path) -> None:
    serial, sharded = tmp_path / "serial", tmp_path / "sharded"
    for root, n in ((serial, 1), (sharded, jobs)):
        synth.write(root, ESTATE)
        assert generate.generate(root, generate.Selection(), jobs=n).jobs == n
    assert tree(sharded / "generated") == tree(serial / "generated")
    assert main(["generate", "--root", str(sharded), "--check", "--jobs", str(jobs)]) == 0
    assert not list(sharded.glob(".generated*"))


def test_a_stale_tree_is_found_by_every_process(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    synth.write(root, ESTATE)
    assert main(["generate", "--root", str(root), "--jobs", "1"]) == 0
    files = sorted((root / "generated").rglob("*.yaml"))
    first, last = files[0], files[-1]  # made by the first and the last shard
    first.write_text(first.read_text() + "# edited\n")
    last.unlink()
    result = generate.check(root, generate.Selection(), jobs=3)
    assert result.jobs == 3
    generated = root / "generated"
    assert result.changes.changed == [first.relative_to(generated).as_posix()]
    assert result.changes.added == [last.relative_to(generated).as_posix()]
    assert "# edited" in result.diff


def test_jobs_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    synth.write(root, ESTATE)
    assert main(["generate", "--root", str(root), "--jobs", "0"]) == 2
    assert "--jobs must be 1 or more" in capsys.readouterr().err


def test_jobs_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    synth.write(root, ESTATE)
    monkeypatch.setenv(parallel.JOBS_ENV, "3")
    assert generate.generate(root, generate.Selection()).jobs == 3
    assert generate.generate(root, generate.Selection(), jobs=2).jobs == 2, (
        "--jobs wins over the environment")
    monkeypatch.setenv(parallel.JOBS_ENV, "many")
    with pytest.raises(UsageError, match="not a number"):
        generate.generate(root, generate.Selection())
    monkeypatch.delenv(parallel.JOBS_ENV)
    assert generate.generate(root, generate.Selection()).jobs == 1, (
        "a small plan is not worth a fork")


def test_a_template_error_in_a_worker_keeps_the_old_tree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A value the template asks for but does not exist fails while rendering, in
    whichever process meets it: the run fails whole and leaves nothing behind."""
    root = tmp_path / "repo"
    synth.write(root, ESTATE)
    assert main(["generate", "--root", str(root), "--jobs", "1"]) == 0
    before = tree(root / "generated")
    templates = root / "templates"
    templates.mkdir()
    builtin = Path(generate.__file__).parent / "templates"
    for name in ("source-pipeline.yaml", "sink-pipeline.yaml"):
        (templates / name).write_text((builtin / name).read_text())
    sink = templates / "sink-pipeline.yaml"
    sink.write_text(sink.read_text() + "# {{ sink.no_such_value }}\n")
    capsys.readouterr()
    assert main(["generate", "--root", str(root), "--jobs", "3"]) == 1
    err = capsys.readouterr().err
    assert "templates/sink-pipeline.yaml" in err
    assert "no_such_value" in err
    assert tree(root / "generated") == before
    assert not list(root.glob(".generated*"))


def test_a_process_with_threads_does_not_fork() -> None:
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait)
    helper.start()
    try:
        pids = parallel.map_shards(lambda _n: os.getpid(), [0, 1, 2])
    finally:
        stop.set()
        helper.join()
    assert pids == [os.getpid()] * 3
