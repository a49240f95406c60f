"""Exactly once (``RECSYS_PROCESSING_GUARANTEE=exactly_once``, Apache Kafka only): one
transactional producer per assigned ``ratings`` partition.

The classic fencing scheme (before KIP-447, which aiokafka 0.14 does not speak): the
transactional id is ``<app id>-<topic>-<partition>``, so whichever worker owns a
partition holds the one producer allowed to write for it. Starting it
(``init_transactions``) aborts the open transaction of the partition's previous owner and
fences it: a worker killed or cut off mid-batch can neither commit its lists nor its
offsets afterwards. Each batch commits, per input partition, one transaction holding the
user states (changelog), the lists, the re-routed ratings, the learner's examples and
that partition's next input offset (``send_offsets_to_transaction``); only then are the
states written to the local store (``agents/batches.py``). Readers read
``read_committed``: the worker's own consumer (re-routed ratings, changelog recovery),
``recsys web``, the model worker, the demo and the drills (``broker/clients.py``).

Faust's own transactions (faust-streaming #323, #517, #177) are not used: Faust runs
``at_least_once`` and does not commit the ``ratings`` offsets
(:mod:`app.faust_patches.exactly_once`). The behaviour agent's counts and implicit
ratings stay at least once (a redelivered event counts again, as documented).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.errors import ProducerFenced

log = logging.getLogger(__name__)


class PartitionTransactions:
    """The transactional producers of the input partitions this worker owns.

    Parameters
    ----------
    make_producer
        ``await make_producer(transactional_id)``: a started aiokafka producer with that
        id (starting it is Kafka's ``InitProducerId``, which fences the id's previous owner).
    app_id, topic
        The consumer group (offsets are committed for it) and the input topic.
    """

    def __init__(self, make_producer, app_id: str, topic: str) -> None:
        self._make_producer = make_producer
        self.group_id, self.topic = app_id, topic
        self._producers: dict[int, object] = {}
        #: Held by a batch's transactions and by assignment changes: a producer is never
        #: closed under a transaction.
        self.lock = asyncio.Lock()

    def transactional_id(self, partition: int) -> str:
        return f"{self.group_id}-{self.topic}-{partition}"

    async def assign(self, partitions: Iterable[int]) -> None:
        """Start a producer for each newly owned partition (fencing its previous owner)."""
        async with self.lock:
            for partition in sorted(set(partitions) - set(self._producers)):
                self._producers[partition] = await self._make_producer(self.transactional_id(partition))
                log.info("exactly once: transactional producer %s started", self.transactional_id(partition))

    async def revoke(self, partitions: Iterable[int]) -> None:
        async with self.lock:
            for partition in sorted(set(partitions) & set(self._producers)):
                await self._producers.pop(partition).stop()

    async def stop(self) -> None:
        await self.revoke(list(self._producers))

    def owns(self, partition: int) -> bool:
        return partition in self._producers

    async def commit(self, partition: int, write, next_offset: int):
        """One transaction for ``partition``: ``await write(producer)`` sends its records
        and waits for their acknowledgements, then the input offset ``next_offset`` joins
        and all is committed. Returns what ``write`` returned, or None when this worker
        was fenced (the partition is someone else's now: nothing of it was committed)."""
        from aiokafka.structs import TopicPartition

        producer = self._producers.get(partition)
        if producer is None:
            return None
        try:
            async with producer.transaction():
                written = await write(producer)
                await producer.send_offsets_to_transaction({TopicPartition(self.topic, partition): next_offset},
                                                           self.group_id)
        except ProducerFenced:
            log.warning("exactly once: fenced on %s[%d] (another worker owns it now)", self.topic, partition)
            return None
        return written


def register(worker) -> None:
    """Start and stop the producers with the ``ratings`` partitions the worker is given
    and loses (Faust's rebalance signals: a revocation comes after the batches of the
    partitions have been acknowledged, so never under a transaction)."""
    transactions, app = worker.transactions, worker.app
    if transactions is None:
        return

    def ours(tps) -> list[int]:
        return [tp.partition for tp in tps if tp.topic == transactions.topic]

    @app.on_partitions_revoked.connect
    async def stop_producers(_app, revoked, **_kwargs) -> None:
        await transactions.revoke(ours(revoked))

    @app.on_partitions_assigned.connect
    async def start_producers(_app, assigned, **_kwargs) -> None:
        await transactions.assign(ours(assigned))

    @app.on_before_shutdown.connect
    async def stop_all(_app, **_kwargs) -> None:
        await transactions.stop()
