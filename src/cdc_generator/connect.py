"""Generated KafkaConnectors -> Kafka Connect REST payloads, and remote validation.

Strimzi turns a KafkaConnector into a Connect REST request by moving
`spec.class` to `connector.class`, `spec.tasksMax` to `tasks.max` and the
resource name to `name`; `spec.config` is passed unchanged (config-provider
references such as `${env:VAR}` are resolved by the worker). We do the same,
so validating our payload validates what Strimzi will submit.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc_generator import layout
from cdc_generator.config.load import YamlLoadError, decode, parse_document, read_regular_file
from cdc_generator.errors import CdcError, ConfigError, Problem
from cdc_generator.output import check_target


@dataclass(frozen=True)
class GeneratedConnector:
    path: str  # relative to the repository root
    name: str
    connector_class: str
    tasks_max: int
    config: dict[str, str]
    text: str

    def rest_config(self) -> dict[str, str]:
        return {
            **self.config,
            "connector.class": self.connector_class,
            "tasks.max": str(self.tasks_max),
            "name": self.name,
        }

    def line_of(self, key: str) -> int:
        """Line of `key` under spec.config in the file (0 when not there)."""
        needle = f"    {key}:"
        for number, line in enumerate(self.text.splitlines(), start=1):
            if line.startswith(needle):
                return number
        return 0


def _as_config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_generated(root: Path, *, environment: str | None = None,
                   service: str | None = None) -> list[GeneratedConnector]:
    """Every KafkaConnector under generated/pipelines/ of `service` (its name in the
    config) and `environment` (None: all). The files are read as bounded YAML, only
    where they are regular files inside generated/; any that cannot be read so is a
    problem (ConfigError)."""
    check_target(root, write=False)  # never read through a generated/ that is a link
    out, problems = [], []
    for path in layout.manifests(root, service=service, environment=environment):
        shown = path.relative_to(root).as_posix()
        try:
            text = decode(read_regular_file(path, shown, within=layout.generated_dir(root)),
                          shown)
            doc = parse_document(text, shown).data
        except YamlLoadError as exc:
            problems.extend(exc.problems)
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "KafkaConnector":
            continue
        metadata, spec = doc.get("metadata"), doc.get("spec") or {}
        config = spec.get("config") if isinstance(spec, dict) else None
        if not (isinstance(metadata, dict) and isinstance(metadata.get("name"), str)
                and isinstance(spec, dict) and isinstance(config, dict | None)
                and isinstance(spec.get("tasksMax", 1), int)):
            problems.append(Problem(shown, message="not a KafkaConnector as generate writes "
                                    "one (metadata.name, spec.class, spec.config)",
                                    hint="run `cdc-generator generate`"))
            continue
        out.append(GeneratedConnector(
            path=shown,
            name=metadata["name"],
            connector_class=str(spec.get("class", "")),
            tasks_max=int(spec.get("tasksMax", 1)),
            config={str(k): _as_config_value(v) for k, v in (config or {}).items()},
            text=text,
        ))
    if problems:
        raise ConfigError(problems)
    return out


def http_json(method: str, url: str, body: Any, timeout: float = 120.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, raw.decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CdcError(f"cannot reach Kafka Connect at {safe_url(url)}: {reason}") from None


def rest_url(text: str) -> str:
    """A Kafka Connect REST URL as given on the command line: http(s)://host[:port][/path].

    For argparse's ``type=``: anything else is a usage error, never a traceback."""
    import argparse

    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018 -- raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{safe_url(text) if parts else 'the URL'!s} is not a Kafka Connect REST URL: "
            "give http://HOST:PORT (or https://...), e.g. http://connect:8083")
    return text


def safe_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host  # drop any user:password@
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def validate_connector(connect_url: str, connector: GeneratedConnector) -> list[Problem]:
    """Ask the cluster's validate endpoint about one connector; problems per key."""
    cls = urllib.parse.quote(connector.connector_class, safe="")
    url = f"{connect_url.rstrip('/')}/connector-plugins/{cls}/config/validate"
    status, body = http_json("PUT", url, connector.rest_config())
    if status != 200:
        message = body.get("message") if isinstance(body, dict) else body
        if status in (400, 404, 500) and "find any class" in str(message):
            return [Problem(connector.path, message=(
                f"connector plugin {connector.connector_class} is not installed on the "
                "Kafka Connect cluster"),
                hint="add the plugin to the KafkaConnect image (spec.build.plugins)")]
        return [Problem(connector.path, message=f"validate endpoint answered HTTP {status}: "
                                                f"{message}")]
    problems = []
    for entry in body.get("configs", []):
        value = entry.get("value", {})
        key = str(value.get("name", ""))
        for error in value.get("errors", []):
            line = connector.line_of(key)
            problems.append(Problem(connector.path, line, 5 if line else 0,
                                    f"spec.config.{key}" if key else "spec.config", str(error)))
    if body.get("error_count", 0) and not problems:
        problems.append(Problem(connector.path, message=f"{body['error_count']} error(s) "
                                                        "reported without a key"))
    return problems


def validate_all(connect_url: str, connectors: Iterable[GeneratedConnector]) -> list[Problem]:
    problems: list[Problem] = []
    for connector in connectors:
        problems.extend(validate_connector(connect_url, connector))
    return problems
