"""Users who went quiet leave (``RECSYS_USER_TTL_DAYS``): state that does not grow without bound.

Every ``RECSYS_USER_EXPIRY_EVERY_S`` a timer finds the users of this worker's partitions
whose newest interaction is older than the TTL before their partition's event-time
watermark (the newest interaction ranked on it, ``Worker.watermarks``: replaying an old
file behaves, and a worker that has ranked nothing on a partition since it started
removes nothing there), reading the store a chunk at a time between the agents' turns.
Holding ``Worker.state_lock`` (no batch is being ranked or published), it checks them
again and sends a tombstone for each to the ``user_state`` changelog and to
``recommendations``, waits for the broker's acknowledgements and only then deletes the
users from the store, as the realtime agent writes states (``agents/batches.py``). A
returning user starts afresh; the query API answers them the fallback list.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from agents.realtime import partitions_of
from app.faust_patches import BatchWriter
from broker.partitioning import owner_partition
from tables.state import UserState

if TYPE_CHECKING:
    from app.worker import Worker

log = logging.getLogger(__name__)

DAY_S = 86400.0
#: Users read from the store between two turns of the event loop.
SCAN_CHUNK = 1000


def register(worker: Worker) -> None:
    conf = worker.settings.worker
    if conf.user_ttl_days <= 0:
        return

    @worker.app.timer(interval=conf.user_expiry_every_s)
    async def expire_quiet_users() -> None:
        removed = await expire(worker)
        if removed:
            log.info("removed %d users with no interaction for %g days", removed, conf.user_ttl_days)


def quiet_users(states: Iterable[tuple[bytes, bytes | None]], watermarks: Mapping[int, float], ttl_s: float,
                partitions: int) -> list[tuple[int, bytes]]:
    """``(partition, key)`` of every user whose newest interaction (the newest time among
    its recent ones; ``states``: stored values) is more than ``ttl_s`` before its
    partition's watermark."""
    out = []
    for key, value in states:
        times = [float(entry[2]) for entry in UserState.from_bytes(value).recent if len(entry) > 2]
        partition = owner_partition(key, partitions)
        watermark = watermarks.get(partition)
        if times and watermark is not None and max(times) < watermark - ttl_s:
            out.append((partition, key))
    return out


async def expire(worker: Worker) -> int:
    """Tombstone and delete this worker's quiet users. The store is scanned a thousand
    users at a time between the agents' turns; the ones found are checked again, and
    removed, holding ``state_lock``."""
    table, topics = worker.tables.user_state, worker.topics
    ttl_s = worker.settings.worker.user_ttl_days * DAY_S
    partitions = partitions_of(worker, topics.ratings.get_topic_name())
    found: list[tuple[int, bytes]] = []
    chunk: list = []
    for key, value in table.items():
        chunk.append((key, value))
        if len(chunk) == SCAN_CHUNK:
            found += quiet_users(chunk, worker.watermarks, ttl_s, partitions)
            chunk = []
            await asyncio.sleep(0)
    found += quiet_users(chunk, worker.watermarks, ttl_s, partitions)
    if not found:
        return 0
    async with worker.state_lock:
        now = quiet_users(((key, table.get(key)) for _p, key in found), worker.watermarks, ttl_s, partitions)
        return await _remove(worker, [(p, key) for p, key in now if key not in worker.in_flight])


async def _remove(worker: Worker, gone: list[tuple[int, bytes]]) -> int:
    """Tombstones for ``gone`` on the changelog and ``recommendations``; once acknowledged,
    the users leave the store."""
    if not gone:
        return 0
    table, topics = worker.tables.user_state, worker.topics
    writer = BatchWriter(worker.app)
    changelog = table.changelog_topic.get_topic_name()
    lists_topic = topics.recommendations.get_topic_name()
    n_lists = await writer.partition_count(lists_topic)
    state_sends = await writer.send(changelog, [(p, key, None) for p, key in gone])
    list_sends = await writer.send(lists_topic, [(owner_partition(key, n_lists), key, None) for _p, key in gone])
    acks = await asyncio.gather(*(send for _records, send in state_sends + list_sends))
    writer.apply_changelog(table, changelog, [(partition, offset, key, None, None)
                                              for partition, offset, key, _raw in writer.acked(state_sends, acks)])
    worker.metrics.count("users.expired", len(gone))
    return len(gone)
