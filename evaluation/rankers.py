"""The rankers of the streaming evaluation (``evaluation/prequential.py``), as plain code.

Every ranker implements the rankers' one protocol (``ranking/protocol.py``): after every
event the protocol applies it to that ranker's state of the user
(``tables.state.UserState.apply``, as the realtime agent does), with the shared
:class:`SharedState` as the model; the user's list, until the next event, is the top 10
of the step's list (the agents push a list after every event). Lists never hold an item
the user interacted with.

Rankers: ``default`` and ``paper`` (``ranking.DefaultRanker`` and ``ranking.PaperRanker``,
what the agents run, padded with the hot window as the agent pads with its hot items),
the baselines here: ``popularity`` (all-time most interacted), ``popularity_window``
(the behaviour agent's hot-items window), ``als`` (top-10 of its own ALS model, its
regularisation tuned; popularity for users it does not know) and ``item_knn`` (sum of
co-occurrence similarities to the user's recent items), and the strong ones of
``evaluation/baselines.py`` (sequential rules, EASE, RP3beta, iALS, V-SKNN).
"""
from __future__ import annotations

import bisect
import collections
import math
import sys
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ranking import SimilarityIndex
from ranking.content import CatalogueText, ContentIndex
from ranking.features import Context
from ranking.history import add_rated_item, add_recent_rating, is_replay
from ranking.protocol import History, Interaction, Ranker, Step

#: Length of every evaluated list.
TOP_N = 10


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
        self.ranked_counts: list[int] = []  # their counts at the last hop
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
        ranked = sorted((-c, item) for item, c in counts.items())
        self.ranked = [item for _c, item in ranked]
        self.ranked_counts = [-c for c, _item in ranked]
        self.max_count = self.ranked_counts[0] if ranked else 0

    @property
    def hot(self) -> list[str]:
        """The agent's ``hot_items`` list (its top ``n_hot``)."""
        return self.ranked[: self.n_hot]


@dataclass(frozen=True)
class Interactions:
    """What the baselines learn from at a retrain: the events so far, indexed.

    ``X`` is users x items, 1 where the user had the item, ``R`` its rating (the last one
    of the pair, as the ALS worker keeps it); ``sequences[u]`` user u's
    items in time order (every event); ``last_seen[i]`` the time of item i's last event;
    ids are sorted (``item_ids[i]`` is item i, ``user_ids[u]`` user u; the indexes the reverse).
    """

    user_ids: np.ndarray
    user_index: dict
    item_ids: np.ndarray
    item_index: dict
    X: sp.csr_matrix
    sequences: list
    last_seen: np.ndarray
    #: users x items, the rating (or event strength) of each pair, the last one winning
    R: sp.csr_matrix
    #: users x items, the time of each pair's latest event (what the model worker stores)
    T: sp.csr_matrix
    #: behaviour events (implicit feedback), not ratings
    behaviour: bool = False


