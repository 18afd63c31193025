"""The one Jinja2 environment: sandboxed, confined to templates/, and bounded.

A repository's `templates/` comes with its pull requests, so a template is
untrusted code. It runs in Jinja2's immutable sandbox (no Python internals, no
mutation of the data it is given, no environment or filesystem: `{% include %}`
and `{% import %}` resolve only inside `templates/` and the built-in
templates). An untrusted template also runs under a CPU-time limit and a memory
limit, and its output is capped, so no template hangs or exhausts the machine.

A template whose text is the built-in one (the package's own, or a byte-identical
copy in `templates/`) is trusted: it runs without those limits, which would cost
`generate` a noticeable share of its per-file time.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cdc_generator.config.load import YamlLoadError, is_within, read_regular_file

TEMPLATES_DIR = "templates"
MAX_TEMPLATE_BYTES = 1024 * 1024
CPU_SECONDS = 2.0  # per rendered file (and per compiled template) of an untrusted template
MEMORY_BYTES = 512 * 1024 * 1024  # beyond what the process already uses
MAX_OUTPUT = 16 * 1024 * 1024  # characters of one rendered file
MAX_INT_BITS = 4096  # results of '*' and '**' on numbers
MAX_ITEMS = 1024 * 1024  # results of '*' on strings and lists


class TemplateProblem(jinja2.TemplateError):
    """A template that cannot be used as it is; `name` is the template it concerns."""

    def __init__(self, name: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.name = name
        self.hint = hint


class RenderTimeout(Exception):
    pass


@cache
def builtin_source(name: str) -> str | None:
    """The package's own template `name`, or None."""
    try:
        return (Path(__file__).with_name(TEMPLATES_DIR) / name).read_text("utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return None


class Loader(jinja2.BaseLoader):
    """Templates from `<root>/templates/` (regular files inside it only), else
    the built-in ones. Records where each came from and whether it is trusted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = root / TEMPLATES_DIR
        self.local = self.directory.is_dir()
        self.shown: dict[str, str] = {}  # template name -> file as shown in messages
        self.filenames: dict[str, str] = {}  # filename given to Jinja -> template name
        self.trusted: dict[str, bool] = {}

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        if any(not c.isprintable() for c in template) or template.startswith("/"):
            raise jinja2.TemplateNotFound(template)
        pieces = split_template_path(template)  # refuses '..'
        name = "/".join(pieces)
        source = self._local(name, pieces) if self.local else None
        builtin = builtin_source(name) if len(pieces) == 1 else None
        if source is None:
            if builtin is None:
                raise jinja2.TemplateNotFound(template)
            source, shown = builtin, f"cdc_generator/{TEMPLATES_DIR}/{name}"
        else:
            shown = f"{TEMPLATES_DIR}/{name}"
        self.shown[template] = shown
        self.filenames[shown] = template
        self.trusted[template] = source == builtin
        return source, shown, lambda: True

    def _local(self, name: str, pieces: list[str]) -> str | None:
        path = self.directory.joinpath(*pieces)
        shown = f"{TEMPLATES_DIR}/{name}"
        if not os.path.lexists(path):
            return None
        # templates/ itself may be the link: the file must be inside the repository too
        if not (is_within(path, self.directory) and is_within(path, self.root)):
            raise TemplateProblem(name, f"{shown} is a symbolic link out of {TEMPLATES_DIR}/: "
                                  "not read", "replace the link with the template itself")
        try:
            data = read_regular_file(path, shown, max_bytes=MAX_TEMPLATE_BYTES)
            return data.decode("utf-8")
        except YamlLoadError as exc:
            raise TemplateProblem(name, f"{shown} {exc.problem.message}",
                                  exc.problem.hint) from None
        except UnicodeDecodeError as exc:
            raise TemplateProblem(name, f"{shown} is not UTF-8 (byte {exc.start + 1})",
                                  "save the template as UTF-8") from None


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with '*' and '**' refused where their result would be huge
    (a single such operation could not be interrupted)."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Jinja's own loop variable: its data attributes read as often as the specs'
        self._plain: dict[type, frozenset[str]] = {jinja2.runtime.LoopContext: frozenset({
            "index", "index0", "revindex", "revindex0", "first", "last", "length", "depth",
            "depth0", "previtem", "nextitem"})}

    def allow_data(self, *classes: type) -> None:
        """Let templates read the fields and properties of these frozen dataclasses
        without the sandbox's per-access checks, which would otherwise cost more
        than the rest of rendering: they hold only data, so the checks pass anyway."""
        for cls in classes:
            fields = {f.name for f in dataclasses.fields(cls)}
            properties = {n for n in dir(cls) if isinstance(getattr(cls, n), property)}
            self._plain[cls] = frozenset(n for n in fields | properties if not n.startswith("_"))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute in self._plain.get(type(obj), _NOTHING):
            return _getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        # map(attribute=...) and obj["name"] come here
        if argument in self._plain.get(type(obj), _NOTHING):
            return _getattr(obj, argument)
        return super().getitem(obj, argument)

    def call_binop(self, context: jinja2.runtime.Context, operator: str,
                   left: Any, right: Any) -> Any:
        both_ints = _is_int(left) and _is_int(right)
        if (operator == "**" and both_ints and right > 0 and abs(left) > 1
                and abs(left).bit_length() * right > MAX_INT_BITS):
            raise SecurityError("the power is too large")
        if operator == "*":
            if both_ints and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
                raise SecurityError("the product is too large")
            for seq, times in ((left, right), (right, left)):
                if (isinstance(seq, str | list | tuple) and _is_int(times)
                        and len(seq) * times > MAX_ITEMS):
                    raise SecurityError("the repetition is too long")
        return super().call_binop(context, operator, left, right)


_NOTHING: frozenset[str] = frozenset()
_getattr = builtins.getattr  # the sandbox's own `getattr` method shadows it in the class


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def make_environment(root: Path) -> BoundedEnvironment:
    env = BoundedEnvironment(
        loader=Loader(root),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML, not HTML: quoting is explicit through |q
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        auto_reload=False,
    )
    env.globals.pop("lipsum", None)  # text on demand: nothing a manifest needs
    return env


@contextmanager
def bounded() -> Iterator[None]:
    """Run the body under a CPU-time limit (raising RenderTimeout; only on the
    main thread, where signals arrive) and a memory limit (MemoryError)."""
    with _memory_limit(), _cpu_limit():
        yield


@contextmanager
def _cpu_limit() -> Iterator[None]:
    import signal  # only untrusted templates need these
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    armed = [True]

    def expired(signum: int, frame: object) -> None:
        if armed[0]:
            armed[0] = False
            raise RenderTimeout

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, CPU_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        armed[0] = False
        signal.signal(signal.SIGPROF, previous)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _address_space() -> int:
    """This process's address space size now: read each time, as a long-lived
    process (a test run, a library caller) grows, and a limit below what it
    already uses would fail every allocation."""
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        return int(os.read(fd, 100).split()[0]) * _PAGE
    finally:
        os.close(fd)


@contextmanager
def _memory_limit() -> Iterator[None]:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        used = _address_space()
    except (ImportError, OSError, ValueError):  # not Linux: the CPU limit must do
        yield
        return
    limit = used + MEMORY_BYTES
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def render_capped(template: jinja2.Template, context: dict[str, Any]) -> str:
    """`template` rendered, refusing output past MAX_OUTPUT characters."""
    parts: list[str] = []
    size = 0
    stream = cast("Generator[str, None, None]", template.generate(context))
    try:
        for part in stream:
            size += len(part)
            if size > MAX_OUTPUT:
                raise SecurityError(
                    f"the output is longer than {MAX_OUTPUT // (1024 * 1024)} MiB")
            parts.append(part)
    finally:
        stream.close()
    return "".join(parts)
