"""TLS to a source or sink database (`tls:` of a server block or of an environment's
sink): the sslmode and CA file both drivers the worker runs (pgjdbc, under Debezium's
source connector and the JDBC sink) are given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tls:
    mode: str  # disable | require | verify-ca | verify-full
    ca: str = ""  # the CA's PEM file on the worker (verify-ca, verify-full)

    @staticmethod
    def of(raw: Any) -> Tls | None:
        """The TLS settings of schema-valid `raw` (None when there are none)."""
        if not isinstance(raw, dict):
            return None
        return Tls(str(raw["mode"]), str(raw.get("ca", "")))

    def url_parameters(self) -> str:
        """pgjdbc URL parameters: `?sslmode=...&sslrootcert=...` (values the schema
        keeps to an enum and a plain absolute path)."""
        return f"?sslmode={self.mode}" + (f"&sslrootcert={self.ca}" if self.ca else "")
