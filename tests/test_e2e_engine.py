"""The e2e engine's artifacts: read from what users deploy, pinned, and checked.

No network here: the parsing of the deployed KafkaConnect and the checksum checks run
on the repository's files and on files made in the test.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from tests.e2e.engine import artifacts

DEPLOYED = yaml.safe_load(artifacts.KAFKA_CONNECT.read_text())


def test_the_plugins_are_exactly_the_deployed_archives() -> None:
    found = artifacts.deployed_plugins()
    deployed = [(p["name"], a["url"], a["sha512sum"])
                for p in DEPLOYED["spec"]["build"]["plugins"] for a in p["artifacts"]]
    assert [(a.plugin, a.url, a.sha512) for a in found] == deployed
    assert {a.plugin for a in found} == {"debezium-connector-postgres", "debezium-connector-jdbc"}
    # one Debezium version for both, named in the image tag too
    versions = {a.version for a in found}
    assert len(versions) == 1, versions
    (version,) = versions
    assert version.removesuffix(".Final") in DEPLOYED["spec"]["build"]["output"]["image"]
    for a in found:
        assert a.coordinates == f"io.debezium:{a.plugin}:{version}:tar.gz:plugin"
        assert a.url == (f"{artifacts.MAVEN_CENTRAL}io/debezium/{a.plugin}/{version}/"
                         f"{a.plugin}-{version}-plugin.tar.gz")


def _kafka_connect(tmp_path: Path, artifact: dict[str, str]) -> Path:
    doc = {"spec": {"build": {"plugins": [{"name": "p", "artifacts": [artifact]}]}}}
    path = tmp_path / "kafka-connect.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(("artifact", "message"), [
    ({"type": "tgz", "url": "https://example.com/p-1.0-plugin.tar.gz", "sha512sum": "0" * 128},
     "is not a Maven Central artifact URL"),
    ({"type": "tgz", "url": f"{artifacts.MAVEN_CENTRAL}io/x/p/1.0/p-1.0-plugin.tar.gz"},
     "has no sha512sum"),
    ({"type": "tgz", "url": f"{artifacts.MAVEN_CENTRAL}io/x/p/1.0/p-1.0-plugin.tar.gz",
      "sha512sum": "abc"}, "has no sha512sum"),
])
def test_an_unpinned_or_foreign_plugin_is_refused(tmp_path: Path, artifact: dict[str, str],
                                                  message: str) -> None:
    with pytest.raises(artifacts.EngineError, match=re.escape(message)):
        artifacts.deployed_plugins(_kafka_connect(tmp_path, artifact))


def test_coordinates_follow_the_url(tmp_path: Path) -> None:
    url = f"{artifacts.MAVEN_CENTRAL}org/example/my-plugin/2.1/my-plugin-2.1.jar"
    (found,) = artifacts.deployed_plugins(_kafka_connect(
        tmp_path, {"type": "jar", "url": url, "sha512sum": "f" * 128}))
    assert found.coordinates == "org.example:my-plugin:2.1:jar"
    assert found.file_name == "my-plugin-2.1.jar"


def test_every_engine_jar_is_pinned() -> None:
    sums = artifacts.read_sums()
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in sums.values())
    names = set(sums)
    kafka = re.search(r"<kafka.version>([^<]+)</kafka.version>", artifacts.ENGINE_POM.read_text())
    assert kafka is not None
    for jar in ("kafka_2.13", "connect-runtime", "connect-json", "connect-transforms"):
        assert f"{jar}-{kafka[1]}.jar" in names


def test_a_changed_missing_or_extra_jar_is_found(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "a.jar").write_bytes(b"a")
    (libs / "b.jar").write_bytes(b"b")
    sums = {"a.jar": hashlib.sha256(b"a").hexdigest(),
            "b.jar": hashlib.sha256(b"b").hexdigest()}
    assert artifacts.check_jars(libs, sums) == []
    (libs / "b.jar").write_bytes(b"tampered")
    (libs / "c.jar").write_bytes(b"c")
    (libs / "a.jar").unlink()
    assert artifacts.check_jars(libs, sums) == [
        "missing a.jar", "not pinned: c.jar", "checksum differs: b.jar"]


def test_an_unfetched_cache_names_what_to_run(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(artifacts.EngineError, match=r"run `python scripts/e2e_deps.py`"):
        artifacts.located()
