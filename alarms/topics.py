"""The MQTT topic layout, shared by the daemon's bridge and the dispatch desk CLI.

Under the prefix (default `heating/<site>`), all QoS 1:

| topic | what | retained |
|---|---|---|
| `<prefix>/alarm/<station-or-subject>/<finding>` | alarm state; empty when normal | yes |
| `<prefix>/events` | transitions, steps, escalations, notes, readings, controls | no |
| `<prefix>/playbook/<incident_id>` | playbook instance; empty once closed | yes |
| `<prefix>/status` | daemon status; last will `offline` | yes |
| `<prefix>/cmd` in, `<prefix>/cmd/result` out | operator commands and their answers | no |
"""

from __future__ import annotations

from dataclasses import dataclass

from alarms.settings import MqttSettings


def topic_part(text: str) -> str:
    """A subject as one topic level: wildcards and separators cannot appear in it."""
    return text.replace("/", "_").replace("+", "_").replace("#", "_") or "_"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    @classmethod
    def of(cls, settings: MqttSettings, site: str) -> Topics:
        """The site's topics: `mqtt.prefix`, or `heating/<site>`."""
        return cls((settings.prefix or f"heating/{site}").rstrip("/"))

    def alarm(self, subject: str, kind: str) -> str:
        return f"{self.prefix}/alarm/{topic_part(subject)}/{kind}"

    def playbook(self, incident_id: str) -> str:
        return f"{self.prefix}/playbook/{topic_part(incident_id)}"

    @property
    def alarms(self) -> str:
        """Every retained alarm (a subscription filter)."""
        return f"{self.prefix}/alarm/#"

    @property
    def playbooks(self) -> str:
        """Every retained playbook instance (a subscription filter)."""
        return f"{self.prefix}/playbook/#"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def cmd(self) -> str:
        return f"{self.prefix}/cmd"

    @property
    def result(self) -> str:
        return f"{self.prefix}/cmd/result"
