"""Two gloo ranks on CPU for the metrics' DDP-sync test (test_metrics_ddp.py).

Spawned, not forked: a child forked from a pytest process whose OpenMP pool earlier tests have started can hang
(libgomp is not fork-safe), which made these tests time out in the full suite although they passed alone.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(worker: Callable[..., None], path: str, timeout_s: float = 240.0) -> None:
    """Runs `worker(rank, 2, port, path)` on two spawned processes; fails the test on a hang or a crash."""
    ctx = mp.start_processes(worker, args=(2, free_port(), path), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"DDP workers did not finish in {timeout_s:.0f} s")
