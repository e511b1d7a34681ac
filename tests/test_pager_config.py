"""The `pager:` config section: bad config is refused with the key named; secrets stay
out of the YAML; the Events API v2 body matches the published format."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from pydantic import ValidationError

from alarms.pager.alertmanager import alert_labels
from alarms.pager.config import PagerConfig
from alarms.pager.fanout import Pager
from alarms.pager.pagerduty import pagerduty_event
from tests.pager_fixtures import ROUTING_KEY, pager_event, validator

EXAMPLE = """
pager:
  alertmanager:
    url: http://127.0.0.1:9093/
    resend_interval_s: 60
  pagerduty:
    routing_key_env: STATIOND_PAGERDUTY_KEY
  webhook:
    url: https://dispatch.example.cn/hooks/stationd
    headers_env: STATIOND_WEBHOOK_HEADERS
"""


def test_example_section_builds_all_three_adapters() -> None:
    section = yaml.safe_load(EXAMPLE)["pager"]
    env = {"STATIOND_PAGERDUTY_KEY": ROUTING_KEY, "STATIOND_WEBHOOK_HEADERS": "{}"}
    pager = Pager.from_config(section, environ=env)
    assert [a.name for a in pager.adapters] == ["alertmanager", "pagerduty", "webhook"]
    cfg = PagerConfig.model_validate(section)
    assert cfg.alertmanager is not None and cfg.alertmanager.url == "http://127.0.0.1:9093"
    assert cfg.pagerduty is not None and cfg.pagerduty.url == "https://events.pagerduty.com"


def test_routing_key_in_yaml_is_refused() -> None:
    with pytest.raises(ValidationError, match="routing_key"):
        PagerConfig.model_validate({"pagerduty": {"routing_key": ROUTING_KEY}})


@pytest.mark.parametrize(
    "pagerduty",
    [{}, {"routing_key_env": "A", "routing_key_file": "/etc/stationd/pd.key"}],
)
def test_pagerduty_needs_exactly_one_key_source(pagerduty: dict) -> None:
    with pytest.raises(ValidationError, match="exactly one of routing_key_env"):
        PagerConfig.model_validate({"pagerduty": pagerduty})


def test_missing_routing_key_fails_at_build_naming_the_variable() -> None:
    section = {"pagerduty": {"routing_key_env": "STATIOND_PAGERDUTY_KEY"}}
    with pytest.raises(ValueError, match="STATIOND_PAGERDUTY_KEY is unset"):
        Pager.from_config(section, environ={})


def test_malformed_routing_key_is_refused_without_echoing_it() -> None:
    section = {"pagerduty": {"routing_key_env": "K"}}
    with pytest.raises(ValueError, match="has 6 characters") as err:
        Pager.from_config(section, environ={"K": "secret"})
    assert "secret" not in str(err.value)


def test_missing_credential_file_is_named(tmp_path) -> None:
    missing = tmp_path / "pd.key"
    section = {"pagerduty": {"routing_key_file": str(missing)}}
    with pytest.raises(ValueError, match=r"cannot read file .*pd\.key"):
        Pager.from_config(section, environ={})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"alertmanager": {"url": "127.0.0.1:9093"}}, "http:// or https://"),
        ({"alertmanager": {"url": "http://am", "resend_interval_s": 1, "timeout_s": 2}}, "below"),
        ({"webhook": {"url": "http://h", "queue_size": 0}}, "queue_size"),
        ({"webhook": {"url": "http://h", "retries": 3}}, "retries"),
        ({"webhook": {"url": "http://h", "max_backoff_s": 0.1}}, "max_backoff_s"),
        ({"sms": {}}, "sms"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(section: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PagerConfig.model_validate(section)


@pytest.mark.parametrize("raw", ["not json", '["a"]', '{"X-N": 1}'])
def test_webhook_headers_must_be_a_json_object_of_strings(raw: str) -> None:
    section = {"webhook": {"url": "http://h", "headers_env": "H"}}
    with pytest.raises(ValueError, match="environment variable H"):
        Pager.from_config(section, environ={"H": raw})


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("critical", "critical"), ("major", "error"), ("minor", "warning"), ("notice", "info")],
)
def test_pagerduty_severities_map_onto_the_four_api_levels(severity: str, expected: str) -> None:
    body = pagerduty_event(pager_event(severity=severity), ROUTING_KEY)
    validator("pagerduty_event_v2.json").validate(body)
    assert body["payload"]["severity"] == expected


def test_pagerduty_summary_is_cut_to_the_api_limit() -> None:
    event = dataclasses.replace(pager_event(), summary_zh="压" * 2000)
    body = pagerduty_event(event, ROUTING_KEY)
    assert len(body["payload"]["summary"]) == 1024
    validator("pagerduty_event_v2.json").validate(body)


def test_schema_rejects_what_pagerduty_rejects() -> None:
    v = validator("pagerduty_event_v2.json")
    good = pagerduty_event(pager_event(), ROUTING_KEY)
    assert v.is_valid(good)
    assert not v.is_valid({**good, "event_action": "escalate"})
    assert not v.is_valid({**good, "payload": {**good["payload"], "severity": "major"}})
    assert not v.is_valid({k: v_ for k, v_ in good.items() if k != "payload"})
    assert not v.is_valid({"routing_key": ROUTING_KEY, "event_action": "resolve"})
    assert not v.is_valid({**good, "routing_key": "short"})


def test_alert_labels_hold_nothing_replica_specific() -> None:
    a = alert_labels(pager_event(starts_at=100.0, value=0.08))
    b = alert_labels(pager_event(starts_at=101.0, value=0.09))
    assert a == b
    assert set(a) == {"alertname", "site", "station", "subject", "severity", "incident", "playbook"}
    routed = alert_labels(pager_event(routing={"branch": "东一支线", "service_centre": "东城"}))
    assert routed["branch"] == "东一支线" and routed["service_centre"] == "东城"


def test_webhook_headers_from_a_credential_file(tmp_path) -> None:
    (tmp_path / "webhook-headers").write_text('{"X-Token": "令牌"}\n', encoding="utf-8")
    section = {"webhook": {"url": "http://h", "headers_file": "webhook-headers"}}
    cfg = PagerConfig.model_validate(section)
    assert cfg.webhook is not None
    assert cfg.webhook.headers({"CREDENTIALS_DIRECTORY": str(tmp_path)}) == {"X-Token": "令牌"}
    with pytest.raises(ValidationError, match="not both"):
        PagerConfig.model_validate(
            {"webhook": {"url": "http://h", "headers_file": "f", "headers_env": "E"}}
        )
