"""A throwaway Apache Kafka cluster (KRaft) and Kafka Connect distributed workers.

Everything runs from what ``scripts/e2e_deps.py`` fetched from Maven Central
(:mod:`tests.e2e.engine.artifacts`): the ``kafka_2.13`` broker and the
``connect-runtime`` worker on one class path, and the Debezium plugins that the
deployed KafkaConnect builds its image with, each in its own folder on the worker's
``plugin.path``. The worker's settings are the deployed KafkaConnect's
``spec.config`` (``deploy/connect/base/kafka-connect.yaml``) with only what places
it on this machine changed: addresses, the group, the internal topics' names.

Brokers and workers can be stopped, killed and started again while the cluster runs
(the fault tests do); every node binds to 127.0.0.1 on free ports, keeps its data
under a caller-given work directory and is stopped by PID (SIGTERM, bounded wait,
SIGKILL, reaped) when the context exits.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from cdc_generator import procs

from .engine.artifacts import KAFKA_CONNECT, Engine, located

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

LOG_DIR_ENV = "CDC_E2E_LOG_DIR"
WORKER_HEAP_ENV = "CDC_E2E_WORKER_XMX"

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
JDBC_SINK_CONNECTOR = "io.debezium.connector.jdbc.JdbcSinkConnector"
PLUGIN_CLASSES = (POSTGRES_CONNECTOR, JDBC_SINK_CONNECTOR)

WORKER_GROUP = "cdc-e2e-connect"


class StackError(RuntimeError):
    """A broker or worker could not be started, or a request to them failed."""


class ConnectorFailedError(StackError):
    """A connector or one of its tasks reached FAILED."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return procs.free_port("127.0.0.1")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass(eq=False)
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_file: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, grace: float, sig: signal.Signals = signal.SIGTERM) -> None:
        """``sig``, wait up to ``grace`` s, then SIGKILL; always reaps and closes the log."""
        try:
            log.debug("stopping %s (pid %d) with %s", self.name, self.pid, sig.name)
            procs.stop(self.popen, ((sig, grace), (signal.SIGKILL, 10.0)), name=self.name)
        finally:
            self.log_file.close()
            _live.discard(self)


