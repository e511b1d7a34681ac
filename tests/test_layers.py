"""The import contracts (pyproject.toml [tool.importlinter]) hold: imports run one way,
drivers and alarms import only themselves (and the vocabulary), and nothing imports in a
circle — lazy and TYPE_CHECKING imports included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is in the test extras (pyproject.toml)"
    out = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "0 broken" in out.stdout
