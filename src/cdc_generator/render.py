"""Pipeline specs -> manifest text. The one Jinja2 environment; no file writes."""

from __future__ import annotations

import json.encoder
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from cdc_generator import layout, names, publication
from cdc_generator.errors import ConfigError, Problem
from cdc_generator.plan import Pipeline, Plan

SOURCE_TEMPLATE = "source-pipeline.yaml"
SINK_TEMPLATE = "sink-pipeline.yaml"
TEMPLATES_DIR = "templates"


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


def make_environment(root: Path) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if (root / TEMPLATES_DIR).is_dir():
        loaders.append(jinja2.FileSystemLoader(root / TEMPLATES_DIR))
    loaders.append(jinja2.PackageLoader("cdc_generator", TEMPLATES_DIR))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML, not HTML: quoting is explicit through |q
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
    )
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
        self._templates: dict[str, jinja2.Template] = {}
        self._origins: dict[str, str] = {}  # template_origin() of each template, for this run

    def template(self, name: str) -> jinja2.Template:
        if name not in self._templates:
            try:
                self._templates[name] = self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError([Problem(
                    f"{TEMPLATES_DIR}/{name}", exc.lineno or 0, 1, "",
                    f"template syntax error: {exc.message}")]) from None
            except jinja2.TemplateNotFound:
                raise ConfigError([Problem(
                    f"{TEMPLATES_DIR}/{name}", message="template not found",
                    hint="restore it, or delete templates/ to use the built-in templates",
                )]) from None
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
                (SINK_TEMPLATE, pipeline.sink, "sink"),
            ):
                body = self._render_one(template_name, pipeline, role, spec)
                header = self._header(plan, pipeline, template_name)
                yield RenderedFile(layout.manifest(pipeline.service, pipeline.environment,
                                                   spec.name), header + body)
            # row-filtered sources need their publication created up front (publication.py)
            if publication.needs_publication_sql(pipeline):
                sql = publication.render_one(plan, pipeline)
                yield RenderedFile(sql.path, sql.text)

    def plan_files(self, plan: Plan) -> Iterator[RenderedFile]:
        """The files that list many pipelines: kustomizations."""
        by_dir: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        for p in plan.pipelines:
            for spec in (p.source, p.sink):
                by_dir[p.service, p.environment, p.service_file].append(f"{spec.name}.yaml")
        for (service, environment, service_file), resources in by_dir.items():
            yield RenderedFile(layout.kustomization(service, environment),
                               _kustomization(plan, service_file, resources))

    def load_templates(self) -> None:
        """Compile both templates now (before forking workers: once for all)."""
        self.template(SOURCE_TEMPLATE)
        self.template(SINK_TEMPLATE)

    def _render_one(self, name: str, pipeline: Pipeline, role: str, spec: object) -> str:
        template = self.template(name)
        try:
            return template.render(pipeline=pipeline, **{role: spec})
        except jinja2.UndefinedError as exc:
            raise ConfigError([Problem(
                f"{TEMPLATES_DIR}/{name}", _template_line(exc, template.filename), 1,
                message=f"template uses an unknown value: {exc.message}",
                hint=f"the {role} template gets 'pipeline' and '{role}'")]) from None

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


def _template_line(exc: BaseException, filename: str | None) -> int:
    """The template line an error was raised at: Jinja2 puts frames with the
    template's file name and line into the traceback; the innermost one counts."""
    line, tb = 0, exc.__traceback__
    while tb is not None:
        if filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


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
