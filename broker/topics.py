"""The project's topics: their names (from Settings) and their explicit creation.

Every topic gets the same partition count (Faust needs source topics and table
changelogs co-partitioned) and is created before workers start (Tansu would auto-create
unknown topics with 4 partitions). The Faust side declares the same names in
``app/topics.py``.
"""
from __future__ import annotations

import asyncio
import logging

from broker.clients import KafkaClients

log = logging.getLogger(__name__)


def item_events_topic_name(conf) -> str:
    """Internal: behaviour events re-keyed by item, for the item-popularity table."""
    return f"{conf.worker.app_id}-item-events"


def compacted_topics(conf) -> set[str]:
    return {conf.topics.similarity, conf.topics.recommendations, conf.topics.items, conf.topics.ranker_model}


def topic_names(conf) -> list[str]:
    return [conf.topics.ratings, conf.topics.events, conf.topics.raw_logs, conf.topics.similarity,
            conf.topics.recommendations, conf.topics.dead_letters, conf.topics.items, item_events_topic_name(conf),
            conf.topics.ranker_examples, conf.topics.ranker_model]


async def create_topics(conf) -> dict[str, str]:
    """Create our topics with ``conf.kafka.partitions`` partitions; existing ones are kept.

    Returns ``{topic: "created" | "exists"}``. An existing topic with a different
    partition count is reported in the log (changing it needs an operator).
    """
    from aiokafka.admin import NewTopic

    admin = await KafkaClients(conf).admin()
    try:
        await wait_for_brokers(admin, conf.kafka.replication)
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, num_partitions=conf.kafka.partitions, replication_factor=conf.kafka.replication,
                           topic_configs=topic_config(conf, name))
                  for name in topic_names(conf) if name not in existing]
        if wanted:
            await admin.create_topics(wanted)
        described = await admin.describe_topics([n for n in topic_names(conf) if n in existing])
        for topic in described:
            count = len(topic.get("partitions", []))
            if count and count != conf.kafka.partitions:
                log.warning("topic %s has %d partitions, settings say %d", topic["topic"], count, conf.kafka.partitions)
        return {name: ("exists" if name in existing else "created") for name in topic_names(conf)}
    finally:
        await admin.close()


def topic_config(conf, name: str) -> dict[str, str]:
    config = {"cleanup.policy": "compact"} if name in compacted_topics(conf) else {}
    if conf.kafka.replication > 1:  # a single broker keeps its own default
        config["min.insync.replicas"] = str(conf.kafka.min_insync_replicas)
    return config


async def wait_for_brokers(admin, wanted: int, timeout: float = 120.0) -> None:
    """Until ``wanted`` brokers are registered (a cluster still starting, or a node being
    restarted); a topic with more replicas than brokers cannot be created."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        brokers = len((await admin.describe_cluster())["brokers"])
        if brokers >= wanted:
            return
        if asyncio.get_running_loop().time() >= deadline:
            raise TopicsUnavailable(f"RECSYS_REPLICATION={wanted} needs {wanted} brokers, but only {brokers} "
                                    f"registered within {timeout:.0f} s")
        log.info("waiting for %d brokers (%d registered) before creating topics", wanted, brokers)
        await asyncio.sleep(1.0)


class TopicsUnavailable(RuntimeError):
    """The topics cannot be created as the settings ask; the message is one line."""


def create_topics_sync(conf) -> dict[str, str]:
    return asyncio.run(create_topics(conf))
