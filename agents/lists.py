"""What goes into a ranker for one rating and what comes out on the wire: pure (no
Faust), so the benchmarks' peers make the realtime agent's lists with the same code."""
from __future__ import annotations

import time

from app.records import DISLIKE_SOURCE, Rating, Recommendation, wire_list
from ranking.protocol import Interaction


def interaction_of(rating: Rating) -> Interaction:
    """A rating (or a behaviour event turned into one) as the rankers read it."""
    return Interaction(user=rating.user, item=rating.item, rating=rating.rating, ts=rating.ts,
                       dislike=rating.source == DISLIKE_SOURCE, event=event_of_source(rating.source),
                       from_list=rating.from_list)


def event_of_source(source: str) -> str:
    """The event a rating came from: ``rating`` for an explicit one, else its event type."""
    kind, _colon, event = source.partition(":")
    return event if kind == "implicit" and event else "rating"


def recommendation_for(rating: Rating, recs: dict, variant: str, version: str, produced_at: float,
                       worker_ms: float, items: list | None = None) -> Recommendation:
    """The list message a rating produces, from the user's ``recs`` right after it
    (``UserState.recs``; a redelivered rating gets the stored list and the model version
    that made it); ``items``: its list already as :func:`app.records.wire_list` makes it."""
    return Recommendation(user=rating.user, items=wire_list(recs.get("items", [])) if items is None else items,
                          model_version=recs.get("model_version", version), trigger_ts=rating.ts,
                          produced_at=produced_at, emitted_at=time.time(), worker_ms=worker_ms,
                          reason="rating" if rating.source == "explicit" else rating.source,
                          because=recs.get("because", {}), variant=variant,
                          explored=recs.get("explored"))