@dataclass
class SharedState:
    """The model every ranker of the evaluation steps with: what the worker's
    ``ranking.Model`` holds (``index``, ``hot_items``, ``version``) and what the baselines
    read besides (all-time and windowed item counts, the latest ALS model, and what each
    baseline fitted at the latest retrain: ``fitted[ranker.fit_key()]``).

    ``lists_read`` says whether the protocol reads the list of the step being made: a
    baseline's list is a function of the user's history and the model alone, so one
    nobody reads is not made (the history still is).
    """

    popularity: TopCounter
    window: HotWindow
    model: object = None  # offline_als.model.TrainedModel of the latest retrain
    index: SimilarityIndex = field(default_factory=SimilarityIndex)
    model_items: dict = field(default_factory=dict)  # item id -> row of model.item_factors
    model_users: dict = field(default_factory=dict)  # user id -> row of model.user_factors
    version: int = 0
    data: Interactions | None = None
    fitted: dict = field(default_factory=dict)
    #: fit key -> fit function of the baselines of the run (:meth:`fit_for`)
    fits: dict = field(default_factory=dict)
    lists_read: bool = True
    #: (fit key, user) -> (how many items, their sum): ``evaluation.baselines.history_sum``
    sums: dict = field(default_factory=dict)
    #: The weight set the learned ranker being stepped reads (``ranking.learned``).
    learned: object = None
    #: Whether the index keeps each source's lists (a learned ranker reads them).
    keep_sources: bool = False
    #: The catalogue's text vectors (None: no catalogue) and the cold items' content
    #: neighbours of the latest model (``ranking/content.py``), as a worker holds them.
    text: CatalogueText | None = None
    cold_item_min: int = 5
    content: ContentIndex | None = None
    #: The catalogue's category per item (empty: none), as a worker reads it from ``items``.
    categories: dict = field(default_factory=dict)

    @property
    def context(self) -> Context:
        """What the learned ranker's features read besides the index: the hot items and the
        catalogue's categories (a replayed log has no times items were added)."""
        return Context(hot_items=self.window.hot, categories=self.categories)

    def fit_for(self, rankers: Iterable[Ranker]) -> None:
        """Fit what these ``rankers`` learn at every retrain (:meth:`set_model`)."""
        for ranker in rankers:
            key = ranker.fit_key() if isinstance(ranker, Baseline) else None
            if key is not None:
                self.fits[key] = ranker.fit

    @property
    def hot_items(self) -> list[str]:
        """The behaviour agent's hot items (what the paper ranker pads with)."""
        return self.window.hot

    def observe(self, item: str, ts: float) -> None:
        self.popularity.add(item)
        self.window.add(item, ts)

    def set_model(self, trained, data: Interactions | None = None, listed: Container[str] | None = None) -> None:
        """Swap in a retrained model as the ALS worker publishes it and the worker reads it
        (factor neighbours, co-occurrence lists, training counts: one SimilarityIndex), and
        the baselines' fits on ``data``; ``listed``: the items the catalogue holds by now
        (None: all of it; ``ranking.content.ContentIndex``)."""
        if trained is not None:  # None: a run whose rankers read only their own fits
            self.model = trained
            self.index = trained.index(keep_sources=self.keep_sources)
            self.model_items = {str(x): j for j, x in enumerate(trained.item_ids)}
            self.model_users = {str(x): j for j, x in enumerate(trained.user_ids)}
        if self.text is not None:
            self.content = ContentIndex(self.text, self.index.counts, self.cold_item_min, listed=listed)
        self.version += 1
        if data is not None:
            self.data = data
            self.fitted = {key: fit(data) for key, fit in self.fits.items()}
            self.sums = {}


# --------------------------------------------------------------------------- baselines
@dataclass(frozen=True)
class Baseline(Ranker):
    """A baseline: the history every ranker keeps (``ranking/history.py``) and a list
    from :meth:`top`. It keeps the agents' 20 recent interactions (only ``item_knn``
    reads them) and remembers every item the user had (``rated_limit``), so its lists
    never hold one, however long the user's history."""

    k: int = TOP_N
    history: int = 20
    rated_limit: int = sys.maxsize

    @classmethod
    def from_settings(cls, conf) -> Baseline:
        return cls()

    def fit_key(self) -> tuple | None:
        """What identifies this baseline's fit (None: it fits nothing)."""
        return None

    def fit(self, data: Interactions):
        """What it learns from ``data`` at a retrain (``SharedState.fitted[fit_key()]``)."""
        return

    def step(self, state: History, interaction: Interaction, model: SharedState) -> Step:
        item, rating, ts = interaction.item, interaction.rating, interaction.ts
        if is_replay(state.recent, item, rating, ts):
            if state.last_list or not model.lists_read:
                return Step.unchanged(state)
            # The list of this history was not made when nobody read it: make it now.
            recent, rated = list(state.recent), list(state.rated)
            return Step(recent, rated, self.top(interaction.user, recent, rated, set(rated), model)[0], {}, 0)
        recent = add_recent_rating(state.recent, item, rating, ts, self.history)
        rated = add_rated_item(state.rated, item, self.rated_limit)
        if not model.lists_read:
            return Step(recent, rated, [], {}, 0)
        items, n_candidates = self.top(interaction.user, recent, rated, set(rated), model)
        return Step(recent, rated, items, {}, n_candidates)

    def top(self, user: str, recent: list, rated: list, exclude: set,
            model: SharedState) -> tuple[list[list], int]:
        """The list ``[[item, score], ...]`` without ``exclude`` and how many items were scored
        (``rated``: every item the user had, most recent last)."""
        raise NotImplementedError


