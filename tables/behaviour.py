"""Pure logic of the behaviour side: user segments, implicit ratings, hot items."""
from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Callable, Iterable, Mapping


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


def pane_count(size_s: float, step_s: float) -> int:
    """How many step-long panes make the hopping window (1 hour by 5 minutes: 12)."""
    return max(1, round(size_s / step_s))


class HotPanes:
    """The hottest items over the hopping window, from step-long tumbling panes: a Faust
    hopping table writes every event into each of its ``size / step`` overlapping windows
    (12 writes and changelog messages per event for 1 hour by 5 minutes; a third of the
    demo worker's CPU); a pane table takes one, and the window is the sum of its last
    panes. A completed pane is read once (the first refresh after it closed) and kept;
    the current one at every refresh.

    Parameters
    ----------
    step_s : float
        Pane length (the hopping step).
    panes : int
        Panes in the window (:func:`pane_count`).
    n_hot : int
        Items listed.
    """

    def __init__(self, step_s: float, panes: int, n_hot: int) -> None:
        self.step_s, self.panes, self.n_hot = float(step_s), int(panes), int(n_hot)
        #: pane start -> item counts of a completed pane
        self.closed: dict[float, collections.Counter] = {}

    def refresh(self, now: float, read_pane: Callable[[float], Iterable[tuple[str, int]]]) -> list[str]:
        """The hot list at ``now``; ``read_pane(start)``: the (item, count) of the pane that starts there."""
        current = math.floor(now / self.step_s) * self.step_s
        wanted = [current - i * self.step_s for i in range(1, self.panes)]
        self.closed = {start: counts for start, counts in self.closed.items() if start in wanted}
        for start in wanted:
            if start not in self.closed:
                self.closed[start] = collections.Counter(dict(read_pane(start)))
        total = collections.Counter(dict(read_pane(current)))
        for counts in self.closed.values():
            total.update(counts)
        return top_items(total.items(), self.n_hot)
