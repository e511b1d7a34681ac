"""PagerDuty Events API v2 and webhook adapters against a local HTTP receiver.

The receiver checks each PagerDuty request against the published Events API v2 format
(alarms/schemas/pagerduty_event_v2.json) and answers 400 like the real service when it
does not match; scripted statuses exercise retries, and a server that never answers
stands in for a pager that is down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from alarms.pager.delivery import DeliveryCounters
from alarms.pager.fanout import Pager
from tests.pager_fixtures import (
    ROUTING_KEY,
    HangingServer,
    Receiver,
    pager_event,
    validator,
    wait_until,
)
from tests.servers import free_port

pytestmark = pytest.mark.integration

FAST = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 2.0}
ENV = {"PD_KEY": ROUTING_KEY, "HOOK_HEADERS": '{"Authorization": "Bearer 调度室-token"}'}


def _accounted(c: DeliveryCounters) -> int:
    return c.sent + c.failed + c.dropped


@pytest.fixture
async def pd() -> AsyncIterator[Receiver]:
    r = Receiver(schema=validator("pagerduty_event_v2.json"))
    await r.start(free_port())
    yield r
    await r.stop()


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    r = Receiver(schema=validator("pager_webhook_v1.json"), default=200)
    await r.start(free_port())
    yield r
    await r.stop()


def _pd_pager(url: str, **delivery: float) -> Pager:
    section = {"pagerduty": {"url": url, "routing_key_env": "PD_KEY", **FAST, **delivery}}
    return Pager.from_config(section, environ=ENV)


async def test_pagerduty_trigger_ack_escalate_resolve_follow_events_api_v2(pd: Receiver) -> None:
    pager = _pd_pager(pd.url)
    async with pager:
        for action, severity in [
            ("trigger", "major"),
            ("acknowledge", "major"),
            ("escalate", "critical"),
            ("resolve", "critical"),
        ]:
            pager.notify(pager_event(action, severity=severity, step_id="7.1-1", operator="王工"))
        reqs = await pd.wait_requests(4)
    assert pd.invalid == []
    assert [r.path for r in reqs] == ["/v2/enqueue"] * 4
    bodies = [r.json() for r in reqs]
    # Order is kept, so a resolve never overtakes its trigger.
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "trigger", "resolve"]
    assert {b["dedup_key"] for b in bodies} == {"hs001/secondary_pressure_drop/1795424400"}
    assert {b["routing_key"] for b in bodies} == {ROUTING_KEY}
    trigger, _ack, escalate, _resolve = bodies
    p = trigger["payload"]
    assert p["severity"] == "error"  # stationd "major"
    assert p["source"] == "北郊热网/hs001"
    assert p["component"] == "幸福小区换热站"
    assert p["group"] == "北郊热网"
    assert p["class"] == "secondary_pressure_drop"
    assert "二次网压力骤降" in p["summary"]
    assert p["custom_details"]["playbook_id"] == "7.1"
    assert p["custom_details"]["first_steps"][0].startswith("调度/站长: 停循环泵")
    assert escalate["payload"]["severity"] == "critical"
    assert escalate["payload"]["summary"].startswith("【升级 escalated】")
    assert escalate["payload"]["custom_details"]["escalated_step"] == "7.1-1"
    assert pager.counters()["pagerduty"] == DeliveryCounters(sent=4)


async def test_routing_key_read_from_systemd_credential_file(pd: Receiver, tmp_path) -> None:
    (tmp_path / "pagerduty.key").write_text(ROUTING_KEY + "\n", encoding="utf-8")
    section = {"pagerduty": {"url": pd.url, "routing_key_file": "pagerduty.key", **FAST}}
    async with Pager.from_config(section, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}) as p:
        p.notify(pager_event())
        (req,) = await pd.wait_requests(1)
    assert req.json()["routing_key"] == ROUTING_KEY
    assert pd.invalid == []


async def test_server_errors_are_retried_then_delivered(pd: Receiver) -> None:
    pd.script = [500, 503, 429]
    pd.retry_after = "0"
    async with _pd_pager(pd.url) as pager:
        pager.notify(pager_event())
        reqs = await pd.wait_requests(4)
        await wait_until(lambda: pager.counters()["pagerduty"].sent == 1)
    assert len({r.raw for r in reqs}) == 1  # the same request each time
    assert pager.counters()["pagerduty"] == DeliveryCounters(sent=1, retried=3)


async def test_client_error_is_not_retried_and_the_queue_moves_on(pd: Receiver) -> None:
    pd.script = [400]
    async with _pd_pager(pd.url) as pager:
        pager.notify(pager_event(incident_id="hs001/secondary_pressure_drop/1"))
        pager.notify(pager_event(incident_id="hs002/secondary_pressure_drop/2", station="hs002"))
        reqs = await pd.wait_requests(2)
        await wait_until(lambda: _accounted(pager.counters()["pagerduty"]) == 2)
    assert [r.json()["dedup_key"] for r in reqs] == [
        "hs001/secondary_pressure_drop/1",
        "hs002/secondary_pressure_drop/2",
    ]
    assert pager.counters()["pagerduty"] == DeliveryCounters(sent=1, failed=1)
    assert len(pd.requests) == 2  # no retry of the rejected one


async def test_retries_are_bounded(pd: Receiver) -> None:
    pd.default = 502
    async with _pd_pager(pd.url, max_attempts=3) as pager:
        pager.notify(pager_event())
        await wait_until(lambda: pager.counters()["pagerduty"].failed == 1)
    assert len(pd.requests) == 3
    assert pager.counters()["pagerduty"] == DeliveryCounters(failed=1, retried=2)


async def test_webhook_posts_utf8_json_with_chinese_intact(hook: Receiver) -> None:
    section = {"webhook": {"url": f"{hook.url}/hooks/dispatch", "headers_env": "HOOK_HEADERS"}}
    async with Pager.from_config(section, environ=ENV) as pager:
        pager.notify(pager_event(details={"pressure_mpa": 0.08, "estates": ["幸福小区"]}))
        (req,) = await hook.wait_requests(1)
    assert hook.invalid == []
    assert req.path == "/hooks/dispatch"
    assert req.headers["Content-Type"] == "application/json; charset=utf-8"
    assert req.headers["Authorization"] == "Bearer 调度室-token"
    # Chinese goes over the wire as UTF-8 text, not as \u escapes.
    assert "幸福小区换热站".encode() in req.raw
    assert b"\\u" not in req.raw
    body = req.json()
    assert body["schema"] == "stationd.pager.webhook/1"
    assert body["id"] == body["incident_id"] == "hs001/secondary_pressure_drop/1795424400"
    assert body["site"] == "北郊热网"
    assert body["details"] == {"pressure_mpa": 0.08, "estates": ["幸福小区"]}
    assert pager.counters()["webhook"] == DeliveryCounters(sent=1)


async def test_stuck_pager_blocks_neither_notify_nor_other_pagers(hook: Receiver) -> None:
    stuck = HangingServer()
    await stuck.start(free_port())
    section = {
        "pagerduty": {
            "url": stuck.url,
            "routing_key_env": "PD_KEY",
            "queue_size": 5,
            "timeout_s": 0.3,
            "max_attempts": 100,
            "initial_backoff_s": 0.01,
            "max_backoff_s": 0.05,
        },
        "webhook": {"url": hook.url, "queue_size": 100},
    }
    try:
        pager = Pager.from_config(section, environ=ENV)
        await pager.start()
        n = 40
        for i in range(n):
            pager.notify(
                pager_event(incident_id=f"hs{i:03d}/station_power_loss/1", station=f"hs{i:03d}")
            )
        # Every event reached the webhook while PagerDuty's endpoint never answered once.
        await hook.wait_requests(n)
        await wait_until(lambda: stuck.connections >= 1)
        pd_counters = pager.counters()["pagerduty"]
        assert pd_counters.sent == 0
        assert pd_counters.dropped >= n - 5 - 1  # bounded queue: the oldest went first
        await pager.stop(deadline_s=0.5)
    finally:
        await stuck.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("pager-")]
    # Every event is accounted for exactly once: none silently lost.
    assert _accounted(pager.counters()["pagerduty"]) == n
    assert pager.counters()["webhook"] == DeliveryCounters(sent=n)


async def test_unreachable_pager_gives_up_and_counts(hook: Receiver) -> None:
    closed = free_port()  # nothing listens here: connection refused
    section = {
        "pagerduty": {"url": f"http://127.0.0.1:{closed}", "routing_key_env": "PD_KEY", **FAST},
        "webhook": {"url": hook.url},
    }
    async with Pager.from_config(section, environ=ENV) as pager:
        pager.notify(pager_event())
        await hook.wait_requests(1)
        await wait_until(lambda: pager.counters()["pagerduty"].failed == 1)
    assert pager.counters()["pagerduty"] == DeliveryCounters(failed=1, retried=5)


async def test_overflow_drops_the_oldest_and_stop_drains_the_rest(hook: Receiver) -> None:
    pager = Pager.from_config({"webhook": {"url": hook.url, "queue_size": 3}})
    # Queued before start: the outbox fills while nothing is being sent.
    for i in range(5):
        pager.notify(pager_event(incident_id=f"inc-{i}"))
    await pager.start()
    await pager.stop(deadline_s=5)
    assert [r.json()["id"] for r in hook.requests] == ["inc-2", "inc-3", "inc-4"]
    assert pager.counters()["webhook"] == DeliveryCounters(sent=3, dropped=2)


async def test_events_after_stop_are_counted_as_dropped(hook: Receiver) -> None:
    pager = Pager.from_config({"webhook": {"url": hook.url}})
    await pager.start()
    await pager.stop()
    pager.notify(pager_event())
    assert pager.counters()["webhook"] == DeliveryCounters(dropped=1)
    assert hook.requests == []
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("pager-")]


def test_pager_without_adapters_accepts_events() -> None:
    pager = Pager.from_config({})
    pager.notify(pager_event())
    assert pager.counters() == {}


def test_webhook_body_is_plain_json_of_the_event() -> None:
    from alarms.pager.webhook import webhook_body

    body = webhook_body(pager_event("resolve", ends_at=1795424460.5))
    assert body["ends_at_rfc3339"] == "2026-11-23T09:01:00.500Z"
    validator("pager_webhook_v1.json").validate(json.loads(json.dumps(body)))


async def test_counters_are_exposed_as_prometheus_metrics(pd: Receiver) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from alarms.pager.metrics import register_pager_metrics

    registry = CollectorRegistry()
    pd.script = [500]
    async with _pd_pager(pd.url) as pager:
        register_pager_metrics(pager, registry)
        pager.notify(pager_event())
        await wait_until(lambda: pager.counters()["pagerduty"].sent == 1)
    text = generate_latest(registry).decode()
    assert 'stationd_pager_items_total{outbox="pagerduty",outcome="sent"} 1.0' in text
    assert 'stationd_pager_items_total{outbox="pagerduty",outcome="dropped"} 0.0' in text
    assert 'stationd_pager_retries_total{outbox="pagerduty"} 1.0' in text
    assert 'stationd_pager_queued{outbox="pagerduty"} 0.0' in text
    assert "stationd_pager_render_errors_total 0.0" in text


def test_webhook_body_has_every_field_of_the_event() -> None:
    from alarms.pager.webhook import webhook_body

    event = pager_event(details={"a": [1, 2]}, stations=("hs001",))
    body = webhook_body(event)
    assert {k: v for k, v in body.items() if k in event.to_dict()} == event.to_dict()


async def test_rate_limit_holds_requests_to_the_sliding_window() -> None:
    from alarms.pager.delivery import RateLimit

    loop = asyncio.get_running_loop()
    limit = RateLimit(2, window_s=0.3)
    times = []
    for _ in range(5):
        await limit.acquire()
        times.append(loop.time())
    # Any three consecutive requests span at least one window.
    assert all(times[i + 2] - times[i] >= 0.3 - 1e-3 for i in range(3))


async def test_webhook_token_in_the_url_stays_out_of_the_log(
    hook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    hook.script = [403]
    async with Pager.from_config({"webhook": {"url": f"{hook.url}/robot/send?key=s3cr3t"}}) as p:
        p.notify(pager_event())
        await wait_until(lambda: p.counters()["webhook"].failed == 1)
    assert hook.requests[0].path == "/robot/send"
    assert "rejected" in caplog.text and "HTTP 403" in caplog.text
    assert "s3cr3t" not in caplog.text


async def test_escalation_after_resolve_does_not_open_a_new_pagerduty_alert(
    pd: Receiver, hook: Receiver
) -> None:
    # The alarm service escalates a cleared but unacknowledged incident whose playbook
    # steps run late; on PagerDuty that trigger would open a new alert for a gone condition.
    section = {
        "pagerduty": {"url": pd.url, "routing_key_env": "PD_KEY", **FAST},
        "webhook": {"url": hook.url},
    }
    async with Pager.from_config(section, environ=ENV) as pager:
        pager.notify(pager_event("trigger"))
        pager.notify(pager_event("resolve", ends_at=time.time()))
        pager.notify(pager_event("escalate", step_id="stop_circ_pump"))
        pager.notify(pager_event("acknowledge", operator="王工"))
        await hook.wait_requests(4)  # the webhook gets the whole story
        await pd.wait_requests(2)
    assert [r.json()["event_action"] for r in pd.requests] == ["trigger", "resolve"]
