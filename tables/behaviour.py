"""Pure logic of the behaviour side: user segments, implicit ratings, hot items."""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping


def user_segment(counts: Mapping[str, int], *, high_value_purchases: int, active_events: int) -> str:
    """``high-value`` (enough purchases), ``active`` (enough events) or ``normal``.

    ``counts`` are one user's event counts per type over the hopping (1 hour) window.
    """
    if counts.get("purchase", 0) >= high_value_purchases:
        return "high-value"
    if sum(counts.values()) >= active_events:
        return "active"
    return "normal"


def implicit_rating(event: str, mapping: Mapping[str, float], dislike_rating: float = 1.0) -> float | None:
    """The rating an event stands for (its weight, e.g. purchase -> 5; a dislike the lowest
    rating, ``dislike_rating``), or None for an event type without one."""
    if event == "dislike":
        return dislike_rating
    return mapping.get(event)


def top_items(counts: Iterable[tuple[str, int]], n: int) -> list[str]:
    """The ``n`` items with the highest counts (ties by item id), for the hot list."""
    best = heapq.nsmallest(n, ((-c, item) for item, c in counts if c > 0))
    return [item for _, item in best]
