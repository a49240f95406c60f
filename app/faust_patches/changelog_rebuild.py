"""A broker that lost its data must not cost the only copy of the state.

When the memory-only Tansu broker restarts (or a Kafka cluster is rebuilt), every
changelog is empty, but a worker restarted on its data dir still has its RocksDB
tables. faust-streaming 0.15.3 then refuses to start, forever: ``ConsistencyError:
The persisted offset for changelog topic partition ... is higher than the last offset
in that topic (highwater)``. The way out it suggests, deleting the data dir, throws
away the last copy of the state.

Here a persisted offset beyond the end of its changelog is taken for what it is (the
broker lost the changelog): the local state is kept, nothing is read back, and once
recovery is done every key of that partition is written back to the (now empty)
changelog, so a later failover or a wiped data dir recovers it again. Each affected
partition gets one loud ERROR line. (Tansu's own wrong ListOffsets, the other source of
that error, is fixed separately in ``app/faust_patches/tansu.py``: highwaters come from Fetch.)
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from faust.tables.recovery import Recovery

from app.metrics import Metrics

from .upstream import replace

log = logging.getLogger(__name__)

#: table name -> function(raw value bytes) -> raw value bytes, applied to every value
#: written back: offsets of the lost log mean nothing in the new one (the user state
#: remembers the offset of the last applied rating). Set by :func:`apply`.
_value_resets: dict[str, Callable[[bytes], bytes]] = {}

#: Where the patch counts the keys it wrote back (the worker's metrics, from :func:`apply`).
metrics = Metrics()

_original_build_offsets = Recovery._build_offsets
_next_on_recovery_completed = Recovery.on_recovery_completed  # set again by apply()


def lost_changelogs(persisted: dict, highwaters: dict) -> set:
    """Partitions whose persisted offset lies beyond the last offset of their changelog."""
    return {tp for tp, offset in persisted.items()
            if offset is not None and offset >= 0 and highwaters.get(tp) is not None and offset > highwaters[tp]}


async def _build_offsets(self: Recovery, consumer, tps, destination, title) -> None:
    await _original_build_offsets(self, consumer, tps, destination, title)
    if title != "active":
        return
    for tp in lost_changelogs({tp: destination[tp] for tp in tps}, self.active_highwaters):
        log.error("changelog %s ends at offset %s but this worker's table holds data up to offset %s: the broker "
                  "lost the changelog. Keeping the local state and writing it back to the changelog.",
                  tp, self.active_highwaters[tp], destination[tp])
        destination[tp] = -1  # nothing to read back
        self.__dict__.setdefault("_to_rewrite", set()).add(tp)


async def _on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
    for tp in sorted(self.__dict__.pop("_to_rewrite", set())):
        await rewrite_changelog(self, tp)
    await _next_on_recovery_completed(self, generation_id)


async def rewrite_changelog(recovery: Recovery, tp) -> int:
    """Send every key of ``tp``'s local table partition to its changelog; returns the count."""
    table = recovery.tp_to_table[tp]
    store = table.data
    if not hasattr(store, "_db_for_partition"):  # memory:// tables have nothing to keep
        return 0
    producer = recovery.app.producer
    db = store._db_for_partition(tp.partition)
    reset = _value_resets.get(table.name)
    pending = []
    for key, value in list(db.items()):
        if key == store.offset_key:
            continue
        if reset is not None and value is not None:
            value = reset(value)
            db[key] = value
        pending.append(await producer.send(tp.topic, key, value, partition=tp.partition, timestamp=None,
                                           headers=None))
    await producer.flush()
    if pending:
        store.set_persisted_offset(tp, max(fut.result().offset for fut in pending))
    metrics.count("changelog.keys_rewritten", len(pending))
    log.error("wrote %d keys of %s back to its changelog", len(pending), tp)
    return len(pending)


def apply(value_resets: Mapping[str, Callable[[bytes], bytes]], sink: Metrics) -> None:
    """Install (idempotent); wraps whatever ``on_recovery_completed`` is installed now.
    ``value_resets``: table name -> what to do to each value written back; ``sink``: where
    the keys written back are counted."""
    global _next_on_recovery_completed, metrics
    metrics = sink
    _value_resets.clear()
    _value_resets.update(value_resets)
    replace(Recovery, "_build_offsets", _build_offsets)
    if Recovery.on_recovery_completed is not _on_recovery_completed:
        _next_on_recovery_completed = Recovery.on_recovery_completed
        replace(Recovery, "on_recovery_completed", _on_recovery_completed)