class Popularity(Baseline):
    def top(self, user, recent, rated, exclude, model):
        counts = model.popularity.counts
        return [[q, float(counts[q])] for q in model.popularity.top(self.k, exclude)], len(counts)


class PopularityWindow(Baseline):
    def top(self, user, recent, rated, exclude, model):
        window, items = model.window, []
        for q, c in zip(window.ranked, window.ranked_counts, strict=True):  # every item of the window: stop at k
            if len(items) == self.k:
                break
            if q not in exclude:
                items.append([q, float(c)])
        return items, len(window.ranked)


@dataclass(frozen=True)
class ALSRanker(Baseline):
    """Top-k by its own ALS model's predicted rating (the ALS worker's estimator and
    settings, ``reg`` tuned: explicit ALS for ratings, implicit for behaviour events);
    popularity for users the model does not know."""

    rank: int = 20
    reg: float = 1.0
    iters: int = 10
    reg_offset: float = 5.0
    biases: bool = True
    alpha: float = 1.0
    seed: int = 42

    @classmethod
    def from_settings(cls, conf) -> ALSRanker:
        a = conf.als
        return cls(rank=a.rank, reg=a.reg, iters=a.iters, reg_offset=a.reg_offset, biases=a.biases, alpha=a.alpha,
                   seed=a.seed)

    def fit_key(self):
        return ("als", self.rank, self.reg, self.iters, self.reg_offset, self.biases, self.alpha, self.seed)

    def fit(self, data: Interactions):
        from offline_als.als import ALS, ImplicitALS

        if data.behaviour:
            als = ImplicitALS(rank=self.rank, reg=self.reg, alpha=self.alpha, iterations=self.iters, seed=self.seed,
                              progress=False, n_threads=1)
        else:
            als = ALS(rank=self.rank, reg=self.reg, reg_offset=self.reg_offset, iterations=self.iters,
                      biases=self.biases, seed=self.seed, progress=False)
        return als.fit(data.R)

    def top(self, user, recent, rated, exclude, model):
        u = model.data.user_index.get(user) if model.data is not None else None
        if u is None:  # no fit yet, or a user it does not know
            return Popularity.top(self, user, recent, rated, exclude, model)
        rows = model.data.item_index
        idx, scores = model.fitted[self.fit_key()].recommend(u, exclude=[rows[i] for i in exclude if i in rows],
                                                              N=self.k)
        ids = model.data.item_ids
        return [[str(ids[j]), float(s)] for j, s in zip(idx, scores, strict=True)], len(ids)


class ItemKNN(Baseline):
    """Sum of similarities to the user's ``history`` most recent items, over the model's
    co-occurrence lists (the factor neighbour lists when a model has none)."""

    @classmethod
    def from_settings(cls, conf) -> ItemKNN:
        return cls(history=conf.ranking.k)

    def top(self, user, recent, rated, exclude, model):
        related = model.model.related if model.model is not None else None  # the index keeps only its blend
        scores = knn_scores(recent, related or model.index.neighbours, exclude)
        ranked = sorted((-v, q) for q, v in scores.items())
        return [[q, -v] for v, q in ranked[: self.k]], len(scores)


def knn_scores(recent: Sequence[Sequence], neighbours: Mapping[str, Mapping[str, float]], exclude,
               weights: Sequence[float] | None = None) -> dict[str, float]:
    """``{q: sum_r w_r sim(r, q)}`` over the neighbour lists of the ``recent`` items
    (``weights`` default 1 each; a negative weight pushes its neighbours down), without
    the items in ``exclude``."""
    total: dict[str, float] = {}
    get = total.get
    for n, entry in enumerate(recent):
        w = 1.0 if weights is None else weights[n]
        for q, s in neighbours.get(entry[0], {}).items():
            if s > 0.0:
                total[q] = get(q, 0.0) + w * s
    for q in [q for q in total if q in exclude]:
        del total[q]
    return total
