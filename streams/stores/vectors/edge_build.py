"""Background HNSW builds for :class:`~streams.stores.vectors.edge_index.EdgeIndex`: shadow copy, build, swap.

qdrant-edge's ``EdgeShard.optimize()`` holds the Python GIL for its whole run (8 s for 30k x 128,
100 to 220 s for 100k x 512 on 2 cores), so it cannot run in a thread of a worker whose event loop
must keep going. :class:`ShadowBuild` optimizes a copy of a collection in a child process (this
module's :func:`main`) and installs it; :func:`recover` undoes an interrupted build or swap. The
protocol (trigger, directories ``<name>/``, ``.<name>.build/``, ``.<name>.old/``, recovery rule)
is in :mod:`streams.stores.vectors.edge_index`'s docstring.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("pulse.vectors")

NICE = 10
"""CPU niceness added in the build process, so the worker's own threads win the cores."""


def build_path(root: Path, name: str) -> Path:
    return root / f".{name}.build"


def old_path(root: Path, name: str) -> Path:
    return root / f".{name}.old"


def command(build_dir: Path) -> list[str]:
    """The build process's argv (a function, so a test can make a build fail for real)."""
    return [sys.executable, "-m", "streams.stores.vectors.edge_build", str(build_dir), str(os.getpid())]


def recover(root: Path, name: str) -> bool:
    """Undo an interrupted build or swap of collection ``name`` (call with its flock held).

    A ``.<name>.old`` directory wins over ``<name>/`` (see the module docstring); a stale
    ``.<name>.build`` is deleted. Returns True when the old shard was put back.
    """
    shutil.rmtree(build_path(root, name), ignore_errors=True)
    old, live = old_path(root, name), root / name
    if not old.exists():
        return False
    if live.exists():
        shutil.rmtree(live)
    old.rename(live)
    log.warning("qdrant-edge collection %r: restored %s after an interrupted index swap", name, live)
    return True


class ShadowBuild:
    """One background optimize of a copy of collection ``name``; the caller holds the collection's lock.

    :meth:`start` copies the (flushed) live directory and starts the build process; :meth:`record`
    keeps each engine ``UpdateOperation`` applied to the live shard meanwhile, in order;
    :meth:`poll` says whether the process ended (``None`` while it runs, else its exit code);
    :meth:`swap` installs the built shard; :meth:`abort` stops the process and deletes the copy.
    """

    def __init__(self, root: Path, name: str, proc: subprocess.Popen, stderr: Any) -> None:
        self.root, self.name, self.proc, self._stderr = root, name, proc, stderr
        self.ops: list[Any] = []

    @classmethod
    def start(cls, root: Path, name: str) -> "ShadowBuild":
        """Copy ``<root>/<name>/`` to ``.<name>.build/`` and start optimizing it (the live shard
        must be flushed and no mutation may run until this returns). Raises ``OSError``."""
        build = build_path(root, name)
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(root / name, build)
        stderr = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(command(build), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=stderr)
        except BaseException:
            stderr.close()
            shutil.rmtree(build, ignore_errors=True)
            raise
        return cls(root, name, proc, stderr)

    def record(self, op: Any) -> None:
        self.ops.append(op)

    def poll(self) -> int | None:
        return self.proc.poll()

    def failure(self) -> str:
        """The build process's exit code and the tail of its stderr (after :meth:`poll` returned non-zero)."""
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        return f"exit code {self.proc.returncode}: {tail or '(no message)'}"

    def swap(self, close_live: Callable[[], None], load: Callable[[Path], Any], apply: Callable[[Any, Any], None]) -> Any:
        """Replace the live directory by the built one; return the built shard, loaded and caught up.

        ``close_live()`` flushes and closes the live shard; ``load(path)`` opens a shard;
        ``apply(shard, op)`` applies one recorded operation. On an error after the rename the old
        directory is put back and the error re-raised (the caller re-opens the live shard).
        """
        live, old, build = self.root / self.name, old_path(self.root, self.name), build_path(self.root, self.name)
        close_live()
        live.rename(old)
        build.rename(live)
        shard = None
        try:
            shard = load(live)
            for op in self.ops:
                apply(shard, op)
            shard.flush()
        except BaseException:
            if shard is not None:
                shard.close()
            recover(self.root, self.name)
            self._done()
            raise
        shutil.rmtree(old)
        self._done()
        return shard

    def abort(self) -> None:
        """Stop the build process (if running) and delete the copy."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(build_path(self.root, self.name), ignore_errors=True)
        self._done()

    def _done(self) -> None:
        self.ops = []
        self._stderr.close()


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the parent dies, so an orphan never writes into a directory that
    the next opener deletes."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(f"edge_build: parent process {parent} already gone")


def main(argv: list[str] | None = None) -> int:
    """``<shard directory> <parent PID>``: load the shard, run the engine's optimizers, flush,
    close. 0 on success, else non-zero with the reason on stderr."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m streams.stores.vectors.edge_build <shard directory> <parent PID>", file=sys.stderr)
        return 2
    _die_with_parent(int(argv[1]))
    try:
        os.nice(NICE)
    except OSError:
        pass
    import qdrant_edge as qe

    try:
        shard = qe.EdgeShard.load(argv[0])
        shard.optimize()
        shard.flush()
        shard.close()
    except Exception as e:  # the engine raises plain Exception("Service runtime error: ...")
        print(f"edge_build: qdrant-edge shard {argv[0]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
