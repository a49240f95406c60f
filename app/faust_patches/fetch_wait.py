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

Faust reads a table's changelog partitions only while it recovers them (and a standby's
always); afterwards it leaves them out of the partitions it asks aiokafka for, but never
pauses them in aiokafka, whose fetcher goes on fetching them. Records fetched and not
read block the next fetch from their broker for aiokafka's prefetch backoff (100 ms), and
every changelog partition's first write after the recovery is such a record: on a fresh
Kafka the demo's first lists waited ~100 ms several times over (docs/RESULTS.md). So before
each fetch of records, :func:`pause_idle_changelogs` pauses in aiokafka the changelog
partitions Faust does not read, and resumes those it reads again (a pause keeps the
position: a resumed partition is fetched from where it was).
"""
from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet

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
        original_fetch = original(thread_cls, "_fetch_records")

        async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
            if active_partitions:  # runs in the consumer's thread, as aiokafka's pause needs
                pause_idle_changelogs(consumer, active_partitions, self.app.tables.changelog_topics)
            return await original_fetch(self, consumer, active_partitions, timeout=timeout, max_records=max_records)

        replace(thread_cls, "_fetch_records", _fetch_records)
        _wait_ms.append(wait_ms)
    _wait_ms[0] = wait_ms
    log.info("worker consumer fetch wait %d ms", wait_ms)


def pause_idle_changelogs(consumer, active: AbstractSet, changelog_topics: AbstractSet[str]) -> None:
    """Pause in aiokafka ``consumer`` the assigned changelog partitions not in ``active``
    (what Faust reads), and resume the paused ones that are."""
    paused = consumer.paused()
    idle = {tp for tp in consumer.assignment() if tp.topic in changelog_topics and tp not in active}
    if idle - paused:
        consumer.pause(*(idle - paused))
    back = {tp for tp in paused if tp.topic in changelog_topics} - idle
    if back:
        consumer.resume(*back)
