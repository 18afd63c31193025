"""Reporters: text, GitHub annotations and the stable JSON shape, alone and through the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from cdc_generator import report
from cdc_generator.errors import Problem
from cdc_generator.output import Changes
from tests.helpers import REPO, copy_repo_config, run_cli

LOCATED = Problem("services/directory.yaml", 7, 9, "source.tables[0].primary_key",
                  "expected a string or a list", hint="write primary_key: id")
UNLOCATED = Problem("server-groups.yaml", message="the file is empty")
PROBLEM_KEYS = ["file", "line", "col", "key_path", "message", "hint", "severity"]


def test_text_located_with_key_path_and_hint() -> None:
    assert report.problems_text([LOCATED]) == (
        "services/directory.yaml:7:9: source.tables[0].primary_key: expected a string or a list\n"
        "  hint: write primary_key: id\n"
        "1 problem(s) found\n"
    )


def test_text_without_position_key_or_hint() -> None:
    no_col = Problem("services/a.yaml", 3, 0, "", "bad")
    assert report.problems_text([UNLOCATED, no_col]) == (
        "server-groups.yaml: the file is empty\n"
        "services/a.yaml:3:1: bad\n"  # an unknown column is shown as 1, as editors expect
        "2 problem(s) found\n"
    )


def test_no_problems_render_as_nothing() -> None:
    assert report.problems_text([]) == ""
    assert report.problems_github([]) == ""


def test_github_annotation() -> None:
    assert report.problems_github([LOCATED]) == (
        "::error file=services/directory.yaml,line=7,col=9,title=cdc-generator::"
        "source.tables[0].primary_key: expected a string or a list (hint: write primary_key: id)\n"
    )


def test_github_annotation_without_position() -> None:
    assert report.problems_github([UNLOCATED]) == (
        "::error file=server-groups.yaml,title=cdc-generator::the file is empty\n"
    )


def test_github_escaping() -> None:
    tricky = Problem("services/a,b:c%.yaml", 2, 3, "k", "50% done\r\nnext: line, here")
    line = report.problems_github([tricky])
    assert line == (
        "::error file=services/a%2Cb%3Ac%25.yaml,line=2,col=3,title=cdc-generator::"
        "k: 50%25 done%0D%0Anext: line, here\n"
    )
    assert line.count("\n") == 1, "one annotation is one line"


def test_github_without_a_file() -> None:
    # internal failures without a file must not point an annotation at a file named "-"
    line = report.problems_github([Problem("-", message="cannot read generated/")])
    assert line == "::error title=cdc-generator::cannot read generated/\n"


def test_github_severity() -> None:
    warning = Problem("services/a.yaml", 1, 1, "", "unused", severity="warning")
    assert report.problems_github([warning]).startswith("::warning file=services/a.yaml,")


ENVELOPE_KEYS = ["version", "command", "ok", "exit_code", "problems", "result"]


def test_json_envelope() -> None:
    changes = Changes(added=["pipelines/a/prod/x.yaml"], changed=["pipelines/a/prod/y.yaml"],
                      removed=["pipelines/b/prod/z.yaml"], unchanged=["pipelines/a/prod/k.yaml"])
    stale = report.Report("generate --check", 1, (LOCATED,),
                          result={"files": report.changes_payload(changes), "diff": "--- a"},
                          output="--- a", messages=("out of date",))
    rendered = report.render(stale, "json")
    assert rendered.err == "", "json: nothing but the document"
    data = json.loads(rendered.out)
    assert list(data) == ENVELOPE_KEYS
    assert (data["version"], data["command"], data["ok"], data["exit_code"]) == (
        1, "generate --check", False, 1)
    assert data["problems"] == [{
        "file": "services/directory.yaml", "line": 7, "col": 9,
        "key_path": "source.tables[0].primary_key", "message": "expected a string or a list",
        "hint": "write primary_key: id", "severity": "error",
    }]
    assert list(data["problems"][0]) == PROBLEM_KEYS
    # paths relative to the repository root; unchanged files are not listed
    assert data["result"] == {"files": {
        "added": ["generated/pipelines/a/prod/x.yaml"],
        "changed": ["generated/pipelines/a/prod/y.yaml"],
        "removed": ["generated/pipelines/b/prod/z.yaml"],
    }, "diff": "--- a"}


def test_json_of_a_failure_has_no_result() -> None:
    data = json.loads(report.render(report.Report("validate", 1, (LOCATED,)), "json").out)
    assert data == {"version": 1, "command": "validate", "ok": False, "exit_code": 1,
                    "problems": [asdict(LOCATED)], "result": None}


def test_text_puts_output_on_stdout_and_people_on_stderr() -> None:
    done = report.Report("generate --check", 1, (LOCATED,), result={"x": 1},
                         output="--- a/f\n", messages=("out of date",))
    rendered = report.render(done, "text")
    assert rendered.out == "--- a/f\n"
    assert rendered.err == report.problems_text([LOCATED]) + "out of date\n"
    github = report.render(done, "github")
    assert github.out == report.problems_github([LOCATED]) + "--- a/f\n"
    assert github.err == rendered.err


def test_a_problem_without_a_file_reads_like_a_usage_error() -> None:
    usage = Problem("-", message="unknown service 'x'", hint="known: a, b")
    assert report.problems_text([usage], "diff") == (
        "cdc-generator diff: error: unknown service 'x'\n  hint: known: a, b\n")


def test_text_paths_follow_root_json_paths_do_not(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    done = report.Report("validate", 1, (LOCATED, UNLOCATED))
    text = report.render(done, "text", root=Path("sub"))
    assert text.err.startswith("sub/services/directory.yaml:7:9: ")
    data = json.loads(report.render(done, "json", root=Path("sub")).out)
    assert data["problems"][0]["file"] == "services/directory.yaml"


def test_stale_problems_name_every_kind() -> None:
    changes = Changes(added=["p/s/e/new.yaml"], changed=["p/s/e/old.yaml"],
                      removed=["p/s/e/gone.yaml"])
    found = {(p.file, p.message.split(":")[0]) for p in report.stale_problems(changes)}
    assert found == {("generated/p/s/e/old.yaml", "stale"),
                     ("generated/p/s/e/new.yaml", "missing"),
                     ("generated/p/s/e/gone.yaml", "orphaned")}
    assert all(p.hint for p in report.stale_problems(changes))


# --- through the CLI -------------------------------------------------------------------------

@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    assert run_cli("generate", "--root", str(root)).returncode == 0
    return root


@pytest.fixture
def broken(repo: Path) -> Path:
    groups = repo / "server-groups.yaml"
    text = groups.read_text()
    assert "    sink_tasks_max: 2\n" in text
    groups.write_text(text.replace("    sink_tasks_max: 2\n", "    sink_tasks_max: two\n"))
    return repo


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    return out | extra


def bad_line(root: Path) -> int:
    lines = (root / "server-groups.yaml").read_text().splitlines()
    return lines.index("    sink_tasks_max: two") + 1


def test_cli_text(broken: Path) -> None:
    done = run_cli("validate", "--root", str(broken), env=env())
    assert done.returncode == 1
    assert done.stdout == ""
    assert (f"server-groups.yaml:{bad_line(broken)}:5: environments.prod.sink_tasks_max: "
            in done.stderr)
    assert done.stderr.endswith("problem(s) found\n")


def test_cli_github_is_chosen_under_actions(broken: Path) -> None:
    # Actions runs in the workspace root: annotation paths are relative to it
    done = run_cli("validate", env=env(GITHUB_ACTIONS="true"), cwd=broken)
    assert done.returncode == 1
    assert done.stdout.startswith(
        f"::error file=server-groups.yaml,line={bad_line(broken)},col=5,title=cdc-generator::"
        "environments.prod.sink_tasks_max: ")
    # the log stays readable for humans too
    assert "server-groups.yaml:" in done.stderr
    # an explicit --format wins over the environment
    text = run_cli("validate", "--root", str(broken), "--format", "text",
                   env=env(GITHUB_ACTIONS="true"))
    assert text.stdout == ""


def test_github_paths_follow_root_from_the_working_directory(broken: Path) -> None:
    """A config in a subfolder (`--root deploy/cdc`) is annotated at its real path."""
    done = run_cli("validate", "--root", broken.name, "--format", "github", env=env(),
                   cwd=broken.parent)
    assert done.stdout.startswith(f"::error file={broken.name}/server-groups.yaml,line=")
    assert f"{broken.name}/server-groups.yaml:" in done.stderr
    as_json = run_cli("validate", "--root", broken.name, "--format", "json", env=env(),
                      cwd=broken.parent)
    assert json.loads(as_json.stdout)["problems"][0]["file"] == "server-groups.yaml"


def json_of(done: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_cli_json_invalid(broken: Path) -> None:
    done = run_cli("validate", "--root", str(broken), "--format", "json", env=env())
    assert done.returncode == 1
    data = json_of(done)
    assert (data["version"], data["command"], data["ok"]) == (1, "validate", False)
    [problem] = [p for p in data["problems"] if p["key_path"] == "environments.prod.sink_tasks_max"]
    assert list(problem) == PROBLEM_KEYS
    assert (problem["file"], problem["line"], problem["col"]) == (
        "server-groups.yaml", bad_line(broken), 5)


def test_cli_json_valid(repo: Path) -> None:
    done = run_cli("validate", "--root", str(repo), "--format", "json", env=env())
    assert done.returncode == 0
    # the files validate rendered are those this repository has committed
    committed = sum(1 for f in (REPO / "generated").rglob("*") if f.is_file())
    assert json_of(done) == {"version": 1, "command": "validate", "ok": True, "exit_code": 0,
                             "problems": [], "result": {"pipelines": 8, "files": committed}}


def test_cli_json_check(repo: Path) -> None:
    fresh = run_cli("generate", "--check", "--root", str(repo), "--format", "json", env=env())
    assert fresh.returncode == 0
    data = json_of(fresh)
    assert data["ok"] is True
    assert data["result"] == {"files": {"added": [], "changed": [], "removed": []}, "diff": ""}

    (repo / "generated/pipelines/directory/prod/sink-directory.yaml").unlink()
    stale = run_cli("generate", "--check", "--root", str(repo), "--format", "json", env=env())
    assert stale.returncode == 1
    data = json_of(stale)
    assert data["ok"] is False
    assert data["result"]["files"]["added"] == [
        "generated/pipelines/directory/prod/sink-directory.yaml"]
    assert [p["message"].split(":")[0] for p in data["problems"]] == ["missing"]
    assert "+++ b/generated/pipelines/directory/prod/sink-directory.yaml" in data["result"]["diff"]


def test_cli_github_check(repo: Path) -> None:
    (repo / "generated/pipelines/directory/prod/sink-directory.yaml").write_text("edited\n")
    done = run_cli("generate", "--check", env=env(GITHUB_ACTIONS="true"), cwd=repo)
    assert done.returncode == 1
    assert done.stdout.startswith(
        "::error file=generated/pipelines/directory/prod/sink-directory.yaml,"
        "title=cdc-generator::stale: differs from the config")
    assert "--- a/generated/pipelines/directory/prod/sink-directory.yaml" in done.stdout
