"""The MQTT outbox on disk: order, acknowledgement and its bound."""

from __future__ import annotations

from pathlib import Path

from alarms.outbox import Outbox


def test_outbox_keeps_order_across_reopen_and_removes_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.add([(f"t/{i}", f"{i}".encode(), False) for i in range(5)])
    first = box.after(0, 3)
    assert [m.topic for m in first] == ["t/0", "t/1", "t/2"]
    box.remove([first[0].seq, first[1].seq])
    box.close()
    box = Outbox(tmp_path / "o.sqlite")  # a restart: what was not acknowledged is still there
    assert [m.payload for m in box.after(0, 10)] == [b"2", b"3", b"4"]
    assert len(box) == 3
    box.close()


def test_outbox_bound_drops_oldest_events_never_retained_state(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_rows=100)
    box.add([("state", b"s0", True)])
    box.add([(f"ev/{i}", b"e", False) for i in range(150)])
    assert len(box) == 100 and box.dropped == 51
    rows = box.after(0, 200)
    assert rows[0].topic == "state" and rows[0].retain  # state survives the overflow
    assert rows[1].topic == "ev/51" and rows[-1].topic == "ev/149"
    box.close()
