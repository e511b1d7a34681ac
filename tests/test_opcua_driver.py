"""OpcuaDriver against a real asyncua server on a free loopback port (one per module).

The server hosts the `hx-opcua` stations of config/stations.yaml as objects with one
variable per signal. Poll and subscribe modes must read what it holds; a Bad status or an
unknown node id is bad quality for that signal only; a dropped link is TransientError and a
new connect() works; writes keep the node's variant type; Basic256Sha256 Sign and
SignAndEncrypt work with certificates made here, and an untrusted client certificate is
refused.
"""

from __future__ import annotations

import asyncio
import datetime
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.base import PermanentError, ReadResult, TransientError
from drivers.factory import make_driver
from drivers.opcua import OpcuaDriver
from stationd.config import (
    Defaults,
    OpcuaEndpoint,
    OpcuaSecurity,
    OpcuaStation,
    OpcuaTag,
    load_config,
)
from tests.conftest import ROOT
from tests.servers import free_port, opcua_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

CFG = load_config(ROOT / "config" / "stations.yaml")
DEFAULTS = Defaults(interval=1.0, timeout=0.8, connect_timeout=5.0)
STATIONS = ("hs006", "hs007")
BOOLS = {"circ_pump_running", "makeup_pump_running", "mains_power"}
VARIANTS = {"circ_pump_freq": ua.VariantType.Float, "makeup_total": ua.VariantType.UInt32}


def held_value(station_index: int, k: int, sig: str) -> Any:
    if sig in BOOLS:
        return (station_index + k) % 2 == 0
    if sig == "makeup_total":
        return 123_456 + station_index
    if sig == "circ_pump_freq":
        return 42.5 + station_index  # exact in float32
    return 10.0 * station_index + k + 0.25


@dataclass
class Plant:
    server: Any
    url: str
    pki: Path
    held: dict[str, dict[str, Any]]

    def station(self, sid: str, **endpoint: Any) -> OpcuaStation:
        st = CFG.station(sid)
        assert isinstance(st, OpcuaStation)
        ep = OpcuaEndpoint(url=self.url, **endpoint)
        return st.model_copy(update={"opcua": ep})

    async def set(self, sid: str, sig: str, value: Any, status: int = ua.StatusCodes.Good) -> None:
        vtype = VARIANTS.get(sig, ua.VariantType.Boolean if sig in BOOLS else ua.VariantType.Double)
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status))
        await self.server.write_attribute_value(ua.NodeId(f"{sid}.{sig}", 2), dv)


def make_cert(folder: Path, name: str, uri: str, use: ExtendedKeyUsageOID) -> tuple[Path, Path]:
    """A self-signed OPC UA application certificate (DER) and its key (PEM)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {"organizationName": "stationd tests"},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        extended=[use],
        days=2,
    )
    # keys live apart from the certificates: a trust folder must hold certificates only
    (folder.parent / "keys").mkdir(exist_ok=True)
    cert_path, key_path = folder / f"{name}.der", folder.parent / "keys" / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
    return cert_path, key_path


DISPATCH_PASSWORD = "热网-调度-2026"  # non-ASCII on purpose: it must survive the token encoding


class DispatchUsers:
    """Anonymous sessions (the other tests) and one named user with a password."""

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User)
        if username == "dispatch" and password == DISPATCH_PASSWORD:
            return User(role=UserRole.User, name=username)
        return None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Plant]:
    pki = tmp_path_factory.mktemp("pki")
    srv_cert, srv_key = make_cert(
        pki / "server", "server", "urn:stationd:test-server", ExtendedKeyUsageOID.SERVER_AUTH
    )
    make_cert(pki / "trusted", "dispatch", "urn:stationd:dispatch", ExtendedKeyUsageOID.CLIENT_AUTH)
    make_cert(
        pki / "stranger", "stranger", "urn:stationd:stranger", ExtendedKeyUsageOID.CLIENT_AUTH
    )
    port = free_port()
    async with opcua_server(
        port,
        certificate=srv_cert,
        private_key=srv_key,
        trusted_client_certs=pki / "trusted",
        user_manager=DispatchUsers(),
    ) as (server, ns):
        assert ns == 2  # config/stations.yaml addresses ns=2
        held: dict[str, dict[str, Any]] = {}
        for n, sid in enumerate(STATIONS):
            station = CFG.station(sid)
            folder = await server.nodes.objects.add_object(ua.NodeId(sid, ns), sid)
            held[sid] = {}
            for k, sig in enumerate(station.signals):
                value = held_value(n, k, sig)
                vtype = VARIANTS.get(
                    sig, ua.VariantType.Boolean if sig in BOOLS else ua.VariantType.Double
                )
                var = await folder.add_variable(
                    ua.NodeId(f"{sid}.{sig}", ns), sig, ua.Variant(value, vtype)
                )
                await var.set_writable()
                held[sid][sig] = value
        yield Plant(server=server, url=f"opc.tcp://127.0.0.1:{port}/stationd/", pki=pki, held=held)


async def wait_for(
    read: Callable[[], Any], ok: Callable[[ReadResult], bool], deadline: float = 5.0
) -> ReadResult:
    """Read until `ok(result)` or the deadline (subscriptions deliver asynchronously)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        result = await read()
        if ok(result) or loop.time() > end:
            return result
        await asyncio.sleep(0.05)


