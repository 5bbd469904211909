"""Find ``java`` and ``mvn``; resolve a server's runtime jars from Maven Central into ``$PULSE_CACHE`` once.

``infra/<server>/pom.xml`` lists the server artifact (``kafka_2.13``, ``cassandra-all``); this
module runs ``mvn dependency:copy-dependencies -DincludeScope=runtime`` on it into
``$PULSE_CACHE/<server>-<version>/lib``. The directory is keyed by the artifact's version, and a
``pom.sha256`` stamp beside it makes any other change of the pom re-resolve the jars. Resolution
takes about 5 s per server when ``~/.m2`` already holds the artifacts, otherwise as long as the
downloads take; one file lock serialises concurrent ``pulse up`` runs on the same cache.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

from streams.servers import MissingToolError, ServerError

MVN_TIMEOUT_S = 900.0
"""Upper bound on one ``mvn`` run (s); the first run on a fresh machine downloads ~150 MB."""

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def find_tool(name: str, purpose: str) -> str:
    """Absolute path of ``java`` (``$JAVA_HOME/bin/java`` first) or ``mvn`` on ``PATH``.

    Raises
    ------
    MissingToolError
        The tool is not installed; the message says what it is needed for.
    """
    if name == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    path = shutil.which(name)
    if path is None:
        hint = {"java": "install OpenJDK 17 (Debian: apt-get install openjdk-17-jre-headless)",
                "mvn": "install Maven 3.8+ (Debian: apt-get install maven)"}.get(name, "install it")
        raise MissingToolError(f"`{name}` is not on PATH; it is needed to {purpose}. {hint}, "
                          f"or point Pulse at external servers (PULSE_KAFKA_BOOTSTRAP, PULSE_CASSANDRA_HOSTS).")
    return path


@functools.lru_cache(maxsize=4)
def java_major_version(java: str) -> int:
    """Feature release of the JDK at ``java`` (``17`` for ``openjdk version "17.0.15"``).

    Raises
    ------
    ServerError
        ``java -version`` fails or prints no version.
    """
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"`{java} -version` failed: {exc}") from None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        raise ServerError(f"cannot tell the Java version from `{java} -version`:\n{out.stderr.strip()}")
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def artifact_version(pom: Path, artifact_id: str) -> str:
    """The ``<version>`` of dependency ``artifact_id`` in ``pom`` (e.g. ``"4.3.1"``).

    Raises
    ------
    ServerError
        The pom is missing, is not XML, or does not depend on ``artifact_id``.
    """
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ServerError(f"cannot read {pom}: {exc}") from None
    for dep in root.iterfind("m:dependencies/m:dependency", _POM_NS):
        if dep.findtext("m:artifactId", namespaces=_POM_NS) == artifact_id:
            version = dep.findtext("m:version", namespaces=_POM_NS)
            if version:
                return version.strip()
    raise ServerError(f"{pom} has no dependency on {artifact_id} with a <version>")


def resolve_jars(pom: Path, artifact_id: str, name: str, cache_dir: Path,
                 on_step: Callable[[str], None] = lambda _m: None) -> tuple[Path, str]:
    """Return ``(lib_dir, version)`` for the server ``name`` described by ``pom``.

    ``lib_dir`` is ``cache_dir / f"{name}-{version}" / "lib"``, filled by Maven on the first call
    (and again whenever the pom's content changes); later calls only compare a hash.

    Raises
    ------
    ServerError
        ``mvn`` is missing, fails (the message carries the tail of its output), or runs longer
        than :data:`MVN_TIMEOUT_S`.
    """
    version = artifact_version(pom, artifact_id)
    root = cache_dir / f"{name}-{version}"
    lib, stamp = root / "lib", root / "pom.sha256"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if _is_current(lib, stamp, digest):
        return lib, version
    mvn = find_tool("mvn", f"resolve the {name} jars from Maven Central")
    root.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".resolve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another `pulse up` may be resolving the same jars
        if _is_current(lib, stamp, digest):
            return lib, version
        on_step(f"{name}: resolving {artifact_id} {version} jars with Maven (once per version)")
        tmp = root / f"lib.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [mvn, "-B", "--no-transfer-progress", "-f", str(pom), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
        try:
            out = subprocess.run(cmd, cwd=root, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=MVN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ServerError(f"mvn did not finish resolving the {name} jars within {MVN_TIMEOUT_S:.0f} s; "
                              f"check access to Maven Central (repo.maven.apache.org)") from None
        if out.returncode != 0 or not any(tmp.glob("*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            tail = "\n".join((out.stdout + out.stderr).splitlines()[-30:])
            raise ServerError(f"mvn failed to resolve the {name} jars from {pom} (exit {out.returncode}):\n{tail}")
        old = root / f"lib.old-{os.getpid()}"
        if lib.exists():
            lib.rename(old)
        tmp.rename(lib)
        shutil.rmtree(old, ignore_errors=True)
        stamp.write_text(digest + "\n")
    return lib, version


def _is_current(lib: Path, stamp: Path, digest: str) -> bool:
    try:
        return stamp.read_text().strip() == digest and any(lib.glob("*.jar"))
    except OSError:
        return False
