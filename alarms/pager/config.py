"""Config models for the `pager:` section of stations.yaml (Alertmanager, PagerDuty, webhook).

Secrets never live in the YAML: the PagerDuty routing key and the webhook's headers are
named by an environment variable or a credential file (systemd's LoadCredential= puts one
under $CREDENTIALS_DIRECTORY), and are read once when the pager is built.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


ROUTING_KEY_LEN = 32  # Events API v2 integration keys are 32 characters


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeliveryConfig(_Model):
    """How hard one adapter tries: queue bound, request timeout, retry schedule."""

    queue_size: int = Field(1000, ge=1, le=1_000_000)
    timeout_s: float = Field(5.0, gt=0, le=120)
    max_attempts: int = Field(6, ge=1, le=100)
    initial_backoff_s: float = Field(0.5, gt=0, le=60)
    max_backoff_s: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _backoff_order(self) -> DeliveryConfig:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) is below initial_backoff_s "
                f"({self.initial_backoff_s})"
            )
        return self


class AlertmanagerConfig(DeliveryConfig):
    """Prometheus Alertmanager, API v2. Active alerts are re-sent every resend_interval_s."""

    # e.g. http://127.0.0.1:9093 (the API path is added); a list for the peers of an
    # Alertmanager cluster: every alert goes to every peer, as Prometheus sends them
    url: HttpUrl | list[HttpUrl]
    resend_interval_s: float = Field(60.0, gt=0, le=3600)
    # An ack in stationd silences the incident here (no re-notification of someone who
    # has taken it) until it clears; the silence lives this long and is renewed while
    # the incident stays acknowledged, so one left by a dead daemon expires by itself.
    silence_on_ack: bool = True
    ack_silence_s: float = Field(12 * 3600.0, ge=60, le=7 * 86400)

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @model_validator(mode="after")
    def _some_unique_urls(self) -> AlertmanagerConfig:
        if not self.urls:
            raise ValueError("alertmanager url list is empty")
        if len(set(self.urls)) != len(self.urls):
            raise ValueError(f"alertmanager urls repeat: {self.urls}")
        return self

    @model_validator(mode="after")
    def _timeout_below_resend(self) -> AlertmanagerConfig:
        # A request that may outlive the resend period would let re-sends pile up.
        if self.timeout_s >= self.resend_interval_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s}) must be below resend_interval_s "
                f"({self.resend_interval_s})"
            )
        return self


class PagerDutyConfig(DeliveryConfig):
    """PagerDuty Events API v2; the routing key comes from an env var or a file, never YAML."""

    url: HttpUrl = "https://events.pagerduty.com"  # the API path /v2/enqueue is added
    # PagerDuty takes about 120 events a minute per routing key and refuses the rest
    # (429); stay under it so a flood waits in the outbox instead of being refused.
    max_per_minute: int | None = Field(120, ge=1, le=100_000)
    routing_key_env: str | None = None
    routing_key_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> PagerDutyConfig:
        if (self.routing_key_env is None) == (self.routing_key_file is None):
            raise ValueError(
                "pagerduty needs exactly one of routing_key_env (an environment variable "
                "name) or routing_key_file (a credential file); the key itself never goes "
                "in the YAML"
            )
        return self

    def routing_key(self, environ: Mapping[str, str] | None = None) -> str:
        """Read the routing key now; raise ValueError saying where it was looked for."""
        key, where = _read_secret(
            "pagerduty routing key", self.routing_key_env, self.routing_key_file, environ
        )
        if not key:
            raise ValueError(f"pagerduty routing key: {where} is empty")
        if len(key) != ROUTING_KEY_LEN:
            # PagerDuty would answer 400 to every event; say so now (without the key).
            raise ValueError(
                f"pagerduty routing key from {where} has {len(key)} characters; an Events "
                f"API v2 integration key has {ROUTING_KEY_LEN}"
            )
        return key


class WebhookConfig(DeliveryConfig):
    """A plain JSON webhook; optional extra headers (e.g. Authorization), given as a JSON
    object in an environment variable or a credential file, never in the YAML."""

    url: HttpUrl
    headers_env: str | None = None
    headers_file: Path | None = None

    @model_validator(mode="after")
    def _one_headers_source(self) -> WebhookConfig:
        if self.headers_env is not None and self.headers_file is not None:
            raise ValueError("webhook takes headers_env or headers_file, not both")
        return self

    def headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Read the extra headers now; raise ValueError naming the source if malformed."""
        if self.headers_env is None and self.headers_file is None:
            return {}
        raw, where = _read_secret("webhook headers", self.headers_env, self.headers_file, environ)
        try:
            parsed: Any = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"webhook headers: {where} is not JSON: {exc}") from exc
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise ValueError(
                f"webhook headers: {where} must hold a JSON object of strings, "
                'e.g. {"Authorization": "Bearer ..."}'
            )
        return parsed


def _read_secret(
    what: str, env_name: str | None, file: Path | None, environ: Mapping[str, str] | None
) -> tuple[str, str]:
    """The secret's text (stripped) and where it came from, for error messages."""
    env = os.environ if environ is None else environ
    if env_name is not None:
        where = f"environment variable {env_name}"
        if env_name not in env:
            raise ValueError(f"{what}: {where} is unset")
        return env[env_name].strip(), where
    assert file is not None
    path = file
    if not path.is_absolute() and "CREDENTIALS_DIRECTORY" in env:
        # systemd LoadCredential=: a bare name is relative to the credentials directory.
        path = Path(env["CREDENTIALS_DIRECTORY"]) / path
    where = f"file {path}"
    try:
        return path.read_text(encoding="utf-8").strip(), where
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {where}: {exc}") from exc


#: what a link template may name: {site} {station} {subject} {kind} {incident} {alarm_id}
#: {playbook} {plan_section} (each URL-quoted)
LINK_FIELDS = frozenset(
    {"site", "station", "subject", "kind", "incident", "alarm_id", "playbook", "plan_section"}
)


def _link_template(value: str | None) -> str | None:
    if value is None:
        return None
    _http_url(value.split("{", 1)[0] or "x")  # the fixed head is an http(s) URL
    names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    unknown = names - LINK_FIELDS
    if unknown:
        raise ValueError(
            f"link template {value!r} names {sorted(unknown)}; it may use "
            + " ".join(f"{{{n}}}" for n in sorted(LINK_FIELDS))
        )
    return value


LinkTemplate = Annotated[str | None, AfterValidator(_link_template)]


class LinksConfig(_Model):
    """Links every page carries, as URL templates: the playbook for people (Alertmanager
    annotation `runbook_url`, PagerDuty link) and the console or dashboard for the alarm
    (Alertmanager `generatorURL`, PagerDuty link), e.g.
    `https://grafana.dispatch.local/d/stationd-station?var-station={station}`."""

    runbook_url: LinkTemplate = None
    console_url: LinkTemplate = None

    def render(self, template: str | None, values: Mapping[str, str]) -> str:
        if not template:
            return ""
        return template.format(**{k: quote(values.get(k, ""), safe="") for k in LINK_FIELDS})


class PagerConfig(_Model):
    """The `pager:` section; every adapter is optional, none configured means no paging."""

    alertmanager: AlertmanagerConfig | None = None
    pagerduty: PagerDutyConfig | None = None
    webhook: WebhookConfig | None = None
    links: LinksConfig = LinksConfig()
    # how long stop() waits for queued events to go out before dropping them
    drain_timeout_s: float = Field(5.0, ge=0, le=300)
