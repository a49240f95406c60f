"""The transactional producers of agents/transactions.py, with a stand-in producer: one per
owned partition, its id fencing the partition's previous owner, the offset inside the
transaction, nothing committed when fenced (the drills on Kafka: test_kafka_guarantees.py)."""
from __future__ import annotations

import asyncio

from aiokafka.errors import ProducerFenced
from aiokafka.structs import TopicPartition

from agents.transactions import PartitionTransactions


class FakeProducer:
    def __init__(self, transactional_id: str, log: list, fenced: bool = False) -> None:
        self.id, self.log, self.fenced = transactional_id, log, fenced

    async def stop(self) -> None:
        self.log.append(("stop", self.id))

    def transaction(self):
        producer = self

        class Txn:
            async def __aenter__(self):
                producer.log.append(("begin", producer.id))

            async def __aexit__(self, exc_type, exc, tb):
                if exc_type is None and producer.fenced:
                    raise ProducerFenced()
                producer.log.append(("commit" if exc_type is None else "abort", producer.id))

        return Txn()

    async def send_offsets_to_transaction(self, offsets, group_id):
        self.log.append(("offsets", self.id, dict(offsets), group_id))


def transactions(log: list, fenced: set[str] = frozenset()) -> PartitionTransactions:
    async def make(transactional_id: str):
        log.append(("start", transactional_id))
        return FakeProducer(transactional_id, log, fenced=transactional_id in fenced)

    return PartitionTransactions(make, "recsys", "ratings")


def test_one_producer_per_owned_partition_named_after_it():
    log: list = []
    txns = transactions(log)
    asyncio.run(txns.assign([0, 2]))
    asyncio.run(txns.assign([2, 3]))  # 2 is kept, not started twice
    asyncio.run(txns.revoke([0, 1]))
    assert log == [("start", "recsys-ratings-0"), ("start", "recsys-ratings-2"), ("start", "recsys-ratings-3"),
                   ("stop", "recsys-ratings-0")]
    assert [txns.owns(p) for p in range(4)] == [False, False, True, True]


def test_a_commit_holds_the_writes_and_the_partitions_next_offset():
    log: list = []
    txns = transactions(log)
    asyncio.run(txns.assign([1]))

    async def write(producer):
        log.append(("write", producer.id))
        return ["acked"]

    assert asyncio.run(txns.commit(1, write, 42)) == ["acked"]
    assert log[1:] == [("begin", "recsys-ratings-1"), ("write", "recsys-ratings-1"),
                       ("offsets", "recsys-ratings-1", {TopicPartition("ratings", 1): 42}, "recsys"),
                       ("commit", "recsys-ratings-1")]
    assert asyncio.run(txns.commit(0, write, 7)) is None  # not owned: nothing written


def test_a_fenced_worker_commits_nothing_and_says_so():
    log: list = []
    txns = transactions(log, fenced={"recsys-ratings-0"})
    asyncio.run(txns.assign([0]))

    async def write(producer):
        return ["acked"]

    assert asyncio.run(txns.commit(0, write, 5)) is None
    assert ("commit", "recsys-ratings-0") not in log
