"""No input ends in exit 3, a traceback or a hang: this repository's own config
and templates, mutated at random in many ways (truncated, bytes flipped or
inserted, lines dropped, doubled or re-indented, values swapped for other types,
random text in values, template tags broken), each checked with `validate` and
`generate`.

The suite runs a fixed-seed sample; CDC_FUZZ_CASES=N runs N cases and CDC_FUZZ_SEED=S
another sample (the report on issue 12 counts runs of 8,000).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from cdc_generator import sandbox
from tests.helpers import REPO
from tests.hostile import run, scratch

CASES = int(os.environ.get("CDC_FUZZ_CASES", "60"))
SEED = int(os.environ.get("CDC_FUZZ_SEED", "12"))
FILES = ["server-groups.yaml", "services/directory.yaml", "services/accounting.yaml",
         "templates/source-pipeline.yaml", "templates/sink-pipeline.yaml"]
VALUES = ["", "~", "[]", "{}", "[a, b]", "{a: 1}", "0", "-1", "1e999", "017", "0x1F", "1:30",
          "yes", "!!binary aGk=", "&a x", "*a", "'${X}'", "\"\\0\"", "\"\\n\"", "'a: b'", "|\n  x",
          ">-\n  y", "? x", "- z", "'{{CUSTOMER_ID}}'", "!tag v", "\"\\u202e\"", "'x' * 3",
          "{{ 1/0 }}", "{% if %}", "{{ source }}", "%"]
JINJA = ["{{", "}}", "{%", "%}", "{#", "#}", "{{ source.nope }}", "{% for x in source %}",
         "{% endfor %}", "{{ pipeline | q }}", "{% include 'x' %}", "{{ range(99999) | list }}",
         "{% raw %}", "{{ ''.__class__ }}", "\x00"]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[at:]


def _lines(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    how = rng.choice(["drop", "double", "indent", "dedent", "swap"])
    if how == "drop":
        del lines[i]
    elif how == "double":
        lines.insert(i, lines[i])
    elif how == "indent":
        lines[i] = b"  " + lines[i]
    elif how == "dedent":
        lines[i] = lines[i][2:]
    else:
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def _value(rng: random.Random, data: bytes) -> bytes:
    lines = data.decode("utf-8", "replace").split("\n")
    spots = [i for i, line in enumerate(lines)
             if ": " in line and not line.lstrip().startswith("#")]
    if not spots:
        return data
    i = rng.choice(spots)
    key = lines[i].split(": ", 1)[0]
    lines[i] = f"{key}: {rng.choice(VALUES)}"
    return "\n".join(lines).encode()


def _jinja(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(JINJA).encode() + data[at:]


MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    _truncate, _flip, _insert, _lines, _value, _value, _jinja]


@pytest.fixture(autouse=True)
def _quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "CPU_SECONDS", 0.1)


def test_no_mutation_crashes_or_hangs(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    seen = {0: 0, 1: 0}
    for n in range(CASES):
        root = scratch(tmp_path / str(n))
        for _ in range(rng.randint(1, 3)):
            file = rng.choice(FILES)
            mutate = rng.choice(MUTATIONS)
            if mutate is _jinja and not file.startswith("templates/"):
                mutate = _value
            (root / file).write_bytes(mutate(rng, (root / file).read_bytes()))
        command = "generate" if n % 3 == 0 else "validate"
        outcome = run(root, command, seconds=30)
        assert outcome.code in (0, 1), (n, outcome.text)
        assert "Traceback" not in outcome.text, (n, outcome.text)
        assert "internal error" not in outcome.text, (n, outcome.text)
        seen[outcome.code] += 1
        if outcome.code == 1:
            assert not (root / "generated").exists(), n
        assert not [p for p in root.iterdir() if p.name.startswith(".generated")], n
    # the mutations must both break and keep configs, or they test too little
    assert seen[1] >= CASES // 4
    assert seen[0] >= CASES // 40, seen
    assert (REPO / "generated").is_dir()
