"""Modbus TCP driver: one pymodbus connection per station, reads its compiled block plan.

The read plan (drivers.modbus_plan) is built once; a read sends the blocks in sequence on
the station's one connection (pymodbus keeps one request in flight per connection
anyway), copies the answers into preallocated buffers and decodes them in one
`DecodePlan` call. A Modbus exception answer (illegal address, gateway target failed)
spoils only that block's signals; a timeout or a dropped connection raises TransientError
and closes the client, because the station supervisor (stationd.poller) is the only
reconnect policy: pymodbus' own reconnect is switched off (`reconnect_delay=0`) and a read
on a closed client is refused here instead of letting pymodbus silently reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from drivers.base import PermanentError, ReadResult, TransientError
from drivers.decode import encode_registers, is_bit_tag, set_bit
from drivers.modbus_plan import ReadPlan, plan_station
from drivers.schema import DriverTiming, ModbusStationSpec

log = logging.getLogger(__name__)

# Modbus exception codes, for log lines a technician can act on.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def _exception_text(resp: Any) -> str:
    code = getattr(resp, "exception_code", None)
    return f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


class ModbusDriver:
    """Driver for one Modbus TCP station (drivers.base.Driver)."""

    def __init__(self, station: ModbusStationSpec, defaults: DriverTiming) -> None:
        self.station = station
        self.station_id = station.id
        self.defaults = defaults
        self.plan: ReadPlan = plan_station(station, defaults)
        self.signals = self.plan.signals
        self._unit = station.modbus.unit_id
        self._client: AsyncModbusTcpClient | None = None
        # Buffers as on the wire: 2 bytes per register (high byte first), 1 byte per bit.
        self._regs = bytearray(2 * self.plan.n_registers)
        self._bits = bytearray(self.plan.n_bits)
        # per block: a packer of its registers into the buffer (None for bit blocks)
        self._packers = [
            struct.Struct(f">{b.count}H") if b.kind in ("holding", "input") else None
            for b in self.plan.blocks
        ]
        self._block_ok = np.ones(len(self.plan.blocks), dtype=bool)
        # bit-in-register writes are read-modify-write: two of them must not interleave
        self._write_lock = asyncio.Lock()
        self.block_errors = 0  # exception answers seen, for the daemon's metrics

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        await self.close()
        ep = self.station.modbus
        client = AsyncModbusTcpClient(
            ep.host,
            port=ep.port,
            timeout=self.defaults.timeout,
            retries=0,  # a retry would eat the tick: the next tick is the retry
            reconnect_delay=0,  # 0 = pymodbus never reconnects on its own
            reconnect_delay_max=0,
            name=f"stationd-{self.station_id}",
        )
        # pymodbus uses one timeout for connect and requests: connect gets the longer one.
        client.comm_params.timeout_connect = self.defaults.connect_timeout
        try:
            async with asyncio.timeout(self.defaults.connect_timeout + 0.5):
                ok = await client.connect()
        except TimeoutError:
            ok = False
        except BaseException:  # cancelled by the poller: leave no half-open socket behind
            client.close()
            raise
        finally:
            client.comm_params.timeout_connect = self.defaults.timeout
        if not ok:
            client.close()
            raise TransientError(
                self.station_id,
                f"cannot connect to {self.station.endpoint_label} "
                f"within {self.defaults.connect_timeout}s (PLC off, network, or port wrong?)",
            )
        self._client = client

    def _live_client(self) -> AsyncModbusTcpClient:
        client = self._client
        if client is None or not client.connected:
            raise TransientError(self.station_id, f"not connected to {self.station.endpoint_label}")
        return client

    async def _call(self, what: str, fn: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        """One request; link failures become TransientError and drop the connection, so a
        late answer to a timed-out request can never be taken for the next one's."""
        try:
            async with asyncio.timeout(self.defaults.timeout + 0.2):
                return await fn()
        except (ModbusException, TimeoutError, OSError) as exc:
            self._drop()
            raise TransientError(
                self.station_id, f"{what} on {self.station.endpoint_label} failed: {exc}"
            ) from exc
        except asyncio.CancelledError:
            # the poller's own timeout fired mid-request: the connection is in an unknown state
            self._drop()
            raise

    async def read(self) -> ReadResult:
        client = self._live_client()
        unit = self._unit
        regs, bits, block_ok = self._regs, self._bits, self._block_ok
        b = self.plan.blocks[0]
        all_ok = True
        try:
            # No extra asyncio.timeout here: pymodbus times out every request (timeout=),
            # and the poller bounds the whole read; a third deadline would only cost CPU.
            for i, b in enumerate(self.plan.blocks):
                if not client.connected:
                    # pymodbus would silently reconnect inside the request: refuse instead
                    raise ConnectionError("connection closed by the device")
                if b.kind == "holding":
                    resp = await client.read_holding_registers(
                        b.start, count=b.count, device_id=unit
                    )
                elif b.kind == "input":
                    resp = await client.read_input_registers(b.start, count=b.count, device_id=unit)
                elif b.kind == "coil":
                    resp = await client.read_coils(b.start, count=b.count, device_id=unit)
                else:
                    resp = await client.read_discrete_inputs(b.start, count=b.count, device_id=unit)
                if resp.isError():
                    self._block_refused(i, resp)
                    all_ok = False
                    continue
                packer = self._packers[i]
                try:
                    if packer is not None:
                        packer.pack_into(regs, 2 * b.offset, *resp.registers[: b.count])
                    else:
                        bits[b.offset : b.offset + b.count] = bytes(resp.bits[: b.count])
                except (struct.error, ValueError, TypeError) as exc:
                    # a short or malformed answer spoils that block, not the link
                    self._block_refused(i, resp, f"malformed answer: {exc}")
                    all_ok = False
                    continue
                if not block_ok[i]:
                    log.info(
                        "modbus block answers again station=%s block=%s[%d:%d]",
                        self.station_id,
                        b.kind,
                        b.start,
                        b.end,
                    )
                    block_ok[i] = True
        except (ModbusException, TimeoutError, OSError) as exc:
            self._drop()
            raise TransientError(
                self.station_id,
                f"read {b.kind}[{b.start}:{b.end}] on {self.station.endpoint_label} failed: "
                f"{exc or type(exc).__name__}",
            ) from exc
        except asyncio.CancelledError:
            # the poller's own timeout fired mid-request: the connection is in an unknown state
            self._drop()
            raise
        # the usual case, every block answered, needs no per-signal mask
        ok = None if all_ok else self.plan.block_quality(block_ok)
        values, quality = self.plan.decode.decode(regs, bits, ok)
        return ReadResult(values=values, quality=quality)

    def _block_refused(self, i: int, resp: Any, why: str | None = None) -> None:
        b = self.plan.blocks[i]
        if self._block_ok[i]:  # log the change, not every tick
            log.warning(
                "modbus block refused station=%s block=%s[%d:%d] %s signals=%s",
                self.station_id,
                b.kind,
                b.start,
                b.end,
                why or _exception_text(resp),
                ",".join(b.signals),
            )
        self.block_errors += 1
        self._block_ok[i] = False

    async def write(self, signal: str, value: float) -> None:
        tag = self.station.tags.get(signal)
        if tag is None:
            raise PermanentError(self.station_id, f"no tag {signal!r} to write")
        if tag.kind in ("input", "discrete"):
            raise PermanentError(
                self.station_id, f"{signal} is a read-only {tag.kind} point ({tag.kind} table)"
            )
        try:
            words = encode_registers(tag, value)
        except ValueError as exc:
            raise PermanentError(self.station_id, f"cannot write {signal}={value}: {exc}") from exc
        unit = self._unit
        async with self._write_lock:
            client = self._live_client()
            if is_bit_tag(tag):
                resp = await self._call(
                    f"write coil {tag.address}",
                    lambda: client.write_coil(tag.address, bool(words[0]), device_id=unit),
                )
            elif tag.bit is not None:
                cur = await self._call(
                    f"read holding {tag.address} for bit {tag.bit}",
                    lambda: client.read_holding_registers(tag.address, count=1, device_id=unit),
                )
                self._refused(cur, signal)
                new = set_bit(tag, cur.registers[0], value)
                resp = await self._call(
                    f"write holding {tag.address}",
                    lambda: client.write_register(tag.address, new, device_id=unit),
                )
            elif len(words) == 1:
                resp = await self._call(
                    f"write holding {tag.address}",
                    lambda: client.write_register(tag.address, words[0], device_id=unit),
                )
            else:
                resp = await self._call(
                    f"write holding {tag.address}..{tag.address + len(words) - 1}",
                    lambda: client.write_registers(tag.address, words, device_id=unit),
                )
            self._refused(resp, signal)
        log.info(
            "modbus write station=%s signal=%s value=%s registers=%s",
            self.station_id,
            signal,
            value,
            words,
        )

    def _refused(self, resp: ModbusPDU, signal: str) -> None:
        if resp.isError():
            raise PermanentError(
                self.station_id, f"write {signal} refused by the device: {_exception_text(resp)}"
            )

    async def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # close must never raise (Driver contract)
                log.exception("modbus close failed station=%s", self.station_id)
