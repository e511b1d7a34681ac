"""The disk queue: FIFO, durable across reopen, bounded with a drop-oldest policy."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest

from stationd.historian.queue import DiskQueue


def q(tmp_path, **kw) -> DiskQueue:
    return DiskQueue(tmp_path / "q.db", registry=kw.pop("registry", CollectorRegistry()), **kw)


def drain(queue: DiskQueue) -> list[bytes]:
    out = []
    while (b := queue.oldest()) is not None:
        out.append(b.payload)
        queue.ack(b.id)
    return out


def test_batches_come_out_in_order_and_survive_reopen(tmp_path):
    a = q(tmp_path)
    for i in range(5):
        a.put(f"m v={i} {i}\n".encode(), 1)
    first = a.oldest()
    assert first is not None
    a.ack(first.id)
    a.close()
    b = q(tmp_path)  # a restart: what was acknowledged by put() is still there
    assert b.depth == 4
    assert drain(b) == [f"m v={i} {i}\n".encode() for i in range(1, 5)]
    assert b.depth == 0 and b.bytes == 0 and b.oldest_age == 0.0


def test_full_queue_drops_oldest_counts_and_logs(tmp_path, caplog):
    reg = CollectorRegistry()
    queue = q(tmp_path, max_rows=3, registry=reg, name="influxdb")
    with caplog.at_level(logging.WARNING, logger="stationd.historian.queue"):
        for i in range(7):
            queue.put(f"m v={i} {i}\n".encode(), 2)
    assert queue.depth == 3
    assert queue.dropped_batches == 4 and queue.dropped_lines == 8
    assert drain(queue) == [f"m v={i} {i}\n".encode() for i in (4, 5, 6)]
    assert any(
        "dropped the" in r.getMessage() and "历史队列已满" in r.getMessage() for r in caplog.records
    )
    text = generate_latest(reg).decode()
    assert 'stationd_historian_queue_dropped_batches_total{queue="influxdb"} 4.0' in text
    assert 'stationd_historian_queue_dropped_lines_total{queue="influxdb"} 8.0' in text


def test_byte_cap_keeps_the_newest_batch_even_if_alone_too_big(tmp_path):
    queue = q(tmp_path, max_bytes=100)
    for i in range(3):
        queue.put(b"x" * 40 + str(i).encode(), 1)  # 41 bytes each: the first one must go
    assert queue.depth == 2 and queue.bytes == 82 and queue.dropped_batches == 1
    queue.put(b"y" * 500, 1)
    assert queue.depth == 1 and drain(queue) == [b"y" * 500]


def test_depth_and_oldest_age_are_gauges(tmp_path):
    now = [1000.0]
    reg = CollectorRegistry()
    queue = DiskQueue(tmp_path / "q.db", registry=reg, name="embedded", clock=lambda: now[0])
    queue.put(b"a", 1)
    now[0] = 1002.0
    queue.put(b"b", 1)
    now[0] = 1010.0
    assert queue.oldest_age == 10.0
    text = generate_latest(reg).decode()
    assert 'stationd_historian_queue_depth{queue="embedded"} 2.0' in text
    assert 'stationd_historian_queue_oldest_age_seconds{queue="embedded"} 10.0' in text
    live = queue.first_since(1001.0)
    backlog = queue.first_before(1001.0)
    assert live is not None and live.payload == b"b"
    assert backlog is not None and backlog.payload == b"a"
