"""Which Kafka runs: the versions pinned in ``pom.xml`` and their jars in a per-version cache.

``pom.xml`` is the single source of truth: ``kafka.version`` is the default (3.9.2) and
``kafka4.version`` the release behind ``version="4"``. Maven resolves a version's jars once
into ``${EOFLOW_KAFKA_CACHE:-~/.cache/eoflow}/kafka-<version>/libs``; later starts are offline.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tools.kafka._errors import KafkaError
from tools.kafka._process import tail_text

POM = Path(__file__).resolve().parent / "pom.xml"
VERSION_ENV = "EOFLOW_KAFKA_VERSION"


def _pom_property(name: str) -> str:
    m = re.search(rf"<{re.escape(name)}>\s*([^<\s]+)\s*</{re.escape(name)}>", POM.read_text())
    if not m:
        raise KafkaError(f"no <{name}> in {POM}")
    return m.group(1)


#: The default version (what tests, demos and ``make kafka-libs`` use).
KAFKA_VERSION = _pom_property("kafka.version")
#: The Kafka 4 release behind ``version="4"``.
KAFKA4_VERSION = _pom_property("kafka4.version")
VERSION_ALIASES = {"3": KAFKA_VERSION, "4": KAFKA4_VERSION}


def resolve_version(version: str | None = None) -> str:
    """``version``, else ``$EOFLOW_KAFKA_VERSION``, else :data:`KAFKA_VERSION`.

    "3" and "4" are aliases of the pinned 3.x and 4.x releases.
    """
    v = (version or os.environ.get(VERSION_ENV) or KAFKA_VERSION).strip()
    v = VERSION_ALIASES.get(v, v)
    if not re.fullmatch(r"[34]\.\d+\.\d+", v):
        raise KafkaError(f"unsupported Kafka version {v!r} (want 3.x.y or 4.x.y, or '3' / '4')")
    return v


def major_version(version: str) -> int:
    return int(version.split(".", 1)[0])


def cache_root() -> Path:
    return Path(os.environ.get("EOFLOW_KAFKA_CACHE") or Path.home() / ".cache" / "eoflow")


def libs_dir(version: str | None = None) -> Path:
    return cache_root() / f"kafka-{resolve_version(version)}" / "libs"


def ensure_libs(version: str | None = None, *, quiet: bool = False) -> Path:
    """The directory with the broker jars of ``version``; runs Maven only if it is incomplete.

    A marker file (a hash of the pom and the version) is written after a successful copy, so
    a second call is a file read: no Maven, no network. Concurrent callers serialise on a
    lock file.
    """
    version = resolve_version(version)
    libs = libs_dir(version)
    marker = libs.parent / ".complete"
    digest = hashlib.sha256(POM.read_bytes() + b"\0" + version.encode()).hexdigest()

    def complete() -> bool:
        return marker.is_file() and marker.read_text().strip() == digest and libs.is_dir()

    if complete():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete():
            return libs
        if not quiet:
            print(f"eoflow: downloading Apache Kafka {version} jars into {libs} (once)",
                  file=sys.stderr)  # fmt: skip
        tmp = libs.parent / f"libs.tmp-{os.getpid()}"
        _download(version, tmp)
        if _jar_set(tmp) == _jar_set(libs):
            # Same jars (the pom changed elsewhere): keep the directory running brokers use.
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            shutil.rmtree(libs, ignore_errors=True)
            tmp.rename(libs)
        marker.write_text(digest + "\n")
    return libs


def _download(version: str, into: Path) -> None:
    """``mvn dependency:copy-dependencies`` of ``version`` into the fresh directory ``into``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaError("Maven (mvn) is needed once to download the Kafka jars; not on PATH")
    shutil.rmtree(into, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM),
        f"-Dkafka.version={version}", f"-Dkafka.line={major_version(version)}",
        "dependency:copy-dependencies", f"-DoutputDirectory={into}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (into / f"kafka_2.13-{version}.jar").is_file():
        shutil.rmtree(into, ignore_errors=True)
        raise KafkaError(
            f"mvn failed (rc={proc.returncode}): {' '.join(cmd)}\n"
            + tail_text(proc.stdout + proc.stderr, 40)
        )


def _jar_set(directory: Path) -> set[tuple[str, int]]:
    if not directory.is_dir():
        return set()
    return {(p.name, p.stat().st_size) for p in directory.iterdir() if p.is_file()}


def find_java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaError("java not found (install Java 17+ or set JAVA_HOME)")
    return java
