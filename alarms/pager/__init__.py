"""Pagers: Alertmanager, PagerDuty and a JSON webhook behind one fan-out (`Pager`).

| module | its one job |
|---|---|
| `config.py` | the `pager:` section of stations.yaml |
| `fanout.py` | `Pager`: hands every pager event to each configured adapter |
| `alertmanager.py`, `pagerduty.py`, `webhook.py` | one adapter per pager API |
| `delivery.py` | the bounded outbox, retries and counters every adapter shares |
| `resolved.py` | incidents already resolved (late events are not re-fired) |
| `metrics.py` | the outboxes' counters on /metrics |
"""

from alarms.pager.config import PagerConfig
from alarms.pager.fanout import Pager

__all__ = ["Pager", "PagerConfig"]
