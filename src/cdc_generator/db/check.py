"""The record every preflight check produces (db/preflight.py and its parts)."""

from __future__ import annotations

from dataclasses import dataclass

PASS, WARN, FAIL = "pass", "warn", "fail"
ROW_FILTER_VERSION = 150000  # PostgreSQL 15: publication row filters


@dataclass(frozen=True)
class Check:
    check: str  # a stable id, e.g. "wal_level"
    status: str  # pass | warn | fail
    message: str
    fix: str = ""  # SQL that fixes a failure ('--' lines where SQL alone cannot)
    database: str = ""
    customer: str | None = None
    subject: str = ""  # the table, slot or publication concerned

    @property
    def failed(self) -> bool:
        return self.status == FAIL
