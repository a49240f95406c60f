"""Client-side workarounds for the embedded Tansu broker, and ONLY for it.

Measured in ``../shared/EMBEDDED_BROKER.md``; a real Kafka cluster runs stock Faust.
:func:`apply` is called once by ``app/app.py`` when the embedded broker is in use.

1. Tansu holds a JoinGroup reply for session_timeout/2: short session (6 s) and
   heartbeat (1 s) bring the first processed message from ~31 s to ~4.5 s.
2. Tansu's ListOffsets(LATEST) returns the newest batch's base offset + 1 instead of the
   log end. Faust uses it as the changelog "highwater" during table recovery, which
   crashes a restart (``ConsistencyError``) or silently drops records. We take the end
   offset from a Fetch response's high watermark instead, which Tansu gets right.
3. Fetch long-polls sleep remaining/2 between polls, so latency is ~fetch_max_wait/4..1/2.
   Faust hard-codes 1500 ms; we use 100 ms (below ~20 ms consumers can stall).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

log = logging.getLogger(__name__)

SESSION_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 1.0
FETCH_MAX_WAIT_MS = 100

_applied = False


def faust_settings() -> dict[str, Any]:
    """Extra ``faust.App`` settings for the embedded broker."""
    return {
        "broker_session_timeout": SESSION_TIMEOUT_S,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL_S,
    }


async def fetch_high_watermarks(client, partitions) -> dict:
    """End offsets read from a Fetch response (correct on Tansu), per partition.

    One Fetch per partition leader asking for at most 1 byte from offset 0, min_bytes 0:
    the reply carries each partition's high watermark. (Tansu answers a Fetch with
    max_wait 0 with no partitions at all, so we allow it 1 ms.)
    """
    from aiokafka.protocol.fetch import FetchRequest
    from aiokafka.structs import TopicPartition

    by_node: dict[int, dict[str, list]] = {}
    for tp in partitions:
        node = client.cluster.leader_for_partition(TopicPartition(tp.topic, tp.partition))
        if node is None:
            await client.force_metadata_update()
            node = client.cluster.leader_for_partition(TopicPartition(tp.topic, tp.partition))
        by_node.setdefault(node, {}).setdefault(tp.topic, []).append((tp.partition, 0, 1))
    result = {}
    for node, topics in by_node.items():
        request = FetchRequest(1, 0, 1, 0, list(topics.items()))
        response = await client.send(node, request)
        for topic, parts in response.topics:
            for part in parts:
                # (partition, error_code, highwater, ...) in every Fetch version aiokafka speaks.
                if part[1] != 0:
                    raise RuntimeError(f"Fetch error {part[1]} for {topic}[{part[0]}]: no high watermark")
                result[(topic, part[0])] = part[2]
    missing = [tp for tp in partitions if (tp.topic, tp.partition) not in result]
    if missing:
        raise RuntimeError(f"no high watermark in the Fetch response for {missing}")
    return {tp: result[(tp.topic, tp.partition)] for tp in partitions}


async def end_offsets(consumer, partitions, conf) -> dict:
    """Log-end offsets of ``partitions`` for an aiokafka consumer: from Fetch high
    watermarks on the embedded broker (its ListOffsets is wrong), else the usual way."""
    if conf.uses_embedded_broker:
        return await fetch_high_watermarks(consumer._client, list(partitions))
    return await consumer.end_offsets(list(partitions))


def apply() -> None:
    """Patch Faust's aiokafka driver for Tansu (idempotent)."""
    global _applied
    if _applied:
        return
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    original_create = thread_cls._create_worker_consumer

    def _create_worker_consumer(self, transport):
        consumer = original_create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the fetcher starts
        return consumer

    async def _highwaters(self, partitions) -> Mapping:
        consumer = self._ensure_consumer()
        if self.consumer.in_transaction:  # pragma: no cover - we run at_least_once
            return {tp: consumer.last_stable_offset(tp) for tp in partitions}
        return await fetch_high_watermarks(consumer._client, list(partitions))

    thread_cls._create_worker_consumer = _create_worker_consumer
    thread_cls._highwaters = _highwaters
    _applied = True
    log.info("applied Tansu workarounds (session %ss, fetch wait %sms, fetch-based highwaters)",
             SESSION_TIMEOUT_S, FETCH_MAX_WAIT_MS)
