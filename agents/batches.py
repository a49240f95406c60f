"""One batch of the realtime agent's output, written to Kafka and the table together.

Faust's per-message path cost the worker two thirds of its CPU (py-spy, docs/RESULTS.md):
per changelog write and per list a FutureMessage, a producer future, callbacks, and per
changelog acknowledgement a RocksDB write of the offset. The agent therefore takes its
input in batches (``Stream.take_events``), ranks each rating in order, and stages here
each user's newest state (once per batch, however many of the user's ratings it held)
and every list (and, for the learned ranker's users, every interaction's examples for the
learner). :meth:`Batch.publish` then

1. sends the states to the table's changelog (each to its source partition, Faust's
   rule) and the lists to ``recommendations`` (each to its key's murmur2 partition, the
   Java client's rule) as a few record batches, and waits until the broker has
   acknowledged all of them;
2. only then writes the states to the table's store, the way Faust's own recovery
   applies a changelog (``Table.apply_changelog_batch``: one RocksDB write batch per
   partition and the changelog offset reached, so a restart replays only what follows).

Between 1 and 2 the newest states are only in the worker's ``in_flight``; the query API
reads them there (``Worker.newest_user_state``), so it never answers with an older list than the
one a frontend has already consumed from ``recommendations``. Writing the store before
sending, as Faust's table does, would close that gap too but open a worse one: a worker
killed before the acks would restart with a state the changelog never got, see the
redelivered rating as applied, and the partition's next owner would lose it.

``take_events`` acks the batch's messages after the agent's body returns, so an input
offset is committed only after everything up to it is on the broker, which is what
at-least-once needs (a crash before the store write loses nothing: recovery reads the
changelog, the redelivered ratings are seen as applied by their offsets). If publishing
fails, the batch's acks are refused: its offsets are never committed and are read again
after the restart.

Under ``exactly_once`` step 1 is one transaction per input partition of the batch, with
that partition's next input offset (``agents/transactions.py``), and step 2 follows its
commit; a partition this worker was fenced on writes nothing and its ratings are read
again by its new owner.

Faust has no public API for any of this; what it takes from Faust's internals is
:class:`app.faust_patches.BatchWriter`.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Iterable
from typing import TYPE_CHECKING

from app.faust_patches import BatchWriter, is_current
from broker.partitioning import owner_partition
from tables.state import UserState

if TYPE_CHECKING:
    from app.worker import Worker


#: Containers (lists, dicts, states) one rating keeps alive until its batch is published:
#: about 45-50 for a new user with either shipped ranker (``tests/unit/test_batches.py``
#: measures it; a batch ranked as arrays keeps every rating's list until it is staged), with room.
LIVE_OBJECTS_PER_RATING = 80


def collect_garbage_between_batches(batch_max: int) -> None:
    """Raise CPython's young-generation threshold above what one batch keeps alive.

    With the default (700 net allocations) the cyclic collector ran every ~20 ratings of
    a batch, walked what the batch had staged so far and promoted it; those promoted
    objects then set off a full collection of the whole heap (the model, Faust) every
    ~2,000 ratings: 7.7% of the worker's CPU on the realtime benchmark (docs/RESULTS.md).
    Reference counting frees a batch's objects once it is published; cycles are still
    collected, only less often. Capped so that a huge ``RECSYS_BATCH_MAX`` cannot let
    cyclic garbage pile up.
    """
    young = min(max(700, LIVE_OBJECTS_PER_RATING * batch_max), 1_000_000)
    gc.set_threshold(young, *gc.get_threshold()[1:])


#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory(top_pad_mb: int = 64) -> bool:
    """Keep the memory a batch frees in the heap for the next batch (glibc only; returns
    whether the allocator took the settings).

    A batch's arrays are megabytes. By default glibc maps such a block afresh and unmaps
    it when it is freed (or trims the heap's top), so every batch page-faults its arrays
    in again, 4 KiB at a time, and on this project's virtual machines a page fault costs
    more than the arithmetic on the page: a third of the learned ranker's feature time
    (docs/RESULTS.md). Blocks up to 32 MiB (glibc's largest threshold) now come from the
    heap, and the heap keeps what is freed: the worker's resident memory stays at its
    high-water mark (one batch's arrays) instead of going up and down with every batch.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([mallopt(_M_MMAP_THRESHOLD, 32 << 20), mallopt(_M_TRIM_THRESHOLD, 1 << 30),
                mallopt(_M_TOP_PAD, top_pad_mb << 20)])


class Batch:
    """States and lists staged by one batch of ratings, in arrival order, for ``worker``."""

    def __init__(self, worker: Worker, input_partitions: int) -> None:
        self.worker = worker
        self.writer = BatchWriter(worker.app)
        #: Partitions of the input topic: a user's owner partition is murmur2(user) of these.
        self.input_partitions = input_partitions
        #: Candidates scored, over the batch (a metric).
        self.scored = 0
        #: key -> (event of the user's last rating in the batch, newest state): the states to write
        self.states: dict[bytes, tuple[object, UserState]] = {}
        #: key -> the state every rating of the user in this batch reads and changes
        self._read: dict[bytes, UserState] = {}
        #: (event, key, owner partition, list message) per rating, in order
        self.lists: list[tuple[object, bytes, int, bytes]] = []
        #: (input partition, owner partition, key, value) of ratings that arrived on another partition
        self.reroutes: list[tuple[int, int, bytes, bytes]] = []
        #: (event, key, owner partition, value) of the learned ranker's examples, for the learner
        self.examples: list[tuple[object, bytes, int, bytes]] = []

    def state_of(self, event, key: bytes) -> UserState:
        """The user's state as the batch left it so far (else as stored): the same object
        for every rating of the user in the batch."""
        state = self._read.get(key)
        if state is None:
            with BatchWriter.as_current(event):  # the store of the event's partition
                state = self._read[key] = UserState.from_bytes(self.worker.tables.user_state[key])
        return state

    def stage_state(self, event, key: bytes, state: UserState) -> None:
        self.states[key] = (event, state)

    def stage_list(self, event, key: bytes, owner: int, value: bytes) -> None:
        self.lists.append((event, key, owner, value))

    def stage_examples(self, event, key: bytes, owner: int, value: bytes) -> None:
        self.examples.append((event, key, owner, value))

    def stage_reroute(self, event, key: bytes, value: bytes, partition: int) -> None:
        self.reroutes.append((event.message.partition, partition, key, value))

    async def publish(self, events: Iterable) -> None:
        """Write everything staged (under exactly once: one transaction per input partition
        with its offsets, :mod:`agents.transactions`); on failure refuse the acks of
        ``events`` and re-raise."""
        events = list(events)
        values = {key: state.to_bytes() for key, (_event, state) in self.states.items()}
        in_flight = self.worker.in_flight
        in_flight.update({key: state for key, (_event, state) in self.states.items()})
        try:
            outputs = await self._outputs(values)
            if self.worker.transactions is not None:
                acked = await self._commit_per_partition(outputs, events)
            else:
                acked = await self._send(self.writer, outputs)
            self._store(acked, values)
        except Exception:
            self.writer.refuse_acks(events, "ratings.batches_failed")
            raise
        finally:
            in_flight.clear()  # one batch at a time: the agent's concurrency is 1

    async def _outputs(self, values: dict[bytes, bytes]) -> list[tuple[str, list[tuple[int, int, bytes, bytes]]]]:
        """Every record to write, as ``(topic, [(input partition, partition, key, value)])``,
        the changelog first (its acknowledged offsets go to the store)."""
        topics = self.worker.topics
        n_lists = await self.writer.partition_count(topics.recommendations.get_topic_name())
        lists = [(event.message.partition, owner if n_lists == self.input_partitions else owner_partition(key, n_lists),
                  key, value) for event, key, owner, value in self.lists]
        outputs = [
            (self.changelog, [(event.message.partition, event.message.partition, key, values[key])
                              for key, (event, _state) in self.states.items()]),
            (topics.recommendations.get_topic_name(), lists),
            (topics.ratings.get_topic_name(), self.reroutes),
        ]
        if self.examples:
            examples = topics.ranker_examples.get_topic_name()
            n = await self.writer.partition_count(examples)
            outputs.append((examples, [(event.message.partition, owner % n, key, value)
                                       for event, key, owner, value in self.examples]))
        return outputs

    @property
    def changelog(self) -> str:
        return self.worker.tables.user_state.changelog_topic.get_topic_name()

    async def _send(self, writer: BatchWriter, outputs, producer=None) -> list:
        """Send ``outputs`` (with ``producer``, else Faust's) and wait for every
        acknowledgement; returns the changelog's ``(partition, offset, key, raw)``."""
        sends = [await writer.send(topic, [record[1:] for record in records], producer=producer)
                 for topic, records in outputs]
        acks = await asyncio.gather(*(future for topic_sends in sends for _records, future in topic_sends))
        return writer.acked(sends[0], acks[:len(sends[0])])  # the changelog's

    async def _commit_per_partition(self, outputs, events: list) -> list:
        """One transaction per input partition of the batch: its outputs and its next
        offset. A partition this worker was fenced on writes nothing: its events are read
        again by their new owner."""
        transactions, offsets = self.worker.transactions, next_offsets(self.worker.app, events)
        partitions = sorted(offsets)
        async with transactions.lock:
            results = await asyncio.gather(*(
                transactions.commit(partition, lambda producer, p=partition: self._send(
                    self.writer, [(t, [r for r in rs if r[0] == p]) for t, rs in outputs], producer), offsets[partition])
                for partition in partitions))
        fenced = {partition for partition, acked in zip(partitions, results, strict=True) if acked is None}
        if fenced:
            self.writer.refuse_acks([e for e in events if e.message.partition in fenced], "ratings.fenced")
        return [record for acked in results if acked is not None for record in acked]

    def _store(self, acked: list, values: dict[bytes, bytes]) -> None:
        self.writer.apply_changelog(self.worker.tables.user_state, self.changelog,
                                    [(partition, offset, key, raw, values[key]) for partition, offset, key, raw in acked])


def next_offsets(app, events: Iterable) -> dict[int, int]:
    """Per input partition, the offset after the last of ``events`` still current: the
    ones the batch ranked. An event fetched before a rebalance was skipped (it is read
    again after the rebalance's seek); once a rebalance begins no event is current, and
    nothing of the batch is committed."""
    offsets: dict[int, int] = {}
    for event in events:
        if is_current(app, event.message):
            offsets[event.message.partition] = max(offsets.get(event.message.partition, 0), event.message.offset + 1)
    return offsets
