"""The user's history as every ranker keeps it: the recent interactions and the items
the user had. Pure functions of lists (no ranker state of their own).

``recent`` is ``[[item, rating, ts], ...]`` oldest first, one entry per item (the
paper's RK); ``rated`` is ``[item, ...]`` most recent last, bounded, what a list must
never hold again.
"""
from __future__ import annotations

from collections.abc import Sequence

#: ``[item, rating, ts]``: one entry of a user's recent interactions.
RecentRating = list


def add_recent_rating(recent: Sequence[RecentRating], item: str, rating: float, ts: float,
                      k: int) -> list[RecentRating]:
    """Return u's K most recent ratings after adding (item, rating, ts).

    One entry per item; the entry with the newer timestamp wins (a tie goes to the new
    one), so a redelivered or stale event changes nothing. Sorted oldest first; equal
    timestamps keep arrival order, so the rating that just arrived is the "most
    recent" of its second and is never the one evicted.
    """
    for entry in recent:
        if entry[0] == item and ts < entry[2]:  # stale: older than what we have for the item
            return [list(e) for e in recent][-k:] if k > 0 else []
    kept = [list(e) for e in recent if e[0] != item]
    kept.append([item, float(rating), float(ts)])
    kept.sort(key=lambda e: e[2])  # stable: ties stay in arrival order
    return kept[-k:] if k > 0 else []


def is_replay(recent: Sequence[RecentRating], item: str, rating: float, ts: float) -> bool:
    """True for a rating that changes nothing: a redelivery (same item, rating and time)
    or a stale one (older than the user's recent rating of that item)."""
    for entry in recent:
        if entry[0] == item:
            return entry[2] > ts or (entry[2] == ts and entry[1] == rating)
    return False


def add_rated_item(rated: Sequence[str], item: str, limit: int) -> list[str]:
    """Remember that the user rated ``item`` (most recent last, at most ``limit`` items)."""
    items = [i for i in rated if i != item]
    items.append(item)
    return items[-limit:] if limit > 0 else []


def advanced(recent: Sequence[RecentRating], rated: Sequence[str], item: str, weight: float, ts: float, k: int,
             limit: int) -> tuple[list[RecentRating], list[str]] | None:
    """The history ``(recent, rated)`` after an interaction with ``item`` (``weight``: its
    rating, -1 for a dislike), before any ranking; None for a replay (it changes nothing)."""
    if is_replay(recent, item, weight, ts):
        return None
    return add_recent_rating(recent, item, weight, ts, k), add_rated_item(rated, item, limit)