def assert_held(driver: OpcuaDriver, result: ReadResult, held: dict[str, Any]) -> None:
    for i, sig in enumerate(driver.signals):
        assert result.quality[i], sig
        assert result.values[i] == pytest.approx(float(held[sig])), sig


async def test_poll_mode_reads_every_node_in_one_read(plant: Plant) -> None:
    driver = make_driver(plant.station("hs006"), DEFAULTS)
    assert isinstance(driver, OpcuaDriver)
    await driver.connect()
    try:
        result = await driver.read()
        assert result.values.shape == (len(driver.signals),)
        assert_held(driver, result, plant.held["hs006"])
    finally:
        await driver.close()


async def test_subscribe_mode_fills_the_cache_and_follows_changes(plant: Plant) -> None:
    driver = OpcuaDriver(plant.station("hs007", mode="subscribe"), DEFAULTS)
    await driver.connect()
    try:
        result = await wait_for(driver.read, lambda r: bool(r.quality.all()))
        assert_held(driver, result, plant.held["hs007"])
        await plant.set("hs007", "secondary_supply_pressure", 0.07)
        i = driver.signals.index("secondary_supply_pressure")
        result = await wait_for(driver.read, lambda r: r.values[i] == pytest.approx(0.07))
        assert result.values[i] == pytest.approx(0.07)
    finally:
        await driver.close()
        await plant.set(
            "hs007", "secondary_supply_pressure", plant.held["hs007"]["secondary_supply_pressure"]
        )


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_bad_status_is_bad_quality_for_that_signal_only(plant: Plant, mode: str) -> None:
    driver = OpcuaDriver(plant.station("hs006", mode=mode), DEFAULTS)
    i = driver.signals.index("secondary_flow")
    await plant.set("hs006", "secondary_flow", 0.0, ua.StatusCodes.BadSensorFailure)
    await driver.connect()
    try:
        result = await wait_for(
            driver.read, lambda r: int(r.quality.sum()) == len(driver.signals) - 1
        )
        assert [s for s, q in zip(driver.signals, result.quality, strict=True) if not q] == [
            "secondary_flow"
        ]
        assert math.isnan(result.values[i])
        await plant.set("hs006", "secondary_flow", 88.0)
        result = await wait_for(driver.read, lambda r: bool(r.quality.all()))
        assert result.values[i] == 88.0
    finally:
        await driver.close()
        await plant.set("hs006", "secondary_flow", plant.held["hs006"]["secondary_flow"])


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_unknown_node_id_is_bad_quality_not_a_crash(plant: Plant, mode: str) -> None:
    base = plant.station("hs006", mode=mode)
    tags = {**base.tags, "indoor_temp": OpcuaTag(node="ns=2;s=hs006.no_such_sensor")}
    driver = OpcuaDriver(base.model_copy(update={"tags": tags}), DEFAULTS)
    await driver.connect()
    try:
        result = await wait_for(
            driver.read, lambda r: int(r.quality.sum()) == len(driver.signals) - 1
        )
        assert [s for s, q in zip(driver.signals, result.quality, strict=True) if not q] == [
            "indoor_temp"
        ]
        assert driver.bad_nodes["indoor_temp"] == "BadNodeIdUnknown"
    finally:
        await driver.close()


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_dropped_link_is_transient_and_reconnect_works(plant: Plant, mode: str) -> None:
    driver = OpcuaDriver(plant.station("hs006", mode=mode), DEFAULTS)
    await driver.connect()
    try:
        await wait_for(driver.read, lambda r: bool(r.quality.all()))
        # fault injection at the transport seam: the TCP link dies under the session
        assert driver._client is not None
        driver._client.uaclient.protocol.transport.abort()
        loop = asyncio.get_running_loop()
        end = loop.time() + 5.0
        with pytest.raises(TransientError):
            async with asyncio.timeout(6):  # never hang
                while loop.time() < end:
                    await driver.read()
                    await asyncio.sleep(0.05)
        assert not driver.connected
        await driver.connect()
        result = await wait_for(driver.read, lambda r: bool(r.quality.all()))
        assert_held(driver, result, plant.held["hs006"])
    finally:
        await driver.close()


async def test_writes_keep_the_node_variant_type(plant: Plant) -> None:
    driver = OpcuaDriver(plant.station("hs006"), DEFAULTS)
    await driver.connect()
    try:
        await driver.write("primary_valve_position", 63.5)  # Double
        await driver.write("circ_pump_freq", 37.25)  # Float
        await driver.write("makeup_total", 200_000)  # UInt32
        await driver.write("circ_pump_running", 0.0)  # Boolean
        for sig, vtype, value in [
            ("primary_valve_position", ua.VariantType.Double, 63.5),
            ("circ_pump_freq", ua.VariantType.Float, 37.25),
            ("makeup_total", ua.VariantType.UInt32, 200_000),
            ("circ_pump_running", ua.VariantType.Boolean, False),
        ]:
            dv = plant.server.read_attribute_value(ua.NodeId(f"hs006.{sig}", 2))
            assert dv.Value.VariantType == vtype, sig
            assert dv.Value.Value == value, sig
        result = await driver.read()
        assert result.values[driver.signals.index("circ_pump_freq")] == 37.25
        with pytest.raises(PermanentError):
            await driver.write("makeup_total", -5)  # UInt32 cannot hold it: refused, not clamped
        with pytest.raises(PermanentError):
            await driver.write("circ_pump_running", 0.5)
    finally:
        await driver.close()
        for sig in (
            "primary_valve_position",
            "circ_pump_freq",
            "makeup_total",
            "circ_pump_running",
        ):
            await plant.set("hs006", sig, plant.held["hs006"][sig])


@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
async def test_basic256sha256_with_a_trusted_certificate_reads(plant: Plant, mode: str) -> None:
    sec = OpcuaSecurity(
        mode=mode,
        certificate=plant.pki / "trusted" / "dispatch.der",
        private_key=plant.pki / "keys" / "dispatch.pem",
        server_certificate=plant.pki / "server" / "server.der",
    )
    driver = OpcuaDriver(plant.station("hs006", security=sec), DEFAULTS)
    await driver.connect()
    try:
        assert driver._client is not None
        policy = driver._client.security_policy
        assert policy.URI.endswith("#Basic256Sha256")
        assert policy.Mode == ua.MessageSecurityMode[mode]
        assert_held(driver, await driver.read(), plant.held["hs006"])
    finally:
        await driver.close()


async def test_an_untrusted_client_certificate_is_refused(plant: Plant) -> None:
    sec = OpcuaSecurity(
        mode="SignAndEncrypt",
        certificate=plant.pki / "stranger" / "stranger.der",
        private_key=plant.pki / "keys" / "stranger.pem",
        server_certificate=plant.pki / "server" / "server.der",
    )
    driver = OpcuaDriver(plant.station("hs006", security=sec), DEFAULTS)
    with pytest.raises(PermanentError, match=r"BadCertificate|BadSecurity"):
        await driver.connect()
    assert not driver.connected
    await driver.close()


async def test_missing_key_file_or_secret_env_is_permanent(
    plant: Plant, monkeypatch: pytest.MonkeyPatch
) -> None:
    sec = OpcuaSecurity(
        mode="SignAndEncrypt",
        certificate=plant.pki / "nowhere.der",
        private_key=plant.pki / "nowhere.pem",
    )
    with pytest.raises(PermanentError, match="certificate"):
        await OpcuaDriver(plant.station("hs006", security=sec), DEFAULTS).connect()
    monkeypatch.delenv("STATIOND_TEST_UA_USER", raising=False)
    st = plant.station("hs006", username_env="STATIOND_TEST_UA_USER")
    with pytest.raises(PermanentError, match="STATIOND_TEST_UA_USER"):
        await OpcuaDriver(st, DEFAULTS).connect()


async def test_values_are_numpy_float64_in_signal_order(plant: Plant) -> None:
    driver = OpcuaDriver(plant.station("hs006"), DEFAULTS)
    await driver.connect()
    try:
        result = await driver.read()
    finally:
        await driver.close()
    assert result.values.dtype == np.float64 and result.quality.dtype == np.bool_
    assert driver.signals[0] == "primary_supply_temp"


async def test_a_secure_only_server_refuses_a_client_without_a_certificate(plant: Plant) -> None:
    """The plant server also offers None (for the other tests); a site that turns None off
    must refuse a client that brings no certificate, and still accept the trusted one."""
    pki = plant.pki
    port = free_port()
    async with opcua_server(
        port,
        certificate=pki / "server" / "server.der",
        private_key=pki / "keys" / "server.pem",
        trusted_client_certs=pki / "trusted",
        secure_only=True,
    ) as (server, ns):
        folder = await server.nodes.objects.add_object(ua.NodeId("hs006", ns), "hs006")
        for sig in CFG.station("hs006").signals:
            await folder.add_variable(ua.NodeId(f"hs006.{sig}", ns), sig, 1.0)
        url = f"opc.tcp://127.0.0.1:{port}/stationd/"
        plain = OpcuaDriver(
            plant.station("hs006").model_copy(update={"opcua": OpcuaEndpoint(url=url)}), DEFAULTS
        )
        with pytest.raises(PermanentError, match="offers no endpoint for security mode None"):
            await plain.connect()
        assert not plain.connected
        sec = OpcuaSecurity(
            mode="SignAndEncrypt",
            certificate=pki / "trusted" / "dispatch.der",
            private_key=pki / "keys" / "dispatch.pem",
            server_certificate=pki / "server" / "server.der",
        )
        secure = OpcuaDriver(
            plant.station("hs006").model_copy(
                update={"opcua": OpcuaEndpoint(url=url, security=sec)}
            ),
            DEFAULTS,
        )
        await secure.connect()
        try:
            assert (await secure.read()).quality.all()
        finally:
            await secure.close()


async def test_user_and_password_come_from_the_environment(
    plant: Plant, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = plant.station("hs006", username_env="STATIOND_UA_USER", password_env="STATIOND_UA_PASS")
    monkeypatch.setenv("STATIOND_UA_USER", "dispatch")
    monkeypatch.setenv("STATIOND_UA_PASS", DISPATCH_PASSWORD)
    driver = OpcuaDriver(st, DEFAULTS)
    await driver.connect()
    try:
        assert (await driver.read()).quality.all()
    finally:
        await driver.close()
    monkeypatch.setenv("STATIOND_UA_PASS", "wrong")
    refused = OpcuaDriver(st, DEFAULTS)
    with pytest.raises(PermanentError, match=r"BadUserAccessDenied|BadIdentityToken"):
        await refused.connect()
    assert not refused.connected
