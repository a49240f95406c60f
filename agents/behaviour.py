"""Behaviour events: windowed counts per user, hot items, segments, implicit ratings.

``user-events`` (key: user) -> per-user counts (tumbling 10 min, hopping 1 h / 5 min);
the item of each event is re-keyed by item (Faust ``group_by``-style repartition topic)
and counted in a hopping item-popularity table; a timer keeps a snapshot of this
worker's hottest items, the fallback list of the paper's ranker. Every event type with
a weight in ``RECSYS_EVENT_WEIGHTS`` (all of them by default) becomes an implicit rating
on ``ratings``, so it triggers exactly the same real-time update as an explicit rating,
through the one agent that writes the user's state.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from agents.dead_letters import process_or_dead_letter
from app import metrics
from app.app import app, settings
from app.records import EVENT_TYPES, Rating, parse_event, to_json_bytes
from app.topics import events_topic, item_events_topic, ratings_topic
from tables.behaviour import implicit_rating, top_items, user_segment
from tables.definitions import JSON_KEYS, user_event_counts_1h, user_event_counts_10m

log = logging.getLogger(__name__)
EVENT_WEIGHTS = settings.event_weight_map()

#: item -> event count over the last hour (hopping by 5 minutes).
item_popularity = app.Table(
    "item_popularity", default=int, partitions=settings.kafka.partitions, schema=JSON_KEYS,
    help="events per item, hopping window",
).hopping(settings.behaviour.hopping_size_s, settings.behaviour.hopping_step_s, expires=timedelta(seconds=settings.behaviour.window_expires_s),
          key_index=True)  # key_index: the table can be iterated, for the hot list

#: This worker's hottest items (refreshed by :func:`refresh_hot_items`).
hot_items: list[str] = []


@app.agent(events_topic)
async def count_behaviour(stream):
    async for event in stream.events():
        await process_or_dead_letter(event, handle_event)


async def handle_event(event) -> None:
    ev = parse_event(event.value, max_future_s=settings.input.max_future_s)
    metrics.count("events.accepted")
    user_event_counts_10m[(ev.user, ev.event)] += 1
    user_event_counts_1h[(ev.user, ev.event)] += 1
    if ev.item and ev.event != "dislike":  # "not interested" does not make an item hot
        await item_events_topic.send(key=ev.item.encode(), value=ev.item.encode())
    rating = implicit_rating(ev.event, EVENT_WEIGHTS, dislike_rating=settings.input.rating_min)
    if rating is not None and ev.item:
        implicit = Rating(user=ev.user, item=ev.item, rating=rating, ts=ev.ts, source=f"implicit:{ev.event}")
        await ratings_topic.send(key=ev.user.encode(), value=to_json_bytes(implicit))
        metrics.count("events.implicit_ratings")


@app.agent(item_events_topic)
async def count_item_popularity(stream):
    async for item in stream:
        item_popularity[item.decode()] += 1


@app.timer(interval=5.0)
async def refresh_hot_items():
    try:
        counts = ((key, value) for key, value in item_popularity.items().now())
        hot_items[:] = top_items(counts, settings.behaviour.hot_items)
    except Exception:  # a failing refresh keeps the previous list; it must not stop the worker
        log.exception("could not refresh the hot items")


def user_behaviour(user: str) -> dict:
    """Current window counts and segment of one user (for the query API)."""
    counts_10m = {e: user_event_counts_10m[(user, e)].now() for e in sorted(EVENT_TYPES)}
    counts_1h = {e: user_event_counts_1h[(user, e)].now() for e in sorted(EVENT_TYPES)}
    segment = user_segment(counts_1h, high_value_purchases=settings.behaviour.segment_high_value_purchases,
                           active_events=settings.behaviour.segment_active_events)
    return {"user": user, "segment": segment, "last_10m": {e: c for e, c in counts_10m.items() if c},
            "last_1h": {e: c for e, c in counts_1h.items() if c}, "at": time.time()}
