"""Connect to a source server described by a server group (or a --dsn).

`${VAR}` placeholders are resolved from the process environment here, at run
time, and only here. The password never appears in any message we produce:
every error text goes through `redact` before it leaves this module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdc_generator.config.model import Database, GroupType, ServerGroup, Setting
from cdc_generator.config.providers import PLACEHOLDER
from cdc_generator.config.tls import Tls
from cdc_generator.errors import CdcError, UsageError

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_S = 10
STATEMENT_TIMEOUT_MS = 30_000
APPLICATION_NAME = "cdc-generator"
_MASK = "********"
# key=value conninfo passwords and URI userinfo, for texts we did not build
_PASSWORD_PATTERNS = (
    re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE),
    re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)"),
)


class DatabaseError(CdcError):
    """The source database could not be reached or answered with an error."""


@dataclass(frozen=True)
class Target:
    """Where to connect: resolved libpq parameters (the password stays inside)."""

    host: str
    port: str
    user: str
    dbname: str
    password: str = field(repr=False)
    customer: str | None = None
    dsn: str | None = field(default=None, repr=False)
    #: libpq sslmode and sslrootcert from the server's `tls:`; the CA as the worker
    #: sees it is used where it exists here too, else libpq's own (PGSSLROOTCERT,
    #: ~/.postgresql/root.crt)
    tls: Tls | None = None

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def redact(self, text: str) -> str:
        return redact(text, self.password)


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    for pattern in _PASSWORD_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + _MASK + (m.group(3) if m.lastindex == 3
                                                           else ""), text)
    return text


def _has_password(dsn: str) -> bool:
    """Whether a DSN, parsable or not, may carry a password: any userinfo (`@`), or
    `password` anywhere, percent-encoded or not. Wrong only towards caution."""
    from urllib.parse import unquote

    return "@" in dsn or "password" in unquote(dsn).lower()


def resolve(setting: Setting, environ: Mapping[str, str] | None = None) -> str:
    """Substitute every `${VAR}` in `setting` from the environment; name what is missing."""
    env = os.environ if environ is None else environ
    missing = [m.group(1) for m in PLACEHOLDER.finditer(setting.value) if m.group(1) not in env]
    if missing:
        where = f"{setting.origin.file}:{setting.origin.line} {setting.origin.key_path}"
        raise UsageError(
            f"environment variable {', '.join(missing)} is not set (needed by {where}); "
            "export it, or pass --dsn"
        )
    return PLACEHOLDER.sub(lambda m: env[m.group(1)], setting.value)


def pick_databases(group: ServerGroup, service: str, customer: str | None) -> list[Database]:
    """The service's databases; with `customer`, that tenant's only (error if unknown)."""
    dbs = group.databases_of(service)
    if group.type is GroupType.DB_SHARED:
        if customer is not None:
            raise UsageError(f"--customer applies to db-per-tenant groups; {group.name!r} "
                             "is db-shared")
        return dbs[:1]
    if customer is None:
        return dbs
    chosen = [db for db in dbs if db.customer == customer]
    if not chosen:
        import difflib

        known = [str(db.customer) for db in dbs]
        close = difflib.get_close_matches(customer, known, n=3)
        raise UsageError(f"unknown customer {customer!r} for service {service!r}; "
                         + (f"did you mean {', '.join(close)}?" if close
                            else f"known: {', '.join(known)}"))
    return chosen


def target_for(group: ServerGroup, database: Database, environment: str | None,
               environ: Mapping[str, str] | None = None) -> Target:
    dbname = database.name if environment is None else database.name_in(environment)
    customer = database.customer if group.type is GroupType.DB_PER_TENANT else None
    return server_target(group, dbname, customer, environ)


def server_target(group: ServerGroup, dbname: str, customer: str | None,
                  environ: Mapping[str, str] | None = None) -> Target:
    server = group.server
    host = resolve(server.host, environ)
    return Target(
        # libpq takes an IPv6 address bare; the config may bracket it as a URL would
        host=host[1:-1] if host.startswith("[") and host.endswith("]") else host,
        port=resolve(server.port, environ),
        user=resolve(server.user, environ),
        password=resolve(server.password, environ),
        dbname=dbname,
        customer=customer,
        tls=server.tls,
    )


def target_from_dsn(dsn: str, dbname: str | None = None, customer: str | None = None) -> Target:
    """A --dsn (key=value or URI). A database named in the DSN wins over `dbname`
    (the config's database), so a DSN can point at a copy under another name."""
    from psycopg import conninfo

    try:
        params = conninfo.conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError; its text may quote the DSN
        if _has_password(dsn):  # and so any piece of the password, as typed
            reason = "libpq cannot parse it (its message is not shown: it may quote the password)"
        else:
            reason = redact(str(exc).strip())
        raise UsageError(f"invalid --dsn: {reason}; write postgresql://USER@HOST:PORT/DBNAME "
                         "or host=... port=... user=... dbname=..., and give the password "
                         "in PGPASSWORD") from None
    password = str(params.get("password") or "")
    return Target(
        host=str(params.get("host") or "localhost"),
        port=str(params.get("port") or "5432"),
        user=str(params.get("user") or os.environ.get("USER", "")),
        dbname=str(params.get("dbname") or dbname or "postgres"),
        password=password,
        customer=customer,
        dsn=dsn,
    )


@contextmanager
def connect(target: Target, *, read_only: bool = True,
            statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
            connect_timeout_s: int = CONNECT_TIMEOUT_S) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection; read-only and time-bounded unless told otherwise."""
    import psycopg
    from psycopg import conninfo

    options = f"-c statement_timeout={int(statement_timeout_ms)}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    params: dict[str, Any] = {
        "host": target.host, "port": target.port, "user": target.user,
        "password": target.password, "dbname": target.dbname,
    }
    if target.tls is not None and "PGSSLMODE" not in os.environ:
        params["sslmode"] = target.tls.mode
        if target.tls.ca and os.path.isfile(target.tls.ca):
            params["sslrootcert"] = target.tls.ca
    if target.dsn is not None:
        params = {**conninfo.conninfo_to_dict(target.dsn), "dbname": target.dbname}
    params.update(connect_timeout=connect_timeout_s, options=options,
                  application_name=APPLICATION_NAME)
    try:
        conn = psycopg.connect(**params, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to {target.describe()}: {target.redact(str(exc).strip())}"
        ) from None
    try:
        with conn:
            yield conn
    except psycopg.Error as exc:
        raise DatabaseError(
            f"{target.describe()}: {target.redact(str(exc).strip())}"
        ) from None
