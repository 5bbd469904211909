"""The model registry: every trained artifact, with its file hashes, metrics, training data and
creation time, read from plain directories.

Decision: a directory format, not MLflow. An artifact already is a versioned directory that its
loader reads (``models/moderation/artifacts/<version>/``, ``models/clip/artifacts/<version>/``,
and for later families ``$PULSE_HOME/models/<family>/<version>/``); the registry adds one file to
it, ``manifest.json``, written by the training command. Nothing else runs (no tracking server, no
database), the shipped artifacts stay reviewable in git, and a copy of the directory is a copy of
the registry entry. What MLflow would add here (a UI, run comparison, remote artifact stores) is
not needed by a checkout that ships two artifacts; ``docs/models.md`` says more.

``manifest.json`` (JSON object, keys in this order, indent 2, trailing newline):

``family`` (str), ``version`` (str)
    the model family (``moderation``, ``clip``, ...) and the version name, which is the
    directory's name and what a setting names to load it.
``created_at`` (str)
    ISO 8601 UTC, ``YYYY-MM-DDTHH:MM:SSZ``.
``command`` (str or null)
    the command line that produced the artifact.
``model_version`` (str or null)
    the version string that the AI outputs made with this artifact carry, where known.
``files``
    ``{relative POSIX path: {"sha256": hex, "bytes": int}}`` for every file under the directory
    (recursive) except ``manifest.json`` itself, sorted by path.
``metrics``
    the writer's metrics, else the contents of ``metrics.json``, else ``{}``.
``training_data``
    a manifest of the data the artifact was trained on, as the writer describes it (file names
    with :func:`data_digest` hashes, row counts, splits, topic/offset ranges); ``{}`` if unknown.

This module imports nothing from ``streams`` or ``agents``: callers pass the directories.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

MANIFEST = "manifest.json"
"""The registry's file in each artifact directory."""
SHIPPED_FAMILIES = {"moderation": Path("models/moderation/artifacts"),
                    "clip": Path("models/clip/artifacts")}
"""Families whose artifacts ship in the repository: family -> directory relative to its root."""

_CHUNK = 1 << 20


class RegistryError(ValueError):
    """A manifest that cannot be read or does not follow the format (the message names the file),
    or an artifact directory that does not exist."""


@dataclass(frozen=True)
class ModelEntry:
    """One artifact directory as the registry lists it.

    ``has_manifest`` False: the directory holds no ``manifest.json`` (listed so nothing is
    hidden); then ``files`` maps each file to ``{"bytes": n}`` only, ``created_at``, ``command``
    and ``model_version`` are ``None`` and ``metrics`` / ``training_data`` are empty.
    """

    family: str
    version: str
    path: Path
    has_manifest: bool
    created_at: str | None = None
    command: str | None = None
    model_version: str | None = None
    files: dict[str, dict] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    training_data: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"ok"`` (a manifest was read; hashes are checked only by :func:`verify`) or
        ``"no manifest"``."""
        return "ok" if self.has_manifest else "no manifest"

    @property
    def bytes(self) -> int:
        """Total size of the artifact's files (``manifest.json`` excluded), in bytes."""
        return sum(int(f.get("bytes", 0)) for f in self.files.values())

    def to_json(self) -> dict:
        """A JSON-ready dict: the fields, ``path`` as a string, plus ``status``, ``file_count``
        and ``bytes``."""
        return {"family": self.family, "version": self.version, "path": str(self.path),
                "status": self.status, "created_at": self.created_at, "command": self.command,
                "model_version": self.model_version, "file_count": len(self.files),
                "bytes": self.bytes, "files": self.files, "metrics": self.metrics,
                "training_data": self.training_data}


