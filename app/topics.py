"""Every topic a worker uses, declared once for Faust (names: ``broker/topics.py``).

Input topics are read as raw bytes: validation (``app/records.py``) decides what is a
good message, so a malformed one becomes a dead letter instead of a crash.
"""
from __future__ import annotations

from dataclasses import dataclass

import faust

from app.settings import Settings
from broker.topics import item_events_topic_name


@dataclass(frozen=True)
class Topics:
    """The worker's Faust topics (see ``docs/ARCHITECTURE.md``, data flow)."""

    ratings: faust.TopicT
    events: faust.TopicT
    raw_logs: faust.TopicT
    similarity: faust.TopicT
    recommendations: faust.TopicT
    dead_letters: faust.TopicT
    #: Behaviour events re-keyed by item, for the item-popularity window.
    item_events: faust.TopicT
    #: Every interaction's examples, for the learner (the learned ranker's users only).
    ranker_examples: faust.TopicT


def declare_topics(app: faust.App, conf: Settings) -> Topics:
    def raw(name: str, **kwargs) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         partitions=conf.kafka.partitions, **kwargs)

    return Topics(
        ratings=raw(conf.topics.ratings),
        events=raw(conf.topics.events),
        raw_logs=raw(conf.topics.raw_logs),
        similarity=raw(conf.topics.similarity, compacting=True),
        recommendations=raw(conf.topics.recommendations, compacting=True),
        dead_letters=raw(conf.topics.dead_letters),
        item_events=raw(item_events_topic_name(conf)),
        ranker_examples=raw(conf.topics.ranker_examples),
    )
