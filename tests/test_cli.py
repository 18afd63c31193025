"""The output layer through the CLI: every command takes the same --format, says
the same envelope in JSON, and maps errors to the same exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdc_generator import cli, procs
from tests.helpers import copy_repo_config, run_cli

ENVELOPE_KEYS = ["version", "command", "ok", "exit_code", "problems", "result"]


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_takes_the_same_formats(command: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--format", "yaml"])
    assert exited.value.code == 2
    assert "invalid choice: 'yaml' (choose from 'text', 'json', 'github')" in (
        capsys.readouterr().err)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo_config(tmp_path / "repo")


def _json(root: Path, *argv: str) -> tuple[int, dict[str, Any], str]:
    done = run_cli(*argv, "--root", str(root), "--format", "json")
    data: dict[str, Any] = json.loads(done.stdout)
    assert list(data) == ENVELOPE_KEYS, done.stdout
    assert data["version"] == 1
    assert data["exit_code"] == done.returncode
    assert data["ok"] is (done.returncode == 0)
    return done.returncode, data, done.stderr


# one run of each command that needs no database, and what its result holds
OFFLINE_RUNS = [
    (["generate"], "generate", 0, {"files", "unchanged", "pipelines", "jobs", "seconds"}),
    (["generate", "--check"], "generate --check", 0, {"files", "diff"}),
    (["diff"], "diff", 0, {"files", "diff"}),
    (["validate"], "validate", 0, {"pipelines", "files"}),
    (["manage-service", "--service", "directory", "--add-table", "audit_log", "--offline",
      "--primary-key", "id"], "manage-service --add-table", 0,
     {"file", "action", "table", "schema", "entry", "notes"}),
]


@pytest.mark.parametrize(("argv", "label", "code", "keys"), OFFLINE_RUNS,
                         ids=[" ".join(run[0][:2]) for run in OFFLINE_RUNS])
def test_one_envelope_for_every_command(repo: Path, argv: list[str], label: str, code: int,
                                        keys: set[str]) -> None:
    returncode, data, err = _json(repo, *argv)
    assert (returncode, data["command"], data["problems"]) == (code, label, [])
    assert set(data["result"]) == keys
    assert err == "", "json: nothing on stderr"


def test_a_usage_error_is_an_envelope_with_exit_code_2(repo: Path) -> None:
    returncode, data, _err = _json(repo, "dev-db", "--environment", "nosuch")
    assert returncode == 2
    assert data["command"] == "dev-db"
    assert data["result"] is None
    [problem] = data["problems"]
    assert problem["file"] == "-"
    assert problem["message"] == "unknown environment 'nosuch'; known: nonprod, prod"


def test_a_connection_error_is_an_envelope_with_exit_code_1(repo: Path) -> None:
    dsn = f"host=127.0.0.1 port={procs.free_port()} user=x password=s3cret connect_timeout=2"
    returncode, data, _err = _json(repo, "preflight", "--service", "directory",
                                   "--environment", "nonprod", "--dsn", dsn)
    assert (returncode, data["command"], data["result"]) == (1, "preflight", None)
    [problem] = data["problems"]
    assert problem["file"] == "-"
    assert "s3cret" not in json.dumps(data)


def test_a_config_error_is_located_in_every_format(repo: Path) -> None:
    service = repo / "services" / "directory.yaml"
    service.write_text(service.read_text().replace("primary_key: code", "primary_key: {}"))
    returncode, data, _err = _json(repo, "diff")
    assert returncode == 1
    assert [(p["file"], p["key_path"]) for p in data["problems"]] == [
        ("services/directory.yaml", "source.tables[2].primary_key")]
    text = run_cli("diff", "--root", repo.name, "--format", "text", cwd=repo.parent)
    assert text.stdout == ""
    assert "repo/services/directory.yaml:16:" in text.stderr
    github = run_cli("diff", "--root", repo.name, "--format", "github", cwd=repo.parent)
    assert github.stdout.startswith("::error file=repo/services/directory.yaml,line=16,")


def test_a_bug_is_exit_code_3_with_its_traceback(monkeypatch: pytest.MonkeyPatch,
                                                 repo: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from cdc_generator import generate

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(generate, "check", broken)
    assert cli.main(["diff", "--root", str(repo), "--format", "json"]) == 3
    out, err = capsys.readouterr()
    assert "ZeroDivisionError: a bug" in err, "the trace, for the bug report"
    data = json.loads(out)
    assert data["exit_code"] == 3
    assert data["problems"][0]["message"].startswith("internal error (this is a bug")


def test_readme_shows_the_envelope_as_it_is() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```json\n", 1)[1].split("```", 1)[0]
    data = json.loads(example)
    assert list(data) == ENVELOPE_KEYS
    assert list(data["problems"][0]) == ["file", "line", "col", "key_path", "message", "hint",
                                         "severity"]


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_option_says_what_it_does(command: str) -> None:
    import argparse

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [a for a in sub.choices[command]._actions if a.option_strings]
    assert options
    assert [a.option_strings for a in options if not a.help] == []


@pytest.mark.parametrize("command", [["validate"], ["plan", "--environment", "prod"],
                                     ["apply", "--environment", "prod"]])
@pytest.mark.parametrize("url", ["URL", "connect:8083", "ftp://connect", "http://:8083",
                                 "http://connect:port", "http://u:hunter2@connect:x"])
def test_a_connect_url_that_is_not_one_is_a_usage_error(repo: Path, command: list[str],
                                                        url: str) -> None:
    done = run_cli(*command, "--connect-url", url, "--root", str(repo))
    assert done.returncode == 2, done.stderr
    assert "is not a Kafka Connect REST URL: give http://HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr
