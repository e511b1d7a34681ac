"""The dispatch desk on the command line: alarms, acks, playbook steps, control, the log.

Every subcommand but `log` talks to the running daemon only through MQTT, exactly like a
dispatch screen, through the desk's session (alarms/desk.py: the same client setup and
topic layout as the daemon's bridge): `stationd alarms` reads the retained alarm and playbook state; the
commands publish one `stationd.cmd/1` document on `<prefix>/cmd` and wait for the
`stationd.cmd_result/1` with the same `request_id` on `<prefix>/cmd/result`.
Exit status: 0 the daemon did it, 1 the daemon refused (its reason is printed), 2 no
answer (broker unreachable, daemon down, timeout) or bad arguments. `stationd log` reads
the dispatch log (调度日志) from the daemon's state dir, which is safe while it runs.

Wire it in stationd/cli.py with `add_dispatch_parsers(sub)` after the other subparsers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stationd import state

if TYPE_CHECKING:
    from alarms.settings import MqttSettings
    from alarms.topics import Topics

DEFAULT_CONFIG = Path("config/stations.yaml")
EXIT_OK, EXIT_REFUSED, EXIT_NO_ANSWER = 0, 1, 2


# -- broker ------------------------------------------------------------------------------
def broker_from_config(path: Path) -> tuple[MqttSettings, Topics]:
    """The `mqtt:` settings and the topic layout of a stations.yaml."""
    # imported here, not at the top: `stationd log` should start without them
    from alarms.topics import Topics
    from stationd.config import load_config

    cfg = load_config(path)
    settings = cfg.mqtt
    if settings is None:
        raise ValueError(f"{path}: no `mqtt:` section — the daemon publishes no alarms to read")
    return settings, Topics.of(settings, cfg.site.id)


# -- formatting --------------------------------------------------------------------------
def _hhmm(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t).strftime("%m-%d %H:%M:%S")


def render_alarms(docs: dict[str, bytes], prefix: str, now: float) -> str:
    """Active alarms, most urgent first, each with its playbook's open and overdue steps."""
    from stationd.liveview import pad, width

    alarms: list[dict[str, Any]] = []
    playbooks: dict[str, dict[str, Any]] = {}
    for topic, payload in docs.items():
        try:
            doc = json.loads(payload)
        except ValueError:
            continue
        if topic.startswith(f"{prefix}/alarm/"):
            alarms.append(doc)
        elif topic.startswith(f"{prefix}/playbook/"):
            playbooks[doc.get("incident_id", "")] = doc
    if not alarms:
        return "无活动报警 / no active alarms"
    # what needs someone first: standing alarms by priority, newest first; the shelved
    # and suppressed ones after them
    rank = {"unack": 0, "acked": 1, "rtn_unack": 2, "shelved": 3, "suppressed": 4}
    alarms.sort(
        key=lambda a: (
            rank.get(a.get("state", ""), 5) >= 3,
            a.get("priority", 9),
            -(a.get("since") or 0),
        )
    )
    name_w = max(8, *(width(a.get("station_name") or a.get("subject", "")) for a in alarms))
    id_w = max(8, *(width(a["alarm_id"]) for a in alarms))
    head = (
        f"{pad('级别', 11)} {pad('状态', 13)} {pad('站点 station', name_w)} "
        f"{pad('报警 alarm', id_w)} {pad('起始 since', 14)} 信息 message"
    )
    lines = [head, "-" * width(head)]
    for a in alarms:
        where = a.get("station_name") or a.get("subject", "")
        level = f"P{a.get('priority', '?')} {a.get('severity', '')}"
        lines.append(
            f"{pad(level, 11)} "
            f"{pad(a.get('state_zh') or a['state'], 13)} {pad(where, name_w)} "
            f"{pad(a['alarm_id'], id_w)} {pad(_hhmm(a.get('since')), 14)} {a.get('message_zh', '')}"
        )
        extra = []
        if a.get("suppressed_by"):
            extra.append(f"被抑制 suppressed by {a['suppressed_by']}")
        if a.get("acked_by"):
            extra.append(f"确认人 acked by {a['acked_by']}")
        if extra:
            lines.append("    " + "; ".join(extra))
        pb = playbooks.get(a.get("incident_id", ""))
        if pb is not None:
            lines.append(
                f"    预案 {pb.get('plan_section', '')} {pb.get('title_zh', '')} / "
                f"{pb.get('title_en', '')}  事件 incident {pb['incident_id']}"
            )
            for s in pb.get("steps", []):
                if s.get("status") != "pending":
                    continue
                due = s.get("due")
                overdue = due is not None and due <= now
                mark = "超时 OVERDUE" if overdue else ("期限 due " + _hhmm(due) if due else "")
                ctl = s.get("control")
                ctl_txt = f" [遥控 {ctl['point']}={ctl['value']:g}]" if ctl else ""
                lines.append(f"      {pad(s['id'], 22)} {pad(mark, 20)} {s['action_zh']}{ctl_txt}")
    return "\n".join(lines)


