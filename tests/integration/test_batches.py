"""The realtime agent's batch writer (agents/batches.py) on a real broker.

``send_in_batches`` packs records into aiokafka record batches by hand; the table's
store is then written at ``first offset of the batch + i``. Both must hold on every
engine: each record lands in its partition, in input order, at exactly that offset,
even when the records need several batches or one record is larger than a batch.
"""
from __future__ import annotations

import asyncio

import pytest

from tests.brokers import consume, run

pytestmark = pytest.mark.broker
PARTITIONS = 3


async def send_and_wait(conf, topic: str, records, max_batch_size: int):
    from aiokafka.admin import NewTopic

    from agents.batches import send_in_batches
    from broker.clients import KafkaClients

    clients = KafkaClients(conf)
    admin = await clients.admin()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    producer = await clients.producer("bulk", max_batch_size=max_batch_size, max_request_size=1 << 20)
    try:
        sends = await send_in_batches(producer, topic, records)
        acks = await asyncio.gather(*(send for _records, send in sends))
    finally:
        await producer.stop()
    return [(batch, metadata) for (batch, _send), metadata in zip(sends, acks, strict=False)]


def test_records_land_in_order_at_the_offsets_the_acks_give(stream_env):
    conf = stream_env.conf
    topic = f"{conf.topics.ratings}-batches"
    records = [(i % PARTITIONS, f"u{i % 7}".encode(), f"value {i:04d} ".encode() * 8) for i in range(300)]
    records.insert(150, (1, b"huge", b"x" * 5000))  # larger than a whole record batch
    sent = run(send_and_wait(conf, topic, records, max_batch_size=1024))

    assert len(sent) > 3 * PARTITIONS, "the records should have needed several batches per partition"
    assert sum(len(batch) for batch, _ in sent) == len(records)
    expected = {}
    for batch, metadata in sent:
        assert {partition for partition, _, _ in batch} == {metadata.partition}
        for i, (_partition, key, value) in enumerate(batch):
            expected[(metadata.partition, metadata.offset + i)] = (key, value)

    messages = run(consume(conf, topic, until=lambda got: len(got) >= len(records)))
    landed = {(m.partition, m.offset): (m.key, m.value) for m in messages}
    assert landed == expected
    for partition in range(PARTITIONS):
        in_order = [value for (p, _offset), (_key, value) in sorted(landed.items()) if p == partition]
        assert in_order == [value for p, _key, value in records if p == partition]
