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

from ranking.history import add_rated_item, add_recent_rating, is_replay
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
    k: int = 20
    rated_limit: int = 1000

    @classmethod
    def from_settings(cls, conf) -> DefaultRanker:
        return cls(k=conf.ranking.k, rated_limit=conf.ranking.rated_items_max)

    def step(self, state: History, interaction: Interaction, model: Model) -> Step:
        """A dislike is kept among the recent interactions with the weight -1 (its
        neighbours move down) and, like everything the user had, never listed again."""
        weight = -1.0 if interaction.dislike else interaction.rating
        if is_replay(state.recent, interaction.item, weight, interaction.ts):
            return Step.unchanged(state)
        recent = add_recent_rating(state.recent, interaction.item, weight, interaction.ts,
                                   self.history if self.history is not None else self.KEPT)
        rated = add_rated_item(state.rated, interaction.item, self.rated_limit)
        items, because, n_candidates = self.rank(recent, rated, model.index)
        return Step(recent, rated, items, because, n_candidates)

    def rank(self, recent: Sequence[Sequence], exclude: Iterable[str],
             index: SimilarityIndex, explain: bool = True) -> tuple[list[list], dict[str, str], int]:
        """The top-``k`` list ``[[item, score], ...]``, ``because`` (empty unless
        ``explain``), and how many items were scored.

        ``recent`` is ``[[item, weight, ts], ...]`` oldest first. Reads ``index.lists``
        (the model's sources blended, as arrays over item positions; the factor neighbours
        when a model has none), ``index.blend``, ``index.prior_at`` and ``index.popular``.
        Ties break on item id. Pure. It runs on every interaction: the kNN sums are one
        ``bincount`` over the recent items' lists, added in the formula's order (oldest
        recent item first), so they are the very floats a loop would add up
        (``tests/unit/test_default_ranker.py`` checks the lists against a loop-by-loop
        transcription on random models).
        """
        n, blend = self.k, index.blend
        history = self.history if self.history is not None else blend.history
        decay = self.decay if self.decay is not None else blend.decay
        w_pop = self.w_pop if self.w_pop is not None else blend.w_pop
        exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
        recent = list(recent)[-history:]
        last, lists = len(recent) - 1, index.lists
        picked = []  # (recent item, its weight, its list): the pairs "because" is chosen from
        for j, entry in enumerate(recent):
            neighbours = lists.get(entry[0])
            if neighbours is not None:
                picked.append((entry[0], decay ** (last - j) * (-1.0 if entry[1] < 0 else 1.0), neighbours))
        ids, size = index.ids, len(index.ids)
        if picked:
            at = np.concatenate([p[2][0] for p in picked])
            parts = np.concatenate([p[1] * p[2][1] for p in picked])
            knn = np.bincount(at, parts, minlength=size)
            touched = np.bincount(at, minlength=size) > 0
            self._drop(touched, exclude, index)
            cand = np.flatnonzero(touched)
        else:
            at = parts = knn = cand = np.empty(0)
            touched = None
        values = knn[cand] if cand.size else np.empty(0)
        top_knn = max(float(values.max()) if values.size else 0.0, 0.0) or 1.0
        if not cand.size and w_pop <= 0:  # nothing near the history: the popular items, never an empty list
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
        pool = sorted(zip((-scores).tolist(), [ids[j] for j in cand.tolist()], cand.tolist(), strict=True))[:n]
        items = [[q, round(-s, 6)] for s, q, _j in pool]
        return items, _because(pool, touched, at, parts, picked) if explain else {}, n_scored

    def rerank(self, state: History, items: Sequence[str], model: Model) -> list[list]:
        """``items`` in the order of this ranker's formula for the user's current history
        (:mod:`ranking.rerank`): the kNN part scaled as in the user's list (by the largest
        of every item the history touches and the user did not have) plus the prior; the
        same score an item has in the user's list. No history (or none with neighbours):
        the popularity order. Items the model does not know: last, no score."""
        scores = self.rerank_scores(state, items, model.index)
        return reranked(items, {q: round(s, 6) for q, s in scores.items()})

    def rerank_scores(self, state: History, items: Sequence[str], index: SimilarityIndex) -> dict[str, float]:
        """The known items of ``items`` with this ranker's score of each (unrounded)."""
        blend = index.blend
        history = self.history if self.history is not None else blend.history
        decay = self.decay if self.decay is not None else blend.decay
        w_pop = self.w_pop if self.w_pop is not None else blend.w_pop
        recent = list(state.recent)[-history:]
        given = distinct(items)
        at = np.fromiter(map(index.position.get, given, repeat(-1)), dtype=np.intp, count=len(given))
        known = at >= 0
        last, size = len(recent) - 1, len(index.ids)
        picked = [(decay ** (last - j) * (-1.0 if entry[1] < 0 else 1.0), neigh) for j, entry in enumerate(recent)
                  if (neigh := index.lists.get(entry[0])) is not None]
        knn, top, near = np.zeros(size), 1.0, False
        if picked:
            where = np.concatenate([neigh[0] for _w, neigh in picked])
            knn = np.bincount(where, np.concatenate([w * neigh[1] for w, neigh in picked]), minlength=size)
            touched = np.bincount(where, minlength=size) > 0
            self._drop(touched, set(state.rated), index)
            near = bool(touched.any())
            top = max(float(knn[touched].max()) if near else 0.0, 0.0) or 1.0
        if not near and w_pop <= 0:  # as in the list: nothing near the history, the popular items
            w_pop = 1.0
        score = knn[at[known]] / top + (w_pop * index.prior_at[at[known]] if w_pop > 0 and index.prior else 0.0)
        return dict(zip([q for q, k in zip(given, known.tolist(), strict=True) if k], score.tolist(), strict=True))

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


def _because(pool: list[tuple], touched, at: np.ndarray, parts: np.ndarray, picked: list[tuple]) -> dict[str, str]:
    """For each listed item with a kNN part: the recent item whose weighted similarity
    to it is the largest (the first such on a tie; none if no contribution is positive)."""
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
