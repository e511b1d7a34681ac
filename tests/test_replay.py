"""`stationd replay` over a small CSV and the same data as line protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from stationd import signals
from stationd.config import load_config
from stationd.detect.static import FleetStatic
from stationd.replay import read_lineprotocol, replay_main
from tests.synth import SIG, T0, SynthFleet

CONFIG = """\
site: {id: demo, name: 演示站点}
defaults: {interval: 10, timeout: 2}
templates:
  plc:
    protocol: modbus
    tags:
      secondary_supply_pressure: {address: 0, type: float32}
      secondary_return_pressure: {address: 2, type: float32}
      secondary_flow: {address: 4, type: float32}
      mains_power: {kind: coil, address: 0, type: bool}
stations:
"""
STATION = """\
  - id: {id}
    name: {name}
    template: plc
    modbus: {{port: {port}, unit_id: 1}}
    heated_area_m2: 80000
    estates: [{name}小区]
    branch: 东线
    power_feeder: F{feeder}
"""


def write_config(tmp_path: Path) -> Path:
    names = ["一号站", "二号站", "三号站", "四号站"]
    text = CONFIG + "".join(
        STATION.format(id=f"s{i + 1}", name=n, port=15020 + i, feeder=i)
        for i, n in enumerate(names)
    )
    path = tmp_path / "stations.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def recorded(static: FleetStatic) -> list[tuple[float, int, np.ndarray]]:
    """An hour at 10 s: s2's secondary loop empties at +1800 s, s3 is silent 600-900 s."""
    fleet = SynthFleet(static)
    rows = []
    for k in range(360):
        t = T0 + 10 * k
        v = fleet.values(t)
        if k >= 180:
            v[1, SIG["secondary_supply_pressure"]] -= 0.3
            v[1, SIG["secondary_return_pressure"]] -= 0.2
        for i in range(static.n):
            if i == 2 and 60 <= k < 90:
                continue
            rows.append((t, i, v[i]))
    return rows


def write_csv(path: Path, static: FleetStatic, rows) -> None:
    lines = ["time,station," + ",".join(signals.NAMES) + ",pump_hours"]
    for j, (t, i, v) in enumerate(rows):
        # RFC 3339 and unix seconds both appear in exported files
        stamp = f"{t:.0f}" if j % 2 else f"{np.datetime_as_string(np.datetime64(int(t), 's'))}Z"
        cells = ["" if math.isnan(x) else f"{x:.6g}" for x in v]
        lines.append(f"{stamp},{static.ids[i]}," + ",".join(cells) + ",12")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_lp(path: Path, static: FleetStatic, rows) -> None:
    lines = ["# exported by stationd", "daemon,site=demo ticks=1i 1700000000000000000"]
    for t, i, v in rows:
        fields = ",".join(
            f"{n}={x:.6g}" if not signals.SIGNALS[c].boolean else f"{n}={'true' if x else 'false'}"
            for c, (n, x) in enumerate(zip(signals.NAMES, v, strict=True))
            if not math.isnan(x)
        )
        lines.append(
            f'station,site=demo,station={static.ids[i]},branch=东线\\ 北段 {fields},note="a b,c" {int(t) * 10**9}'
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def transitions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_replay_csv_and_line_protocol_give_the_same_transitions(tmp_path):
    cfg_path = write_config(tmp_path)
    static = FleetStatic.from_config(load_config(cfg_path))
    rows = recorded(static)
    write_csv(tmp_path / "data.csv", static, rows)
    write_lp(tmp_path / "data.lp", static, rows)

    assert replay_main(cfg_path, tmp_path / "data.csv", tmp_path / "csv.jsonl") == 0
    assert replay_main(cfg_path, tmp_path / "data.lp", tmp_path / "lp.jsonl") == 0
    from_csv = transitions(tmp_path / "csv.jsonl")
    from_lp = transitions(tmp_path / "lp.jsonl")
    assert from_csv == from_lp

    summary = [(r["time"], r["station"], r["finding"], r["state"]) for r in from_csv]
    assert summary == [
        # s3 silent from tick 60: the third missed tick (interval 10 s) raises comm loss
        ("2023-11-14T22:23:40.000Z", "s3", "station_comm_loss", "raise"),
        ("2023-11-14T22:28:20.000Z", "s3", "station_comm_loss", "clear"),
        ("2023-11-14T22:43:20.000Z", "s2", "secondary_pressure_drop", "raise"),
    ]
    drop = from_csv[-1]
    assert drop["severity"] == "critical" and drop["value"] > 0.19
    assert "二号站" in drop["message_zh"]
    assert drop["onset"] == drop["time"]


def test_replay_skips_unknown_stations_and_reports_bad_lines(tmp_path, capsys):
    cfg_path = write_config(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,station,secondary_flow\n2023-11-14T22:13:20Z,s1,80\nnot-a-time,s1,80\n")
    assert replay_main(cfg_path, bad, tmp_path / "out.jsonl") == 2
    assert "bad.csv:3" in capsys.readouterr().err

    other = tmp_path / "other.csv"
    other.write_text("time,station,secondary_flow\n1700000000,s9,80\n1700000000,s1,80\n")
    assert replay_main(cfg_path, other, tmp_path / "out.jsonl", interval=10) == 0
    assert "1 samples of unknown stations skipped" in capsys.readouterr().err


def test_line_protocol_reader_handles_escapes_and_types(tmp_path):
    lp = tmp_path / "x.lp"
    lp.write_text(
        'station,station=hs\\ 1,branch=a\\,b mains_power=true,makeup_total=12i,note="x y" 1700000000123000000\n',
        encoding="utf-8",
    )
    ((t, station, fields),) = list(read_lineprotocol(lp))
    assert station == "hs 1"
    assert t == 1700000000.123
    assert fields["mains_power"] == 1.0 and fields["makeup_total"] == 12.0
    assert math.isnan(fields["note"])
