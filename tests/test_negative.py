"""Negative folders: a bad config in, exit code 1 and the located message out.

Each tests/negative/<case>/ holds the config files and `expected.txt`: every
line of it must appear in the command's error output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdc_generator import generate
from cdc_generator.cli import main
from cdc_generator.errors import ConfigError
from tests.helpers import NEGATIVE, copy_repo_config, run_cli

CASES = sorted(p.name for p in NEGATIVE.iterdir() if (p / "expected.txt").is_file())


def test_every_case_is_a_different_mistake() -> None:
    """The product finds a different set of problems in each case: no case is a
    copy of another, and none is valid."""
    found: dict[frozenset[tuple[str, str]], str] = {}
    for case in CASES:
        with pytest.raises(ConfigError) as caught:  # rendering too: templates are config
            generate.check(NEGATIVE / case, generate.Selection(), with_diff=False, jobs=1)
        problems = frozenset((p.file, p.message) for p in caught.value.problems)
        assert problems not in found, f"{case} finds what {found.get(problems)} finds"
        found[problems] = case


@pytest.mark.parametrize("command", [["generate"], ["validate"], ["generate", "--check"]])
@pytest.mark.parametrize("case", CASES)
def test_bad_config(case: str, command: list[str], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    shutil.copytree(NEGATIVE / case, root, ignore=shutil.ignore_patterns("expected.txt"))
    code = main([*command, "--root", str(root), "--format", "text"])
    stderr = capsys.readouterr().err
    assert code == 1, stderr
    assert "Traceback" not in stderr
    expected = (NEGATIVE / case / "expected.txt").read_text().splitlines()
    assert expected, f"{case}/expected.txt says nothing"
    for line in expected:
        assert line in stderr, f"{line!r} not in:\n{stderr}"
    assert not (root / "generated").exists(), "nothing may be written for a bad config"
    assert not any(p.name.startswith(".generated") for p in root.iterdir())


@pytest.mark.parametrize("case", ["literal-password", "several-problems-at-once"])
def test_secret_values_are_not_echoed(case: str, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(NEGATIVE / case, root, ignore=shutil.ignore_patterns("expected.txt"))
    secret = {"literal-password": "hunter2", "several-problems-at-once": "s3cr3t-Yw7"}[case]
    assert f"password: {secret}" in (root / "server-groups.yaml").read_text()
    result = run_cli("validate", "--root", str(root))  # a real process: exit code, no trace
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr + result.stdout


# A password of every shape the schema refuses, each a value found nowhere else.
WRONG_PASSWORDS = {
    "number": "73915482",
    "float": "7391.5482",
    "list": "[s3cr3t-list-Zq9]",
    "mapping": "{s3cr3t-key-Zq9: s3cr3t-value-Zq9}",
    "literal": "s3cr3t-Zq9",  # a string: refused by the placeholder check, not the schema
    "empty": "\"\"",  # nothing to repeat; still located, not a crash
    "tag": "!s3cr3t-tag-Zq9 s3cr3t-rest-Zq9",  # a YAML tag: unreadable, not a crash
    "binary": "!!binary czNjcjN0LWJpbi1acTk=",  # bytes, named by kind only
}


@pytest.mark.parametrize("fmt", ["text", "github", "json"])
@pytest.mark.parametrize("shape", sorted(WRONG_PASSWORDS))
def test_a_wrong_password_is_located_but_never_repeated(shape: str, fmt: str,
                                                        tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    groups = root / "server-groups.yaml"
    text = groups.read_text()
    line = "      password: ${POSTGRES_ADOPUS_PASSWORD}"
    assert line in text
    number = text.splitlines().index(line) + 1
    value = WRONG_PASSWORDS[shape]
    groups.write_text(text.replace(line, f"      password: {value}"))
    result = run_cli("validate", "--root", str(root), "--format", fmt)
    out = result.stderr + result.stdout
    assert result.returncode == 1, out
    assert "server-groups.yaml" in out
    assert {"text": f"server-groups.yaml:{number}:", "github": f"line={number}",
            "json": f'"line": {number}'}[fmt] in out
    assert "password" in out
    for part in value.strip('"[]{}').replace(":", " ").split():
        assert part not in out, f"{part!r} repeated in:\n{out}"


def test_a_comment_only_file_is_empty_with_a_hint(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    (root / "services" / "directory.yaml").write_text("# nothing here yet\n\n# still nothing\n")
    assert main(["validate", "--root", str(root), "--format", "text"]) == 1
    err = capsys.readouterr().err
    assert "services/directory.yaml:1:1: file is empty" in err
    assert "hint: write the configuration mapping" in err


@pytest.mark.parametrize("command", [["generate"], ["validate"]])
def test_an_unknown_template_value_is_located(command: list[str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    template = root / "templates" / "source-pipeline.yaml"
    lines = template.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if "source.snapshot_mode" in line)
    lines[number - 1] = lines[number - 1].replace("source.snapshot_mode", "source.snapshot_modes")
    template.write_text("".join(lines))
    assert main([*command, "--root", str(root), "--format", "text"]) == 1
    err = capsys.readouterr().err
    assert (f"templates/source-pipeline.yaml:{number}:1: template uses an unknown value: "
            "'cdc_generator.plan.SourceSpec object' has no attribute 'snapshot_modes'") in err
    assert not (root / "generated").exists()
