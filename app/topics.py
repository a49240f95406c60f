"""Every topic the service uses, declared once for Faust (names: ``broker/topics.py``).

Input topics are read as raw bytes: validation (``app/records.py``) decides what is a
good message, so a malformed one becomes a dead letter instead of a crash.
"""
from __future__ import annotations

from app.app import app, settings
from broker.topics import item_events_topic_name


def _raw_topic(name: str, **kwargs):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=settings.partitions, **kwargs)


ratings_topic = _raw_topic(settings.topic_ratings)
events_topic = _raw_topic(settings.topic_events)
raw_logs_topic = _raw_topic(settings.topic_raw_logs)
similarity_topic = _raw_topic(settings.topic_similarity, compacting=True)
recommendations_topic = _raw_topic(settings.topic_recommendations, compacting=True)
dead_letters_topic = _raw_topic(settings.topic_dead_letters)
item_events_topic = _raw_topic(item_events_topic_name(settings))
