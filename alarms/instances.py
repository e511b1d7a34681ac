"""Playbook instances: one per incident, with step status, due times and escalation marks.

An activation copies its playbook's steps into an instance; operators mark steps done or
skipped (a skip needs a reason — the dispatch log must say why a step of the plan was not
followed); a pending step past its due time is reported once as overdue, which the
service turns into an escalation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from alarms.playbooks import Playbook

StepStatus = Literal["pending", "done", "skipped"]

#: a closed incident's unfinished playbook is closed after this (the plan's 24 h close)
EXPIRE_AFTER_S = 24 * 3600.0


class StepError(ValueError):
    """A step command that cannot apply; the text goes back to the operator."""


@dataclass(slots=True)
class StepState:
    id: str
    role: str
    action_zh: str
    action_en: str
    deadline_min: int | None
    due: float | None
    control: dict[str, Any] | None = None
    status: StepStatus = "pending"
    by: str = ""
    at: float | None = None
    reason: str = ""
    escalated: bool = False


@dataclass(slots=True)
class PlaybookInstance:
    incident_id: str
    playbook_id: str
    plan_section: str
    title_zh: str
    title_en: str
    alarm_id: str
    kind: str
    subject: str
    station: str
    severity: str
    activated_at: float
    steps: list[StepState] = field(default_factory=list)
    incident_open: bool = True  # the alarm's incident is still open (escalation applies)
    incident_closed_at: float | None = None

    @classmethod
    def start(
        cls,
        pb: Playbook,
        incident_id: str,
        alarm_id: str,
        kind: str,
        subject: str,
        station: str,
        severity: str,
        activated_at: float,
    ) -> PlaybookInstance:
        steps = [
            StepState(
                id=s.id,
                role=s.role,
                action_zh=s.action.zh,
                action_en=s.action.en,
                deadline_min=s.deadline_min,
                due=None if s.deadline_min is None else activated_at + 60.0 * s.deadline_min,
                control=None if s.control is None else s.control.model_dump(),
            )
            for s in pb.steps
        ]
        return cls(
            incident_id=incident_id,
            playbook_id=pb.id,
            plan_section=pb.plan_section,
            title_zh=pb.title.zh,
            title_en=pb.title.en,
            alarm_id=alarm_id,
            kind=kind,
            subject=subject,
            station=station,
            severity=severity,
            activated_at=activated_at,
            steps=steps,
        )

    @property
    def finished(self) -> bool:
        return all(s.status != "pending" for s in self.steps)

    @property
    def status(self) -> str:
        if self.finished and not self.incident_open:
            return "closed"
        return "open"

    def step(self, step_id: str) -> StepState:
        for s in self.steps:
            if s.id == step_id:
                return s
        known = ", ".join(s.id for s in self.steps)
        raise StepError(f"incident {self.incident_id} has no step {step_id!r}; steps: {known}")

    def mark(
        self, step_id: str, status: StepStatus, operator: str, now: float, reason: str = ""
    ) -> StepState:
        s = self.step(step_id)
        if s.status != "pending":
            raise StepError(f"step {step_id!r} is already {s.status} (by {s.by})")
        if status == "skipped" and not reason.strip():
            raise StepError("skipping a step needs a reason (跳过步骤必须说明原因)")
        s.status = status
        s.by = operator
        s.at = now
        s.reason = reason
        return s

    def close_incident(self, now: float) -> None:
        self.incident_open = False
        self.incident_closed_at = now

    def expire(self, now: float, after_s: float = EXPIRE_AFTER_S) -> list[StepState]:
        """Steps still pending `after_s` after the incident closed are skipped, so forgotten
        notices do not stay on dispatch screens forever; returns the steps skipped."""
        if self.incident_open or self.incident_closed_at is None:
            return []
        if now - self.incident_closed_at < after_s:
            return []
        out = [s for s in self.steps if s.status == "pending"]
        for s in out:
            s.status = "skipped"
            s.by = "stationd"
            s.at = now
            s.reason = f"not reported within {after_s / 3600:g} h of the incident closing"
        return out

    def overdue(self, now: float) -> list[StepState]:
        """Pending steps past due and not yet escalated; marks them escalated."""
        if not self.incident_open:
            return []
        out = [
            s
            for s in self.steps
            if s.status == "pending" and not s.escalated and s.due is not None and s.due <= now
        ]
        for s in out:
            s.escalated = True
        return out

    def to_dict(self) -> dict[str, Any]:
        # shallow copies: asdict's deep copy dominates the cost of an alarm storm
        d = {name: getattr(self, name) for name in _INSTANCE_FIELDS}
        d["steps"] = [{name: getattr(s, name) for name in _STEP_FIELDS} for s in self.steps]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlaybookInstance:
        d = dict(d)
        d["steps"] = [StepState(**s) for s in d["steps"]]
        return cls(**d)


_STEP_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(StepState))
_INSTANCE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PlaybookInstance))