_live: set[_Proc] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Last resort when the interpreter exits with a stack still up (no context exit)."""
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(grace=5.0)


def _pdeathsig_prefix() -> list[str]:
    """The child gets SIGTERM if the test runner is killed outright (from the main
    thread only: the signal follows the death of the thread that forked)."""
    return procs.die_with_parent_argv(signal.SIGTERM)


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass(eq=False)
class Node:
    """One JVM of the stack (a broker or a worker) that can be stopped and started again.

    Its log is appended to across restarts, so one file tells a node's whole story."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    proc: _Proc | None = None
    #: how often the node was started
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.popen.poll() is None

    def start(self) -> None:
        if self.running:
            raise StackError(f"{self.name} is already running")
        log_file = self.log_path.open("ab")
        log_file.write(f"---- start {self.starts + 1} at {_dt.datetime.now()}\n".encode())
        log_file.flush()
        try:
            popen = subprocess.Popen(
                [*_pdeathsig_prefix(), *self.argv],  # setpriv execs: the PID is the JVM's
                cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches only the test runner
            )
        except BaseException:
            log_file.close()
            raise
        self.proc = _Proc(self.name, popen, log_file)
        _live.add(self.proc)
        self.starts += 1
        log.info("started %s pid %d", self.name, popen.pid)

    def stop(self, grace: float = 15.0, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop it (``sig``, then SIGKILL after ``grace`` s); a stopped node stays stopped."""
        if self.proc is not None:
            self.proc.stop(grace, sig)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        self.stop(grace=10.0, sig=signal.SIGKILL)

    def died(self) -> str | None:
        """Why the node is gone although nobody stopped it, or None."""
        if self.proc is None:
            return None
        code = self.proc.popen.poll()
        if code is None:
            return None
        return f"{self.name} (pid {self.proc.pid}) exited with {code}:\n{self.tail()}"

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


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


def wait_for(
    what: str,
    probe: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], str | None] = lambda: None,
) -> float:
    """Poll ``probe`` until true; the seconds it took. ``alive`` names a dead process."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        dead = alive()
        if dead is not None:
            raise StackError(f"{dead}\nwhile waiting for {what}")
        with contextlib.suppress(OSError):
            if probe():
                return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


# --------------------------------------------------------------------------- configs


LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c:%L)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.connect.name = org.apache.kafka.connect
logger.connect.level = INFO
logger.coordinator.name = org.apache.kafka.clients.consumer.internals.ConsumerCoordinator
logger.coordinator.level = INFO
logger.subscription.name = org.apache.kafka.clients.consumer.internals.SubscriptionState
logger.subscription.level = INFO
logger.jdbctask.name = io.debezium.connector.jdbc.JdbcSinkConnectorTask
logger.jdbctask.level = DEBUG
logger.connectcfg.name = org.apache.kafka.common.config.AbstractConfig
logger.connectcfg.level = WARN
logger.debezium.name = io.debezium
logger.debezium.level = INFO
logger.hibernate.name = org.hibernate
logger.hibernate.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = WARN
"""


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("\n", "\\n")

    path.write_text("".join(f"{esc(k)}={esc(v)}\n" for k, v in props.items()))


def broker_properties(node_id: int, *, ports: Mapping[int, tuple[int, int]],
                      data_dir: Path) -> dict[str, str]:
    """One combined broker+controller node of a KRaft cluster of ``len(ports)`` nodes.

    ``ports``: node id -> (client port, controller port). Replication follows the
    cluster's size up to 3, with ``min.insync.replicas`` 2 from three nodes on, as
    a production cluster is set up."""
    client, controller = ports[node_id]
    size = len(ports)
    replicas = str(min(3, size))
    min_isr = "2" if size >= 3 else "1"
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(
            f"{n}@127.0.0.1:{c}" for n, (_b, c) in sorted(ports.items())),
        "listeners": f"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{client}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        # every topic a pipeline writes must come from the generated topic.creation
        # settings: a topic the broker made up would hide a missing setting
        "auto.create.topics.enable": "false",
    }


def deployed_worker_config(path: Path = KAFKA_CONNECT) -> dict[str, str]:
    """The deployed KafkaConnect's ``spec.config``: the worker settings users run."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    config = (doc.get("spec") or {}).get("config") or {}
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()}


def worker_properties(*, bootstrap: str, rest_port: int, plugin_path: Path,
                      group: str = WORKER_GROUP) -> dict[str, str]:
    """The deployed worker config, placed on this machine.

    Besides addresses and names, two settings differ from a Strimzi deployment, for
    the tests' speed only: plugins are found through their ServiceLoader manifests
    instead of a scan of every jar, and offsets are flushed every second instead of
    every minute (fewer replayed, harmless duplicates after a crash)."""
    props = deployed_worker_config()
    props.update({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "listeners": f"http://127.0.0.1:{rest_port}",
        "rest.advertised.host.name": "127.0.0.1",
        "rest.advertised.port": str(rest_port),
        "rest.advertised.listener": "http",
        # Strimzi sets these from spec.*StorageTopic; the names only matter per group
        "config.storage.topic": f"{group}-configs",
        "offset.storage.topic": f"{group}-offsets",
        "status.storage.topic": f"{group}-status",
        # Strimzi's image keeps plugins in /opt/kafka/plugins
        "plugin.path": str(plugin_path),
        "plugin.discovery": "service_load",
        "offset.flush.interval.ms": "1000",
    })
    # Strimzi sets the worker's converters to JSON with schemas; generated connectors
    # name their own, so these apply only to the internal topics
    props.setdefault("key.converter", "org.apache.kafka.connect.json.JsonConverter")
    props.setdefault("value.converter", "org.apache.kafka.connect.json.JsonConverter")
    return props


