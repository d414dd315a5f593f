"""Many API reads at once, bounded: in all, and per node.

A read pass over a big cluster (plan, doctor's guests, status, the live
diagram) makes one request per guest; one after another they would take
requests x latency. These run them on a bounded pool, never more than
:data:`PER_NODE` at once against one node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

#: Requests in flight per node and in all. Per node: a real pveproxy runs 3
#: workers that each block while an API handler runs (a request for another
#: node is forwarded to that node's pveproxy), so 4 keeps every worker busy
#: with one queued and never floods a small host. In all: measured with
#: bench/plan.py (1,000 guests / 8 nodes, 20 ms held on every answer, one
#: request per guest): 12 -> 2.0 s, 24 -> 1.2 s (1.5x the latency bound),
#: 32 -> 1.0 s, 64 -> 1.0 s. Past ~24 the client's own CPU (TLS and JSON under
#: the GIL) sets the pace, not the network: ~1.0 s for 1,000 answers through
#: requests' session, ~0.65 s since reads go straight to its connection pool
#: (plan 1.18 s, 1.41x the bound).
PER_NODE = 4
TOTAL = 24


class NodeLimits:
    """A semaphore per node, so one busy node never takes every worker."""

    def __init__(self, per_node: int) -> None:
        self.per_node = per_node
        self._locks: dict[str, threading.Semaphore] = {}
        self._guard = threading.Lock()

    def __call__(self, node: str) -> threading.Semaphore:
        with self._guard:
            return self._locks.setdefault(node, threading.BoundedSemaphore(self.per_node))


def run_all(fn: Callable[[T], None], items: list[T], workers: int) -> None:
    """Run ``fn`` over ``items`` on a bounded pool; the first exception propagates."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def per_node(
    fn: Callable[[T], None],
    items: list[T],
    node: Callable[[T], str],
    *,
    limit: int = PER_NODE,
    total: int = TOTAL,
) -> None:
    """Run ``fn`` over ``items``, at most ``limit`` at once on one ``node(item)``
    and ``total`` in all; the first exception propagates."""
    limits = NodeLimits(limit)

    def bounded(item: T) -> None:
        with limits(node(item)):
            fn(item)

    run_all(bounded, items, total)
