"""The strong baselines of the streaming evaluation: sequential rules, EASE, RP3beta,
implicit-feedback ALS and V-SKNN, each on the rankers' one protocol.

Each is a frozen dataclass of its parameters. What it learns is fitted at every retrain
of the protocol from the same :class:`Interactions` (``fit``, cached in the evaluation's
``SharedState`` under ``fit_key``: configurations that differ only in how they score
share one fit), and a step scores the user's CURRENT history against it:

- ``sr`` (Ludewig & Jannach, 2018): w[i, j] = sum over users of 1/gap for j following i
  within ``steps`` interactions; score(j) = sum over the user's ``last`` newest items i of
  w[i, j] (times ``decay`` to the item's recency rank, when set);
- ``ease`` (Steck, 2019) on the ``EASE_MAX_ITEMS`` items with the most users; score =
  history vector x B;
- ``rp3beta`` (Paudel et al., 2017): the item -> user -> item walk with probabilities to
  the power ``alpha``, divided by popularity to the power ``beta``, top ``k`` per item;
- ``ials`` (Hu, Koren & Volinsky, 2008; the ``implicit`` library): the user's vector is
  recomputed from the current history (``recalculate_user``) at every step;
- ``vsknn`` (V-SKNN, Ludewig & Jannach, 2018): the user's last ``L`` interactions are the
  session, weighted linearly by position (newest 1, oldest 1/L); neighbours are the
  training users who share items with it, similarity = sum of the shared items' weights,
  the ``k`` most similar vote for their items with their similarity.

The history vector of ``ease``, ``rp3beta`` and ``ials`` is every item the user had
(``rated``, most recent last), each 1, or ``decay`` to its recency rank (newest 1) when
``decay`` is set. Lists are padded with the most popular items (score 0).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from offline_als.item_item import ease, popular_columns, rp3beta, sequential_rules
from ranking import DefaultRanker, LearnedRanker, PaperRanker, Ranker

from .rankers import ALSRanker, Baseline, Interactions, ItemKNN, Popularity, PopularityWindow, SharedState

#: EASE's matrix is dense: it is learnt on at most this many items (those with the most users).
EASE_MAX_ITEMS = 12_000


#: A decayed history stops where an item's weight falls below this share of the newest's.
NEGLIGIBLE_WEIGHT = 1e-6


def decayed_history(items: list[str], decay: float | None) -> tuple[list[str], np.ndarray]:
    """``items`` (most recent last) with their weights: 1 each, or ``decay ** recency rank``
    for the newest ones whose weight is at least :data:`NEGLIGIBLE_WEIGHT` (a heavy user's
    thousand items cost no more than her last few dozen; the scores move by under 1e-6)."""
    if decay is None:
        return items, np.ones(len(items))
    if 0.0 < decay < 1.0:
        items = items[-(int(np.log(NEGLIGIBLE_WEIGHT) / np.log(decay)) + 1):]
    return items, decay ** np.arange(len(items) - 1, -1, -1, dtype=np.float64)


def top_scored(candidates: np.ndarray, scores: np.ndarray, data: Interactions, exclude: set, k: int,
               model: SharedState) -> list[list]:
    """The ``k`` best candidates (item indices) by score, ties by index, none of ``exclude``,
    padded with the most popular items (score 0)."""
    keep = scores > 0
    candidates, scores = candidates[keep], scores[keep]
    enough = k + len(exclude)  # the best k that are not excluded are among the best k + |exclude|
    if candidates.size > enough:
        cut = np.partition(scores, candidates.size - enough)[candidates.size - enough]
        keep = scores >= cut  # everything tied with the last of them too: the order stays exact
        candidates, scores = candidates[keep], scores[keep]
    order = np.lexsort((candidates, -scores))
    ids = data.item_ids
    out = []
    for j in order:
        item = ids[candidates[j]]
        if item not in exclude:
            out.append([item, float(scores[j])])
            if len(out) == k:
                return out
    listed = {q for q, _s in out}
    for item in model.popularity.top(k, exclude | listed)[: k - len(out)]:
        out.append([item, 0.0])
    return out


def sparse_scores(W: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_r weights[r] * W[rows[r]]`` (``W`` and ``weights`` positive) as (columns touched, their scores)."""
    if rows.size == 0:
        return np.empty(0, np.int64), np.empty(0)
    starts, ends = W.indptr[rows], W.indptr[rows + 1]
    counts = ends - starts
    cols = np.concatenate([W.indices[s:e] for s, e in zip(starts, ends, strict=True)])
    vals = np.concatenate([W.data[s:e] for s, e in zip(starts, ends, strict=True)]) * np.repeat(weights, counts)
    # A dense sum over all columns beats sorting the touched ones (np.unique) by far; the
    # weights are positive, so the touched columns are the nonzero sums.
    total = np.bincount(cols, weights=vals, minlength=W.shape[1])
    touched = np.flatnonzero(total)
    return touched, total[touched]


