"""Fetch, check and unpack the engine the end-to-end tests run, from Maven Central.

Everything comes through ordinary Maven calls, as a user's CI would fetch it:

* the Apache Kafka broker (KRaft) and the Kafka Connect distributed worker: the jars
  of ``tests/e2e/engine/pom.xml`` (``dependency:copy-dependencies``), each checked
  against ``tests/e2e/engine/engine.sha256``;
* the Debezium connector plugins: exactly the archives that the KafkaConnect users
  deploy names in ``build.plugins`` (``deploy/connect/base/kafka-connect.yaml``),
  fetched by their Maven coordinates (``dependency:copy``), checked against the
  ``sha512sum`` that file gives each (the same check Strimzi's build makes), and
  unpacked into one plugin directory each.

The result is cached in ``.e2e-engine/`` (git-ignored; ``$CDC_E2E_ENGINE_DIR``
overrides): a second run checks the checksums and calls no Maven. Maven runs with
strict checksums (``-C``), so a download that does not match the repository's own
checksum fails too.

The command line is ``scripts/e2e_deps.py``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
ENGINE_POM = Path(__file__).with_name("pom.xml")
ENGINE_SUMS = ENGINE_POM.with_name("engine.sha256")
KAFKA_CONNECT = REPO_ROOT / "deploy" / "connect" / "base" / "kafka-connect.yaml"
CACHE_ENV = "CDC_E2E_ENGINE_DIR"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"

#: a Maven Central URL: <group path>/<artifact>/<version>/<artifact>-<version>[-<classifier>].<ext>
_CENTRAL_URL = re.compile(
    re.escape(MAVEN_CENTRAL)
    + r"(?P<group>.+)/(?P<artifact>[^/]+)/(?P<version>[^/]+)/"
    r"(?P=artifact)-(?P=version)(?:-(?P<classifier>[^./]+))?\.(?P<ext>tar\.gz|tgz|zip|jar)\Z"
)


class EngineError(RuntimeError):
    """A piece of the engine could not be fetched, checked or unpacked."""


@dataclass(frozen=True)
class PluginArtifact:
    """One ``build.plugins[].artifacts[]`` entry of the deployed KafkaConnect."""

    plugin: str
    url: str
    sha512: str
    group: str
    artifact: str
    version: str
    ext: str
    classifier: str | None

    @property
    def coordinates(self) -> str:
        """``group:artifact:version:type[:classifier]``, as ``dependency:copy`` takes it."""
        ext = "tar.gz" if self.ext == "tgz" else self.ext
        tail = f":{self.classifier}" if self.classifier else ""
        return f"{self.group}:{self.artifact}:{self.version}:{ext}{tail}"

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[1]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".e2e-engine")


def deployed_plugins(path: Path = KAFKA_CONNECT) -> list[PluginArtifact]:
    """The plugin archives the deployed KafkaConnect builds its image with."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    plugins = ((doc.get("spec") or {}).get("build") or {}).get("plugins") or []
    found: list[PluginArtifact] = []
    for plugin in plugins:
        for artifact in plugin.get("artifacts") or []:
            url = str(artifact.get("url", ""))
            match = _CENTRAL_URL.fullmatch(url)
            if match is None:
                raise EngineError(f"{path}: plugin {plugin.get('name')!r}: {url!r} is not a "
                                  f"Maven Central artifact URL ({MAVEN_CENTRAL}...)")
            sha512 = str(artifact.get("sha512sum", ""))
            if not re.fullmatch(r"[0-9a-f]{128}", sha512):
                raise EngineError(f"{path}: plugin {plugin.get('name')!r}: {url} has no "
                                  "sha512sum (128 hex digits): pin every artifact")
            found.append(PluginArtifact(
                plugin=str(plugin["name"]), url=url, sha512=sha512,
                group=match["group"].replace("/", "."), artifact=match["artifact"],
                version=match["version"], ext=match["ext"], classifier=match["classifier"]))
    if not found:
        raise EngineError(f"{path}: spec.build.plugins lists no artifacts")
    return found


# --------------------------------------------------------------------------- checks


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(path: Path = ENGINE_SUMS) -> dict[str, str]:
    """``sha256sum`` format: ``<hex>  <file name>`` per line."""
    sums: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.strip()] = digest
    return sums


def check_jars(libs: Path, sums: dict[str, str]) -> list[str]:
    """What is wrong with ``libs`` against ``sums``: missing, extra or changed jars."""
    have = {p.name for p in libs.glob("*.jar")}
    wrong = [f"missing {name}" for name in sorted(set(sums) - have)]
    wrong += [f"not pinned: {name}" for name in sorted(have - set(sums))]
    wrong += [f"checksum differs: {name}" for name in sorted(have & set(sums))
              if file_digest(libs / name, "sha256") != sums[name]]
    return wrong


# --------------------------------------------------------------------------- maven


