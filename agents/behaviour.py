"""Behaviour events: windowed counts per user, hot items, segments, implicit ratings.

``user-events`` (key: user) -> per-user counts (tumbling 10 min, hopping 1 h / 5 min as
5-minute panes: ``tables/behaviour.py``); the item of each event is re-keyed by item
(Faust ``group_by``-style repartition topic) and counted in an item-popularity pane
table; a timer keeps a snapshot of this worker's hottest items over the hopping window,
the fallback list of the paper's ranker. Every event type with
a weight in ``RECSYS_EVENT_WEIGHTS`` (all of them by default) becomes an implicit rating
on ``ratings``, so it triggers exactly the same real-time update as an explicit rating,
through the one agent that writes the user's state.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from app.records import EVENT_TYPES, Rating, parse_event, to_json_bytes
from tables.behaviour import HotPanes, implicit_rating, pane_count, user_segment

if TYPE_CHECKING:
    from app.worker import Worker

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    app, tables = worker.app, worker.tables
    weights = worker.settings.event_weight_map()

    @app.agent(worker.topics.events, name="agents.behaviour.count_behaviour")
    async def count_behaviour(stream):
        async for event in stream.events():
            await worker.dead_letters.process(event, lambda e: handle_event(worker, e, weights))

    @app.agent(worker.topics.item_events, name="agents.behaviour.count_item_popularity")
    async def count_item_popularity(stream):
        async for item in stream:
            tables.item_popularity[item.decode()] += 1

    behaviour = worker.settings.behaviour
    hot = HotPanes(behaviour.hopping_step_s, pane_count(behaviour.hopping_size_s, behaviour.hopping_step_s),
                   behaviour.hot_items)

    @app.timer(interval=5.0)
    async def refresh_hot_items():
        try:
            worker.hot_items[:] = hot.refresh(time.time(), lambda start: pane(tables.item_popularity, start))
        except Exception:  # a failing refresh keeps the previous list; it must not stop the worker
            log.exception("could not refresh the hot items")


def pane(wrapper, start: float) -> list[tuple[str, int]]:
    """Every (item, count) of the pane (a tumbling window) of ``wrapper`` that starts at
    ``start``: read from the windowed table's own table by (key, window range), as Faust
    stores it (``WindowSet.delta`` would need a stream event to be relative to)."""
    table = wrapper.table
    window = table.window.current(start + table.window.size / 2)
    return [(key, count) for key in list(wrapper.key_index_table.keys()) if (count := table[(key, window)])]


def window_count(wrapper, key, now: float, panes: int) -> int:
    """``key``'s count over the last ``panes`` panes of ``wrapper`` (the current one included)."""
    table = wrapper.table
    step = table.window.size
    return sum(table[(key, table.window.current(now - i * step))] for i in range(panes))


async def handle_event(worker: Worker, event, weights: dict[str, float]) -> None:
    conf, tables = worker.settings, worker.tables
    ev = parse_event(event.value, max_future_s=conf.input.max_future_s)
    worker.metrics.count("events.accepted")
    tables.user_event_counts_10m[(ev.user, ev.event)] += 1
    tables.user_event_counts_1h[(ev.user, ev.event)] += 1
    if ev.item and ev.event != "dislike":  # "not interested" does not make an item hot
        await worker.topics.item_events.send(key=ev.item.encode(), value=ev.item.encode())
    rating = implicit_rating(ev.event, weights, dislike_rating=conf.input.rating_min)
    if rating is not None and ev.item:
        implicit = Rating(user=ev.user, item=ev.item, rating=rating, ts=ev.ts, source=f"implicit:{ev.event}",
                          from_list=ev.from_list)
        await worker.topics.ratings.send(key=ev.user.encode(), value=to_json_bytes(implicit))
        worker.metrics.count("events.implicit_ratings")


def user_behaviour(worker: Worker, user: str) -> dict:
    """Current window counts and segment of one user (for the query API)."""
    conf, tables = worker.settings, worker.tables
    counts_10m = {e: tables.user_event_counts_10m[(user, e)].now() for e in sorted(EVENT_TYPES)}
    panes, now = pane_count(conf.behaviour.hopping_size_s, conf.behaviour.hopping_step_s), time.time()
    counts_1h = {e: window_count(tables.user_event_counts_1h, (user, e), now, panes) for e in sorted(EVENT_TYPES)}
    segment = user_segment(counts_1h, high_value_purchases=conf.behaviour.segment_high_value_purchases,
                           active_events=conf.behaviour.segment_active_events)
    return {"user": user, "segment": segment, "last_10m": {e: c for e, c in counts_10m.items() if c},
            "last_1h": {e: c for e, c in counts_1h.items() if c}, "at": time.time()}