def _jvm(engine: Engine, main: str, args: list[str], *, heap: str, log4j: Path) -> list[str]:
    return [
        str(engine.java), "-Xms64m", f"-Xmx{heap}", "-XX:+UseSerialGC",
        "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp", os.pathsep.join(str(jar) for jar in sorted(engine.libs.glob("*.jar"))),
        main, *args,
    ]


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with ``-``: the
    storage tool would read it as an option (seen in CI: ``-cguj7rk...``)."""
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster.startswith("-"):
            return cluster


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """Running brokers and workers. Build it with :func:`start_stack`."""

    work_dir: Path
    engine: Engine
    worker_env: dict[str, str]
    bootstrap: str
    log_dir: Path
    brokers: list[Node] = field(default_factory=list)
    workers: list[Node] = field(default_factory=list)
    worker_urls: list[str] = field(default_factory=list)
    broker_ports: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    worker_heap: str = "768m"
    extra_worker_props: dict[str, str] = field(default_factory=dict)

    # ---- processes

    @property
    def nodes(self) -> list[Node]:
        return [*self.brokers, *self.workers]

    @property
    def connect_url(self) -> str:
        """The REST URL of a running worker (any of them forwards to the leader)."""
        for node, url in zip(self.workers, self.worker_urls, strict=True):
            if node.running:
                return url
        raise StackError("no Connect worker is running")

    def pids(self) -> dict[str, int]:
        return {n.name: n.pid for n in self.nodes if n.pid is not None}

    def rss_bytes(self) -> dict[str, int | None]:
        """Resident set size of each running process (from /proc)."""
        return {n.name: _rss_bytes(n.pid) for n in self.nodes if n.pid is not None}

    def dead_process(self) -> str | None:
        """A node that died although nobody stopped it."""
        for node in self.nodes:
            why = node.died()
            if why is not None:
                return why
        return None

    def start_broker(self, index: int, *, timeout: float = 60.0) -> float:
        """Start broker ``index`` again; the seconds until it takes clients."""
        self.brokers[index].start()
        return wait_for(f"broker {index} on port {self.broker_ports[index]}",
                        lambda: _tcp_open(self.broker_ports[index]), timeout=timeout,
                        interval=0.05, alive=self.dead_process)

    def add_worker(self, *, timeout: float = 120.0) -> Node:
        """Start one more worker in the group; returns once it serves REST."""
        index = len(self.workers)
        rest_port = free_port()
        props = worker_properties(bootstrap=self.bootstrap, rest_port=rest_port,
                                  plugin_path=self.engine.plugin_path)
        props.update(self.extra_worker_props)
        config = self.work_dir / f"worker-{index}.properties"
        _write_properties(config, props)
        heap = os.environ.get(WORKER_HEAP_ENV) or self.worker_heap
        node = Node(f"connect-{index}",
                    _jvm(self.engine, "org.apache.kafka.connect.cli.ConnectDistributed",
                         [str(config)], heap=heap, log4j=self.work_dir / "log4j2.properties"),
                    cwd=self.work_dir, env=dict(self.worker_env),
                    log_path=self.work_dir / f"connect-{index}.log")
        self.workers.append(node)
        self.worker_urls.append(f"http://127.0.0.1:{rest_port}")
        node.start()
        self.wait_worker(index, timeout=timeout)
        return node

    def start_worker(self, index: int, *, timeout: float = 120.0) -> float:
        """Start worker ``index`` again; the seconds until it serves REST."""
        self.workers[index].start()
        return self.wait_worker(index, timeout=timeout)

    def wait_worker(self, index: int, *, timeout: float = 120.0) -> float:
        url = self.worker_urls[index]

        def ready() -> bool:
            # /connectors answers 503 until the worker joined its group and read the
            # config topic; /connector-plugins must list both Debezium plugins
            if _http("GET", url + "/connectors", timeout=5).status != 200:
                return False
            plugins = _http("GET", url + "/connector-plugins?connectorsOnly=true", timeout=5)
            found = {p.get("class") for p in plugins.body or []}
            return all(cls in found for cls in PLUGIN_CLASSES)

        return wait_for(f"Connect worker {index} on {url}", ready, timeout=timeout,
                        interval=0.1, alive=self.dead_process)

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
        exc.add_note(f"e2e stack logs (brokers, workers, configs)"
                     f"{' for ' + label if label else ''} kept in {where}")
        return where

    def stop(self, grace: float = 15.0) -> None:
        """Stop every node: the workers (they flush offsets to the brokers), then the
        brokers, each group signalled at once (a broker left alone without its
        quorum would wait out its whole grace period)."""
        errors: list[BaseException] = []
        for group in (self.workers, self.brokers):
            for node in group:
                if node.running and node.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(node.pid, signal.SIGTERM)
            for node in group:
                try:
                    node.stop(grace)
                except Exception as exc:  # keep stopping the others
                    errors.append(exc)
        if errors:
            raise StackError(f"failed to stop processes: {errors}")

    # ---- REST

    def _url(self, *parts: str) -> str:
        return self.connect_url + "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)

    def request(self, method: str, path: str, body: Any = None) -> HttpResult:
        return self._send(method, lambda: self.connect_url + path, body)

    def _send(self, method: str, url: str | Callable[[], str], body: Any = None, *,
              timeout: float = 60.0) -> HttpResult:
        """One REST call, repeated while the worker answers 409 (a rebalance is under
        way) or 503 (still starting) or cannot be reached (restarting), up to
        ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        while True:
            target = url() if callable(url) else url
            try:
                result = _http(method, target, body,
                               timeout=max(1.0, deadline - time.monotonic()))
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
                continue
            if result.status not in (409, 503) or time.monotonic() >= deadline:
                return result
            log.debug("%s %s: HTTP %d, retrying: %s", method, target, result.status,
                      result.body)
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
        wait_for(
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


def _start_brokers(stack: Stack, count: int, heap: str) -> None:
    ports = free_ports(2 * count)
    by_node = {n + 1: (ports[2 * n], ports[2 * n + 1]) for n in range(count)}
    cluster = _cluster_id()
    log4j = stack.work_dir / "log4j2.properties"
    formats = []
    for node_id in by_node:
        data = stack.work_dir / f"broker-{node_id}"
        config = stack.work_dir / f"broker-{node_id}.properties"
        _write_properties(config, broker_properties(node_id, ports=by_node, data_dir=data))
        formats.append(_jvm(stack.engine, "kafka.tools.StorageTool",
                            ["format", f"--cluster-id={cluster}", "-c", str(config)],
                            heap="256m", log4j=log4j))
        stack.brokers.append(Node(
            f"broker-{node_id}",
            _jvm(stack.engine, "kafka.Kafka", [str(config)], heap=heap, log4j=log4j),
            cwd=stack.work_dir, env=dict(os.environ),
            log_path=stack.work_dir / f"broker-{node_id}.log"))
        stack.broker_ports.append(by_node[node_id][0])
    # format all at once: each is a JVM start (about a second of CPU)
    running = [subprocess.Popen(argv, cwd=stack.work_dir, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT) for argv in formats]
    for argv, popen in zip(formats, running, strict=True):
        out, _ = popen.communicate(timeout=120)
        if popen.returncode != 0:
            raise StackError(f"{' '.join(argv[-4:])} exited {popen.returncode}:\n"
                             f"{out.decode(errors='replace')[-2000:]}")
    for node in stack.brokers:
        node.start()
    for port in stack.broker_ports:
        wait_for(f"broker on port {port}", lambda port=port: _tcp_open(port),  # type: ignore[misc]
                 timeout=90.0, alive=stack.dead_process)


@contextlib.contextmanager
def start_stack(
    work_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    brokers: int = 1,
    workers: int = 1,
    worker_heap: str | None = None,
    broker_heap: str = "512m",
    extra_worker_props: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Stack]:
    """Start ``brokers`` Kafka nodes and ``workers`` Connect workers under ``work_dir``;
    stop them all on exit.

    ``env`` is added to the workers' environment, where ``${env:VAR}`` references in
    connector configs are resolved. On any failure (while starting, or an exception from
    the ``with`` body) the logs are copied to ``log_dir`` (default
    ``$CDC_E2E_LOG_DIR`` or ``<repo>/.e2e-logs/stack-<time>-<pid>``) and the exception
    says where.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    engine = located()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    stack = Stack(work_dir=work_dir, engine=engine, worker_env={**base_env, **(env or {})},
                  bootstrap="", log_dir=log_dir or _default_log_dir(),
                  worker_heap=worker_heap or "768m",
                  extra_worker_props=dict(extra_worker_props or {}))
    (work_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
    started = time.monotonic()
    try:
        _start_brokers(stack, brokers, broker_heap)
        stack.bootstrap = ",".join(f"127.0.0.1:{p}" for p in stack.broker_ports)
        stack.timings["brokers_ready_s"] = time.monotonic() - started
        for _ in range(workers):
            stack.add_worker()
        stack.timings["workers_ready_s"] = time.monotonic() - started
        log.info("stack up in %.2fs: brokers %s, workers %s", stack.timings["workers_ready_s"],
                 stack.bootstrap, stack.worker_urls)
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