#: Users with fewer known items than this have their history summed afresh at every step.
SUM_KEPT_FROM = 32


def history_sum(model: SharedState, key: tuple, user: str, rows: np.ndarray, row_sum) -> np.ndarray:
    """``row_sum(rows)`` (a sum over the user's known items, weighted 1 each), kept per user
    between steps of one fit: a history that grew by one item (appended last: baselines
    remember every item, so none is dropped) costs that item's row, not all of them."""
    entry = model.sums.get((key, user)) if rows.size >= SUM_KEPT_FROM else None
    if entry is not None and entry[0] == rows.size:
        return entry[1]
    if entry is not None and entry[0] + 1 == rows.size:
        total = entry[1] + row_sum(rows[-1:])
    else:
        total = row_sum(rows)
    if rows.size >= SUM_KEPT_FROM:
        model.sums[(key, user)] = (rows.size, total)
    return total


def known(data: Interactions, items: list[str], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items (and their weights) the fit knows, as indices."""
    pairs = [(data.item_index[q], w) for q, w in zip(items, weights, strict=True) if q in data.item_index]
    if not pairs:
        return np.empty(0, np.int64), np.empty(0)
    rows, ws = zip(*pairs, strict=True)
    return np.asarray(rows, dtype=np.int64), np.asarray(ws, dtype=np.float64)


@dataclass(frozen=True)
class SequentialRules(Baseline):
    steps: int = 10
    last: int = 3
    decay: float | None = None

    def fit_key(self):
        return ("sr", self.steps)

    def fit(self, data: Interactions):
        return sequential_rules(data.sequences, len(data.item_ids), self.steps)

    def top(self, user, recent, rated, exclude, model):
        data, W = model.data, model.fitted[self.fit_key()]
        rows, weights = known(data, *decayed_history([e[0] for e in recent[-self.last:]], self.decay))
        cols, scores = sparse_scores(W, rows, weights)
        return top_scored(cols, scores, data, exclude, self.k, model), int(cols.size)


@dataclass(frozen=True)
class EASE(Baseline):
    lam: float = 500.0
    decay: float | None = None

    def fit_key(self):
        return ("ease", self.lam)

    def fit(self, data: Interactions):
        columns = popular_columns(data.X, EASE_MAX_ITEMS, recency=data.last_seen)
        position = np.full(len(data.item_ids), -1, dtype=np.int64)
        position[columns] = np.arange(columns.size)
        return columns, position, ease(data.X[:, columns], self.lam, dtype=np.float32)  # half the time and memory

    def top(self, user, recent, rated, exclude, model):
        data = model.data
        columns, position, B = model.fitted[self.fit_key()]
        rows, weights = known(data, *decayed_history(rated, self.decay))
        inside = position[rows] >= 0
        rows, weights = position[rows[inside]], weights[inside]
        if self.decay is None:
            scores = history_sum(model, self.fit_key(), user, rows, lambda r: B[r].sum(axis=0, dtype=np.float64))
        else:
            scores = weights @ B[rows] if rows.size else np.zeros(columns.size)
        return top_scored(columns, scores, data, exclude, self.k, model), int(columns.size)


@dataclass(frozen=True)
class RP3beta(Baseline):
    alpha: float = 1.0
    beta: float = 0.5
    neighbours: int = 200
    decay: float | None = None

    def fit_key(self):
        return ("rp3beta", self.alpha, self.beta, self.neighbours)

    def fit(self, data: Interactions):
        return rp3beta(data.X, self.alpha, self.beta, self.neighbours)

    def top(self, user, recent, rated, exclude, model):
        data, W = model.data, model.fitted[self.fit_key()]
        rows, weights = known(data, *decayed_history(rated, self.decay))
        cols, scores = sparse_scores(W, rows, weights)
        return top_scored(cols, scores, data, exclude, self.k, model), int(cols.size)


@dataclass(frozen=True)
class IALS(Baseline):
    factors: int = 64
    reg: float = 10.0
    alpha: float = 10.0
    decay: float | None = None
    iterations: int = 15
    seed: int = 42

    def fit_key(self):
        return ("ials", self.factors, self.reg, self.alpha, self.iterations, self.seed)

    def fit(self, data: Interactions):
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(factors=self.factors, regularization=self.reg, alpha=self.alpha,
                                          iterations=self.iterations, random_state=self.seed, num_threads=0)
            als.fit(data.X, show_progress=False)
        als.YtY  # noqa: B018  computed (and cached by the library) now, not in a step: steps change nothing
        als.num_threads = 1  # a step solves one small system: threads only wait for each other
        return als

    def top(self, user, recent, rated, exclude, model):
        data, als = model.data, model.fitted[self.fit_key()]
        rows, weights = known(data, *decayed_history(rated, self.decay))
        if rows.size == 0:
            return top_scored(np.empty(0, np.int64), np.empty(0), data, exclude, self.k, model), 0
        if self.decay is None:
            vector = self.user_vector(als, history_sum(model, self.fit_key(), user, rows, lambda r: outer_sums(als, r)))
        else:
            history = sp.csr_matrix((weights, (np.zeros(rows.size, np.int64), rows)), shape=(1, len(data.item_ids)))
            vector = np.asarray(als.recalculate_user(0, history), dtype=np.float64).ravel()
        # Scored in float32, as the library does: a step reads every item's factors (85,000 x
        # 128 on the Taobao stream), and that read is most of its cost.
        scores = als.item_factors @ vector.astype(np.float32)
        return top_scored(np.arange(scores.size), scores, data, exclude, self.k, model), int(scores.size)


    def user_vector(self, als, sums: np.ndarray) -> np.ndarray:
        """What ``als.recalculate_user`` gives for a history of items each weighted 1,
        from ``sums`` = [sum y y^T | sum y] over their factors y: the library's normal
        equations (confidence alpha per item) solved directly."""
        f = self.factors
        A = np.asarray(als.YtY, dtype=np.float64) + self.reg * np.eye(f) + (self.alpha - 1.0) * sums[:, :f]
        return np.linalg.solve(A, self.alpha * sums[:, f])


def outer_sums(als, rows: np.ndarray) -> np.ndarray:
    """``[sum y y^T | sum y]`` (f x f+1) over the item factors y of ``rows``."""
    Y = np.asarray(als.item_factors[rows], dtype=np.float64)
    return np.hstack([Y.T @ Y, Y.sum(axis=0)[:, None]])


@dataclass(frozen=True)
class VSKNN(Baseline):
    session: int = 10
    neighbours: int = 100

    def fit_key(self):
        return ("vsknn",)

    def fit(self, data: Interactions):
        had = sp.csr_matrix(data.X > 0, dtype=np.float64)  # users x items
        return sp.csc_matrix(had), had  # by item (who had it), by user (what they had)

    def top(self, user, recent, rated, exclude, model):
        data, (by_item, by_user) = model.data, model.fitted[self.fit_key()]
        items = [e[0] for e in recent[-self.session:]]
        n = len(items)
        rows, weights = known(data, items, np.arange(1, n + 1, dtype=np.float64) / n if n else np.empty(0))
        if rows.size == 0:
            return top_scored(np.empty(0, np.int64), np.empty(0), data, exclude, self.k, model), 0
        similarity = by_item[:, rows] @ weights  # per training user: the shared items' weights
        me = data.user_index.get(user)
        if me is not None:
            similarity[me] = 0.0  # the user's own past is not a neighbour
        candidates = np.flatnonzero(similarity)
        best = candidates[np.lexsort((candidates, -similarity[candidates]))[: self.neighbours]]
        votes = by_user[best].T @ similarity[best]
        cols = np.flatnonzero(votes)
        return top_scored(cols, votes[cols], data, exclude, self.k, model), int(best.size)


# --------------------------------------------------------------------------- all of them
RANKER_NAMES = ("default", "learned", "paper", "popularity", "popularity_window", "als", "item_knn", "sr", "ease", "rp3beta",
                "ials", "vsknn")


#: The baselines by name (the contract test runs them too).
BASELINES: dict[str, type[Baseline]] = {
    "popularity": Popularity, "popularity_window": PopularityWindow, "als": ALSRanker, "item_knn": ItemKNN,
    "sr": SequentialRules, "ease": EASE, "rp3beta": RP3beta, "ials": IALS, "vsknn": VSKNN}


def make_rankers(conf, high_cut: float, tuned: Mapping[str, Mapping] | None = None) -> dict[str, Ranker]:
    """The rankers of the evaluation by name, in :data:`RANKER_NAMES` order: the default
    ranker with its fixed defaults, the learned one (learning as the stream goes), the paper's with the agent's settings on the data
    set's rating scale (``high_cut``), the baselines with theirs, or with the parameters
    ``tuned`` chose for them (``evaluation.tuning``)."""
    paper = dataclasses.replace(PaperRanker.from_settings(conf), high_cut=high_cut)
    tuned = tuned or {}
    # The logs replayed were made without our lists: no candidate was shown to anyone.
    learned = dataclasses.replace(LearnedRanker.from_settings(conf), high_cut=high_cut, impressions=False)
    return {"default": DefaultRanker(), "learned": learned, "paper": paper,
            **{name: dataclasses.replace(cls.from_settings(conf), **tuned.get(name, {}))
               for name, cls in BASELINES.items()}}


__all__ = ["BASELINES", "EASE", "EASE_MAX_ITEMS", "IALS", "RANKER_NAMES", "VSKNN", "RP3beta", "SequentialRules",
           "make_rankers"]
