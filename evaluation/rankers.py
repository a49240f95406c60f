"""The rankers of the streaming evaluation (``evaluation/prequential.py``), as plain code.

Every ranker sees the same inputs: one user's :class:`UserView` (recent interactions,
every item the user interacted with) and the shared :class:`SharedState` (all-time and
windowed item counts, the latest ALS model and its published neighbour lists). After
every event the protocol calls ``ranker.update(...)`` (the ranker's own per-user state,
if any) and then ``ranker.recommend(...)``: the top-10 list the user *has* until the
next event, as the agents push a list after every event. Lists never hold an item the
user interacted with.

Rankers: ``paper`` (``tables.scoring.recommend_after_rating`` with today's settings,
exactly as ``agents/realtime.py`` calls it), ``popularity`` (all-time most interacted),
``popularity_window`` (the behaviour agent's hot-items window), ``als`` (top-10 of the
latest model; popularity for users it does not know), ``item_knn`` (sum of similarities
to the user's recent items) and ``default`` (``tables/ranking.py``, what the agents run).
"""
from __future__ import annotations

import bisect
import collections
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from tables.ranking import RankerParams, knn_scores, recommend_default
from tables.scoring import OnlineParams, SimilarityIndex, add_recent_rating, recommend_after_rating

#: Length of every evaluated list.
TOP_N = 10
#: Recent interactions kept per user for the rankers that read a history (the paper
#: keeps its own K in its own state).
HISTORY_MAX = 50


# --------------------------------------------------------------------------- shared state
class TopCounter:
    """Item counts that only grow, with their top-``size`` kept sorted incrementally.

    Exact: when one count grows by one, the new top is the old top plus that item, minus
    the worst, so no full sort per event (85k items on Taobao). Ties break on item id.
    """

    def __init__(self, size: int = 200) -> None:
        self.size = size
        self.counts: collections.Counter = collections.Counter()
        self._top: list[tuple[int, str]] = []  # (-count, item), ascending = best first

    def add(self, item: str, n: int = 1) -> None:
        old = self.counts[item]
        self.counts[item] = new = old + n
        top = self._top
        if old:
            pos = bisect.bisect_left(top, (-old, item))
            if pos < len(top) and top[pos] == (-old, item):
                del top[pos]
        bisect.insort(top, (-new, item))
        if len(top) > self.size:
            top.pop()

    def top(self, n: int, exclude: Iterable[str] = ()) -> list[str]:
        """The ``n`` most counted items not in ``exclude``."""
        ex = exclude if isinstance(exclude, (set, frozenset, dict)) else set(exclude)
        out = [item for _c, item in self._top if item not in ex][:n]
        if len(out) < n and len(self.counts) > len(self._top):  # exclusion ate the cached top
            ranked = sorted((-c, item) for item, c in self.counts.items() if item not in ex)
            out = [item for _c, item in ranked[:n]]
        return out

    def max_count(self) -> int:
        return -self._top[0][0] if self._top else 0


class HotWindow:
    """The behaviour agent's hot items: counts over the last ``size_s`` seconds of event
    time, re-ranked every ``step_s`` (the agent's hopping window size and step).

    The agent's timer refreshes its snapshot every 5 s of wall time; replayed in event
    time, the hopping step is when its counts change. Exact sliding counts at each step
    boundary stand in for Faust's hopping buckets.
    """

    def __init__(self, size_s: float, step_s: float, n_hot: int) -> None:
        self.size_s, self.step_s, self.n_hot = float(size_s), max(float(step_s), 1e-9), int(n_hot)
        self.events: collections.deque = collections.deque()
        self.counts: collections.Counter = collections.Counter()
        self.ranked: list[str] = []  # every item of the window, most counted first
        self.max_count = 0
        self._boundary = -math.inf

    def add(self, item: str, ts: float) -> None:
        if ts >= self._boundary + self.step_s:  # a new hop: re-rank what the window held before it
            self._boundary = math.floor(ts / self.step_s) * self.step_s
            self._refresh(self._boundary)
        self.events.append((ts, item))
        self.counts[item] += 1

    def _refresh(self, now: float) -> None:
        events, counts = self.events, self.counts
        while events and events[0][0] <= now - self.size_s:
            _ts, old = events.popleft()
            counts[old] -= 1
            if counts[old] <= 0:
                del counts[old]
        self.ranked = [item for _c, item in sorted((-c, item) for item, c in counts.items())]
        self.max_count = counts[self.ranked[0]] if self.ranked else 0

    @property
    def hot(self) -> list[str]:
        """The agent's ``hot_items`` list (its top ``n_hot``)."""
        return self.ranked[: self.n_hot]


@dataclass
class SharedState:
    """What every ranker may read besides the user's own state."""

    popularity: TopCounter
    window: HotWindow
    model: object = None  # offline_als.model.TrainedModel of the latest retrain
    index: SimilarityIndex = field(default_factory=SimilarityIndex)
    model_items: dict = field(default_factory=dict)  # item id -> row of model.item_factors
    model_users: dict = field(default_factory=dict)  # user id -> row of model.user_factors
    version: int = 0

    def observe(self, item: str, ts: float) -> None:
        self.popularity.add(item)
        self.window.add(item, ts)

    def set_model(self, trained) -> None:
        """Swap in a retrained model as the ALS worker publishes it and the worker reads it
        (factor neighbours, co-occurrence lists, training counts: one SimilarityIndex)."""
        self.model = trained
        self.index = SimilarityIndex({i: n for i, n in trained.neighbours.items() if n}, related=trained.related,
                                     counts=trained.counts)
        self.model_items = {str(x): j for j, x in enumerate(trained.item_ids)}
        self.model_users = {str(x): j for j, x in enumerate(trained.user_ids)}
        self.version += 1


