"""Every topic the service uses, declared once, and their explicit creation.

Input topics are read as raw bytes: validation (``app/records.py``) decides what is a
good message, so a malformed one becomes a dead letter instead of a crash. Every topic
gets the same partition count (Faust needs source topics and table changelogs
co-partitioned) and is created before workers start (Tansu would auto-create unknown
topics with 4 partitions).
"""
from __future__ import annotations

import asyncio
import logging

from app.app import app
from app.settings import Settings, settings

log = logging.getLogger(__name__)


def _raw_topic(name: str, **kwargs):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=settings.partitions, **kwargs)


ratings_topic = _raw_topic(settings.topic_ratings)
events_topic = _raw_topic(settings.topic_events)
raw_logs_topic = _raw_topic(settings.topic_raw_logs)
similarity_topic = _raw_topic(settings.topic_similarity, compacting=True)
recommendations_topic = _raw_topic(settings.topic_recommendations, compacting=True)
dead_letters_topic = _raw_topic(settings.topic_dead_letters)
#: Internal: behaviour events re-keyed by item, for the item-popularity table.
item_events_topic = _raw_topic(f"{settings.app_id}-item-events")



def compacted_topics(conf: Settings = settings) -> set[str]:
    return {conf.topic_similarity, conf.topic_recommendations}


def topic_names(conf: Settings = settings) -> list[str]:
    return [conf.topic_ratings, conf.topic_events, conf.topic_raw_logs, conf.topic_similarity,
            conf.topic_recommendations, conf.topic_dead_letters, f"{conf.app_id}-item-events"]


async def create_topics(conf: Settings = settings) -> dict[str, str]:
    """Create our topics with ``conf.partitions`` partitions; existing ones are kept.

    Returns ``{topic: "created" | "exists"}``. An existing topic with a different
    partition count is reported in the log (changing it needs an operator).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=conf.bootstrap_servers, **conf.kafka_security_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=conf.partitions, replication_factor=conf.replication,
                     topic_configs={"cleanup.policy": "compact"} if name in compacted_topics(conf) else {})
            for name in topic_names(conf) if name not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
        described = await admin.describe_topics([n for n in topic_names(conf) if n in existing])
        for topic in described:
            count = len(topic.get("partitions", []))
            if count and count != conf.partitions:
                log.warning("topic %s has %d partitions, settings say %d", topic["topic"], count, conf.partitions)
        return {name: ("exists" if name in existing else "created") for name in topic_names(conf)}
    finally:
        await admin.close()


def create_topics_sync(conf: Settings = settings) -> dict[str, str]:
    return asyncio.run(create_topics(conf))
