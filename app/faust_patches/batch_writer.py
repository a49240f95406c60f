"""Writing a batch past Faust's per-message path, through what Faust itself started.

The realtime agent (``agents/batches.py``) stages a batch's states and lists and
publishes them in a few record batches; Faust has no public API for that, so what it
needs from Faust's internals is here, as :class:`BatchWriter`:

- the aiokafka producer Faust started (``Producer._ensure_producer``), to send
  ``(partition, key, value)`` records as whole aiokafka record batches;
- ``Table.apply_changelog_batch``, the call with which Faust's recovery writes a
  changelog into a table's store (one RocksDB write batch per partition, and the
  changelog offset reached), fed records in the shape of a Faust event;
- Faust's current event (``faust.streams._current_event``): a table store picks the
  partition of a key, and a send its transaction, from it, and a batch body has none;
- refusing the acks of a batch that could not be published (:func:`.at_least_once.refuse_ack`).
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from types import SimpleNamespace

import faust.streams
from faust.types import TP

from .at_least_once import refuse_ack


class BatchWriter:
    """Sends record batches and writes table stores through a running Faust app.

    Parameters
    ----------
    app
        The ``faust.App`` whose producer, consumer and tables are used.
    """

    def __init__(self, app) -> None:
        self.app = app

    @staticmethod
    @contextlib.contextmanager
    def as_current(event):
        """Make ``event`` Faust's current event: table reads and writes go to its partition,
        sends join its transaction."""
        token = faust.streams._current_event.set(weakref.ref(event))
        try:
            yield
        finally:
            faust.streams._current_event.reset(token)

    async def partition_count(self, topic: str) -> int:
        """Partitions of ``topic``, as the producer's metadata has them."""
        return len(await self._producer().partitions_for(topic))

    async def send(self, topic: str, records: list[tuple[int, bytes, bytes]], producer=None) -> list:
        """Send ``(partition, key, value)`` records as record batches (see :func:`send_in_batches`)
        with ``producer`` (a transactional one), else the producer Faust started."""
        return await send_in_batches(producer or self._producer(), topic, records)

    @staticmethod
    def acked(sends: list, acks: list) -> list[tuple[int, int, bytes, bytes | None]]:
        """``(partition, offset, key, raw value)`` of every record of ``sends`` (what
        :meth:`send` returned), at the offsets ``acks`` (their batches' metadata) gave them."""
        return [(partition, metadata.offset + i, key, raw)
                for (records, _send), metadata in zip(sends, acks, strict=False)
                for i, (partition, key, raw) in enumerate(records)]

    @staticmethod
    def apply_changelog(table, topic: str, records: Iterable[tuple[int, int, bytes, bytes, object]]) -> None:
        """Write ``(partition, offset, key, raw value, value)`` records, already on the
        changelog ``topic`` at those offsets, to ``table``'s store, as Faust's recovery would."""
        table.apply_changelog_batch([changelog_record(topic, *record) for record in records])

    def refuse_acks(self, events: Iterable, counter: str) -> None:
        """Make sure the offsets of ``events`` are never committed (read again after a restart)."""
        for event in events:
            refuse_ack(self.app.consumer, event.message, counter)

    def _producer(self):
        return self.app.producer._ensure_producer()  # the aiokafka producer Faust started


async def send_in_batches(producer, topic: str, records: list[tuple[int, bytes, bytes]]) -> list:
    """Send ``(partition, key, value)`` records as aiokafka record batches, in order within
    each partition: ``[(records of one batch, future of its metadata), ...]`` (the
    metadata's offset is the first record's; the others follow one by one)."""
    by_partition: dict[int, list] = {}
    for record in records:
        by_partition.setdefault(record[0], []).append(record)
    sends = []
    for partition, recs in by_partition.items():
        start = 0
        while start < len(recs):
            builder, end = producer.create_batch(), start  # the first record always fits
            while end < len(recs) and builder.append(key=recs[end][1], value=recs[end][2], timestamp=None):
                end += 1
            builder.close()  # complete: the sender takes it at once instead of lingering for more
            sends.append((recs[start:end], await producer.send_batch(builder, topic, partition=partition)))
            start = end
    return sends


def changelog_record(topic: str, partition: int, offset: int, key: bytes, raw: bytes, value):
    """A changelog record as ``Table.apply_changelog_batch`` reads it, in a Faust event's
    shape (RocksDB stores take the raw bytes on ``message``, memory stores the decoded
    ``key`` and ``value``)."""
    message = SimpleNamespace(tp=TP(topic, partition), partition=partition, offset=offset, key=key, value=raw)
    return SimpleNamespace(message=message, key=key, value=value)
