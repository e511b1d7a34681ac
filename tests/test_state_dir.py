"""One rule for the state dir (stationd/state.py), the same for every subcommand:
--state-dir, else the config's state_dir:, else $STATE_DIRECTORY, else ./state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alarms.dispatch_log import DispatchLog, LogEntry
from alarms.files import LOG_FILE, alarm_dir
from stationd import state

ROOT = Path(__file__).resolve().parents[1]


def test_the_rule_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert state.resolve() == Path("state")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "unit"))
    assert state.resolve() == tmp_path / "unit"
    assert state.resolve(None, tmp_path / "cfg") == tmp_path / "cfg"
    assert state.resolve(tmp_path / "flag", tmp_path / "cfg") == tmp_path / "flag"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert state.resolve() == tmp_path / "a"  # systemd lists several: ours is the first


def test_alarm_files_are_found_under_a_state_dir_or_in_it(tmp_path: Path) -> None:
    assert alarm_dir(tmp_path) == tmp_path / "alarms"
    (tmp_path / LOG_FILE).touch()  # an alarm service run alone keeps them in its own dir
    assert alarm_dir(tmp_path) == tmp_path
    (tmp_path / "alarms").mkdir()
    assert alarm_dir(tmp_path) == tmp_path / "alarms"


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stationd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=env,
    )


def test_every_subcommand_reads_the_same_state_dir(tmp_path: Path) -> None:
    unit = tmp_path / "var-lib-stationd"
    dlog = DispatchLog(unit / "alarms" / LOG_FILE)
    dlog.append([LogEntry(time=1_764_000_000.0, kind="note", text_zh="交班", text_en="handover",
                          station="hs001", operator="王工")])  # fmt: skip
    dlog.close()
    env = {**os.environ, "STATE_DIRECTORY": str(unit)}
    log = _run("log", env=env)
    assert log.returncode == 0 and "交班" in log.stdout, log.stderr
    kpi = _run("kpi", "--from", "1763990000", "--to", "1764090000", "--json", env=env)
    assert kpi.returncode == 0, kpi.stderr
    reload = _run("reload", env=env)
    assert reload.returncode == 1 and str(unit / "stationd.pid") in reload.stderr
    # --state-dir wins over the environment, for every one of them
    other = tmp_path / "other"
    log = _run("log", "--state-dir", str(other), env=env)
    assert log.returncode == 2 and str(other / "alarms") in log.stderr