@dataclass
class UserView:
    """One user's state as the protocol keeps it (the same for every ranker)."""

    history: list = field(default_factory=list)  # [[item, rating, ts], ...] oldest first
    interacted: set = field(default_factory=set)
    n_events: int = 0

    def apply(self, item: str, rating: float, ts: float) -> None:
        self.history = add_recent_rating(self.history, item, rating, ts, HISTORY_MAX)
        self.interacted.add(item)
        self.n_events += 1


# --------------------------------------------------------------------------- rankers
class Ranker:
    """Base: no per-user state of its own; ``recommend`` is a function of the inputs."""

    name = "ranker"

    def update(self, user: str, item: str, rating: float, ts: float, view: UserView,
               shared: SharedState) -> None:
        """Apply one event to the ranker's own state (after the event was scored)."""

    def recommend(self, user: str, view: UserView, shared: SharedState) -> list[str]:
        raise NotImplementedError


class Popularity(Ranker):
    name = "popularity"

    def recommend(self, user, view, shared):
        return shared.popularity.top(TOP_N, view.interacted)


class PopularityWindow(Ranker):
    name = "popularity_window"

    def recommend(self, user, view, shared):
        return [q for q in shared.window.ranked if q not in view.interacted][:TOP_N]


class ALSRanker(Ranker):
    """Top-10 by the latest model's predicted rating; popularity for unknown users."""

    name = "als"

    def recommend(self, user, view, shared):
        u = shared.model_users.get(user)
        if shared.model is None or u is None:
            return shared.popularity.top(TOP_N, view.interacted)
        rows = shared.model_items
        ex = [rows[i] for i in view.interacted if i in rows]
        idx, _ = shared.model.model.recommend(u, exclude=ex, N=TOP_N)
        ids = shared.model.item_ids
        return [str(ids[j]) for j in idx]


class ItemKNN(Ranker):
    """Sum of similarities to the user's K most recent items (published neighbour lists)."""

    name = "item_knn"

    def __init__(self, k: int = 20) -> None:
        self.k = k

    def recommend(self, user, view, shared):
        scores = knn_scores(view.history[-self.k:], shared.index.neighbours, view.interacted)
        ranked = sorted((-v, q) for q, v in scores.items())
        return [q for _s, q in ranked[:TOP_N]]


class Paper(Ranker):
    """Today's algorithm: ``recommend_after_rating`` with the agent's parameters and its hot
    list as padding, per-user ``recent``/``rated``/previous list as the agent's tables."""

    name = "paper"

    def __init__(self, params: OnlineParams) -> None:
        self.params = params
        self.state: dict[str, tuple] = {}

    def update(self, user, item, rating, ts, view, shared):
        recent, rated, previous = self.state.get(user, ([], [], []))
        recent, rated, new_list, _n = recommend_after_rating(
            item=item, rating=rating, ts=ts, recent=recent, rated=rated, previous=previous,
            similarity=shared.index, hot_items=shared.window.hot, params=self.params)
        self.state[user] = (recent, rated, new_list)

    def recommend(self, user, view, shared):
        lst = self.state.get(user, ([], [], []))[2]
        # The agent's list is K long; the evaluation reads its top 10 (its rated_limit
        # could in principle forget an old item: the full interaction set is the rule).
        return [e[0] for e in lst if e[0] not in view.interacted][:TOP_N]


# --------------------------------------------------------------------------- default
class Default(Ranker):
    """The agents' default ranker (:func:`tables.ranking.recommend_default`, the same
    call), with the worker's own per-user state (its ``recent`` and ``rated``)."""

    name = "default"

    def __init__(self, params: RankerParams | None = None, name: str = "default") -> None:
        self.params = params or RankerParams()
        self.name = name
        self.state: dict[str, tuple] = {}
        self.because: dict[str, dict] = {}

    def update(self, user, item, rating, ts, view, shared):
        recent, rated, previous = self.state.get(user, ([], [], []))
        recent, rated, new_list, because, _n = recommend_default(
            item=item, rating=rating, ts=ts, recent=recent, rated=rated, previous=previous,
            similarity=shared.index, params=self.params)
        self.state[user] = (recent, rated, new_list)
        self.because[user] = because

    def recommend(self, user, view, shared):
        return [e[0] for e in self.state.get(user, ([], [], []))[2] if e[0] not in view.interacted][:TOP_N]


RANKER_NAMES = ("default", "paper", "popularity", "popularity_window", "als", "item_knn")


def make_rankers(online: OnlineParams, default: RankerParams | None = None) -> list[Ranker]:
    """The six rankers of the evaluation, in :data:`RANKER_NAMES` order."""
    return [Default(default), Paper(online), Popularity(), PopularityWindow(), ALSRanker(),
            ItemKNN(k=online.k)]
