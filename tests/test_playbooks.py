"""The shipped playbooks cover the plan; bad playbook files are refused with file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alarms.instances import PlaybookInstance, StepError
from alarms.playbooks import PLAYBOOK_DIR, PlaybookError, load_playbook, load_playbooks
from stationd.findings import FINDING_KINDS

T0 = 1_764_000_000.0


def test_every_finding_kind_has_exactly_one_playbook() -> None:
    lib = load_playbooks()
    assert set(lib.by_kind) == set(FINDING_KINDS)
    for pb in lib.by_id.values():
        for step in pb.steps:
            assert step.action.zh and step.action.en


def test_plan_7_1_steps_in_order_with_control_actions() -> None:
    pb = load_playbooks().for_kind("secondary_pressure_drop")
    assert pb is not None and pb.plan_section == "7.1" and pb.severity == "critical"
    ids = [s.id for s in pb.steps]
    assert ids[:4] == [
        "stop_circ_pump",
        "close_primary_supply",
        "close_primary_return",
        "open_emergency_makeup",
    ]
    ctl = {s.id: (s.control.point, s.control.value) for s in pb.steps if s.control}
    assert ctl["stop_circ_pump"] == ("circ_pump_running", 0)
    assert ctl["open_emergency_makeup"] == ("emergency_makeup_valve", 1)
    assert "停止循环泵" in pb.first_steps()[0]


def test_plan_deadlines_are_carried() -> None:
    lib = load_playbooks()
    leak = lib.for_kind("makeup_over_allowance")
    assert leak is not None
    assert {s.id: s.deadline_min for s in leak.steps}["crew_on_site"] == 40
    indoor = lib.for_kind("indoor_below_standard")
    assert indoor is not None and {s.id: s.deadline_min for s in indoor.steps}["on_site"] == 120
    assert lib.for_kind("station_power_loss").plan_section == "7.2"  # type: ignore[union-attr]
    assert lib.for_kind("monitoring_loss").plan_section == "6.3"  # type: ignore[union-attr]


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "playbooks"
    shutil.copytree(PLAYBOOK_DIR, d)
    return d


def test_unknown_key_refused_with_file_and_key(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    p = d / "sensor_fault.yaml"
    p.write_text(p.read_text().replace("    deadline_min: 60", "    deadline: 60"))
    with pytest.raises(PlaybookError) as e:
        load_playbooks(d)
    msg = str(e.value)
    # file, line and key, as config errors read
    line = p.read_text().splitlines().index("    deadline: 60") + 1
    assert f"sensor_fault.yaml:{line} steps[1].deadline:" in msg


def test_bad_role_and_unknown_trigger_refused(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    p = d / "flow_allocation.yaml"
    p.write_text(p.read_text().replace("role: station_operator", "role: janitor"))
    with pytest.raises(PlaybookError, match=r"flow_allocation\.yaml:\d+ steps\[1\]\.role"):
        load_playbook(p)
    p.write_text(p.read_text().replace("triggers: [flow_allocation]", "triggers: [flow_alloc]"))
    with pytest.raises(PlaybookError, match=r"yaml:\d+ triggers"):
        load_playbook(p)


def test_broken_yaml_and_missing_coverage_refused(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "extreme_cold.yaml").write_text("id: extreme_cold\ntitle: [unclosed\n")
    with pytest.raises(PlaybookError, match=r"not valid YAML: .*extreme_cold\.yaml:\d+"):
        load_playbooks(d)
    (d / "extreme_cold.yaml").unlink()
    with pytest.raises(PlaybookError, match="no playbook is triggered by extreme_cold"):
        load_playbooks(d)


def test_two_playbooks_for_one_kind_refused(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    text = (d / "sensor_fault.yaml").read_text().replace("id: sensor_fault", "id: sensor_fault2")
    (d / "sensor_fault2.yaml").write_text(text)
    with pytest.raises(PlaybookError, match="triggers two playbooks"):
        load_playbooks(d)


def test_instance_steps_due_skip_needs_reason_and_overdue_once() -> None:
    pb = load_playbooks().for_kind("makeup_over_allowance")
    assert pb is not None
    inst = PlaybookInstance.start(
        pb, "site1-x", "hs001/makeup_over_allowance", pb.triggers[0], "hs001", "hs001", "minor", T0
    )
    assert inst.step("crew_on_site").due == T0 + 40 * 60
    inst.mark("dispatch_work_order", "done", "调度王", T0 + 600)
    with pytest.raises(StepError, match="already done"):
        inst.mark("dispatch_work_order", "done", "调度王", T0 + 601)
    with pytest.raises(StepError, match="reason"):
        inst.mark("check_makeup_meter", "skipped", "op", T0 + 700, reason=" ")
    with pytest.raises(StepError, match="no step"):
        inst.mark("nope", "done", "op", T0)
    assert inst.overdue(T0 + 39 * 60) == []
    late = inst.overdue(T0 + 41 * 60)
    assert [s.id for s in late] == ["crew_on_site"]
    assert inst.overdue(T0 + 42 * 60) == []  # reported once
    assert PlaybookInstance.from_dict(inst.to_dict()) == inst
