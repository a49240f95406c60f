"""A consumer group as an operator sees it: its members with their partitions, and its
lag per partition (log end minus committed offset). No Faust: ``recsys web`` asks this
about the workers' group (``RECSYS_APP_ID``) for its dashboard."""
from __future__ import annotations

from typing import Iterable

from broker.clients import KafkaClients


async def group_members(conf, group: str) -> list[dict]:
    """``[{"client_id", "host", "partitions": {topic: [p, ...]}}]`` of ``group`` (empty
    when it has no members or the broker cannot describe it)."""
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    admin = await KafkaClients(conf).admin()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members = []
    for described in response.to_object()["groups"]:
        for member in described.get("members", []):
            assignment = member.get("member_assignment")
            try:
                parts = ConsumerProtocolMemberAssignment.decode(assignment).assignment if assignment else []
            except Exception:  # noqa: BLE001 - a member with another protocol: list it without partitions
                parts = []
            members.append({"member_id": member["member_id"], "client_id": member["client_id"],
                            "host": member["client_host"],
                            "partitions": {topic: sorted(ps) for topic, ps in parts if ps}})
    return sorted(members, key=lambda m: m["client_id"] + m["member_id"])


async def group_lag(conf, group: str, topics: Iterable[str]) -> dict[str, dict[int, int]]:
    """``{topic: {partition: end offset - committed offset}}`` of ``group`` on ``topics``
    (a partition with no commit yet counts from 0)."""
    from aiokafka.structs import TopicPartition

    clients = KafkaClients(conf)
    admin = await clients.admin()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = await clients.consumer()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await clients.end_offsets(consumer, partitions) if partitions else {}
    finally:
        await consumer.stop()
    lag: dict[str, dict[int, int]] = {}
    for tp in partitions:
        done = committed.get(tp)
        lag.setdefault(tp.topic, {})[tp.partition] = max(0, ends[tp] - (done.offset if done and done.offset >= 0 else 0))
    return lag
