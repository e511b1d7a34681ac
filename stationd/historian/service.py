"""The Historian: what the daemon calls to keep history (InfluxDB, or the embedded store).

    h = Historian.from_config(config.historian, config.site.id, config.stations, state_dir)
    await h.start()
    h.write_tick(tick_time, values, extras)     # every tick, on the loop: encode + hand over
    h.write_derived(tick_time, {"loss_ratio": arr, ...})
    h.write_alarm(transition)                   # alarms.model.Transition or a like dict
    h.write_dispatch(entry)                     # a dispatch-log row: command, step, control...
    h.write_field_reading(reading)              # a manual reading taken on site
    h.write_daemon({"poll_ms": 12.0, ...})
    await h.stop()                              # everything handed over is on disk

The write_* methods are synchronous and cheap (a 1,000-station tick encodes in a few ms);
the disk commit and the network happen on the forwarder's threads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from alarms.model import state_code
from stationd.findings import SEVERITY_RANK
from stationd.historian.config import HistorianConfig, InfluxSection
from stationd.historian.embedded import EmbeddedStore
from stationd.historian.forwarder import Forwarder
from stationd.historian.influx_check import resolve_secret
from stationd.historian.influx_v1 import InfluxV1Sink
from stationd.historian.influx_v2 import InfluxV2Sink
from stationd.historian.lineproto import (
    FleetEncoder,
    StationTags,
    encode_point,
    format_float,
    ms,
    tag_set,
)
from stationd.historian.queue import DiskQueue

log = logging.getLogger(__name__)


#: dispatch-log kinds copied to the `dispatch` measurement (transitions are `alarm`,
#: field readings `field_reading`; the daemon's own start/stop rows stay in the log)
DISPATCH_KINDS = frozenset({"command", "step", "escalation", "note", "control"})


#: The `derived` fields the dashboards chart (config/grafana). write_derived() takes any
#: name; these are the ones the detection core is expected to hand over.
DERIVED_FIELDS: dict[str, str] = {
    "loss_ratio": "make-up / circulating flow (allowance 0.005) / 补水率",
    "loss_vs_allowance": "loss_ratio / the station's allowance (1 = at the limit) / 补水率与限值之比",
    "expected_flow_ratio": "circulating flow / (10 t/h per 10,000 m²) / 循环流量与标准之比",
    "curve_deviation_c": "secondary supply minus the heating curve, °C / 供温偏离曲线",
    "heat_power_kw": "heat delivered, kW / 供热功率",
    "indoor_at_standard": "1 = room at the indoor standard, 0 = below (avg = share) / 室温达标",
    "warming": "1 = the loss rate is provisional (averages warming up after a start) / 预热中",
    "primary_curve_deficit_c": "primary supply below the heat source's curve, °C / 一次供温不足",
    "alarm_level": "worst active alarm: 0 none, 1 notice .. 4 critical / 最高报警级别",
}


def make_influx_sink(ix: InfluxSection) -> InfluxV1Sink | InfluxV2Sink:
    """The sink for `historian.influxdb`, by its `api` (secrets read now, so a missing
    credential file fails at start with its path named)."""
    token = resolve_secret(ix.token_env, ix.token_file, "token")
    if ix.api == "v1":
        return InfluxV1Sink(
            ix.url,
            db=str(ix.db),
            rp=ix.rp,
            precision=ix.precision,
            username=ix.username,
            password=resolve_secret(ix.password_env, ix.password_file, "password"),
            token=token,
            gzip=ix.gzip,
            gzip_level=ix.gzip_level,
            timeout_s=ix.timeout_s,
        )
    return InfluxV2Sink(
        ix.url,
        org=ix.org_name,
        bucket=ix.bucket_name,
        token=token,
        gzip=ix.gzip,
        gzip_level=ix.gzip_level,
        timeout_s=ix.timeout_s,
    )


def _station_tags(meta: Any) -> StationTags:
    """From a config Station (or any object/dict with id, name, branch[, signals])."""
    get = meta.get if isinstance(meta, Mapping) else lambda k, d=None: getattr(meta, k, d)
    sig = get("signals", None)
    return StationTags(
        id=str(get("id")),
        name=str(get("name", "") or ""),
        branch=str(get("branch", "") or ""),
        signals=tuple(sig) if sig is not None else None,
    )


class Historian:
    def __init__(
        self,
        forwarder: Forwarder,
        encoder: FleetEncoder,
        *,
        site: str,
        target: str,
        embedded: EmbeddedStore | None = None,
        retention_check_s: float = 3600.0,
    ) -> None:
        self.forwarder = forwarder
        self.encoder = encoder
        self.site = site
        self.target = target  # "influxdb" or "embedded"
        self.embedded = embedded
        self.retention_check_s = retention_check_s
        self._retention_task: asyncio.Task[None] | None = None
        self.lines_written = 0
        self.fields_written = 0
        self._state_series: dict[tuple[str, str], str] = {}  # active incident -> series

    @classmethod
    def from_config(
        cls,
        section: HistorianConfig | Mapping[str, Any] | None,
        site_id: str,
        stations_meta: Sequence[Any],
        state_dir: str | Path,
        *,
        registry: CollectorRegistry | None = None,
    ) -> Historian:
        cfg = (
            section
            if isinstance(section, HistorianConfig)
            else HistorianConfig.model_validate(dict(section or {}))
        )
        state = Path(state_dir)
        encoder = FleetEncoder(site_id, [_station_tags(m) for m in stations_meta])
        q = cfg.queue
        embedded: EmbeddedStore | None = None
        if cfg.influxdb is not None:
            ix = cfg.influxdb
            sink: Any = make_influx_sink(ix)
            target, batch, flush = "influxdb", ix.batch_size, ix.flush_interval_s
        else:
            embedded = EmbeddedStore(state / cfg.embedded.path, cfg.embedded.retention_days)
            sink = embedded
            target, batch, flush = (
                "embedded",
                cfg.embedded.batch_size,
                cfg.embedded.flush_interval_s,
            )
        queue = DiskQueue(
            state / q.path,
            max_rows=q.max_rows,
            max_bytes=q.max_bytes,
            synchronous=q.synchronous,
            name=target,
            registry=registry,
        )
        fwd = Forwarder(
            queue,
            sink,
            batch_lines=batch,
            flush_interval_s=flush,
            drain_rate=q.drain_rate,
            live_window_s=q.live_window_s,
            backoff_initial_s=min(0.5, q.retry_max_s),
            backoff_max_s=q.retry_max_s,
            registry=registry,
        )
        log.info(
            "historian: writing to %s (queue %s) / 历史数据写入 %s", sink.name, queue.path, target
        )
        return cls(fwd, encoder, site=site_id, target=target, embedded=embedded)

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await self.forwarder.start()
        if self.embedded is not None:
            self._retention_task = asyncio.create_task(
                self._retention(), name="historian-retention"
            )

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        """Flush everything handed over to disk (and, if the database is up, try to send it)."""
        if self._retention_task is not None:
            self._retention_task.cancel()
            await asyncio.gather(self._retention_task, return_exceptions=True)
            self._retention_task = None
        await self.forwarder.stop(drain_timeout_s)

    async def flush(self) -> None:
        """Commit everything handed over so far to the disk queue."""
        await self.forwarder.flush()

    async def _retention(self) -> None:
        assert self.embedded is not None
        while True:
            await self.forwarder.on_sink_thread(self.embedded.prune)
            await asyncio.sleep(self.retention_check_s)

    # -- writing -------------------------------------------------------------------------
    def _submit(self, payload: bytes, lines: int, fields: int) -> None:
        self.lines_written += lines
        self.fields_written += fields
        self.forwarder.submit(payload, lines)

    def write_tick(
        self,
        tick_time: float,
        values: np.ndarray,
        extras: Mapping[int, Mapping[str, float] | np.ndarray] | None = None,
    ) -> None:
        """Measurement `station`: values [S, K] (NaN = missing/bad, omitted) in the config's
        station order; extras {station index: the station's extras as read (an array in
        its signals' order), or {name: value}}."""
        payload, lines, fields = self.encoder.station_tick(values, ms(tick_time), extras)
        self._submit(payload, lines, fields)

    def write_derived(self, tick_time: float, arrays: Mapping[str, np.ndarray]) -> None:
        """Measurement `derived`: named per-station arrays, e.g. loss_ratio (make-up /
        circulating flow), loss_vs_allowance, expected_flow_ratio, curve_deviation_c,
        heat_power_kw, indoor_at_standard. NaN entries are omitted."""
        payload, lines, fields = self.encoder.derived(arrays, ms(tick_time))
        self._submit(payload, lines, fields)

    def _alarm_tags(self, get: Any) -> dict[str, str]:
        # One series per incident: its `state` values over time ARE the alarm's timeline
        # (a state name or cause as a tag would split it into a series per state).
        return {
            "site": self.site,
            "station": str(get("station", "") or get("subject", "")),
            "alarm": str(get("alarm_id", "") or ""),
            "finding": str(get("kind", "") or get("finding", "")),
            "incident": str(get("incident_id", "") or ""),
        }

    def _alarm_point(self, get: Any, state: str, t: float, changed: bool) -> tuple[str, int]:
        tags = self._alarm_tags(get)
        fields = {
            "state": state_code(state),
            "severity": SEVERITY_RANK.get(str(get("severity", "") or ""), -1),
            "value": get("value", None),
            "priority": get("priority", None),
            # 1 on a transition (what annotations mark), absent on the per-tick state
            "changed": 1 if changed else None,
        }
        return encode_point("alarm", tags, fields, ms(t)), sum(
            v is not None for v in fields.values()
        )

    def write_alarm(self, transition: Any) -> None:
        """Measurement `alarm`: one transition (alarms.model.Transition or a like mapping)."""
        get = (
            transition.get
            if isinstance(transition, Mapping)
            else lambda k, d=None: getattr(transition, k, d)
        )
        to_state = str(get("to_state", "") or get("state", ""))
        t = get("time", None)
        line, n = self._alarm_point(get, to_state, t if t is not None else time.time(), True)
        if line:
            self._submit((line + "\n").encode(), 1, n)

    def write_alarm_states(self, tick_time: float, records: Iterable[Any]) -> None:
        """Measurement `alarm`, every tick: the state of each alarm that is not normal
        (alarms.engine.AlarmRecord or alike), on its incident's series, so a state
        timeline draws bars instead of slivers at the transitions and "active now" is
        the last point of the last minutes, however long ago the alarm was raised.

        Called every tick, in an alarm storm with a thousand records: each incident's
        escaped series is built once and kept while the incident is active."""
        ts = ms(tick_time)
        lines: list[str] = []
        fields = 0
        series: dict[tuple[str, str], str] = {}
        for rec in records:
            get = rec.get if isinstance(rec, Mapping) else lambda k, d=None, r=rec: getattr(r, k, d)
            state = str(get("state", "") or "")
            if state in ("", "normal") or get("since", None) == tick_time:
                continue  # normal, or changed this tick: its transition point is written
            key = (str(get("alarm_id", "") or ""), str(get("incident_id", "") or ""))
            head = self._state_series.get(key)
            if head is None:
                head = "alarm" + tag_set(self._alarm_tags(get))
            series[key] = head
            parts = [f"state={state_code(state)}"]
            parts.append(f"severity={SEVERITY_RANK.get(str(get('severity', '') or ''), -1)}")
            for name in ("value", "priority"):
                v = get(name, None)
                if v is not None and math.isfinite(v):
                    parts.append(f"{name}={format_float(v)}")
            parts.sort()
            lines.append(f"{head} {','.join(parts)} {ts}")
            fields += len(parts)
        self._state_series = series  # only the incidents still active
        if lines:
            self._submit(("\n".join(lines) + "\n").encode(), len(lines), fields)

    def write_dispatch(self, entry: Any) -> None:
        """Measurement `dispatch`: one dispatch-log row (alarms.dispatch_log.LogEntry) of
        the kinds DESIGN.md sends to the historian besides transitions (which are the
        `alarm` measurement): commands, steps, escalations, notes and controls. Tags say
        what and who (kind, operator, command / step / action); the numbers are fields
        (`n` = 1 per row, `ok`, `value`, `readback`); the text stays in the log."""
        kind = str(getattr(entry, "kind", ""))
        if kind not in DISPATCH_KINDS:
            return
        data: Mapping[str, Any] = getattr(entry, "data", None) or {}
        tags = {
            "site": self.site,
            "station": str(getattr(entry, "station", "") or getattr(entry, "subject", "")),
            "kind": kind,
            "operator": str(getattr(entry, "operator", "")),
            "incident": str(getattr(entry, "incident_id", "")),
            "command": str(data.get("command", "")) if kind == "command" else "",
            "step": str(data.get("step", "")),
            "action": str(data.get("action", data.get("status", ""))),
        }
        fields: dict[str, Any] = {"n": 1}
        if "ok" in data:
            fields["ok"] = int(bool(data["ok"]))
        for name in ("value", "readback"):
            v = data.get(name)
            if isinstance(v, int | float) and not isinstance(v, bool):
                fields[name] = float(v)
        line = encode_point("dispatch", tags, fields, ms(float(getattr(entry, "time", 0.0))))
        if line:
            self._submit((line + "\n").encode(), 1, len(fields))

    def write_field_reading(self, reading: Any) -> None:
        """Measurement `field_reading`: a manual reading taken on site (plan 6.3), the
        signal as the field name as in `station`, so a chart can show both."""
        tags = {
            "site": self.site,
            "station": str(reading.station),
            "operator": str(reading.operator),
        }
        line = encode_point(
            "field_reading", tags, {str(reading.signal): float(reading.value)}, ms(reading.time)
        )
        if line:
            self._submit((line + "\n").encode(), 1, 1)

    def write_daemon(self, fields: Mapping[str, Any], tick_time: float | None = None) -> None:
        """Measurement `daemon`: the daemon's own health (numbers; text is skipped)."""
        numeric = {
            k: float(v)
            for k, v in fields.items()
            if isinstance(v, int | float | bool | np.number) and not isinstance(v, str)
        }
        line = encode_point(
            "daemon",
            {"site": self.site},
            numeric,
            ms(tick_time if tick_time is not None else time.time()),
        )
        if line:
            self._submit((line + "\n").encode(), 1, len(numeric))

    # -- observing -----------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return self.forwarder.depth

    @property
    def queue_oldest_age(self) -> float:
        return self.forwarder.oldest_age

    @property
    def connected(self) -> bool:
        """The database takes our writes (neither unreachable nor refusing our config)."""
        return self.forwarder.outage_since is None and self.forwarder.config_error is None

    @property
    def config_error(self) -> str | None:
        """The database's refusal of our settings and what to change; None when fine."""
        return self.forwarder.config_error

    @property
    def server(self) -> str | None:
        """What the start-up check found (server, version, API, target), once it ran."""
        return self.forwarder.server
