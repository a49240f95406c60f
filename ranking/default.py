"""The default ranker: what the realtime agent runs unless ``RECSYS_RANKER=paper``.

On an interaction (u, p, w) (a rating, or a behaviour event with its weight) the user's
recent interactions are updated exactly as the paper's RK (one entry per item, newest
last), and the whole list is re-ranked from ALL of them, not only from p:

    score(q) = knn(q) / max_q' knn(q') + w_pop * lg(1 + count(q)) / lg(1 + max count)

    knn(q)   = sum over the ``history`` newest interactions r (the j-th newest weighted
               decay^j, a dislike -decay^j) of sum over sources s of weight_s * s(r, q)

The sources are the model's named neighbour lists (``offline_als/sources.py``):
``related`` ("users who had r also had q", co-occurrence cosine), ``sequential``
("after r, people went to q") and ``learned`` (EASE or RP3beta item-item weights; EASE's
negative ones push q down, as in EASE's own score);
``count`` is the item's interactions in the model's training data (the popularity
prior). The source weights, ``decay``, ``history`` and ``w_pop`` are the model's
:class:`ranking.model.Blend`, chosen for the shop by validation at every retrain
(``offline_als/selection.py``); the ranker's own fields override the last three.
Candidates: the blended neighbours of the recent interactions and the ``n_pop`` most
popular items; never an item the user already had. A history none of whose items has
neighbours gets the popular items (by the prior alone) whatever ``w_pop`` says: a list is
never empty while the model counts any item.

Each list says why its items are there: ``because[q]`` is the recent interaction that
contributed most to q's kNN part (items that came from the prior alone have none).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from ranking.content import ContentIndex
from ranking.history import advanced
from ranking.model import Model, SimilarityIndex
from ranking.protocol import History, Interaction, Ranker, Step
from ranking.rerank import distinct, reranked


@dataclass(frozen=True)
class DefaultRanker(Ranker):
    """The default ranker: the model's blend of sources, recency decay and prior.

    Parameters
    ----------
    history : int, optional
        Newest interactions read (default: the model's blend).
    decay : float, optional
        Weight ratio between consecutive interactions (newest 1, next ``decay``, ...;
        default: the model's blend).
    w_pop : float, optional
        Weight of the popularity prior (both parts scaled to [0, 1]; default: the
        model's blend).
    n_pop : int
        Popular items added as candidates.
    w_content : float
        Weight of a cold item's content sum (``ranking/content.py``: lists on the scale of
        the model's sources) against the kNN sums.
    k : int
        List length.
    rated_limit : int
        Items remembered as "already had".
    """

    #: Recent interactions every user keeps: the longest history a blend may read.
    KEPT = 20

    history: int | None = None
    decay: float | None = None
    w_pop: float | None = None
    n_pop: int = 50
    w_content: float = 1.0
    k: int = 20
    rated_limit: int = 1000

    @classmethod
    def from_settings(cls, conf) -> DefaultRanker:
        return cls(k=conf.ranking.k, rated_limit=conf.ranking.rated_items_max)

    def step(self, state: History, interaction: Interaction, model: Model) -> Step:
        """A dislike is kept among the recent interactions with the weight -1 (its
        neighbours move down) and, like everything the user had, never listed again."""
        advanced = self.advance(state, interaction)
        if advanced is None:
            return Step.unchanged(state)
        recent, rated = advanced
        items, because, n_candidates = self.rank(recent, rated, model.index, content=getattr(model, "content", None))
        return Step(recent, rated, items, because, n_candidates)

    def step_many(self, pairs: Sequence[tuple[History, Interaction]], model: Model) -> list[Step]:
        """The steps of many users' interactions, their lists ranked together (``ranking/batch.py``)."""
        from ranking.batch import rank_many  # it builds on this module

        advanced = [self.advance(state, interaction) for state, interaction in pairs]
        moved = [a for a in advanced if a is not None]
        ranked = iter(rank_many(self, moved, model.index, content=getattr(model, "content", None)))
        return [Step.unchanged(state) if a is None else Step(*a, *next(ranked))
                for (state, _i), a in zip(pairs, advanced, strict=True)]

    def advance(self, state: History, interaction: Interaction) -> tuple[list, list] | None:
        """The user's ``(recent, rated)`` after ``interaction``, before ranking (None for a
        replay: it changes nothing). :meth:`step` ranks them; a batch ranks many at once
        (``ranking/batch.py``)."""
        return advanced(state.recent, state.rated, interaction.item, -1.0 if interaction.dislike else interaction.rating,
                        interaction.ts, self.history if self.history is not None else self.KEPT, self.rated_limit)

    def rank(self, recent: Sequence[Sequence], exclude: Iterable[str], index: SimilarityIndex,
             explain: bool = True, content: ContentIndex | None = None) -> tuple[list[list], dict[str, str], int]:
        """The top-``k`` list ``[[item, score], ...]``, ``because`` (empty unless
        ``explain``), and how many items were scored.

        ``recent`` is ``[[item, weight, ts], ...]`` oldest first. Reads ``index.lists``
        (the model's sources blended, as arrays over item positions; the factor neighbours
        when a model has none), ``index.blend``, ``index.prior_at`` and ``index.popular``;
        with ``content``, the cold items whose text reads like the history are candidates
        too (:meth:`_with_cold`). Ties break on item id. Pure. It runs on every
        interaction: the kNN sums are one ``bincount`` over the recent items' lists, added
        in the formula's order (oldest recent item first), so they are the very floats a
        loop would add up (``tests/unit/test_default_ranker.py`` checks the lists against
        a loop-by-loop transcription on random models).
        """
        n = self.k
        history, decay, w_pop = self._resolved(index)
        exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
        recent = list(recent)[-history:]
        near = _near(recent, exclude, index, decay)
        touched, cand = near.touched, near.candidates()
        values = near.knn[cand] if cand.size else np.empty(0)
        top_knn = max(float(values.max()) if values.size else 0.0, 0.0) or 1.0
        cold = content.recall(near.weighted(recent), exclude, n) if content is not None and self.w_content > 0 else []
        if not cand.size and not cold and w_pop <= 0:  # nothing near the history: the popular items
            w_pop = 1.0
        if w_pop > 0 and index.prior:
            scores = values / top_knn + w_pop * index.prior_at[cand] if cand.size else np.empty(0)
            extra, walked, position = [], 0, index.position
            # Popular candidates, most counted first: of those the kNN part did not score,
            # only the first n can make the list (the rest have a lower prior, or an equal
            # one and a later id), so no more are added.
            for q in index.popular:
                if walked == self.n_pop or len(extra) == n:
                    break
                if q in exclude:
                    continue
                walked += 1
                j = position[q]
                if touched is None or not touched[j]:
                    extra.append(j)
            if extra:
                cand = np.concatenate([cand, extra]).astype(np.intp)
                scores = np.concatenate([scores, 0.0 + w_pop * index.prior_at[extra]])
        else:
            scores = values / top_knn
        n_scored = scores.size
        if n_scored > n:  # sort only what can make the list: the n-th best score and above
            keep = scores >= np.partition(scores, scores.size - n)[scores.size - n]
            cand, scores = cand[keep], scores[keep]
        pool = sorted(zip((-scores).tolist(), [index.ids[j] for j in cand.tolist()], cand.tolist(), strict=True))[:n]
        because = _because(pool, touched, near) if explain else {}
        if cold:
            pool = self._with_cold(pool, cold, top_knn, index, w_pop, because if explain else None)
            n_scored += len(cold)
        return [[q, round(-s, 6)] for s, q, _j in pool], because, n_scored

    def _with_cold(self, pool: list[tuple], cold: list[tuple], top_knn: float, index: SimilarityIndex,
                   w_pop: float, because: dict | None) -> list[tuple]:
        """The list's pool with the cold items the content recalled: a cold item scores the
        larger of its kNN part and its content part (``w_content`` x its content sum, over
        the kNN part's scale), plus its prior (a new item has none)."""
        best = {q: (s, j) for s, q, j in pool}
        for q, content, why in cold:
            s = -(self.w_content * content / top_knn + (w_pop * index.prior.get(q, 0.0) if w_pop > 0 else 0.0))
            if s < best.get(q, (0.0,))[0]:
                best[q] = (s, -1)
                if because is not None:
                    because[q] = why
        pool = sorted((s, q, j) for q, (s, j) in best.items())[: self.k]
        if because is not None:
            listed = {q for _s, q, _j in pool}
            for q in [q for q in because if q not in listed]:
                del because[q]
        return pool

    def rerank(self, state: History, items: Sequence[str], model: Model) -> list[list]:
        """``items`` in the order of this ranker's formula for the user's current history
        (:mod:`ranking.rerank`): the kNN part scaled as in the user's list (by the largest
        of every item the history touches and the user did not have) plus the prior; the
        same score an item has in the user's list. No history (or none with neighbours):
        the popularity order. Items the model does not know: last, no score."""
        scores = self.rerank_scores(state, items, model.index, getattr(model, "content", None))
        return reranked(items, {q: round(s, 6) for q, s in scores.items()})

    def rerank_scores(self, state: History, items: Sequence[str], index: SimilarityIndex,
                      content: ContentIndex | None = None) -> dict[str, float]:
        """The known items of ``items`` (and, with ``content``, the cold ones) with this
        ranker's score of each (unrounded)."""
        history, decay, w_pop = self._resolved(index)
        recent = list(state.recent)[-history:]
        given = distinct(items)
        at = np.fromiter(map(index.position.get, given, repeat(-1)), dtype=np.intp, count=len(given))
        known = at >= 0
        near = _near(recent, set(state.rated), index, decay)
        cand = near.candidates()
        top = max(float(near.knn[cand].max()) if cand.size else 0.0, 0.0) or 1.0
        cold = content.scores(near.weighted(recent), given) if content is not None and self.w_content > 0 else {}
        if not cand.size and not any(s > 0 for s in cold.values()) and w_pop <= 0:  # as in the list
            w_pop = 1.0
        knn = near.knn[at[known]] if near.knn.size else np.zeros(int(known.sum()))
        score = knn / top + (w_pop * index.prior_at[at[known]] if w_pop > 0 and index.prior else 0.0)
        out = dict(zip([q for q, k in zip(given, known.tolist(), strict=True) if k], score.tolist(), strict=True))
        for q, s in cold.items():
            prior = w_pop * index.prior.get(q, 0.0) if w_pop > 0 else 0.0
            out[q] = max(out.get(q, prior), self.w_content * s / top + prior)
        return out

    def _resolved(self, index: SimilarityIndex) -> tuple[int, float, float]:
        """``(history, decay, w_pop)``: this ranker's own where it sets them, else the model's blend."""
        blend = index.blend
        return (self.history if self.history is not None else blend.history,
                self.decay if self.decay is not None else blend.decay,
                self.w_pop if self.w_pop is not None else blend.w_pop)

    @staticmethod
    def _drop(touched: np.ndarray, exclude: set, index: SimilarityIndex) -> None:
        """Unmark the user's own items, walking the shorter side (a heavy user has a
        thousand: the lookups run in ``map``, not in a Python loop)."""
        hit = np.flatnonzero(touched)
        if len(exclude) < hit.size:
            gone = np.fromiter(map(index.position.get, exclude, repeat(-1)), dtype=np.intp, count=len(exclude))
            touched[gone[gone >= 0]] = False
        else:
            mine = np.fromiter(map(exclude.__contains__, map(index.ids.__getitem__, hit.tolist())), dtype=bool,
                               count=hit.size)
            touched[hit[mine]] = False


@dataclass(frozen=True)
class _Near:
    """The kNN part of a history: ``picked`` (recent item, its signed decayed weight, its
    list) for the recent items with a list, their lists concatenated (``at``: positions,
    ``parts``: weighted entries), the sums by position (``knn``) and the positions they
    reach that the user did not have (``touched``; None: no recent item has a list)."""

    picked: list
    at: np.ndarray
    parts: np.ndarray
    knn: np.ndarray
    touched: np.ndarray | None
    decay: float

    def candidates(self) -> np.ndarray:
        return np.flatnonzero(self.touched) if self.touched is not None else np.empty(0, dtype=np.intp)

    def weighted(self, recent: Sequence[Sequence]) -> list[tuple[str, float]]:
        """Every recent item with its signed decayed weight (the content recall's history)."""
        last = len(recent) - 1
        return [(entry[0], self.decay ** (last - j) * (-1.0 if entry[1] < 0 else 1.0)) for j, entry in enumerate(recent)]


def _near(recent: Sequence[Sequence], exclude: set, index: SimilarityIndex, decay: float) -> _Near:
    """The kNN sums of ``recent`` (already cut to the history read) over ``index.lists``."""
    last, lists = len(recent) - 1, index.lists
    picked = [(entry[0], decay ** (last - j) * (-1.0 if entry[1] < 0 else 1.0), neighbours)
              for j, entry in enumerate(recent) if (neighbours := lists.get(entry[0])) is not None]
    if not picked:
        empty = np.empty(0)
        return _Near(picked, empty, empty, empty, None, decay)
    size = len(index.ids)
    at = np.concatenate([p[2][0] for p in picked])
    parts = np.concatenate([p[1] * p[2][1] for p in picked])
    touched = np.bincount(at, minlength=size) > 0
    DefaultRanker._drop(touched, exclude, index)
    return _Near(picked, at, parts, np.bincount(at, parts, minlength=size), touched, decay)


def _because(pool: list[tuple], touched, near: _Near) -> dict[str, str]:
    """For each listed item with a kNN part: the recent item whose weighted similarity
    to it is the largest (the first such on a tie; none if no contribution is positive)."""
    at, parts, picked = near.at, near.parts, near.picked
    listed = [(q, j) for _s, q, j in pool if touched is not None and touched[j]]
    if not listed:
        return {}
    mark = np.zeros(touched.size, dtype=bool)
    mark[[j for _q, j in listed]] = True
    mine = np.flatnonzero(mark[at])  # the entries of the concatenated lists that name a listed item
    ends = np.cumsum([len(p[2][0]) for p in picked])
    cols, contributions, sources = at[mine], parts[mine], np.searchsorted(ends, mine, side="right")
    order = np.lexsort((sources, -contributions, cols))  # per item: the largest first, then the first source
    cols, contributions, sources = cols[order], contributions[order], sources[order]
    first = np.ones(cols.size, dtype=bool)
    first[1:] = cols[1:] != cols[:-1]
    best = dict(zip(cols[first].tolist(), zip(contributions[first].tolist(), sources[first].tolist(), strict=True),
                    strict=True))
    return {q: picked[best[j][1]][0] for q, j in listed if best[j][0] > 0.0}
