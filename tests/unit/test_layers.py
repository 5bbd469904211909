"""The import direction of the layers (docs/agent-contract.md), checked with import-linter: entry
points -> agents -> runtime, read side, servers -> sinks, producer -> stores -> contracts ->
settings -> models, and no agent imports another agent. The contracts are in pyproject.toml."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from streams.settings import REPO_ROOT


def test_layers_and_agent_independence_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    out = subprocess.run(cmd + ["--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout
