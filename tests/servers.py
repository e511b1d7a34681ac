"""Start real servers on 127.0.0.1 for integration tests (free ports, own data dirs).

Plain helpers and context managers, shared by every test module: each server runs as a
child process of the test, is waited for with a deadline (never a fixed sleep), and is
terminated by its own pid on exit. Its log file is printed when it fails to come up.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ok(url: str, deadline_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers 2xx; fail early if `proc` exits, or at the deadline."""
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if 200 <= resp.status < 300:
                    return
                last = resp.status
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {deadline_s}s (last: {last})")


@contextlib.contextmanager
def run_process(
    cmd: Sequence[str], log_path: Path, ready_url: str, deadline_s: float = 20.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` with output to `log_path`; yield once `ready_url` answers; stop it after."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_http_ok(ready_url, deadline_s, proc)
        except (RuntimeError, TimeoutError) as exc:
            text = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(
                f"{cmd[0]} did not start: {exc}\n--- {log_path} ---\n{text}"
            ) from exc
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Alertmanager:
    url: str  # http://127.0.0.1:PORT
    port: int
    proc: subprocess.Popen[bytes]


ALERTMANAGER_CONFIG = """\
# Minimal routing for tests: every alert goes to a receiver with no integrations, so
# alerts are stored and listed by the API but nothing is sent anywhere.
route:
  receiver: blackhole
  group_by: ['alertname', 'site']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: blackhole
"""


@contextlib.contextmanager
def start_alertmanager(
    tmp_path: Path, port: int | None = None, config: str | None = None
) -> Iterator[Alertmanager]:
    """Debian's prometheus-alertmanager on a loopback port (a free one unless given),
    with no cluster gossip; `config` (YAML text) replaces the blackhole routing."""
    exe = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if exe is None:
        raise RuntimeError(
            "prometheus-alertmanager not found: apt-get install prometheus-alertmanager"
        )
    base = tmp_path / "alertmanager"
    base.mkdir(parents=True, exist_ok=True)
    config_file = base / "alertmanager.yml"
    config_file.write_text(ALERTMANAGER_CONFIG if config is None else config, "utf-8")
    port = free_port() if port is None else port
    cmd = [
        exe,
        f"--config.file={config_file}",
        f"--storage.path={base / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no gossip port, no peers
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    with run_process(cmd, base / "alertmanager.log", f"{url}/-/ready") as proc:
        yield Alertmanager(url=url, port=port, proc=proc)


# --- Modbus (in-process pymodbus server; drivers' tests) ------------------------------------
@contextlib.asynccontextmanager
async def modbus_server(devices: object, port: int) -> AsyncIterator[object]:
    """A real pymodbus TCP server on 127.0.0.1:`port` serving `devices` (a SimDevice or a
    list of them; `id=0` answers every unit id). Yields the server, whose
    `async_setValues(device_id, fc, address, values)` changes what it serves."""
    from pymodbus.server import ModbusTcpServer

    server = ModbusTcpServer(devices, address=("127.0.0.1", port))  # type: ignore[arg-type]
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()


# --- Mosquitto (alarms' MQTT tests) -------------------------------------------------------
@dataclass(frozen=True)
class Mosquitto:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path


def wait_tcp(port: int, deadline_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until 127.0.0.1:`port` accepts a connection; fail early if `proc` exits."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server exited with code {proc.returncode} before port {port} opened"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"127.0.0.1:{port} not accepting after {deadline_s}s")


@contextlib.contextmanager
def start_mosquitto(
    tmp_path: Path,
    port: int | None = None,
    persistence: bool = False,
    extra_config: Sequence[str] = (),
) -> Iterator[Mosquitto]:
    """Debian's mosquitto on a loopback port. `max_queued_messages` is raised because the
    default (1,000 per client) silently drops the rest of an alarm burst. With
    `persistence`, sessions and retained messages survive a stop/start on the same port
    (pass the same tmp_path and port again). `extra_config` lines are appended (e.g.
    `password_file F`); an `allow_anonymous false` among them replaces the default."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise RuntimeError("mosquitto not found: apt-get install mosquitto")
    base = tmp_path / "mosquitto"
    base.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous " + ("false" if "allow_anonymous false" in extra_config else "true"),
        "max_queued_messages 100000",
        "max_inflight_messages 0",
        f"log_dest file {base / 'mosquitto.log'}",
        # started as root, mosquitto drops to its own user and could no longer read the
        # test's private tmp dir (password file, persistence): stay who we are
        f"user {getpass.getuser()}",
    ]
    if persistence:
        lines += ["persistence true", f"persistence_location {base}/"]
    lines += [x for x in extra_config if not x.startswith("allow_anonymous")]
    config = base / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = subprocess.Popen(
        [exe, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log_path = base / "mosquitto.log"
    try:
        try:
            wait_tcp(port, 10.0, proc)
        except (RuntimeError, TimeoutError) as exc:
            text = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
            raise RuntimeError(
                f"mosquitto did not start: {exc}\n--- {log_path} ---\n{text}"
            ) from exc
        yield Mosquitto(host="127.0.0.1", port=port, proc=proc, log_path=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --- VictoriaMetrics (historian tests: an InfluxDB-v2-write compatible store) -------------
@dataclass(frozen=True)
class VictoriaMetrics:
    url: str  # http://127.0.0.1:PORT
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def start_victoria_metrics(tmp_path: Path, port: int | None = None) -> Iterator[VictoriaMetrics]:
    """Debian's victoria-metrics on a loopback port, data under tmp_path. Start it again
    with the same tmp_path and port to simulate an outage and recovery (data is kept).
    `-search.latencyOffset=0s` makes fresh samples visible to /api/v1/query at once."""
    exe = shutil.which("victoria-metrics")
    if exe is None:
        raise RuntimeError("victoria-metrics not found: apt-get install victoria-metrics")
    base = tmp_path / "victoria-metrics"
    base.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    cmd = [
        exe,
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={base / 'data'}",
        "-search.latencyOffset=0s",
        "-retentionPeriod=100y",  # test data carries old fixed timestamps
        "-loggerLevel=WARN",
    ]
    url = f"http://127.0.0.1:{port}"
    with run_process(cmd, base / "victoria-metrics.log", f"{url}/health") as proc:
        yield VictoriaMetrics(url=url, port=port, data_dir=base / "data", proc=proc)


# --- InfluxDB 1.x (Debian's influxd: the historian's v1 sink, InfluxQL read-back) ----------
@dataclass(frozen=True)
class InfluxDB:
    url: str  # http://127.0.0.1:PORT
    port: int
    base: Path  # config, data and log live under here
    proc: subprocess.Popen[bytes]
    db: str
    username: str  # "" when auth is off
    password: str


INFLUXDB_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{base}/meta"
  logging-enabled = false
[data]
  dir = "{base}/data"
  wal-dir = "{base}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {auth}
  log-enabled = false
  max-row-limit = 0
[logging]
  level = "warn"
"""


def influx_query(
    ix: InfluxDB, q: str, *, db: str | None = None, post: bool = False, **params: str
) -> dict:
    """Run InfluxQL `q` on `ix` (as its admin when auth is on); the decoded JSON answer."""
    import base64
    import json
    import urllib.parse

    args = {"q": q, **({"db": db} if db else {}), **params}
    data = urllib.parse.urlencode(args).encode()
    url = f"{ix.url}/query"
    req = (
        urllib.request.Request(url, data=data, method="POST")
        if post
        else urllib.request.Request(f"{url}?{data.decode()}")
    )
    if ix.username:
        cred = base64.b64encode(f"{ix.username}:{ix.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {cred}")
    with urllib.request.urlopen(req, timeout=15) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def start_influxdb(
    tmp_path: Path,
    port: int | None = None,
    *,
    db: str = "stations",
    auth: bool = False,
    username: str = "admin",
    password: str = "s3cret-测试",
) -> Iterator[InfluxDB]:
    """Debian's influxd (1.x) on a loopback port with its data under tmp_path, database
    `db` created. With `auth`, an admin user is created on first start. Start it again with
    the same tmp_path and port to simulate an outage and recovery (data and users kept)."""
    exe = shutil.which("influxd") or "/usr/bin/influxd"
    if not Path(exe).exists():
        raise RuntimeError("influxd not found: apt-get install influxdb")
    base = tmp_path / "influxdb"
    base.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    config = base / "influxdb.conf"
    config.write_text(
        INFLUXDB_CONFIG.format(
            base=base, port=port, rpc_port=free_port(), auth="true" if auth else "false"
        ),
        encoding="utf-8",
    )
    url = f"http://127.0.0.1:{port}"
    with run_process([exe, "-config", str(config)], base / "influxd.log", f"{url}/ping") as proc:
        ix = InfluxDB(url, port, base, proc, db, username if auth else "", password)
        if auth:
            first = not (base / "users-created").exists()
            if first:
                # the first admin may be created without credentials (InfluxDB 1.x rule)
                influx_query(
                    InfluxDB(url, port, base, proc, db, "", ""),
                    f"CREATE USER {username} WITH PASSWORD '{password}' WITH ALL PRIVILEGES",
                    post=True,
                )
                (base / "users-created").touch()
        influx_query(ix, f'CREATE DATABASE "{db}"', post=True)
        yield ix


# --- OPC UA (in-process asyncua server; drivers' tests) -------------------------------------
@contextlib.asynccontextmanager
async def opcua_server(
    port: int,
    *,
    certificate: Path | None = None,
    private_key: Path | None = None,
    trusted_client_certs: Path | None = None,
    secure_only: bool = False,
    user_manager: object | None = None,
) -> AsyncIterator[tuple[object, int]]:
    """A real asyncua server on opc.tcp://127.0.0.1:`port`/stationd/ with namespace
    "urn:stationd:test" registered as ns=2 (the index config/stations.yaml uses). Yields
    (server, ns). With a certificate and key it also offers Basic256Sha256 Sign and
    SignAndEncrypt (only those, with `secure_only`); with `trusted_client_certs` (a folder
    of DER/PEM certificates) a secure channel is accepted only from those certificates;
    `user_manager` (asyncua's get_user(iserver, username, password, certificate)) decides
    who may open a session. init() takes ~2 s and ~100 MB: share
    one server per test module."""
    from asyncua import Server, ua
    from asyncua.crypto.truststore import TrustStore
    from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

    server = Server(user_manager=user_manager)  # type: ignore[arg-type]
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/stationd/")
    server.set_server_name("stationd test server")
    policies = [] if secure_only else [ua.SecurityPolicyType.NoSecurity]
    if certificate is not None and private_key is not None:
        await server.load_certificate(str(certificate))
        await server.load_private_key(str(private_key))
        policies += [
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
        ]
    server.set_security_policy(policies)
    if trusted_client_certs is not None:
        store = TrustStore([trusted_client_certs], [])
        await store.load()
        server.set_certificate_validator(
            CertificateValidator(
                CertificateValidatorOptions.BASIC_VALIDATION
                | CertificateValidatorOptions.TRUSTED
                | CertificateValidatorOptions.PEER_CLIENT,
                store,
            )
        )
    ns = await server.register_namespace("urn:stationd:test")
    await server.start()
    try:
        yield server, ns
    finally:
        await server.stop()


def vm_export(vm: VictoriaMetrics, match: str) -> list[dict]:
    """Every series matching `match` with all its samples (`/api/v1/export`, JSON lines)."""
    import json
    import urllib.parse

    with urllib.request.urlopen(
        urllib.request.Request(f"{vm.url}/internal/force_flush"), timeout=5
    ) as r:
        r.read()
    q = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{vm.url}/api/v1/export?{q}", timeout=10) as r:
        body = r.read().decode("utf-8")
    return [json.loads(line) for line in body.splitlines() if line]


def vm_wait_samples(
    vm: VictoriaMetrics, match: str, expected: int, deadline_s: float = 20.0
) -> list[dict]:
    """Poll vm_export until it holds at least `expected` samples (VictoriaMetrics makes
    fresh rows searchable within a second or two); returns the last export."""
    end = time.monotonic() + deadline_s
    while True:
        series = vm_export(vm, match)
        n = sum(len(s["values"]) for s in series)
        if n >= expected or time.monotonic() > end:
            return series
        time.sleep(0.1)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_test_tls(tmp_path: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A throwaway CA and a server certificate for `host` (IP SAN), made with openssl."""
    d = tmp_path / "tls"
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
        "-days", "2", "-subj", "/CN=stationd test CA")  # fmt: skip
    run("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
        "-subj", f"/CN={host}")  # fmt: skip
    (d / "san.ext").write_text(f"subjectAltName=IP:{host}\n", encoding="utf-8")
    run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.crt"),
        "-days", "2", "-extfile", str(d / "san.ext"))  # fmt: skip
    return TlsFiles(ca=d / "ca.crt", cert=d / "server.crt", key=d / "server.key")


# --- the project's station simulator (tools/simulate_station) ---------------------------------
def simulator_port_map(config: object) -> dict[int, int]:
    """A free loopback port for every Modbus port and OPC UA endpoint port of `config`."""
    from tools.simulate_station.simulator import config_ports

    return {port: free_port() for port in sorted(config_ports(config))}  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def start_simulator(config: object, **kw: object) -> AsyncIterator[object]:
    """The simulator serving `config`'s stations on free ports (control API too, on a free
    port). Yields the running `Simulator`; `sim.config_on_ports()` is the config a daemon
    polling it must use, `sim.inject(...)`/`sim.truth()` the faults and their truth."""
    from tools.simulate_station.simulator import Simulator

    kw.setdefault("port_map", simulator_port_map(config))
    kw.setdefault("control_port", 0)
    async with Simulator(config, **kw) as sim:  # type: ignore[arg-type]
        yield sim
