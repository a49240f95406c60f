"""The default ranker: what the realtime agent runs unless ``RECSYS_RANKER=paper``.

On an interaction (u, p, w) (a rating, or a behaviour event with its weight) the user's
recent interactions are updated exactly as the paper's RK (one entry per item, newest
last), and the whole list is re-ranked from ALL of them, not only from p:

    score(q) = knn(q) / max_q' knn(q') + w_pop * lg(1 + count(q)) / lg(1 + max count)

    knn(q)   = sum over the ``history`` newest interactions r (the j-th newest weighted
               decay^j, a dislike -decay^j) of sum over sources s of weight_s * s(r, q)

The sources are the model's named neighbour lists (``offline_als/sources.py``):
``related`` ("users who had r also had q", co-occurrence cosine), ``sequential``
("after r, people went to q") and ``learned`` (EASE or RP3beta item-item weights);
``count`` is the item's interactions in the model's training data (the popularity
prior). The source weights, ``decay``, ``history`` and ``w_pop`` are the model's
:class:`ranking.model.Blend`, chosen for the shop by validation at every retrain
(``offline_als/selection.py``); the ranker's own fields override the last three.
Candidates: the blended neighbours of the recent interactions and the ``n_pop`` most
popular items; never an item the user already had.

Each list says why its items are there: ``because[q]`` is the recent interaction that
contributed most to q's kNN part (items that came from the prior alone have none).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ranking.history import add_rated_item, add_recent_rating, is_replay
from ranking.model import Model, SimilarityIndex
from ranking.protocol import History, Interaction, Ranker, Step


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
             index: SimilarityIndex) -> tuple[list[list], dict[str, str], int]:
        """The top-``k`` list ``[[item, score], ...]``, ``because``, and how many items were scored.

        ``recent`` is ``[[item, weight, ts], ...]`` oldest first. Reads ``index.scored``
        (the model's sources blended; the factor neighbours when a model has none),
        ``index.blend``, ``index.prior`` and ``index.popular``. Ties break on item id. Pure. It runs on
        every interaction, so it does the least work that gives the formula's exact list
        (``tests/unit/test_default_ranker.py`` checks it against a loop-by-loop
        transcription on random models).
        """
        n, blend = self.k, index.blend
        history = self.history if self.history is not None else blend.history
        decay = self.decay if self.decay is not None else blend.decay
        w_pop = self.w_pop if self.w_pop is not None else blend.w_pop
        exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
        recent = list(recent)[-history:]
        lists = index.scored or index.neighbours
        last = len(recent) - 1
        knn: dict = {}
        get = knn.get
        sources = []  # (recent item, its weight, its list): the pairs "because" is chosen from
        for j, entry in enumerate(recent):
            related = lists.get(entry[0])
            if not related:
                continue
            w = decay ** (last - j) * (-1.0 if entry[1] < 0 else 1.0)
            sources.append((entry[0], w, related))
            for q, s in related.items():
                if s > 0.0:
                    knn[q] = get(q, 0.0) + w * s
        if len(exclude) < len(knn):  # drop the user's own items, walking the shorter side
            for q in exclude:
                knn.pop(q, None)
        else:
            for q in [q for q in knn if q in exclude]:
                del knn[q]
        top_knn = max(max(knn.values(), default=0.0), 0.0) or 1.0
        prior = index.prior
        if w_pop > 0 and prior:
            pget = prior.get
            scores = {q: v / top_knn + w_pop * pget(q, 0.0) for q, v in knn.items()}
            walked = added = 0
            # Popular candidates, most counted first: of those the kNN part did not score,
            # only the first n can make the list (the rest have a lower prior, or an equal
            # one and a later id), so no more are added.
            for q in index.popular:
                if walked == self.n_pop or added == n:
                    break
                if q in exclude:
                    continue
                walked += 1
                if q not in scores:
                    scores[q] = 0.0 + w_pop * prior[q]
                    added += 1
        else:
            scores = {q: v / top_knn for q, v in knn.items()}
        if len(scores) > n:  # sort only what can make the list: the n-th best score and above
            cut = sorted(scores.values(), reverse=True)[n - 1]
            pool = [(-s, q) for q, s in scores.items() if s >= cut]
        else:
            pool = [(-s, q) for q, s in scores.items()]
        pool.sort()
        items = [[q, round(-s, 6)] for s, q in pool[:n]]
        return items, _because(items, knn, sources), len(scores)


def _because(items: list[list], knn: dict, sources: list[tuple]) -> dict[str, str]:
    """For each listed item with a kNN part: the recent item whose weighted similarity
    to it is the largest (the first such on a tie; none if no contribution is positive)."""
    because = {}
    for q, _s in items:
        if q not in knn:
            continue
        best, reason = 0.0, None
        for item, w, related in sources:
            c = w * related.get(q, 0.0)
            if c > best:
                best, reason = c, item
        if reason is not None:
            because[q] = reason
    return because
