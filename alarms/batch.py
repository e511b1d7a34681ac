"""What one tick, or one operator command, carries through the alarm service's stages.

The engine (or a command handler) fills in the transitions; each stage reads what the
ones before it left and adds its own part: the playbook stage its escalations, log rows,
events and changed playbooks; the paging stage the pages; the store stage which pages
are new. See alarms/stages.py for the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alarms.dispatch_log import LogEntry
from alarms.model import FieldReading, PagerEvent, Transition


@dataclass
class Batch:
    now: float
    #: alarm transitions in order: the engine's, then the escalations the playbooks add
    transitions: list[Transition] = field(default_factory=list)
    #: dispatch-log rows written before the transitions' own rows (the command itself)
    lead: list[LogEntry] = field(default_factory=list)
    #: dispatch-log rows written after them (steps, escalations, notes, readings, controls)
    entries: list[LogEntry] = field(default_factory=list)
    #: event bodies for `<prefix>/events` besides the transitions
    events: list[dict[str, Any]] = field(default_factory=list)
    #: incidents whose playbook instance changed (saved and republished)
    changed: set[str] = field(default_factory=set)
    #: (transition, step id) of each escalation for a missed step deadline
    escalations: list[tuple[Transition, str]] = field(default_factory=list)
    #: (dedup key, event) to hand to the pagers, recorded with the state that caused them
    pages: list[tuple[str, PagerEvent]] = field(default_factory=list)
    #: the store recorded pages not seen before: deliver them
    new_pages: bool = False
    #: playbook instances finished with their incident closed (dropped after publishing)
    closed: set[str] = field(default_factory=set)
    #: manual readings taken on site, for the historian
    field_readings: list[FieldReading] = field(default_factory=list)
