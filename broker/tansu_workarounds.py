"""Client settings and calls that only the Tansu stand-in needs (no Faust here).

Measured in ``../shared/EMBEDDED_BROKER.md``; real Kafka gets none of this. Which
broker answers is detected (``broker/detect.py``), not guessed from the URL.

1. Tansu holds a JoinGroup reply for session_timeout/2: a short session (6 s) and
   heartbeat (1 s) bring the first processed message from ~31 s to ~4.5 s.
2. Tansu's ListOffsets(LATEST) returns the newest batch's base offset + 1 instead of the
   log end. End offsets are read from a Fetch response's high watermark instead.
3. Fetch long-polls sleep remaining/2 between polls, so latency is ~fetch_max_wait/4..1/2:
   consumers wait at most 100 ms (below ~20 ms they can stall).
"""
from __future__ import annotations

SESSION_TIMEOUT_S = 6.0
HEARTBEAT_INTERVAL_S = 1.0
FETCH_MAX_WAIT_MS = 100


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
