"""OPC UA driver (asyncua): one session per station, polled in one Read or subscribed.

poll mode: every read is ONE Read service call for the Value attribute of all the
station's nodes (asyncua's batched `read_attributes`), so a station costs one round trip.
subscribe mode: one subscription with a data-change monitored item per node fills a
value + status cache; `read()` returns the cache and raises TransientError once the
client's keep-alive watchdog or the subscription's status says the session is gone.

Quality: only a Good status code is good. Bad or Uncertain status, an unknown node id
(BadNodeIdUnknown), or a value that is not a number is bad quality for that signal only.
asyncua's own reconnect stays off (`auto_reconnect=False`): the station supervisor
(stationd.poller) is the only reconnect policy.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from asyncua import Client, Node, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from drivers.base import PermanentError, ReadResult, TransientError
from drivers.schema import DriverTiming, OpcuaStationSpec

log = logging.getLogger(__name__)

# Status codes that retrying cannot cure: certificates, security policy, credentials.
_PERMANENT_CODES = {
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadSecurityPolicyRejected,
    ua.StatusCodes.BadSecurityModeRejected,
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadUserSignatureInvalid,
}
_MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_INT_VARIANTS = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


def _number(value: Any) -> float:
    """A device value as float; NaN for anything that is not a number (text, arrays, None)."""
    if isinstance(value, bool | int | float):
        return float(value)
    return float("nan")


def _good(status: ua.StatusCode | None) -> bool:
    # An absent status code means Good (OPC UA Part 4, DataValue encoding mask).
    return status is None or status.is_good()


class OpcuaDriver:
    """Driver for one OPC UA station (drivers.base.Driver)."""

    def __init__(self, station: OpcuaStationSpec, defaults: DriverTiming) -> None:
        self.station = station
        self.station_id = station.id
        self.defaults = defaults
        self.signals: tuple[str, ...] = station.signals
        tags = [station.tags[s] for s in self.signals]
        self.node_ids: list[ua.NodeId] = [ua.NodeId.from_string(t.node) for t in tags]
        self._index: dict[ua.NodeId, list[int]] = {}
        for i, nid in enumerate(self.node_ids):
            self._index.setdefault(nid, []).append(i)
        self._scale = np.asarray([t.scale for t in tags], dtype=np.float64)
        self._offset = np.asarray([t.offset for t in tags], dtype=np.float64)
        n = len(self.signals)
        self._raw = np.full(n, np.nan, dtype=np.float64)  # subscribe-mode cache
        self._ok = np.zeros(n, dtype=bool)
        self._variant: dict[str, ua.VariantType] = {}
        self._client: Client | None = None
        self._subscription: Any = None
        self._lost: str | None = None
        self.bad_nodes: dict[str, str] = {}  # signal -> status name, for the start-up log

    # --- connection ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return (
            self._client is not None
            and self._lost is None
            and self._client.state is UaClientState.CONNECTED
        )

    def _env(self, name: str | None, what: str) -> str | None:
        if name is None:
            return None
        value = os.environ.get(name)
        if value is None:
            raise PermanentError(self.station_id, f"{what}: environment variable {name} is not set")
        return value

    async def _make_client(self) -> Client:
        ep = self.station.opcua
        client = Client(
            ep.url,
            timeout=self.defaults.timeout,
            # the keep-alive probe: how fast a dead server is noticed between reads
            watchdog_intervall=max(self.defaults.interval, 1.0),
            auto_reconnect=False,
        )
        # A session orphaned by a dropped link is freed by the server after this (ms);
        # asyncua's default of an hour would pile up sessions on a flapping PLC.
        client.session_timeout = 60_000
        user = self._env(ep.username_env, "OPC UA user name")
        if user is not None:
            client.set_user(user)
        password = self._env(ep.password_env, "OPC UA password")
        if password is not None:
            client.set_password(password)
        sec = ep.security
        if sec.mode != "None":
            # OpcuaSecurity's validator guarantees both for Sign / SignAndEncrypt
            assert sec.certificate is not None and sec.private_key is not None
            key_pw = self._env(sec.private_key_password_env, "client private key password")
            try:
                cert = await uacrypto.load_certificate(sec.certificate)
                # The server checks the certificate's URI against our ApplicationUri.
                uris = cert.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value.get_values_for_type(x509.UniformResourceIdentifier)
                if uris:
                    client.application_uri = uris[0]
                await client.set_security(
                    security_policies.SecurityPolicyBasic256Sha256,
                    certificate=str(sec.certificate),
                    private_key=str(sec.private_key),
                    private_key_password=key_pw,
                    server_certificate=(
                        str(sec.server_certificate) if sec.server_certificate else None
                    ),
                    mode=_MODES[sec.mode],
                )
            except (OSError, ValueError, x509.ExtensionNotFound) as exc:
                raise PermanentError(
                    self.station_id,
                    f"cannot load OPC UA certificate/key ({sec.certificate}, {sec.private_key}): {exc}",
                ) from exc
        return client

    async def connect(self) -> None:
        await self.close()
        self._lost = None
        self._ok[:] = False
        self._raw[:] = np.nan
        try:
            async with asyncio.timeout(self.defaults.connect_timeout):
                client = await self._make_client()
                self._client = client
                client.connection_lost_callback = self._on_connection_lost
                await client.connect()
                if self.station.opcua.mode == "subscribe":
                    await self._subscribe(client)
        except (PermanentError, asyncio.CancelledError):
            await self.close()  # cancelled by the poller or refused: no half-open session
            raise
        except ua.UaStatusCodeError as exc:
            await self.close()
            cls = PermanentError if exc.code in _PERMANENT_CODES else TransientError
            raise cls(self.station_id, f"{self.station.endpoint_label} refused: {exc}") from exc
        except ua.UaError as exc:
            await self.close()
            if "No matching endpoints" in str(exc):
                # the server does not offer our security mode/policy: a config matter
                raise PermanentError(
                    self.station_id,
                    f"{self.station.endpoint_label} offers no endpoint for security mode "
                    f"{self.station.opcua.security.mode} ({exc}); check opcua.security",
                ) from exc
            raise TransientError(
                self.station_id, f"{self.station.endpoint_label} refused: {exc!r}"
            ) from exc
        except (TimeoutError, OSError) as exc:
            await self.close()
            raise TransientError(
                self.station_id,
                f"cannot connect to {self.station.endpoint_label} within "
                f"{self.defaults.connect_timeout}s: {exc!r}",
            ) from exc
        except Exception as exc:
            # a server answering garbage must not take the supervisor down: retry later
            await self.close()
            log.exception("opcua connect station=%s unexpected error", self.station_id)
            raise TransientError(
                self.station_id, f"connect to {self.station.endpoint_label}: {exc!r}"
            ) from exc

    async def _subscribe(self, client: Client) -> None:
        # Publish twice per tick so the cache is never more than half an interval behind.
        period_ms = self.defaults.interval * 1000 / 2
        sub = await client.create_subscription(period_ms, self)
        self._subscription = sub
        nodes = [client.get_node(nid) for nid in self.node_ids]
        results = await sub.subscribe_data_change(nodes, sampling_interval=period_ms)
        for nid, res in zip(self.node_ids, results, strict=True):
            if isinstance(res, ua.StatusCode):  # e.g. BadNodeIdUnknown: stays bad quality
                for i in self._index[nid]:
                    self.bad_nodes[self.signals[i]] = res.name
                log.warning(
                    "opcua monitored item refused station=%s node=%s status=%s",
                    self.station_id,
                    nid.to_string(),
                    res.name,
                )

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._lost = f"connection lost: {exc!r}"
        log.warning("opcua connection lost station=%s %r", self.station_id, exc)

    # subscription handler interface (asyncua calls these from its publish task)
    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        good = _good(dv.StatusCode)
        raw = _number(val) if good else float("nan")
        for i in self._index.get(node.nodeid, ()):
            self._raw[i] = raw
            self._ok[i] = good and not np.isnan(raw)

    def status_change_notification(self, status: Any) -> None:
        code = getattr(status, "Status", status)
        if isinstance(code, ua.StatusCode) and not code.is_good():
            self._lost = f"subscription status {code.name}"

    def event_notification(self, event: Any) -> None:  # part of the handler protocol
        return None

    # --- reads and writes ----------------------------------------------------------------
    def _live(self) -> Client:
        client = self._client
        if client is None:
            raise TransientError(self.station_id, "not connected")
        if self._lost is not None or client.state is not UaClientState.CONNECTED:
            why = self._lost or f"client state {client.state.value}"
            raise TransientError(self.station_id, f"{self.station.endpoint_label}: {why}")
        return client

    def _result(self, raw: np.ndarray, ok: np.ndarray) -> ReadResult:
        values = raw * self._scale + self._offset
        quality = ok & np.isfinite(values)
        values[~quality] = np.nan
        return ReadResult(values=values, quality=quality)

    async def read(self) -> ReadResult:
        client = self._live()
        if self.station.opcua.mode == "subscribe":
            return self._result(self._raw.copy(), self._ok.copy())
        try:
            async with asyncio.timeout(self.defaults.timeout + 0.2):
                dvs = await client.uaclient.read_attributes(self.node_ids, ua.AttributeIds.Value)
        except (TimeoutError, OSError, ua.UaError) as exc:
            raise TransientError(
                self.station_id, f"read from {self.station.endpoint_label} failed: {exc!r}"
            ) from exc
        return self._result(*self._decode(dvs))

    def _decode(self, dvs: Sequence[ua.DataValue]) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.signals)
        raw = np.full(n, np.nan, dtype=np.float64)
        ok = np.zeros(n, dtype=bool)
        for i, dv in enumerate(dvs):
            if _good(dv.StatusCode) and dv.Value is not None:
                raw[i] = _number(dv.Value.Value)
                ok[i] = True
            elif self.signals[i] not in self.bad_nodes and dv.StatusCode is not None:
                self.bad_nodes[self.signals[i]] = dv.StatusCode.name
        return raw, ok

    async def write(self, signal: str, value: float) -> None:
        tag = self.station.tags.get(signal)
        if tag is None:
            raise PermanentError(self.station_id, f"no tag {signal!r} to write")
        client = self._live()
        nid = ua.NodeId.from_string(tag.node)
        raw = (float(value) - tag.offset) / tag.scale
        try:
            async with asyncio.timeout(self.defaults.timeout * 2 + 0.2):
                vtype = self._variant.get(signal)
                if vtype is None:
                    # write with the node's own variant type: a Double into an Int16 is refused
                    (dv,) = await client.uaclient.read_attributes([nid], ua.AttributeIds.Value)
                    if not _good(dv.StatusCode) or dv.Value is None:
                        raise PermanentError(
                            self.station_id,
                            f"cannot write {signal}: node {tag.node} reads {dv.StatusCode}",
                        )
                    vtype = dv.Value.VariantType
                    self._variant[signal] = vtype
                variant = ua.Variant(self._coerce(signal, raw, vtype), vtype)
                (status,) = await client.uaclient.write_attributes(
                    [nid], [ua.DataValue(variant)], ua.AttributeIds.Value
                )
        except (TimeoutError, OSError) as exc:
            raise TransientError(self.station_id, f"write {signal} failed: {exc!r}") from exc
        except ua.UaStatusCodeError as exc:
            raise PermanentError(self.station_id, f"write {signal} refused: {exc}") from exc
        if not status.is_good():
            raise PermanentError(
                self.station_id, f"write {signal}={value} refused by the server: {status.name}"
            )
        log.info("opcua write station=%s signal=%s value=%s", self.station_id, signal, value)

    def _coerce(self, signal: str, raw: float, vtype: ua.VariantType) -> Any:
        if vtype is ua.VariantType.Boolean:
            if raw not in (0.0, 1.0):
                raise PermanentError(self.station_id, f"{signal} is boolean: {raw} is not 0 or 1")
            return bool(raw)
        if vtype in _INT_VARIANTS:
            lo, hi = _INT_VARIANTS[vtype]
            iraw = round(raw)
            if not lo <= iraw <= hi:
                raise PermanentError(
                    self.station_id, f"{signal}: {iraw} is outside {vtype.name} [{lo}, {hi}]"
                )
            return iraw
        if vtype in (ua.VariantType.Float, ua.VariantType.Double):
            return float(raw)
        raise PermanentError(self.station_id, f"{signal}: cannot write a number to a {vtype.name}")

    async def close(self) -> None:
        client, self._client = self._client, None
        self._subscription = None
        if client is None:
            return
        try:
            # CloseSession on a live server; on a dead one give up after the timeout
            async with asyncio.timeout(self.defaults.timeout):
                await client.disconnect()
        except Exception as exc:  # close never raises (Driver contract)
            log.debug("opcua disconnect station=%s: %r", self.station_id, exc)
        finally:
            # Belt and braces: asyncua cancels its watchdog tasks in close_session(); if the
            # timeout cut that short, cancel them here so no task outlives the driver.
            for name in ("_supervisor_task", "_stale_watchdog_task"):
                task = getattr(client, name, None)
                if isinstance(task, asyncio.Task) and not task.done():
                    task.cancel()
            client.disconnect_socket()
