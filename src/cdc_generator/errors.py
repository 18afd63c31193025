"""Exceptions and the `Problem` record every user-facing error is reported as."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    file: str
    line: int = 0  # 1-based; 0 when unknown
    col: int = 0  # 1-based; 0 when unknown
    key_path: str = ""
    message: str = ""
    hint: str = ""
    severity: str = "error"

    def location(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col or 1}"
        return self.file


class CdcError(Exception):
    """Base class: anything the CLI turns into a message and exit code 1."""

    def __init__(self, message: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint  # what to do about it, shown after the message

    def __reduce__(self) -> tuple[type[CdcError], tuple[object, ...]]:
        # whole, hint and all, when a generate worker process reports it
        return (type(self), (str(self), self.hint))


class ConfigError(CdcError):
    """The configuration is invalid; carries every problem found in one run."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems))
        super().__init__(f"{len(self.problems)} configuration problem(s)")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[tuple[Problem, ...]]]:
        # pickled whole, problems and all, when a generate worker process reports it
        return (type(self), (self.problems,))


class UsageError(CdcError):
    """The command line asked for something that does not exist (exit code 2)."""
