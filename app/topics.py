"""Every topic the service uses, declared once for Faust (names: ``broker/topics.py``).

Input topics are read as raw bytes: validation (``app/records.py``) decides what is a
good message, so a malformed one becomes a dead letter instead of a crash.
"""
from __future__ import annotations

from app.app import app, settings
from broker.topics import item_events_topic_name


def _raw_topic(name: str, **kwargs):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=settings.kafka.partitions, **kwargs)


ratings_topic = _raw_topic(settings.topics.ratings)
events_topic = _raw_topic(settings.topics.events)
raw_logs_topic = _raw_topic(settings.topics.raw_logs)
similarity_topic = _raw_topic(settings.topics.similarity, compacting=True)
recommendations_topic = _raw_topic(settings.topics.recommendations, compacting=True)
dead_letters_topic = _raw_topic(settings.topics.dead_letters)
item_events_topic = _raw_topic(item_events_topic_name(settings))
