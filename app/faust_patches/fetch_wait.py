"""The worker consumer's fetch wait: Faust hard-codes 1500 ms, which a list waits for.

aiokafka (like the Java client) keeps one fetch in flight per broker, for the partitions
that have no records buffered. While the agents work through what the last fetch brought,
the next one goes out for the other partitions and, when those are quiet, the broker
holds it for the whole fetch wait; the partitions just drained are fetched again only
after it returns. So a message arriving on them waits up to the fetch wait before the
worker sees it, at each hop (an event, then the implicit rating it becomes): on Apache
Kafka the demo's lists arrived 2-5 s late at 250 messages/s with Faust's 1500 ms. Kafka's
long poll returns as soon as data arrives, so a short wait costs only idle fetches
(``RECSYS_FETCH_WAIT_MS`` per second and partition leader at most). Tansu gets its own
value (``broker/tansu_workarounds.py``: its long poll sleeps between checks).

The same wrapper sets the consumer's isolation: ``read_committed`` under the project's own
exactly once (``exactly_once.py``; Faust would set it only for its own transactions).
"""
from __future__ import annotations

import logging

from .upstream import original, replace

log = logging.getLogger(__name__)

_wait_ms: list[int] = []
_isolation: list[str] = ["read_uncommitted"]


def isolation_level() -> str:
    """What the worker's consumer reads: ``read_committed`` under exactly once."""
    return _isolation[0]


def apply(wait_ms: int, read_committed: bool = False) -> None:
    """Set the fetch wait and isolation of every worker consumer created from now on (the
    last call wins)."""
    _isolation[0] = "read_committed" if read_committed else "read_uncommitted"
    from faust.transport.drivers import aiokafka as driver

    if not _wait_ms:
        thread_cls = driver.AIOKafkaConsumerThread
        original_create = original(thread_cls, "_create_worker_consumer")

        def _create_worker_consumer(self, transport):
            consumer = original_create(self, transport)
            consumer._fetch_max_wait_ms = _wait_ms[0]  # both read when the fetcher starts
            consumer._isolation_level = _isolation[0]
            return consumer

        replace(thread_cls, "_create_worker_consumer", _create_worker_consumer)
        _wait_ms.append(wait_ms)
    _wait_ms[0] = wait_ms
    log.info("worker consumer fetch wait %d ms", wait_ms)
