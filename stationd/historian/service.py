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
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from alarms.model import state_code
from stationd.findings import SEVERITY_RANK
from stationd.historian.config import HistorianConfig
from stationd.historian.embedded import EmbeddedStore
from stationd.historian.forwarder import Forwarder
from stationd.historian.influx import InfluxSink, resolve_token
from stationd.historian.lineproto import FleetEncoder, StationTags, encode_point, ms
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
}


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
            sink: Any = InfluxSink(
                ix.url,
                org=ix.org,
                bucket=ix.bucket,
                token=resolve_token(ix.token_env, ix.token_file),
                gzip=ix.gzip,
                gzip_level=ix.gzip_level,
                timeout_s=ix.timeout_s,
            )
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

    def write_alarm(self, transition: Any) -> None:
        """Measurement `alarm`: one transition (alarms.model.Transition or a like mapping)."""
        get = (
            transition.get
            if isinstance(transition, Mapping)
            else lambda k, d=None: getattr(transition, k, d)
        )
        to_state = str(get("to_state", "") or get("state", ""))
        severity = str(get("severity", "") or "")
        kind = str(get("kind", "") or get("finding", ""))
        station = str(get("station", "") or get("subject", ""))
        # One series per incident: its `state` values over time ARE the alarm's timeline
        # (a state name or cause as a tag would split it into a series per state).
        tags = {
            "site": self.site,
            "station": station,
            "alarm": str(get("alarm_id", "") or ""),
            "finding": kind,
            "incident": str(get("incident_id", "") or ""),
        }
        fields = {
            "state": state_code(to_state),
            "severity": SEVERITY_RANK.get(severity, -1),
            "value": get("value", None),
            "priority": get("priority", None),
        }
        t = get("time", None)
        line = encode_point("alarm", tags, fields, ms(t if t is not None else time.time()))
        if line:
            self._submit((line + "\n").encode(), 1, sum(v is not None for v in fields.values()))

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
        return self.forwarder.outage_since is None
