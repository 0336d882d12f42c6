"""Fetching Kafka and Apicurio from Maven Central with Maven, once, into a cache folder."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from exchange.errors import ExchangeError

_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>exchange.devplatform</groupId>
  <artifactId>kafka-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <!-- Kafka's POM brings no logging backend: log4j2 is added for the broker's own logs. -->
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""
_DONE = ".complete"
Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


class FetchError(ExchangeError):
    pass


def require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FetchError(
            f"{name} is not installed (needed to {purpose}); install it, e.g. "
            f"`apt-get install {'maven' if name == 'mvn' else 'openjdk-17-jre-headless'}`",
            code="MISSING_TOOL",
        )
    return path


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    text = out.stderr + out.stdout
    for token in text.replace('"', " ").split():
        head = token.split(".")[0]
        if head.isdigit() and token[0].isdigit():
            return int(head) if head != "1" else int(token.split(".")[1])
    raise FetchError(f"cannot tell the Java version from: {text.strip()[:200]}")


def fetch_kafka(
    cache: Path, kafka_version: str, log4j_version: str, progress: Progress = _quiet
) -> Path:
    """The folder of Kafka's classpath (every jar), fetched the first time only."""
    home = cache / f"kafka-{kafka_version}"
    libs = home / "libs"
    if (home / _DONE).exists():
        return libs
    progress(f"fetching Apache Kafka {kafka_version} from Maven Central into {home}")
    home.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(libs, ignore_errors=True)
    (home / "pom.xml").write_text(_KAFKA_POM.format(kafka=kafka_version, log4j=log4j_version))
    _mvn(
        ["dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        cwd=home,
        what=f"Apache Kafka {kafka_version}",
    )
    (home / _DONE).write_text(kafka_version)
    return libs


def fetch_apicurio(cache: Path, version: str, progress: Progress = _quiet) -> Path:
    """The registry's runnable jar, fetched and unpacked the first time only."""
    home = cache / f"apicurio-registry-{version}"
    if not (home / _DONE).exists():
        progress(f"fetching Apicurio Registry {version} from Maven Central into {home}")
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
        _mvn(
            ["dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={home / 'dist'}"],
            cwd=home,
            what=f"Apicurio Registry {version}",
        )
        archive = next((home / "dist").glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(home / "app", filter="data")
        archive.unlink()
        (home / _DONE).write_text(version)
    return _runner_jar(home / "app")


def _runner_jar(app: Path) -> Path:
    # 3.0.x ships <name>-runner.jar; later versions the Quarkus fast-jar quarkus-run.jar.
    for pattern in ("quarkus-run.jar", "*-runner.jar"):
        found = sorted(app.glob(pattern))
        if found:
            return found[0]
    raise FetchError(f"no runnable jar in {app}; delete the folder to fetch it again")


def _mvn(goals: list[str], cwd: Path, what: str) -> None:
    mvn = require_tool("mvn", f"fetch {what} from Maven Central")
    cmd = [mvn, "-B", "-q", *goals]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise FetchError(
            f"fetching {what} with Maven failed (exit {proc.returncode}):\n{tail}",
            code="FETCH_FAILED",
        )
