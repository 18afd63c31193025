"""Pipeline specs -> manifest text. The one Jinja2 environment; no file writes."""

from __future__ import annotations

import json.encoder
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.exceptions import SecurityError

from cdc_generator import layout, names, publication, sandbox, sink_sql
from cdc_generator.config.model import TopicSettings
from cdc_generator.errors import ConfigError, Problem
from cdc_generator.plan import CapturedTable, Pipeline, Plan, SinkSpec, SourceSpec

SOURCE_TEMPLATE = "source-pipeline.yaml"
SINK_TEMPLATE = "sink-pipeline.yaml"
TEMPLATES_DIR = sandbox.TEMPLATES_DIR
API_VERSION = "kafka.strimzi.io/v1"
KIND = "KafkaConnector"
CONNECTOR_CLASS = {
    SOURCE_TEMPLATE: "io.debezium.connector.postgresql.PostgresConnector",
    SINK_TEMPLATE: "io.debezium.connector.jdbc.JdbcSinkConnector",
}
_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{t}" for t in ("str", "seq", "map"))


class _ShapeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's composer with every plain scalar taken as a string: the shape
    check compares a few values with strings, so resolving each scalar's type
    (a Python call with regular expressions, per scalar) would be wasted."""

    def resolve(self, kind: type, value: object, implicit: object) -> str:
        return _STR if kind is yaml.ScalarNode else _SEQ if kind is yaml.SequenceNode else _MAP

    def descend_resolver(self, current_node: object, current_index: object) -> None:
        pass  # path-dependent resolvers: none

    def ascend_resolver(self) -> None:
        pass


@dataclass(frozen=True)
class RenderedFile:
    path: str  # relative to generated/, with '/' separators
    text: str


# json.dumps(s, ensure_ascii=False) for a str is exactly this (C) function; calling it
# directly saves the encoder set-up, once per quoted value of every manifest.
_encode_string = json.encoder.encode_basestring


def _quote(value: Any) -> str:
    # A JSON string is a valid YAML double-quoted scalar: nothing in a value can
    # break out of it or be read as another type.
    return _encode_string(str(value))


def make_environment(root: Path) -> sandbox.BoundedEnvironment:
    env = sandbox.make_environment(root)
    env.allow_data(Pipeline, SourceSpec, SinkSpec, CapturedTable, TopicSettings)
    env.filters["q"] = _quote
    env.filters["k8s"] = cache(names.k8s)  # pure; called with the same few names
    return env


def template_origin(root: Path, name: str) -> str:
    local = root / TEMPLATES_DIR / name
    return f"{TEMPLATES_DIR}/{name}" if local.is_file() else f"cdc_generator/{TEMPLATES_DIR}/{name}"


class Renderer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = make_environment(root)
        self.loader: sandbox.Loader = self.env.loader  # type: ignore[assignment]
        self._templates: dict[str, jinja2.Template] = {}
        self._trusted: dict[str, bool] = {}
        self._checked: set[str] = set()  # trusted templates whose output shape was checked
        self._origins: dict[str, str] = {}  # template_origin() of each template, for this run

    def template(self, name: str) -> jinja2.Template:
        if name not in self._templates:
            try:
                # read first: an untrusted template is compiled under the limits too, as
                # compiling evaluates constant expressions
                self.loader.get_source(self.env, name)
                trusted = self.loader.trusted[name]
                with nullcontext() if trusted else sandbox.bounded():
                    self._templates[name] = self.env.get_template(name)
                self._trusted[name] = trusted
            except jinja2.TemplateNotFound as exc:
                if exc.name != name:
                    raise ConfigError([self._problem(exc, name)]) from None
                raise ConfigError([Problem(
                    f"{TEMPLATES_DIR}/{name}", message="template not found",
                    hint="restore it, or delete templates/ to use the built-in templates",
                )]) from None
            except Exception as exc:  # anything a template's text can cause
                raise ConfigError([self._problem(exc, name)]) from None
        return self._templates[name]

    def render(self, plan: Plan) -> list[RenderedFile]:
        """Every file of `plan`, sorted by path."""
        files = [*self.pipeline_files(plan, plan.pipelines), *self.plan_files(plan)]
        files.sort(key=lambda f: f.path)
        return files

    def pipeline_files(self, plan: Plan, pipelines: Iterable[Pipeline]) -> Iterator[RenderedFile]:
        """The connector manifests of `pipelines` (a share of `plan`'s), one by one."""
        for pipeline in pipelines:
            for template_name, spec, role in (
                (SOURCE_TEMPLATE, pipeline.source, "source"),
                *(((SINK_TEMPLATE, pipeline.sink, "sink"),) if pipeline.renders_sink else ()),
            ):
                body = self._render_one(template_name, pipeline, role, spec)
                header = self._header(plan, pipeline, template_name)
                yield RenderedFile(layout.manifest(pipeline.service, pipeline.environment,
                                                   spec.name), header + body)
            # what the source database needs before the connector runs (publication.py)
            sql = publication.render_one(plan, pipeline)
            yield RenderedFile(sql.path, sql.text)

    def plan_files(self, plan: Plan) -> Iterator[RenderedFile]:
        """The files that list many pipelines: kustomizations, sink schemas."""
        by_dir: dict[tuple[str, str, str], list[Pipeline]] = defaultdict(list)
        for p in plan.pipelines:
            by_dir[p.service, p.environment, p.service_file].append(p)
        for (service, environment, service_file), pipelines in by_dir.items():
            resources = [f"{spec.name}.yaml" for p in pipelines
                         for spec in (p.source, *((p.sink,) if p.renders_sink else ()))]
            yield RenderedFile(layout.kustomization(service, environment),
                               _kustomization(plan, service_file, resources))
            sql = sink_sql.render(plan, pipelines)
            yield RenderedFile(sql.path, sql.text)

    def load_templates(self) -> None:
        """Compile both templates now (before forking workers: once for all)."""
        self.template(SOURCE_TEMPLATE)
        self.template(SINK_TEMPLATE)

    def _render_one(self, name: str, pipeline: Pipeline, role: str,
                    spec: SourceSpec | SinkSpec) -> str:
        template = self.template(name)
        context = {"pipeline": pipeline, role: spec}
        try:
            if self._trusted[name]:
                text = template.render(context)
            else:
                with sandbox.bounded():
                    text = sandbox.render_capped(template, context)
        except Exception as exc:  # anything a template can raise, or the limits
            raise ConfigError([self._problem(exc, name, role)]) from None
        if not self._trusted[name] or name not in self._checked:
            self._check_output(name, text, spec.name)
            self._checked.add(name)
        return text

    def _check_output(self, name: str, text: str, connector: str) -> None:
        """The output must be one KafkaConnector of the template's connector class."""
        found = manifest_problem(text, CONNECTOR_CLASS[name], connector)
        if found is not None:
            message, needle = found
            raise ConfigError([Problem(
                self.loader.shown.get(name, f"{TEMPLATES_DIR}/{name}"),
                _line_of(self.loader, name, needle), 1, "", message,
                f"the template must produce one {KIND} ({API_VERSION}) named by "
                f"{'source' if name == SOURCE_TEMPLATE else 'sink'}.name, with spec.class "
                f"{CONNECTOR_CLASS[name]}")]) from None

    def _problem(self, exc: BaseException, name: str, role: str | None = None) -> Problem:
        """A template's failure, at the template (an included one, if it failed) and line."""
        where, line = _template_line(exc, self.loader)
        if isinstance(exc, jinja2.TemplateSyntaxError):
            where, line = exc.name or where or name, exc.lineno or line
            message = f"template syntax error: {exc.message}"
        elif isinstance(exc, sandbox.TemplateProblem):  # at the include, if one led there
            where, message = where or exc.name, str(exc)
        elif isinstance(exc, jinja2.TemplateNotFound):
            message = f"template {_shown(str(exc.name))!r} not found in {TEMPLATES_DIR}/"
        elif isinstance(exc, jinja2.UndefinedError):
            message = f"template uses an unknown value: {exc.message}"
        elif isinstance(exc, SecurityError):
            message = f"template does something the sandbox refuses: {exc}"
        elif isinstance(exc, sandbox.RenderTimeout):
            message = f"template took more than {sandbox.CPU_SECONDS:g} s of CPU time"
        elif isinstance(exc, MemoryError):
            message = (f"template needs more than {sandbox.MEMORY_BYTES // (1024 * 1024)} MiB "
                       "of memory")
        elif isinstance(exc, RecursionError):
            message = "template recurses too deeply"
        else:
            message = f"template failed: {type(exc).__name__}: {exc}"
        hint = getattr(exc, "hint", "") or (
            f"the {role} template gets 'pipeline' and '{role}'" if role else "")
        where = where or name
        return Problem(self.loader.shown.get(where, f"{TEMPLATES_DIR}/{where}"), line,
                       1 if line else 0, "", _shown(message)[:500], hint)

    def _header(self, plan: Plan, pipeline: Pipeline, template_name: str) -> str:
        origin = self._origins.get(template_name)
        if origin is None:
            origin = self._origins[template_name] = template_origin(self.root, template_name)
        inputs = ", ".join((plan.groups_file, pipeline.service_file, origin))
        return (
            "# Generated by cdc-generator. DO NOT EDIT: change the inputs and run\n"
            "# `cdc-generator generate`.\n"
            f"# Inputs: {inputs}\n"
        )


def _template_line(exc: BaseException, loader: sandbox.Loader) -> tuple[str | None, int]:
    """The template and line an error was raised at: Jinja2 puts frames with the
    template's file name and line into the traceback; the innermost one counts."""
    where, line, tb = None, 0, exc.__traceback__
    while tb is not None:
        name = loader.filenames.get(tb.tb_frame.f_code.co_filename)
        if name is not None:
            where, line = name, tb.tb_lineno
        tb = tb.tb_next
    return where, line


def _shown(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def manifest_problem(text: str, connector_class: str, name: str) -> tuple[str, str] | None:
    """What makes `text` other than one KafkaConnector `name` of `connector_class`,
    with a key to look for in the template; None when it is one."""
    try:
        node = yaml.compose(text.encode("utf-8"), Loader=_ShapeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (output line {mark.line + 1})" if mark else ""
        return f"the template's output is not valid YAML: {exc.problem or exc.context}{where}", ""
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        return f"the template's output is not valid YAML: {exc}", ""
    twice = _duplicate_key(node)
    if twice is not None:
        path, key = twice
        return (f"the template's output has key {key!r} twice"
                + (f" (in {path})" if path else "")
                + "; Kafka Connect would take one of them silently", f"{key}:")
    top = _mapping(node)
    if top is None:
        return (f"the template's output is not one {KIND} resource (one YAML mapping, each "
                "key once)", "")
    wanted = (("apiVersion", API_VERSION), ("kind", KIND))
    for key, value in wanted:
        if _scalar(top.get(key)) != value:
            return f"the template's output must have {key}: {value}", f"{key}:"
    metadata, spec = _mapping(top.get("metadata")), _mapping(top.get("spec"))
    if metadata is None or _scalar(metadata.get("name")) != name:
        return f"the template's output must have metadata.name {name!r}", "name:"
    if spec is None or _scalar(spec.get("class")) != connector_class:
        return f"the template's output must have spec.class {connector_class}", "class:"
    return None


def _duplicate_key(node: yaml.Node | None, path: str = "") -> tuple[str, str] | None:
    """The first key given twice in one mapping anywhere in `node`: (its mapping's path,
    the key)."""
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _duplicate_key(item, f"{path}[{index}]")
            if found is not None:
                return found
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            text = _scalar(key)
            if text is None:
                continue
            if text in seen:
                return path, text
            seen.add(text)
            found = _duplicate_key(value, f"{path}.{text}" if path else text)
            if found is not None:
                return found
    return None


def _mapping(node: yaml.Node | None) -> dict[str, yaml.Node] | None:
    """A mapping node's keys; None for anything else or a key given twice."""
    if not isinstance(node, yaml.MappingNode):
        return None
    out: dict[str, yaml.Node] = {}
    for key, value in node.value:
        text = _scalar(key)
        if text is None or text in out:
            return None
        out[text] = value
    return out


def _scalar(node: yaml.Node | None) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
        return str(node.value)
    return None


def _line_of(loader: sandbox.Loader, name: str, needle: str) -> int:
    """The first line of template `name` holding `needle` (1 when none does)."""
    if needle:
        try:
            source = loader.get_source(jinja2.Environment(), name)[0]
        except Exception:  # it rendered a moment ago; if it is gone now, say line 1
            return 1
        for number, line in enumerate(source.splitlines(), start=1):
            if line.strip().startswith(needle):
                return number
    return 1


def _kustomization(plan: Plan, service_file: str, resources: list[str]) -> str:
    lines = [
        "# Generated by cdc-generator. DO NOT EDIT: change the inputs and run",
        "# `cdc-generator generate`.",
        f"# Inputs: {plan.groups_file}, {service_file}",
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        *(f"  - {name}" for name in sorted(resources)),
    ]
    return "\n".join(lines) + "\n"
