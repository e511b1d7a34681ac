"""Pages carry what crews are routed by, and the example alertmanager.yml routes them.

The alarm service, built from the example fleet (config/stations.yaml), pages real
findings; their Alertmanager labels (branch, feeder, heat source, estate, service
centre, playbook, plan section) go through `amtool config routes test` against
config/alertmanager/alertmanager.yml to the crew that should get them, and a REAL
Alertmanager running that file inhibits a station's comm loss under its power loss.
PagerDuty gets the same facts as custom details, and the summaries name the station once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml

from alarms.model import PagerEvent
from alarms.pager.alertmanager import alert_labels
from alarms.pager.fanout import Pager
from alarms.pager.pagerduty import pagerduty_event
from alarms.pager.webhook import webhook_body
from alarms.service import AlarmService
from stationd.config import load_config
from stationd.findings import Finding
from tests.pager_fixtures import Receiver, validator
from tests.servers import free_port, start_alertmanager

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_AM = ROOT / "config" / "alertmanager" / "alertmanager.yml"
T0 = 1_796_000_000.0
KEY = "k" * 32


def finding(kind: str, subject: str, severity: str, zh: str, en: str, **kw) -> Finding:
    scope = kw.pop("scope", "station")
    return Finding(kind, subject, scope, severity, T0, 1.0, zh, en, **kw)  # type: ignore[arg-type]


FINDINGS = [
    finding("station_comm_loss", "hs002", "major",
            "hs002 幸福里换热站 通讯中断：连续 3 个周期无数据", "hs002 comm loss: no data for 3 ticks"),
    finding("secondary_leak", "hs004", "major",
            "hs004 西苑换热站 二次网漏水：失水率 2.1%", "hs004 secondary leak: loss rate 2.1 %"),
    finding("primary_leak", "东一支线", "critical",
            "东一支线 一次网压力下降，疑似泄漏", "东一支线 primary pressure falling: a leak?",
            scope="branch", stations=("hs001", "hs002", "hs003")),
    finding("station_power_loss", "hs007", "critical",
            "hs007 北苑换热站 停电", "hs007 power loss"),
]  # fmt: skip


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, PagerEvent]:
    cfg = load_config(ROOT / "config" / "stations.yaml")
    svc = AlarmService.from_config(cfg, state_dir=tmp_path_factory.mktemp("alarms"))
    got: list[PagerEvent] = []
    svc.pager_hooks.append(got.append)

    async def run() -> None:
        await svc.start()
        try:
            # twice: the on-delays of comm and power loss need a second tick
            for dt in (0.0, 600.0):
                await svc.on_tick(T0 + dt, FINDINGS)
        finally:
            await svc.stop()

    asyncio.run(run())
    return {e.kind: e for e in got if e.action == "trigger"}


def test_a_station_page_carries_its_routing_facts_and_names_it_once(pages):
    ev = pages["station_comm_loss"]
    assert ev.routing == {
        "branch": "东一支线",
        "feeder": "城东10kV-3",
        "heat_source": "华电热电厂",
        "estate": ev.routing["estate"],
        "service_centre": "东城服务中心",
        "plan_section": "6.3",
    }
    assert ev.routing["estate"]
    assert ev.summary_zh.count("幸福里换热站") == 1 and "hs002" not in ev.summary_zh
    assert ev.summary_zh.endswith("通讯中断：连续 3 个周期无数据")
    assert ev.summary_en.count("hs002") == 1
    labels = alert_labels(ev)
    assert labels["playbook"] == ev.playbook_id == "station_comm_loss"
    assert {k: labels[k] for k in ev.routing} == ev.routing


def test_a_branch_alarm_carries_what_its_stations_share(pages):
    ev = pages["primary_leak"]
    # hs001-hs003 share branch, source and service centre, not the feeder (-3 and -5)
    assert ev.routing == {
        "branch": "东一支线",
        "heat_source": "华电热电厂",
        "service_centre": "东城服务中心",
        "plan_section": "6.2",
    }
    assert ev.summary_zh.count("东一支线") == 1


def test_pagerduty_and_the_webhook_get_the_same_facts_and_links(pages):
    pager = Pager.from_config(
        {
            "links": {
                "runbook_url": "https://wiki.example/playbooks/{playbook}",
                "console_url": "https://grafana.example/d/stationd-station?var-station={station}",
            }
        }
    )
    ev = pager.with_links(pages["secondary_leak"])
    assert ev.runbook_url == "https://wiki.example/playbooks/secondary_leak"
    body = pagerduty_event(ev, KEY)
    validator("pagerduty_event_v2.json").validate(body)
    details = body["payload"]["custom_details"]
    for key, value in ev.routing.items():
        assert details[key] == value
    assert details["service_centre"] == "西城服务中心"
    assert details["runbook_url"] == ev.runbook_url
    assert {x["href"] for x in body["links"]} == {ev.runbook_url, ev.console_url}
    hook = webhook_body(ev)
    validator("pager_webhook_v1.json").validate(hook)
    assert hook["routing"] == ev.routing and hook["console_url"].endswith("var-station=hs004")


def _route(labels: dict[str, str]) -> list[str]:
    amtool = shutil.which("amtool")
    assert amtool, "amtool comes with prometheus-alertmanager"
    out = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={EXAMPLE_AM}",
         *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip().split(",")


def test_the_example_alertmanager_config_is_valid():
    r = subprocess.run(
        [shutil.which("amtool") or "amtool", "check-config", str(EXAMPLE_AM)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_example_routes_each_page_to_its_crew(pages):
    assert _route(alert_labels(pages["station_comm_loss"])) == ["crew-east-branch"]
    # a secondary-side work order goes to the service centre serving the station
    assert _route(alert_labels(pages["secondary_leak"])) == ["centre-west"]
    # critical: the on-call dispatcher by phone, and the branch's crew
    assert _route(alert_labels(pages["primary_leak"])) == ["dispatch-oncall", "crew-east-branch"]
    assert _route(alert_labels(pages["station_power_loss"])) == [
        "dispatch-oncall",
        "crew-north-branch",
    ]


@pytest.mark.integration
async def test_the_example_inhibits_comm_loss_under_power_loss(tmp_path, pages):
    receiver = Receiver(default=200)
    await receiver.start(free_port())
    config = yaml.safe_load(EXAMPLE_AM.read_text(encoding="utf-8"))
    for r in config["receivers"]:
        for w in r.get("webhook_configs", ()):
            w["url"] = receiver.url + "/" + r["name"]
    power = pages["station_power_loss"]
    # the same station's comm loss, as the daemon would page it when its data vanished
    comm = dataclasses.replace(
        pages["station_comm_loss"],
        incident_id="hs007/station_comm_loss/1",
        alarm_id="hs007/station_comm_loss",
        station="hs007",
        subject="hs007",
        routing=power.routing | {"plan_section": "6.3"},
    )
    other = dataclasses.replace(comm, incident_id="hs002/station_comm_loss/9")  # at hs002
    other = dataclasses.replace(other, station="hs002", subject="hs002")
    try:
        with start_alertmanager(tmp_path, config=yaml.safe_dump(config, allow_unicode=True)) as am:
            async with Pager.from_config({"alertmanager": {"url": am.url}}) as pager:
                for ev in (power, comm, other):
                    pager.notify(ev)
                async with aiohttp.ClientSession() as s:
                    async with asyncio.timeout(20):
                        while True:
                            async with s.get(f"{am.url}/api/v2/alerts") as r:
                                alerts = {a["labels"]["incident"]: a for a in await r.json()}
                            if (
                                len(alerts) == 3
                                and alerts[comm.incident_id]["status"]["inhibitedBy"]
                            ):
                                break
                            # Alertmanager has no change feed: poll its API with a deadline
                            await asyncio.sleep(0.1)
        assert alerts[comm.incident_id]["status"]["state"] == "suppressed"
        assert alerts[power.incident_id]["status"]["state"] == "active"
        assert alerts[other.incident_id]["status"]["inhibitedBy"] == []  # another station
    finally:
        await receiver.stop()
