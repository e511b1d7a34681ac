"""A historian writer in its own process, for the kill -9 test (tests/test_historian_vm.py).

python -m tests.historian_writer write URL STATE_DIR N_STATIONS T0 N_TICKS
    writes ticks T0, T0+1, ...; after each tick is committed to the disk queue prints
    `acked <k>`; then waits to be killed.
python -m tests.historian_writer drain URL STATE_DIR N_STATIONS
    starts on the same queue, waits until it is empty, prints `drained`, exits 0.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np
from prometheus_client import CollectorRegistry

from stationd import signals
from stationd.historian import Historian


def fleet(n: int) -> list[dict[str, str]]:
    return [{"id": f"hs{i:03d}", "name": f"换热站 {i}", "branch": "一支线"} for i in range(n)]


def tick_values(n: int, k: int) -> np.ndarray:
    return np.round(np.arange(n * signals.K, dtype=float).reshape(n, -1) * 0.5 + k, 2)


async def main(argv: list[str]) -> int:
    mode, url, state, n = argv[0], argv[1], argv[2], int(argv[3])
    section = {
        "influxdb": {"url": url, "batch_size": n, "flush_interval_s": 0.05, "timeout_s": 1.0},
        "queue": {"retry_max_s": 0.5},
    }
    h = Historian.from_config(section, "site1", fleet(n), state, registry=CollectorRegistry())
    await h.start()
    if mode == "write":
        t0, ticks = float(argv[4]), int(argv[5])
        for k in range(ticks):
            h.write_tick(t0 + k, tick_values(n, k))
            await h.flush()
            print(f"acked {k}", flush=True)
        await asyncio.Event().wait()  # until SIGKILL
    ok = await h.forwarder.wait_empty(60.0)
    await h.stop()
    print("drained" if ok else f"not drained: {h.queue_depth} batches left", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
