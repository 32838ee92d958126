"""Kafka Streams in the bench: build the Maven project bench/kstreams/ when its sources
change, and the java command line that runs it.

    python -m bench.kstreams_build          # build if needed (make bench does this first)

The build is cached in bench/kstreams/target. It is redone when the digest of pom.xml and
src/ differs from target/build.sha (written last, so a failed or interrupted build is
redone), or when a jar of the classpath is gone (a cleaned ~/.m2). A cold build downloads
kafka-streams, its dependencies (rocksdbjni is most of the ~120 MB) and the Maven plugins
from Maven Central into ~/.m2.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent / "kstreams"
TARGET = PROJECT / "target"
ARGFILE = TARGET / "java.args"  # -cp <classes and jars>, read by `java @file`
CLASSPATH = TARGET / "classpath.txt"  # written by the pom's dependency:build-classpath
STAMP = TARGET / "build.sha"
MAIN = "io.eoflow.bench.KStreamsBench"


def command(*, cache: bool) -> list[str]:
    """The system's command line; valid once :func:`ensure_built` has run."""
    return ["java", f"@{ARGFILE}", MAIN, "--cache=" + ("default" if cache else "off")]


def source_digest() -> str:
    h = hashlib.sha256()
    for path in [PROJECT / "pom.xml", *sorted((PROJECT / "src").rglob("*"))]:
        if path.is_file():
            h.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _jars() -> list[str]:
    return [j for j in CLASSPATH.read_text().strip().split(":") if j]


def is_built() -> bool:
    if not (STAMP.exists() and ARGFILE.exists() and CLASSPATH.exists()):
        return False
    if STAMP.read_text().strip() != source_digest():
        return False
    return all(Path(j).exists() for j in _jars())


def build() -> float:
    """Run Maven and write the java argfile; returns the seconds it took."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Kafka Streams in the bench needs Maven (mvn) and Java 17+ on PATH")
    STAMP.unlink(missing_ok=True)
    t0 = time.monotonic()
    cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(PROJECT / "pom.xml"), "package"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{tail}")
    cp = ":".join([str(TARGET / "classes"), *_jars()])
    ARGFILE.write_text(f'-cp "{cp}"\n')
    STAMP.write_text(source_digest() + "\n")
    return time.monotonic() - t0


def ensure_built(log: Callable[[str], None] = print) -> None:
    if is_built():
        return
    log("building Kafka Streams app (bench/kstreams, Maven)")
    log(f"  built in {build():.1f}s: kafka-streams {version()}")


def version() -> str:
    """The kafka-streams release on the built classpath ('3.9.2'), or 'not built'."""
    if not CLASSPATH.exists():
        return "not built"
    for jar in _jars():
        m = re.search(r"/kafka-streams-([^/]+)\.jar$", jar)
        if m:
            return m.group(1)
    return "?"


if __name__ == "__main__":
    try:
        ensure_built()
    except RuntimeError as exc:
        sys.exit(str(exc))
    print(ARGFILE)