def _mvn(args: Iterable[str], what: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EngineError("`mvn` is not on PATH: install Apache Maven (3.8+) and Java 17+")
    argv = [mvn, "-B", "-q", "-C", *args]
    print(f"e2e-deps: fetching {what} (mvn {' '.join(args)})", file=sys.stderr, flush=True)
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise EngineError(f"Maven could not fetch {what}:\n{tail}")


def ensure_engine(cache: Path) -> Path:
    """``<cache>/engine/libs``: the broker and worker jars, all pinned and checked."""
    sums = read_sums()
    libs = cache / "engine" / "libs"
    if libs.is_dir() and not check_jars(libs, sums):
        return libs
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=cache))
    try:
        _mvn([f"-f={ENGINE_POM}", f"{DEPENDENCY_PLUGIN}:copy-dependencies",
              "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
             f"the Kafka broker and Connect worker of {ENGINE_POM.relative_to(REPO_ROOT)}")
        wrong = check_jars(staging, sums)
        if wrong:
            raise EngineError(
                f"the engine jars do not match {ENGINE_SUMS.relative_to(REPO_ROOT)}: "
                + "; ".join(wrong)
                + " (after a deliberate version change: scripts/e2e_deps.py --update-checksums)")
        if libs.exists():
            shutil.rmtree(libs)
        libs.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(libs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return libs


def ensure_plugin(cache: Path, artifact: PluginArtifact) -> Path:
    """``<cache>/plugins/<plugin>``: the archive fetched, checked and unpacked."""
    downloads = cache / "downloads"
    archive = downloads / artifact.file_name
    target = cache / "plugins" / artifact.plugin
    stamp = target / ".sha512"
    if stamp.is_file() and stamp.read_text().strip() == artifact.sha512:
        return target
    if not (archive.is_file() and file_digest(archive, "sha512") == artifact.sha512):
        downloads.mkdir(parents=True, exist_ok=True)
        _mvn([f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={artifact.coordinates}",
              f"-DoutputDirectory={downloads}", "-Dmdep.overWriteReleases=true"],
             f"plugin {artifact.plugin} ({artifact.coordinates})")
        got = file_digest(archive, "sha512")
        if got != artifact.sha512:
            archive.unlink()
            raise EngineError(
                f"{artifact.coordinates}: sha512 {got} differs from the sha512sum in "
                f"{KAFKA_CONNECT.relative_to(REPO_ROOT)} ({artifact.sha512})")
    staging = Path(tempfile.mkdtemp(prefix="plugin-", dir=cache))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
        # the archives hold one top-level folder named after the artifact
        tops = list(staging.iterdir())
        root = tops[0] if len(tops) == 1 and tops[0].is_dir() else staging
        if not any(root.glob("*.jar")):
            raise EngineError(f"{archive.name}: no jars at the top of the archive")
        (root / ".sha512").write_text(artifact.sha512 + "\n")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        root.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def locate_java() -> Path:
    """``$CDC_E2E_JAVA``, else ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    override = os.environ.get("CDC_E2E_JAVA")
    if override:
        return Path(override)
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise EngineError("no `java` on PATH (Kafka needs Java 17+); set $CDC_E2E_JAVA")
    return Path(found)


@dataclass(frozen=True)
class Engine:
    """Where the fetched engine lies."""

    libs: Path  # broker and worker class path
    plugin_path: Path  # Connect's plugin.path: one folder per Debezium plugin
    plugins: tuple[Path, ...]
    java: Path

    def as_dict(self) -> dict[str, str]:
        return {"libs": str(self.libs), "plugin_path": str(self.plugin_path),
                "plugins": ",".join(p.name for p in self.plugins), "java": str(self.java)}


def ensure(cache: Path | None = None) -> Engine:
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    libs = ensure_engine(cache)
    plugins = tuple(ensure_plugin(cache, a) for a in deployed_plugins())
    return Engine(libs, cache / "plugins", plugins, locate_java())


def located(cache: Path | None = None) -> Engine:
    """The engine as it is in the cache, checked, without fetching anything."""
    cache = cache or cache_dir()
    libs = cache / "engine" / "libs"
    wrong = check_jars(libs, read_sums()) if libs.is_dir() else ["not fetched"]
    if wrong:
        raise EngineError(f"engine jars in {libs}: {'; '.join(wrong[:5])}; "
                          "run `python scripts/e2e_deps.py`")
    plugins = []
    for artifact in deployed_plugins():
        target = cache / "plugins" / artifact.plugin
        stamp = target / ".sha512"
        if not (stamp.is_file() and stamp.read_text().strip() == artifact.sha512):
            raise EngineError(f"plugin {artifact.plugin} ({artifact.coordinates}) is not "
                              f"fetched at the pinned checksum in {target}; "
                              "run `python scripts/e2e_deps.py`")
        plugins.append(target)
    return Engine(libs, cache / "plugins", tuple(plugins), locate_java())


def update_checksums(cache: Path | None = None) -> None:
    """Re-pin engine.sha256 from a fresh copy (after a deliberate version change)."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="pin-", dir=cache))
    try:
        _mvn([f"-f={ENGINE_POM}", f"{DEPENDENCY_PLUGIN}:copy-dependencies",
              "-DincludeScope=runtime", f"-DoutputDirectory={staging}"], "the engine jars")
        lines = [f"{file_digest(jar, 'sha256')}  {jar.name}"
                 for jar in sorted(staging.glob("*.jar"))]
        ENGINE_SUMS.write_text(
            "# sha256 of every jar tests/e2e/engine/pom.xml resolves to; written by\n"
            "# `python scripts/e2e_deps.py --update-checksums`, checked on every fetch\n"
            + "\n".join(lines) + "\n", encoding="utf-8")
        print(f"e2e-deps: pinned {len(lines)} jars in {ENGINE_SUMS}", file=sys.stderr)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
