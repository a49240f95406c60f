"""A consumer group as an operator sees it: its members with their partitions, and its
lag per partition (log end minus committed offset). No Faust: ``recsys web`` asks this
about the workers' group (``RECSYS_APP_ID``) for its dashboard. Tansu describes a
group's members without their assignments: there the partitions stay empty."""
from __future__ import annotations

from collections.abc import Iterable

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
    (a partition with no commit yet counts from 0). The committed offsets are asked by a
    consumer of the group that never joins it (Tansu answers that OffsetFetch; the admin
    client's version it gets wrong)."""
    from aiokafka.structs import TopicPartition

    clients = KafkaClients(conf)
    consumer = await clients.consumer(group_id=group, enable_auto_commit=False)
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await clients.end_offsets(consumer, partitions) if partitions else {}
        committed = {tp: await consumer.committed(tp) for tp in partitions}
    finally:
        await consumer.stop()
    lag: dict[str, dict[int, int]] = {}
    for tp in partitions:
        lag.setdefault(tp.topic, {})[tp.partition] = max(0, ends[tp] - (committed[tp] or 0))
    return lag