def _parse_time(text: str | None) -> float | None:
    """Unix seconds, or an ISO date/time (local time when no zone is given)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give unix seconds or an ISO time like 2026-01-05T08:00"
        ) from e


# -- subcommands -------------------------------------------------------------------------
def _send(args: argparse.Namespace, command: str, **fields: Any) -> int:
    from alarms.commands import CMD_SCHEMA

    body: dict[str, Any] = {
        "schema": CMD_SCHEMA,
        "request_id": f"cli-{uuid.uuid4().hex[:12]}",
        "operator": args.operator,
        "command": command,
        **{k: v for k, v in fields.items() if v is not None},
    }
    from alarms.desk import DeskClient, NoAnswer

    try:
        settings, topics = broker_from_config(args.config)
        with DeskClient(settings, topics, connect_timeout=args.timeout) as desk:
            res = desk.command(body, args.timeout)
    except NoAnswer as e:
        print(f"无应答 / no answer: {e}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except (ValueError, OSError) as e:
        print(str(e), file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.json:
        print(json.dumps(res, ensure_ascii=False, indent=2))
    if not res.get("ok"):
        print(f"拒绝 / refused: {res.get('error')}", file=sys.stderr)
        return EXIT_REFUSED
    if not args.json:
        print(_describe_result(command, res.get("result") or {}))
    return EXIT_OK


def _describe_result(command: str, r: dict[str, Any]) -> str:
    if command == "select":
        cur = "未知 unknown" if r.get("current") is None else f"{r['current']:g}"
        return (
            f"将写入 / will write: {r.get('station_name', '')} ({r['station']}) "
            f"{r['point']} = {r['value']:g}（当前 current {cur}）\n"
            f"select_id {r['select_id']} — 请在 {r.get('window_s', 0):g} 秒内执行 operate / "
            f"operate within {r.get('window_s', 0):g} s"
        )
    if command == "operate":
        return (
            f"已执行并确认 / done and confirmed: {r['station']} {r['point']} = {r['value']:g}"
            f"（回读 read back {r.get('readback')}）"
        )
    if r:
        return "ok: " + ", ".join(f"{k}={v}" for k, v in r.items())
    return "ok"


def cmd_alarms(args: argparse.Namespace) -> int:
    from alarms.desk import DeskClient, NoAnswer

    try:
        settings, topics = broker_from_config(args.config)
        with DeskClient(settings, topics, connect_timeout=args.timeout) as desk:
            docs = desk.retained(args.wait)
    except NoAnswer as e:
        print(f"无应答 / no answer: {e}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except (ValueError, OSError) as e:
        print(str(e), file=sys.stderr)
        return EXIT_NO_ANSWER
    if args.json:
        out = {t: json.loads(p) for t, p in sorted(docs.items())}
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(render_alarms(docs, topics.prefix, time.time()))
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    from alarms.dispatch_log import query_log
    from alarms.files import alarm_dir

    try:
        entries = query_log(
            alarm_dir(state.resolve(args.state_dir)),
            since=args.since,
            until=args.until,
            station=args.station,
            incident=args.incident,
            kinds=args.kind or None,
            limit=args.limit,
        )
    except FileNotFoundError as e:
        print(str(e), file=sys.stderr)
        return EXIT_NO_ANSWER
    for e in entries:
        if args.json:
            print(
                json.dumps(
                    {
                        "seq": e.seq,
                        "time": e.time,
                        "kind": e.kind,
                        "station": e.station,
                        "stations": list(e.stations),
                        "subject": e.subject,
                        "alarm_id": e.alarm_id,
                        "incident_id": e.incident_id,
                        "operator": e.operator,
                        "text_zh": e.text_zh,
                        "text_en": e.text_en,
                        "data": e.data,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            print(e.line())
    return EXIT_OK


def _mqtt_args(p: argparse.ArgumentParser, operator: bool = True) -> None:
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="stations.yaml (mqtt:)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    p.add_argument("--json", action="store_true", help="print the raw JSON answer")
    if operator:
        p.add_argument("--operator", required=True, help="who gives the instruction (调度员)")


def add_dispatch_parsers(sub: Any) -> None:
    """Add alarms, ack, shelve, unshelve, step, note, reading, select, operate and log."""
    p = sub.add_parser("alarms", help="active alarms with their playbooks (retained MQTT state)")
    _mqtt_args(p, operator=False)
    p.add_argument("--wait", type=float, default=1.0, help="seconds to collect retained state")
    p.set_defaults(func=cmd_alarms)

    p = sub.add_parser("ack", help="acknowledge an alarm (确认报警)")
    p.add_argument("alarm_id")
    p.add_argument("--reason", default=None)
    _mqtt_args(p)
    p.set_defaults(func=lambda a: _send(a, "ack", alarm_id=a.alarm_id, reason=a.reason))

    p = sub.add_parser("shelve", help="shelve an alarm for a while (搁置报警)")
    p.add_argument("alarm_id")
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--reason", required=True)
    _mqtt_args(p)
    p.set_defaults(
        func=lambda a: _send(a, "shelve", alarm_id=a.alarm_id, minutes=a.minutes, reason=a.reason)
    )

    p = sub.add_parser("unshelve", help="end a shelve early (取消搁置)")
    p.add_argument("alarm_id")
    p.add_argument("--reason", default=None)
    _mqtt_args(p)
    p.set_defaults(func=lambda a: _send(a, "unshelve", alarm_id=a.alarm_id, reason=a.reason))

    p = sub.add_parser("step", help="report a playbook step done or skipped (预案步骤)")
    steps = p.add_subparsers(dest="step_cmd", required=True)
    d = steps.add_parser("done", help="the step is done")
    d.add_argument("incident")
    d.add_argument("step")
    d.add_argument("--note", default=None)
    _mqtt_args(d)
    d.set_defaults(
        func=lambda a: _send(a, "step_done", incident=a.incident, step=a.step, note=a.note)
    )
    s = steps.add_parser("skip", help="the step is skipped (a reason is required)")
    s.add_argument("incident")
    s.add_argument("step")
    s.add_argument("--reason", required=True)
    _mqtt_args(s)
    s.set_defaults(
        func=lambda a: _send(a, "step_skip", incident=a.incident, step=a.step, reason=a.reason)
    )

    p = sub.add_parser("note", help="write a note into the dispatch log (调度日志)")
    p.add_argument("text")
    p.add_argument("--station", default=None)
    p.add_argument("--incident", default=None)
    _mqtt_args(p)
    p.set_defaults(
        func=lambda a: _send(a, "note", text=a.text, station=a.station, incident=a.incident)
    )

    p = sub.add_parser("reading", help="a manual field reading (plan 6.3 人工抄表)")
    p.add_argument("station")
    p.add_argument("signal")
    p.add_argument("value", type=float)
    p.add_argument("--note", default=None)
    _mqtt_args(p)
    p.set_defaults(
        func=lambda a: _send(
            a, "field_reading", station=a.station, signal=a.signal, value=a.value, note=a.note
        )
    )

    p = sub.add_parser("select", help="select a step's control action: see what would be written")
    p.add_argument("incident")
    p.add_argument("step")
    _mqtt_args(p)
    p.set_defaults(func=lambda a: _send(a, "select", incident=a.incident, step=a.step))

    p = sub.add_parser("operate", help="write a selected control action (within its window)")
    p.add_argument("incident")
    p.add_argument("step")
    p.add_argument("--select-id", required=True, help="the select_id `stationd select` printed")
    _mqtt_args(p)
    p.set_defaults(
        func=lambda a: _send(a, "operate", incident=a.incident, step=a.step, select_id=a.select_id)
    )

    p = sub.add_parser("log", help="read the dispatch log (调度日志)")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the daemon's state dir (default: $STATE_DIRECTORY, else ./state; see stationd/state.py)",
    )
    p.add_argument("--from", dest="since", type=_parse_time, default=None)
    p.add_argument("--to", dest="until", type=_parse_time, default=None)
    p.add_argument("--station", default=None)
    p.add_argument("--incident", default=None)
    p.add_argument("--kind", action="append", help="transition, command, step, control, ...")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_log)


def main(argv: list[str] | None = None) -> int:
    """`python -m stationd.dispatch_cli ...`: the same subcommands without the daemon's CLI."""
    parser = argparse.ArgumentParser(prog="stationd", description="调度台 / dispatch desk")
    add_dispatch_parsers(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
