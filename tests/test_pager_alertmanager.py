"""The Alertmanager adapter against a real Alertmanager (Debian's prometheus-alertmanager).

One Alertmanager serves the module; each test uses its own incident ids and reads the
alerts back through `GET /api/v2/alerts`, polling with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from alarms.pager.alertmanager import AlertmanagerAdapter
from alarms.pager.config import AlertmanagerConfig
from alarms.pager.delivery import DeliveryCounters
from alarms.pager.fanout import Pager
from tests.pager_fixtures import pager_event, wait_until
from tests.servers import Alertmanager, free_port, start_alertmanager

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    with start_alertmanager(tmp_path_factory.mktemp("am")) as am:
        yield am


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


def _pager(am: Alertmanager, links: dict[str, str] | None = None, **extra: Any) -> Pager:
    return Pager.from_config({"alertmanager": {"url": am.url, **extra}, "links": links or {}})


async def _alerts(
    http: aiohttp.ClientSession, am: Alertmanager, incident: str | list[str]
) -> list[dict]:
    """Active (not resolved) alerts as Alertmanager lists them: of one incident, or
    matching a list of label matchers such as 'site="e2e"'."""
    matchers = [f'incident="{incident}"'] if isinstance(incident, str) else incident
    params = [("filter", m) for m in matchers] + [("active", "true")]
    async with http.get(f"{am.url}/api/v2/alerts", params=params) as resp:
        resp.raise_for_status()
        return await resp.json()


async def _wait_alerts(
    http: aiohttp.ClientSession,
    am: Alertmanager,
    incident: str | list[str],
    predicate: Any,
    deadline_s: float = 10.0,
) -> list[dict]:
    async with asyncio.timeout(deadline_s):
        while True:
            alerts = await _alerts(http, am, incident)
            if predicate(alerts):
                return alerts
            # Alertmanager has no change feed to wait on; poll its API with a deadline.
            await asyncio.sleep(0.05)


async def test_alert_with_chinese_labels_appears_with_the_plan_labels(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "北一支线/primary_leak/1795424400"
    event = pager_event(
        incident_id=incident,
        kind="primary_leak",
        station="",
        subject="北一支线",
        stations=("hs001", "hs002"),
        routing={"branch": "北一支线", "heat_source": "北郊热源厂", "plan_section": "6.2"},
    )
    links = {
        "runbook_url": "https://wiki.example/预案/{playbook}",
        "console_url": "https://grafana.example/d/x?var-subject={subject}",
    }
    async with _pager(alertmanager, links=links) as pager:
        pager.notify(event)
        (alert,) = await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
    assert alert["labels"] == {
        "alertname": "primary_leak",
        "site": "北郊热网",
        "subject": "北一支线",
        "severity": "critical",
        "incident": incident,
        "playbook": "7.1",
        "branch": "北一支线",
        "heat_source": "北郊热源厂",
        "plan_section": "6.2",
    }
    assert alert["annotations"]["runbook_url"] == "https://wiki.example/预案/7.1"
    assert (
        alert["generatorURL"]
        == "https://grafana.example/d/x?var-subject=%E5%8C%97%E4%B8%80%E6%94%AF%E7%BA%BF"
    )
    ann = alert["annotations"]
    assert ann["summary"] == event.summary_zh
    assert ann["summary_en"] == event.summary_en
    assert ann["first_steps"].split("\n") == event.first_steps
    assert ann["playbook"] == "7.1"
    assert ann["stations"] == "hs001,hs002"
    assert alert["status"]["state"] == "active"
    assert pager.counters()["alertmanager"] == DeliveryCounters(sent=1)


async def test_station_alert_carries_station_label_and_resolves(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "hs001/secondary_pressure_drop/resolve-test"
    async with _pager(alertmanager) as pager:
        pager.notify(pager_event(incident_id=incident))
        (alert,) = await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
        assert alert["labels"]["station"] == "hs001"
        assert alert["annotations"]["station_name"] == "幸福小区换热站"
        pager.notify(pager_event("resolve", incident_id=incident, ends_at=time.time()))
        # endsAt in the past: Alertmanager counts it resolved and stops listing it as active.
        await _wait_alerts(http, alertmanager, incident, lambda a: a == [])
    am = pager.adapters[0]
    assert isinstance(am, AlertmanagerAdapter)
    assert am.active_incidents == []


async def test_two_replicas_fold_into_one_alert(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "hs007/station_power_loss/1795424400"
    # Both replicas saw the same onset tick, so they hand over the same incident.
    onset = time.time() - 60
    event = pager_event(
        incident_id=incident, kind="station_power_loss", station="hs007", starts_at=onset
    )
    async with _pager(alertmanager) as replica_a, _pager(alertmanager) as replica_b:
        replica_a.notify(event)
        replica_b.notify(event)
        await wait_until(
            lambda: (
                replica_a.counters()["alertmanager"].sent == 1
                and replica_b.counters()["alertmanager"].sent == 1
            )
        )
        alerts = await _alerts(http, alertmanager, incident)
        assert len(alerts) == 1
        # Both re-send while active: still one alert, not two.
        assert replica_a.resend() == 1
        assert replica_b.resend() == 1
        await wait_until(
            lambda: (
                replica_a.counters()["alertmanager"].sent == 2
                and replica_b.counters()["alertmanager"].sent == 2
            )
        )
        assert len(await _alerts(http, alertmanager, incident)) == 1
        # Either replica's resolve ends the one alert.
        replica_b.notify(
            pager_event(
                "resolve",
                incident_id=incident,
                kind="station_power_loss",
                station="hs007",
                starts_at=onset,
                ends_at=time.time(),
            )
        )
        await _wait_alerts(http, alertmanager, incident, lambda a: a == [])


async def test_active_alerts_are_resent_with_a_later_end(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "hs003/makeup_over_allowance/resend-test"
    # A short period so the adapter's own re-send loop runs within the test.
    async with _pager(alertmanager, resend_interval_s=0.3, timeout_s=0.2) as pager:
        pager.notify(
            pager_event(
                incident_id=incident,
                kind="makeup_over_allowance",
                station="hs003",
                severity="minor",
            )
        )
        (first,) = await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
        await _wait_alerts(
            http, alertmanager, incident, lambda a: len(a) == 1 and a[0]["endsAt"] > first["endsAt"]
        )
        await wait_until(lambda: pager.counters()["alertmanager"].sent >= 3)
    # Prometheus' rule: the end is set a few re-send periods ahead while active, so a dead
    # daemon's alerts resolve by themselves.
    assert first["endsAt"] > first["startsAt"]


async def test_escalation_replaces_the_alert_with_the_raised_severity(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "hs004/secondary_leak/escalate-test"
    kw = {"incident_id": incident, "kind": "secondary_leak", "station": "hs004"}
    async with _pager(alertmanager) as pager:
        pager.notify(pager_event(severity="major", **kw))
        await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
        pager.notify(pager_event("acknowledge", severity="major", operator="王工", **kw))
        await _wait_alerts(
            http,
            alertmanager,
            incident,
            lambda a: len(a) == 1 and a[0]["annotations"].get("acknowledged_by") == "王工",
        )
        pager.notify(pager_event("escalate", severity="critical", step_id="leak-40min", **kw))
        (alert,) = await _wait_alerts(
            http,
            alertmanager,
            incident,
            lambda a: len(a) == 1 and a[0]["labels"]["severity"] == "critical",
        )
    assert alert["annotations"]["escalated_step"] == "leak-40min"
    assert alert["annotations"]["acknowledged_by"] == "王工"  # earlier notes stay


async def test_alert_queued_while_alertmanager_is_down_goes_out_when_it_returns(
    tmp_path, http: aiohttp.ClientSession
) -> None:
    port = free_port()  # nothing listens here yet: connection refused
    incident = "hs005/station_comm_loss/outage-test"
    section = {
        "alertmanager": {
            "url": f"http://127.0.0.1:{port}",
            "initial_backoff_s": 0.05,
            "max_backoff_s": 0.2,
            "max_attempts": 100,
            "timeout_s": 1.0,
        }
    }
    async with Pager.from_config(section) as pager:
        pager.notify(pager_event(incident_id=incident, kind="station_comm_loss", station="hs005"))
        await wait_until(lambda: pager.counters()["alertmanager"].retried >= 2)
        assert pager.counters()["alertmanager"].sent == 0
        with start_alertmanager(tmp_path, port=port) as am:
            await _wait_alerts(http, am, incident, lambda a: len(a) == 1)
            await wait_until(lambda: pager.counters()["alertmanager"].sent == 1)


async def test_late_acknowledge_of_a_resolved_incident_does_not_revive_it(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "hs006/sensor_fault/late-ack-test"
    kw = {"incident_id": incident, "kind": "sensor_fault", "station": "hs006", "severity": "notice"}
    async with _pager(alertmanager) as pager:
        pager.notify(pager_event(**kw))
        await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
        pager.notify(pager_event("resolve", ends_at=time.time(), **kw))
        pager.notify(pager_event("acknowledge", operator="李工", **kw))
        pager.notify(pager_event("escalate", **kw))
        await wait_until(lambda: pager.counters()["alertmanager"].sent == 2)
        assert pager.resend() == 0
        assert await _alerts(http, alertmanager, incident) == []


async def test_restored_incident_is_resent_after_a_restart(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "hs008/extreme_cold/restore-test"
    event = pager_event(incident_id=incident, kind="extreme_cold", station="hs008")
    async with _pager(alertmanager) as before:
        before.notify(event)
        (first,) = await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
    # A new process knows nothing until the service hands over what is still active.
    async with _pager(alertmanager) as after:
        assert after.restore([pager_event("acknowledge", operator="王工", **_kw(event))]) == 1
        assert after.resend() == 0  # the restore itself is still queued
        (alert,) = await _wait_alerts(
            http,
            alertmanager,
            incident,
            lambda a: len(a) == 1 and a[0]["endsAt"] > first["endsAt"],
        )
        assert after.resend() == 1
    assert alert["labels"] == first["labels"]
    assert alert["startsAt"] == first["startsAt"]


async def test_every_cluster_peer_gets_the_alert_and_a_dead_peer_blocks_nothing(
    tmp_path, http: aiohttp.ClientSession
) -> None:
    dead = free_port()
    incident = "hs009/station_power_loss/cluster-test"
    with (
        start_alertmanager(tmp_path / "a") as am_a,
        start_alertmanager(tmp_path / "b") as am_b,
    ):
        section = {
            "alertmanager": {
                "url": [am_a.url, am_b.url, f"http://127.0.0.1:{dead}"],
                "initial_backoff_s": 0.05,
                "max_backoff_s": 0.2,
                "max_attempts": 100,
            }
        }
        async with Pager.from_config(section) as pager:
            pager.notify(
                pager_event(incident_id=incident, kind="station_power_loss", station="hs009")
            )
            for am in (am_a, am_b):
                await _wait_alerts(http, am, incident, lambda a: len(a) == 1)
            counters = pager.counters()
            assert counters[f"alertmanager@127.0.0.1:{am_a.port}"].sent == 1
            assert counters[f"alertmanager@127.0.0.1:{am_b.port}"].sent == 1
            assert counters[f"alertmanager@127.0.0.1:{dead}"].sent == 0
            await pager.stop(deadline_s=0.2)
        assert pager.counters()[f"alertmanager@127.0.0.1:{dead}"].dropped == 1


def _kw(event: Any) -> dict[str, Any]:
    return {
        "incident_id": event.incident_id,
        "kind": event.kind,
        "station": event.station,
        "starts_at": event.starts_at,
    }


async def test_unbatched_posts_are_still_arrays(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    # The API takes an array even for one alert; the benchmark's one-per-POST baseline
    # relies on it.
    incident = "hs010/flow_allocation/unbatched-test"
    config = AlertmanagerConfig(url=alertmanager.url)
    async with Pager([AlertmanagerAdapter(config, batch_max=1)]) as pager:
        pager.notify(pager_event(incident_id=incident, kind="flow_allocation", station="hs010"))
        await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
    assert pager.counters()["alertmanager"] == DeliveryCounters(sent=1)


async def test_alerts_of_a_daemon_that_stops_resending_resolve_by_themselves(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    incident = "hs011/station_comm_loss/dead-daemon-test"
    # endsAt is 4 re-send periods ahead: 1.2 s here.
    async with _pager(alertmanager, resend_interval_s=0.3, timeout_s=0.2) as pager:
        pager.notify(pager_event(incident_id=incident, kind="station_comm_loss", station="hs011"))
        await _wait_alerts(http, alertmanager, incident, lambda a: len(a) == 1)
    # The daemon is gone (stopped without resolving): nothing re-sends the alert.
    await _wait_alerts(http, alertmanager, incident, lambda a: a == [], deadline_s=15)


async def test_pressure_collapse_pages_alertmanager_through_the_alarm_service(
    alertmanager: Alertmanager, http: aiohttp.ClientSession, tmp_path
) -> None:
    # The wiring the daemon uses: the alarm service's pager hook is Pager.notify.
    from alarms.service import AlarmService, StationInfo
    from stationd.findings import Finding

    service = AlarmService(
        "e2e",
        tmp_path / "state",
        site_name="北郊热网",
        stations=[StationInfo(id="hs001", name="幸福小区换热站", branch="北一支线")],
    )
    matchers = ['site="e2e"', 'alertname="secondary_pressure_drop"', 'station="hs001"']
    async with _pager(alertmanager) as pager:
        service.pager_hooks.append(pager.notify)
        await service.start()
        try:
            # Ticks from the recent past, so the resolve (at the last tick) is in the past
            # for Alertmanager too.
            t0 = float(int(time.time()) // 5 * 5) - 900
            drop = Finding(
                kind="secondary_pressure_drop",
                subject="hs001",
                scope="station",
                severity="critical",
                onset=t0,
                value=0.08,
                message_zh="二次供水压力 60 秒内下降 0.08 MPa",
                message_en="secondary supply pressure fell 0.08 MPa within 60 s",
                stations=("hs001",),
            )
            await service.on_tick(t0, [drop])
            (alert,) = await _wait_alerts(http, alertmanager, matchers, lambda a: len(a) == 1)
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["incident"].startswith("e2e-")
            assert alert["annotations"]["playbook"] == "secondary_pressure_drop"  # plan 7.1
            assert alert["annotations"]["station_name"] == "幸福小区换热站"
            assert alert["annotations"]["first_steps"]
            # The condition goes away; after the off-delay the incident resolves.
            await service.on_tick(t0 + 5, [])
            await service.on_tick(t0 + 600, [])
            await _wait_alerts(http, alertmanager, matchers, lambda a: a == [])
        finally:
            await service.stop()