def file_digest(path: Path) -> dict:
    """``{"sha256": hex, "bytes": int}`` of one file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": size}


def data_digest(path: str | Path) -> dict:
    """A training-data file or directory, hashed for a ``training_data`` manifest.

    A file: ``{"sha256", "bytes"}``. A directory: ``{"sha256", "bytes", "files"}`` where
    ``sha256`` is the SHA-256 of the ``sha256sum``-style listing of its files (one
    ``"<hex>  <relative path>\\n"`` line per file, sorted by path), so equal trees give equal
    hashes. Raises ``FileNotFoundError`` when the path does not exist.
    """
    p = Path(path)
    if p.is_file():
        return file_digest(p)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such file or directory")
    files = _hash_tree(p, skip=None)
    listing = "".join(f"{d['sha256']}  {name}\n" for name, d in files.items())
    return {"sha256": hashlib.sha256(listing.encode("utf-8")).hexdigest(),
            "bytes": sum(d["bytes"] for d in files.values()), "files": len(files)}


def _file_names(directory: Path, skip: str | None = MANIFEST) -> list[str]:
    """Sorted relative POSIX paths of every file under ``directory``, except ``skip``."""
    names = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in files:
            rel = (Path(root) / name).relative_to(directory).as_posix()
            if rel != skip:
                names.append(rel)
    return sorted(names)


def _hash_tree(directory: Path, skip: str | None = MANIFEST) -> dict[str, dict]:
    return {name: file_digest(directory / name) for name in _file_names(directory, skip)}


def utc_iso(when: str | datetime | None = None) -> str:
    """``when`` (an ISO 8601 string with an offset, an aware datetime, or ``None`` = now) as
    ``YYYY-MM-DDTHH:MM:SSZ`` in UTC. Raises :class:`RegistryError` for a string that is not
    ISO 8601 or a time without a UTC offset."""
    if when is None:
        dt = datetime.now(timezone.utc)
    elif isinstance(when, datetime):
        dt = when
    else:
        try:
            dt = datetime.fromisoformat(str(when).strip())
        except ValueError:
            raise RegistryError(f"created_at {when!r} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise RegistryError(f"created_at {when!r} has no UTC offset")
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_manifest(directory: str | Path, *, family: str, version: str, command: str | None = None,
                   metrics: Mapping[str, Any] | None = None,
                   training_data: Mapping[str, Any] | None = None,
                   created_at: str | datetime | None = None,
                   model_version: str | None = None) -> dict:
    """Hash every file of ``directory`` and write its ``manifest.json``; returns the manifest.

    ``metrics``: when ``None``, the directory's ``metrics.json`` (``{}`` without one).
    ``created_at``: default now. Writing is atomic (a temporary file renamed over the old one), so
    a reader never sees half a manifest; a second call rewrites it with fresh hashes.

    Raises
    ------
    RegistryError : ``directory`` is not a directory; ``metrics.json`` is not a JSON object;
        ``created_at`` is not an ISO 8601 time with an offset.
    """
    d = Path(directory)
    if not d.is_dir():
        raise RegistryError(f"{d}: no artifact directory to write {MANIFEST} into")
    if metrics is None:
        metrics = _read_json_object(d / "metrics.json") if (d / "metrics.json").is_file() else {}
    manifest = {"family": family, "version": version, "created_at": utc_iso(created_at),
                "command": command, "model_version": model_version, "files": _hash_tree(d),
                "metrics": dict(metrics), "training_data": dict(training_data or {})}
    tmp = d / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, d / MANIFEST)
    return manifest


def _read_json_object(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read it ({exc})") from None
    except ValueError as exc:
        raise RegistryError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def read_manifest(directory: str | Path) -> dict:
    """The ``manifest.json`` of ``directory``, checked for the format's required fields.

    Raises :class:`RegistryError` (naming the file) when it is unreadable, not JSON, or lacks or
    mistypes ``family``, ``version``, ``created_at`` or ``files``.
    """
    path = Path(directory) / MANIFEST
    m = _read_json_object(path)
    for key in ("family", "version", "created_at"):
        if not isinstance(m.get(key), str):
            raise RegistryError(f"{path}: {key!r} must be a string")
    files = m.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("bytes"), int)
            for v in files.values()):
        raise RegistryError(f"{path}: 'files' must map each file to {{\"sha256\", \"bytes\"}}")
    for key in ("metrics", "training_data"):
        if not isinstance(m.get(key, {}), dict):
            raise RegistryError(f"{path}: {key!r} must be an object")
    return m


def read_entry(family: str, directory: str | Path) -> ModelEntry:
    """The registry entry of one artifact directory (with or without a manifest).

    Raises :class:`RegistryError` for an invalid manifest (see :func:`read_manifest`).
    """
    d = Path(directory)
    if not (d / MANIFEST).is_file():
        return ModelEntry(family, d.name, d, False,
                          files={n: {"bytes": (d / n).stat().st_size} for n in _file_names(d)})
    m = read_manifest(d)
    return ModelEntry(family, d.name, d, True, created_at=m["created_at"], command=m.get("command"),
                      model_version=m.get("model_version"), files=m["files"],
                      metrics=m.get("metrics") or {}, training_data=m.get("training_data") or {})


def list_models(roots: Sequence[tuple[str, Path]]) -> list[ModelEntry]:
    """Every version directory under each ``(family, root)``: its subdirectories not starting
    with ``.`` or ``_``. A root that does not exist is skipped.

    Sorted by family, then ``created_at`` (entries without a manifest first), then version.
    Raises :class:`RegistryError` for an invalid manifest.
    """
    entries = []
    for family, root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.startswith((".", "_")):
                entries.append(read_entry(family, d))
    return sorted(entries, key=lambda e: (e.family, e.created_at or "", e.version))


def verify(entry: ModelEntry) -> list[str]:
    """Recompute the hashes of ``entry``'s directory against its manifest; one line per problem
    (a missing file, a changed file, an extra file). ``[]`` when the artifact's files are exactly
    those its manifest records.
    """
    if not entry.has_manifest:
        return [f"{entry.path}: no {MANIFEST}, nothing to verify"]
    problems = []
    on_disk = set(_file_names(entry.path))
    for name in sorted(set(entry.files) | on_disk):
        recorded = entry.files.get(name)
        if recorded is None:
            problems.append(f"extra file {name} (not in {MANIFEST})")
        elif name not in on_disk:
            problems.append(f"missing file {name}")
        else:
            actual = file_digest(entry.path / name)
            if actual["sha256"] != recorded["sha256"]:
                problems.append(f"changed file {name}: sha256 {actual['sha256'][:12]}… on disk, "
                                f"{recorded['sha256'][:12]}… in {MANIFEST} "
                                f"({actual['bytes']} bytes, recorded {recorded['bytes']})")
    return problems


def default_roots(repo_root: Path, home: Path | None) -> list[tuple[str, Path]]:
    """Where artifacts live: the shipped families' directories under ``repo_root``
    (:data:`SHIPPED_FAMILIES`), then ``home/models/<family>`` for each family directory present
    under ``home`` (``PULSE_HOME``), by name."""
    roots = [(family, Path(repo_root) / rel) for family, rel in SHIPPED_FAMILIES.items()]
    if home is not None and (Path(home) / "models").is_dir():
        roots += [(d.name, d) for d in sorted((Path(home) / "models").iterdir())
                  if d.is_dir() and not d.name.startswith((".", "_"))]
    return roots
