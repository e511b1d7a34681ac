"""`stationd demo` (tools/demo, offered by the CLI through its entry point): the simulated
example fleet and the daemon run together, and every station answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def test_demo_runs_the_example_fleet_with_the_daemon(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "stationd", "demo", "--config", "config/stations.yaml",
            "--duration", "20", "--state-dir", str(tmp_path / "state"),
        ],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "simulator up:" in out.stdout and "inject a fault:" in out.stdout
    answered = [int(m) for m in re.findall(r"answered (\d+)/8", out.stdout)]
    assert answered and max(answered) == 8, out.stdout[-2000:]
    # the daemon kept its state where it was told
    assert (tmp_path / "state" / "alarms" / "dispatch_log.sqlite").exists()
