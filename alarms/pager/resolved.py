"""Remember which incidents were resolved lately, so a late event cannot reopen them.

The alarm service may hand over an acknowledge or an escalation after the incident's
resolve (an operator acknowledges a returned alarm; a playbook step of a cleared alarm
runs past its deadline). Sent as is, Alertmanager would show the alert firing again and
PagerDuty would open a new alert under the resolved dedup key, paging someone for a
condition that is gone. Those events stay in the dispatch log, MQTT and the webhook.
"""

from __future__ import annotations

from collections import OrderedDict

#: how many resolved incident ids are kept; the oldest are forgotten first
RESOLVED_MEMORY = 4096


class ResolvedIncidents:
    def __init__(self, capacity: int = RESOLVED_MEMORY) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def add(self, incident_id: str) -> None:
        self._ids[incident_id] = None
        self._ids.move_to_end(incident_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def discard(self, incident_id: str) -> None:
        self._ids.pop(incident_id, None)

    def __contains__(self, incident_id: object) -> bool:
        return incident_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
