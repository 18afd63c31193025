"""Helpers of the hostile-input tests: a scratch copy of this repository's config,
the CLI run in-process with its exit code and output, and a deadline.

Every hostile corpus is generated (a class of input, many members), counted by
its test, and each member must get exit 1 with a located message: never exit 3,
never a traceback, never a hang. The suite runs an even sample of each corpus
(`sample`); CDC_HOSTILE_FULL=1 runs every member.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cdc_generator.cli import main
from cdc_generator.config.repo import load_config
from cdc_generator.errors import ConfigError, Problem
from cdc_generator.plan import build_plan
from tests.helpers import REPO

FORMATS = ("text", "json", "github")
FULL = os.environ.get("CDC_HOSTILE_FULL") == "1"
T = TypeVar("T")


def sample(corpus: Sequence[T], keep: int) -> list[T]:
    """Every member of `corpus` with CDC_HOSTILE_FULL=1; else `keep` of them,
    spread evenly from the first to the last."""
    if FULL or len(corpus) <= keep:
        return list(corpus)
    if keep < 2:
        return list(corpus[:keep])
    step = (len(corpus) - 1) / (keep - 1)
    return [corpus[round(i * step)] for i in range(keep)]


def scratch(dest: Path, *, templates: bool = True) -> Path:
    """This repository's config (without generated/) in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "server-groups.yaml", dest)
    shutil.copytree(REPO / "services", dest / "services")
    if templates:
        shutil.copytree(REPO / "templates", dest / "templates")
    return dest


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def assert_handled(self, *, code: int = 1) -> None:
        """The exit code wanted, and no sign of a crash."""
        assert self.code == code, self.text
        assert "Traceback" not in self.text, self.text
        assert "internal error" not in self.text, self.text


def run(root: Path, *args: str, fmt: str = "text", seconds: float = 20) -> Outcome:
    """`cdc-generator <args> --root root --format fmt` in this process."""
    out, err = io.StringIO(), io.StringIO()
    argv = [*args, "--root", "."]  # messages then name files as the repository does
    if args and args[0] in ("validate", "generate"):
        argv += ["--format", fmt]
    with deadline(seconds), contextlib.chdir(root), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main(argv)
    return Outcome(code, out.getvalue(), err.getvalue())


def problems(root: Path, seconds: float = 10) -> list[Problem]:
    """What loading and planning the config of `root` finds ([] when it is valid)."""
    with deadline(seconds):
        try:
            build_plan(load_config(root))
        except ConfigError as exc:
            return list(exc.problems)
    return []


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (Hang) instead of waiting when the body takes longer than `seconds`."""
    def expired(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in `path` (the test's own precondition)."""
    text = path.read_text("utf-8")
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new, 1), "utf-8")


def located(found: list[Problem], file: str, text: str) -> Problem:
    """The problem in `file` whose message holds `text`; it must have a line."""
    matching = [p for p in found if p.file == file and text in p.message]
    assert matching, f"no problem in {file} mentioning {text!r}: {found}"
    assert matching[0].line > 0, matching[0]
    return matching[0]
