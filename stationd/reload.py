"""Reload on SIGHUP: validate the new stations.yaml and playbooks, diff the fleet, apply.

`prepare_reload` runs off the tick path: it loads and validates everything first and
raises ReloadError (every problem as FILE:LINE) so a bad file never replaces a good one.
`Daemon.apply(plan)` (stationd/app.py) then swaps the daemon's parts between two ticks,
each through its own public method: stations kept unchanged keep
their connection, counters and frame history; changed ones get a fresh supervisor (and
an empty history: their tags may mean something else now); added ones start polling;
removed ones stop. Sections the running parts were built from once (site, defaults,
historian, mqtt, pager, http) are kept as they are and named in a warning: they take
effect on restart.

The pid file (`<state_dir>/stationd.pid`) lets `stationd reload` find the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alarms.playbooks import PlaybookError, PlaybookLibrary, load_playbooks
from stationd.config import AnyStation, Config, ConfigError, load_config
from stationd.detect.engine import Detector
from stationd.detect.static import FleetStatic
from stationd.historian.lineproto import FleetEncoder, StationTags

log = logging.getLogger(__name__)

PID_FILE = "stationd.pid"
#: sections the running daemon was built from once; a change needs a restart
RESTART_SECTIONS = ("site", "defaults", "historian", "mqtt", "pager", "http", "state_dir")


class ReloadError(Exception):
    """A refused reload: the old config stays. `errors` are FILE:LINE lines."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = [str(e) for e in errors]
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class FleetDiff:
    """Station ids by what a reload does to them (each tuple in the new file's order)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def summary(self) -> str:
        return (
            f"+{len(self.added)} -{len(self.removed)} ~{len(self.changed)} ={len(self.unchanged)}"
        )


def diff_stations(old: Sequence[AnyStation], new: Sequence[AnyStation]) -> FleetDiff:
    """Compare two fleets by station id; a station is changed if any of its settings
    (endpoint, tags, thresholds, curve, names, area, ...) differs."""
    before = {s.id: s for s in old}
    after_ids = {s.id for s in new}
    added, changed, unchanged = [], [], []
    for st in new:
        prev = before.get(st.id)
        if prev is None:
            added.append(st.id)
        elif prev == st:
            unchanged.append(st.id)
        else:
            changed.append(st.id)
    removed = [s.id for s in old if s.id not in after_ids]
    return FleetDiff(tuple(added), tuple(removed), tuple(changed), tuple(unchanged))


@dataclass
class ReloadPlan:
    cfg: Config  # the new config, this daemon's shard, restart-only sections kept old
    diff: FleetDiff
    playbooks: PlaybookLibrary
    playbooks_changed: bool
    # built with the plan, off the loop: applying is then only a swap of references
    static: FleetStatic
    detector: Detector
    encoder: FleetEncoder
    warnings: list[str] = field(default_factory=list)


def prepare_reload(
    old: Config,
    path: Path,
    select: Callable[[Config], Config],
    current_playbooks: PlaybookLibrary | None = None,
) -> ReloadPlan:
    """Load and check `path` and its playbooks; diff this daemon's shard against `old`.

    Blocking (file I/O, validation): call it in a worker thread. Raises ReloadError."""
    try:
        new = load_config(path)
    except ConfigError as exc:
        raise ReloadError([str(e) for e in exc.errors]) from exc
    except OSError as exc:
        raise ReloadError([f"{path}: cannot read: {exc}"]) from exc
    try:
        pb_dir = new.alarms.playbook_dir
        playbooks = load_playbooks(pb_dir) if pb_dir else None
        playbooks = playbooks or load_playbooks()
    except (PlaybookError, ValueError) as exc:
        raise ReloadError(str(exc).splitlines()) from exc
    try:
        mine = select(new)
    except ValueError as exc:
        raise ReloadError([f"{path}: {exc}"]) from exc
    warnings = []
    keep = {}
    for name in RESTART_SECTIONS:
        if getattr(mine, name) != getattr(old, name):
            keep[name] = getattr(old, name)
            warnings.append(f"{path}: `{name}:` changed; it takes effect on restart / 重启后生效")
    if old.alarms.model_copy(update={"playbook_dir": None}) != mine.alarms.model_copy(
        update={"playbook_dir": None}
    ):
        warnings.append(
            f"{path}: `alarms:` settings other than playbook_dir take effect on restart"
        )
    keep["alarms"] = old.alarms.model_copy(update={"playbook_dir": mine.alarms.playbook_dir})
    mine = mine.model_copy(update=keep)
    changed = current_playbooks is None or _playbook_key(playbooks) != _playbook_key(
        current_playbooks
    )
    static = FleetStatic.from_config(mine)
    return ReloadPlan(
        mine,
        diff_stations(old.stations, mine.stations),
        playbooks,
        changed,
        static=static,
        # Detectors' incremental state is per station row; it is rebuilt from the frame,
        # whose history the unchanged stations keep.
        detector=Detector(static),
        encoder=fleet_encoder(mine),
        warnings=warnings,
    )


def _playbook_key(lib: PlaybookLibrary) -> dict[str, object]:
    return {k: pb.model_dump() for k, pb in lib.by_id.items()}


def fleet_encoder(cfg: Config) -> FleetEncoder:
    """The historian's line-protocol encoder for `cfg`'s stations (tags, extra fields)."""
    return FleetEncoder(
        cfg.site.id,
        [
            StationTags(id=s.id, name=s.name, branch=s.branch, signals=s.signals)
            for s in cfg.stations
        ],
    )


# --- pid file and `stationd reload` ------------------------------------------------------
def write_pid_file(state_dir: Path) -> Path:
    path = Path(state_dir) / PID_FILE
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    tmp.replace(path)
    return path


def remove_pid_file(state_dir: Path) -> None:
    """Remove the pid file if it is still ours (a newer daemon may have replaced it)."""
    path = Path(state_dir) / PID_FILE
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text(encoding="ascii").strip()) == os.getpid():
            path.unlink()


def send_reload(state_dir: Path) -> int:
    """SIGHUP the daemon whose pid is in `<state_dir>/stationd.pid`; returns the pid.

    Raises ReloadError when there is no pid file or no stationd process behind it (a
    stale file after a crash): signalling a recycled pid could hit another program."""
    path = Path(state_dir) / PID_FILE
    try:
        pid = int(path.read_text(encoding="ascii").strip())
    except FileNotFoundError as exc:
        raise ReloadError(
            [f"{path}: no pid file; is stationd running with this state dir?"]
        ) from exc
    except (OSError, ValueError) as exc:
        raise ReloadError([f"{path}: unreadable pid file: {exc}"]) from exc
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError as exc:
        raise ReloadError([f"{path}: pid {pid} is not running (stale pid file)"]) from exc
    if b"stationd" not in cmdline:
        raise ReloadError([f"{path}: pid {pid} is not a stationd process (stale pid file)"])
    os.kill(pid, signal.SIGHUP)
    return pid
