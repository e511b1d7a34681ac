"""One paho client setup for every MQTT session of the alarm side: the daemon's bridge
(alarms/mqtt.py) and the dispatch desk CLI (alarms/desk.py) connect the same way — the
same protocol, credentials (env var or file, never YAML) and TLS."""

from __future__ import annotations

import json
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alarms.settings import MqttSettings


def make_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """An unconnected paho client (callback API v2, MQTT 3.1.1, clean session) with the
    broker account and TLS of `settings`. Reads the password now: a missing env var or
    file raises ValueError naming it."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=True,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password())
    if settings.tls:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(settings.tls_insecure)
    return client


def dumps(obj: Any) -> bytes:
    # ensure_ascii=False: Chinese station names go out as UTF-8, readable on any screen
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
