"""What a winter does to the daemon, on loopback and bounded in time.

A flapping station, a PLC answering junk or Modbus exceptions, the broker and the
database restarted mid-run, `kill -9` and a restart, and the wall clock stepping back and
forth: the daemon keeps ticking, counts what it missed, loses no transition or sample
that it took in, and does not page twice for one incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from alarms.dispatch_log import query_log
from drivers.factory import make_driver
from stationd import signals
from stationd.app import Daemon
from stationd.config import Config, ModbusStation
from stationd.historian.embedded import EmbeddedStore
from stationd.poller import Poller
from tests.daemon_harness import fast_config, fleet, until
from tests.ops_helpers import DaemonProcess, MqttWatch, wait_for, write_fleet
from tests.servers import free_port, start_mosquitto, start_victoria_metrics, vm_export
from tools.simulate_station.simulator import Simulator

SF = signals.INDEX["secondary_flow"]


def _others_fine(daemon: Daemon, but: set[str]) -> bool:
    rows = [i for i, s in enumerate(daemon.frame.station_ids) if s not in but]
    return bool((daemon.frame.consecutive_misses[rows] == 0).all())


async def test_flapping_station_is_counted_and_reconnects_at_backoff_pace(tmp_path: Path) -> None:
    cfg = fast_config(interval=1.0)
    other_ticks = [0, 0]  # ticks seen, other stations' answers summed
    async with fleet(cfg, tmp_path) as (sim, daemon):
        await until(daemon, lambda: daemon.poller.first_full_poll.is_set(), 30)
        i = daemon.frame.index["hs002"]
        others = np.arange(daemon.frame.n) != i

        def watch(*_: Any) -> None:
            other_ticks[0] += 1
            other_ticks[1] += int((daemon.frame.consecutive_misses[others] == 0).sum())

        daemon.listeners.append(watch)
        ticks0, skipped0 = daemon.poller.clock.ticks, daemon.poller.clock.skipped
        flaps = 3
        for _ in range(flaps):
            truth = sim.inject(kind="comm_loss", station="hs002")
            await until(daemon, lambda: daemon.frame.consecutive_misses[i] >= 2, 10)
            sim.clear(truth.id)
            # back within the backoff cap plus a tick or two
            await until(daemon, lambda: daemon.frame.consecutive_misses[i] == 0, 10)
        ticks = daemon.poller.clock.ticks - ticks0
        reconnects = int(daemon.poller.reconnects[i])
        failures = int(daemon.poller.read_failures[i])
        assert not daemon.stop_event.is_set()
    # every outage was seen and counted; the other stations kept answering (a loaded
    # 2-core test box may stall a tick now and then, hence not exactly 100 %)
    assert failures >= flaps
    assert other_ticks[1] >= 0.8 * other_ticks[0] * (daemon.frame.n - 1)
    assert daemon.poller.clock.skipped - skipped0 <= 1
    # at least one reconnect per outage, never more than one attempt per tick
    assert flaps <= reconnects <= ticks


# --- a PLC that answers junk -------------------------------------------------------------
@contextlib.asynccontextmanager
async def _bad_plc(port: int, mode: str) -> AsyncIterator[list[int]]:
    """A raw TCP server on `port`: `junk` answers random bytes (sometimes a plausible MBAP
    header with a nonsense body), `exception` answers every request with a well-formed
    Modbus exception (illegal data address). Yields a one-item request counter."""
    served = [0]
    rng = random.Random(port)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _proto, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(max(0, length - 1))
                served[0] += 1
                if mode == "exception":
                    writer.write(struct.pack(">HHHBBB", tid, 0, 3, unit, pdu[0] | 0x80, 0x02))
                elif rng.random() < 0.5:
                    body = os.urandom(rng.randint(1, 40))
                    writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                else:
                    writer.write(os.urandom(rng.randint(1, 300)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield served
    finally:
        server.close()
        await server.wait_closed()


def _move(cfg: Config, moves: dict[str, int]) -> Config:
    stations = []
    for st in cfg.stations:
        if st.id in moves:
            assert isinstance(st, ModbusStation)
            ep = st.modbus.model_copy(update={"port": moves[st.id]})
            st = st.model_copy(update={"modbus": ep})
        stations.append(st)
    return cfg.model_copy(update={"stations": tuple(stations)})


async def test_plc_answering_garbage_or_exceptions_is_bad_quality_and_the_rest_ticks(
    tmp_path: Path,
) -> None:
    full = fast_config()
    junk_port, exc_port = free_port(), free_port()
    # hs003 talks to a junk server, hs004 to one that only answers exceptions
    cfg = _move(full, {"hs003": junk_port, "hs004": exc_port})
    async with (
        _bad_plc(junk_port, "junk") as junk,
        _bad_plc(exc_port, "exception") as exc,
        Simulator(full),
    ):
        daemon = Daemon(cfg, state_dir=tmp_path / "state")
        task = asyncio.create_task(daemon.run())
        try:
            bad = {"hs003", "hs004"}
            await until(daemon, lambda: daemon.frame.count >= 2 and _others_fine(daemon, bad), 30)
            skipped = daemon.poller.clock.skipped
            await until(daemon, lambda: junk[0] >= 3 and exc[0] >= 3, 20)
            for sid in bad:
                k = daemon.frame.index[sid]
                # bad quality: nothing of it reaches the frame, the station counts as silent
                assert daemon.frame.consecutive_misses[k] >= 1
                assert np.isnan(daemon.frame.latest()[k]).all()
            # junk breaks the link (a failed read, reconnect); an exception answer is a
            # refused block on a healthy link
            assert daemon.poller.read_failures[daemon.frame.index["hs003"]] >= 1
            assert _others_fine(daemon, bad)
            assert daemon.poller.clock.skipped == skipped
            assert not task.done()
        finally:
            daemon.request_stop()
            async with asyncio.timeout(15):
                await task


# --- broker and database restarted mid-run -----------------------------------------------
async def test_broker_and_database_restarts_lose_no_transition_and_no_sample(
    tmp_path: Path,
) -> None:
    base = fast_config()
    tuning = {"station_comm_loss": {"off_delay_s": 0, "rearm_s": 0}}
    vm_port, mq_port = free_port(), free_port()
    prefix = f"heating/{base.site.id}"
    good: dict[str, set[int]] = {"hs001": set()}  # ticks (ms) with a good hs001 flow
    vm_dir, mq_dir = tmp_path / "vm", tmp_path / "mq"
    vm_cm = start_victoria_metrics(vm_dir, port=vm_port)
    vm = await asyncio.to_thread(vm_cm.__enter__)
    mq_cm = start_mosquitto(mq_dir, port=mq_port, persistence=True)
    await asyncio.to_thread(mq_cm.__enter__)
    watch: MqttWatch | None = None
    try:
        cfg = base.with_sections(
            historian={
                "influxdb": {"url": vm.url, "token_env": None, "flush_interval_s": 0.2},
                "queue": {"retry_max_s": 0.5, "drain_rate": 50},
            },
            mqtt={"port": mq_port, "reconnect_min_s": 1, "reconnect_max_s": 1},
            alarms={"tuning": tuning},
        )
        watch = MqttWatch(mq_port, prefix, "screen-restarts", clean=False)
        await wait_for(watch.subscribed.is_set, 10)
        async with fleet(cfg, tmp_path) as (sim, daemon):
            i = daemon.frame.index["hs001"]

            def record(tick: float, *_: Any) -> None:
                if not np.isnan(daemon.frame.latest()[i, SF]):
                    good["hs001"].add(round(tick * 1000))

            daemon.listeners.append(record)
            await until(daemon, lambda: daemon.poller.first_full_poll.is_set(), 30)
            await until(daemon, lambda: len(good["hs001"]) >= 3)

            # the database goes away for a few ticks, then comes back on the same port
            # (servers start and stop in a thread: the daemon shares this event loop)
            await asyncio.to_thread(vm_cm.__exit__, None, None, None)
            await until(daemon, lambda: not daemon.historian.connected, 20)
            await until(daemon, lambda: True)
            vm_cm = start_victoria_metrics(vm_dir, port=vm_port)
            vm = await asyncio.to_thread(vm_cm.__enter__)

            # the broker goes away while alarms open and close, then comes back
            await asyncio.to_thread(mq_cm.__exit__, None, None, None)
            alarm = "hs002/station_comm_loss"

            def state() -> str:
                rec = daemon.alarms.engine.records.get(alarm)
                return str(rec.state) if rec is not None else "normal"

            for _ in range(2):
                truth = sim.inject(kind="comm_loss", station="hs002")
                await until(daemon, lambda: state() == "unack", 15)
                sim.clear(truth.id)
                # returned, not yet acknowledged by the dispatcher (ISA-18.2)
                await until(daemon, lambda: state() == "rtn_unack", 15)
            mq_cm = start_mosquitto(mq_dir, port=mq_port, persistence=True)
            await asyncio.to_thread(mq_cm.__enter__)

            logged = [
                e.data
                for e in query_log(tmp_path / "state" / "alarms", kinds=["transition"])
                if e.data.get("kind") == "station_comm_loss"
            ]
            assert len(logged) >= 4  # raised, returned, raised again, returned

            def keys(ts: list[dict[str, Any]]) -> list[tuple[str, float, str]]:
                return [(t["incident_id"], t["time"], t["to_state"]) for t in ts]

            want = keys(logged)
            await wait_for(
                lambda: set(want) <= set(keys(watch.events())) if watch else False, 30, 0.2
            )

            # every good sample the daemon took in reaches the database
            def stored() -> set[int]:
                series = vm_export(vm, 'station_secondary_flow{station="hs001"}')
                return {t for s in series for t in s["timestamps"]}

            await wait_for(lambda: good["hs001"] <= stored(), 30, step=0.3)
            daemon.listeners.remove(record)
        got = keys(watch.events())
        # in order, and each transition exactly once on the event stream
        assert [k for k in got if k in set(want)] == want
        assert daemon.historian.forwarder.rejected_batches == 0
    finally:
        if watch is not None:
            watch.close()
        mq_cm.__exit__(None, None, None)
        vm_cm.__exit__(None, None, None)


# --- kill -9 and restart --------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A pager webhook receiver on a free port, recording every body it is sent."""
    got: list[dict[str, Any]] = []

    async def hook(req: web.Request) -> web.Response:
        got.append(json.loads(await req.read()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/page", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/page", got
    finally:
        await runner.cleanup()


async def test_kill_9_and_restart_continues_history_and_does_not_page_again(
    tmp_path: Path,
) -> None:
    full = fast_config()
    state = tmp_path / "state"
    async with _webhook() as (url, pages), Simulator(full) as sim:
        path = write_fleet(
            full,
            tmp_path / "stations.yaml",
            pager={"webhook": {"url": url, "timeout_s": 2}},
            http={"enabled": False},
        )
        first = DaemonProcess(path, state, tmp_path / "first.log").start()
        second: DaemonProcess | None = None
        try:
            sim.inject(kind="comm_loss", station="hs002")

            def triggers() -> list[dict[str, Any]]:
                return [
                    p
                    for p in pages
                    if p["action"] == "trigger" and p["alarm_id"] == "hs002/station_comm_loss"
                ]

            await wait_for(triggers, 40, step=0.2)
            incident = triggers()[0]["incident_id"]
            before, _ = _history(state)
            assert before > 0
            assert first.proc is not None
            first.proc.send_signal(signal.SIGKILL)  # our own child, by its pid
            await first.wait_exit(10)
            t_restart = time.time()

            second = DaemonProcess(path, state, tmp_path / "second.log").start()
            # history continues after the restart, for the answering stations
            await wait_for(lambda: _history(state)[0] > t_restart * 1000 + 2000, 40, step=0.3)
            # the restored alarm is still the same incident: nothing is paged again
            await wait_for(lambda: _restored(state), 20, step=0.2)
            await wait_for(lambda: _history(state)[0] > t_restart * 1000 + 4000, 20, step=0.3)
        finally:
            first.stop()
            if second is not None:
                second.stop()
    assert [p["incident_id"] for p in triggers()] == [incident]
    assert "Traceback" not in second.log if second else True
    _, stations = _history(state)
    assert "hs001" in stations and "hs002" not in stations


def _restored(state: Path) -> bool:
    """The restarted daemon's alarm service logged that it restored one open alarm."""
    entries = query_log(state / "alarms", kinds=["daemon"])
    return any("1 alarm(s) restored" in e.text_en for e in entries)


def _history(state: Path) -> tuple[int, set[str]]:
    """Newest `station` timestamp (ms) in the embedded history and who is in it."""
    store = EmbeddedStore(state / "history.db")
    try:
        last = max((ts for _, ts, _, _ in store.rows(0, 2**62, "station")), default=0)
        stations = {st for _, _, st, _ in store.rows(last, last + 1, "station")}
    finally:
        store.close()
    return last, stations


# --- the wall clock steps ---------------------------------------------------------------
async def test_wall_clock_steps_back_and_forward_realign_ticks(tmp_path: Path) -> None:
    cfg = fast_config()
    offset = [0.0]

    def wall() -> float:
        return time.time() + offset[0]

    async with Simulator(cfg):
        daemon = Daemon(cfg, state_dir=tmp_path / "state")
        # the poller, with an injected wall clock (an NTP step, an operator's `date -s`)
        daemon.poller = Poller(
            daemon.cfg,
            daemon.frame,
            lambda st, c: make_driver(st, c.defaults),
            on_tick=daemon._on_tick,
            wall=wall,
        )
        task = asyncio.create_task(daemon.run())
        interval = cfg.defaults.interval
        try:
            await until(daemon, lambda: daemon.poller.first_full_poll.is_set(), 30)
            clock = daemon.poller.clock
            for step in (-30.0, +45.0, -7.3):
                count = daemon.frame.count
                offset[0] += step
                # ticks go on, on the new clock's grid
                await until(daemon, lambda c=count: daemon.frame.count >= c + 3, 20)
                _, times = daemon.frame.last(2)
                assert np.allclose(np.mod(times, interval), 0.0, atol=1e-6)
                assert abs(times[-1] - wall()) < 2 * interval
                assert np.allclose(np.diff(times), interval)
            assert clock.clock_steps >= 2  # the two backward steps
            assert clock.skipped >= 1  # the forward step: missed ticks counted, not replayed
            await until(daemon, lambda: (daemon.frame.consecutive_misses == 0).all(), 20)
            assert not task.done()
        finally:
            daemon.request_stop()
            async with asyncio.timeout(15):
                await task
