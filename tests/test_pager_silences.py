"""An ack in stationd silences the incident in a REAL Alertmanager until it clears.

Alertmanager re-notifies a webhook receiver every 2 s for each firing incident. After
an ack the acknowledged incident is silenced (its alert listed as suppressed) and its
receiver hears nothing more, while an unacknowledged incident beside it keeps being
re-notified (the clock this test waits on). The clear removes the silence, also when it
was made by a daemon that has since restarted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from alarms.pager.fanout import Pager
from tests.pager_fixtures import Receiver, pager_event, wait_until
from tests.servers import Alertmanager, free_port, start_alertmanager

pytestmark = pytest.mark.integration

CONFIG = """\
route:
  receiver: crew
  group_by: [incident]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: crew
    webhook_configs:
      - url: {url}/crew
        send_resolved: false
"""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(default=200)
    await r.start(free_port())
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def am(tmp_path, receiver: Receiver) -> Iterator[Alertmanager]:
    with start_alertmanager(tmp_path, config=CONFIG.format(url=receiver.url)) as a:
        yield a


def notified(receiver: Receiver, incident: str) -> int:
    """Notifications the receiver got with `incident` firing in them."""
    n = 0
    for req in receiver.requests:
        body = req.json()
        n += any(
            a["labels"].get("incident") == incident and a["status"] == "firing"
            for a in body["alerts"]
        )
    return n


async def silences(am: Alertmanager, incident: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"{am.url}/api/v2/silences", params={"filter": f'incident="{incident}"'}
        ) as r:
            r.raise_for_status()
            return await r.json()


async def wait_silence_state(am: Alertmanager, incident: str, state: str) -> list[dict]:
    """The incident's silences, once there are some and all are in `state`."""
    async with asyncio.timeout(20):
        while True:
            got = await silences(am, incident)
            if got and all(s["status"]["state"] == state for s in got):
                return got
            # Alertmanager has no change feed to wait on; poll its API with a deadline.
            await asyncio.sleep(0.1)


async def alert_state(am: Alertmanager, incident: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"{am.url}/api/v2/alerts", params={"filter": f'incident="{incident}"'}
        ) as r:
            (alert,) = await r.json()
            return alert["status"]


def _pager(am: Alertmanager) -> Pager:
    return Pager.from_config({"alertmanager": {"url": am.url, "resend_interval_s": 30}})


async def test_ack_stops_renotification_and_the_clear_removes_the_silence(
    am: Alertmanager, receiver: Receiver
) -> None:
    taken = pager_event(incident_id="hs001/secondary_pressure_drop/1", station="hs001")
    other = pager_event(incident_id="hs002/secondary_pressure_drop/1", station="hs002")
    async with _pager(am) as pager:
        pager.notify(taken)
        pager.notify(other)
        # Alertmanager re-notifies both while nobody has taken them
        await wait_until(lambda: notified(receiver, taken.incident_id) >= 2, 20)
        await wait_until(lambda: notified(receiver, other.incident_id) >= 2, 20)

        pager.notify(dataclasses.replace(taken, action="acknowledge", operator="调度王"))
        (sil,) = await wait_silence_state(am, taken.incident_id, "active")
        assert sil["matchers"] == [
            {"name": "incident", "value": taken.incident_id, "isRegex": False, "isEqual": True}
        ]
        assert "调度王" in sil["createdBy"] and "调度王" in sil["comment"]
        status = await alert_state(am, taken.incident_id)
        assert status["state"] == "suppressed" and status["silencedBy"] == [sil["id"]]

        # three more rounds for the incident nobody took; none for the acknowledged one
        before = notified(receiver, taken.incident_id)
        rounds = notified(receiver, other.incident_id)
        await wait_until(lambda: notified(receiver, other.incident_id) >= rounds + 3, 30)
        assert notified(receiver, taken.incident_id) == before

        # the alarm clears: the silence goes, nothing is left muted
        pager.notify(dataclasses.replace(taken, action="resolve", ends_at=taken.starts_at + 60))
        (gone,) = await wait_silence_state(am, taken.incident_id, "expired")
        assert gone["id"] == sil["id"]
        adapter = pager.adapters[0]
        assert adapter.silences is not None  # type: ignore[attr-defined]
        assert adapter.silences.counters.created == 1  # type: ignore[attr-defined]
        assert adapter.silences.counters.expired == 1  # type: ignore[attr-defined]


async def test_a_restarted_daemon_keeps_the_silence_and_removes_it_on_clear(
    am: Alertmanager,
) -> None:
    ev = pager_event(incident_id="hs003/station_power_loss/1", station="hs003")
    async with _pager(am) as pager:
        pager.notify(ev)
        pager.notify(dataclasses.replace(ev, action="acknowledge", operator="调度李"))
        (first,) = await wait_silence_state(am, ev.incident_id, "active")

    # the daemon restarts: the incident is restored as acknowledged (no second silence),
    # and its clear finds the silence by its matcher
    restored = dataclasses.replace(ev, details={"state": "acked"}, operator="调度李")
    async with _pager(am) as pager:
        assert pager.restore([restored]) == 1
        silences_ = pager.adapters[0].silences  # type: ignore[attr-defined]
        assert await silences_.wait_idle(20)
        assert [s["id"] for s in await silences(am, ev.incident_id)] == [first["id"]]
        pager.notify(dataclasses.replace(ev, action="resolve", ends_at=ev.starts_at + 5))
        (gone,) = await wait_silence_state(am, ev.incident_id, "expired")
        assert gone["id"] == first["id"]
