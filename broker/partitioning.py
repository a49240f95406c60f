"""Which partition owns a key: the Java client's (and aiokafka's) default partitioner.

Producers do not all agree: librdkafka (confluent-kafka, kcat) hashes keys with CRC32
by default, Java and aiokafka with murmur2, and a null key goes anywhere. The service
keeps a user's state on the partition murmur2 gives the user id, whatever the
producer did, and re-routes a message that arrived elsewhere (agents/realtime.py).
"""
from __future__ import annotations

from aiokafka.partitioner import murmur2


def owner_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
