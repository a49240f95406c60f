"""The default ranker as plain functions (no Kafka, no Faust): what the realtime agent
calls when ``RECSYS_RANKER=default`` (the paper's formula is ``tables/scoring.py``).

On an interaction (u, p, w) (a rating, or a behaviour event with its weight) the user's
recent interactions are updated exactly as the paper's RK (one entry per item, newest
last), and the whole list is re-ranked from ALL of them, not only from p:

    score(q) = knn(q) / max_q' knn(q') + w_pop * lg(1 + count(q)) / lg(1 + max count)

    knn(q)   = sum over the ``history`` newest interactions r (the j-th newest weighted
               decay^j) of related(r, q)

``related`` are the model's co-occurrence neighbour lists ("users who had r also had
q": cosine of the binary interaction columns, published by the ALS worker with the
factor similarities), ``count`` the item's interactions in the model's training data
(the popularity prior). Candidates: the related items of the recent interactions and
the ``n_pop`` most popular items; never an item the user already had. Why these
choices: README, "Lists that beat most popular" (the streaming evaluation chose them on
the warm-up half of ml-100k and ml-latest-small; the same fixed values everywhere).

Each list says why its items are there: ``because[q]`` is the recent interaction that
contributed most to q's kNN part (items that came from the prior alone have none).
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.records import DISLIKE_SOURCE, Rating, Recommendation
from app.settings import parse_ab
from tables.scoring import (
    OnlineParams,
    SimilarityIndex,
    _as_set,
    add_rated_item,
    add_recent_rating,
    is_replay,
    recommend_after_rating,
)
from tables.state import UserState


@dataclass(frozen=True)
class RankerParams:
    """Knobs of :func:`rank_default`, fixed defaults (README: how they were chosen).

    ``history`` newest interactions read; ``decay`` weight ratio between consecutive
    ones (newest 1, next ``decay``, ...); ``w_pop`` weight of the popularity prior
    (both parts scaled to [0, 1]); ``n_pop`` popular items added as candidates; ``k``
    list length; ``rated_limit`` items remembered as "already had".
    """

    history: int = 20
    decay: float = 0.8
    w_pop: float = 0.5
    n_pop: int = 50
    k: int = 20
    rated_limit: int = 1000

    @classmethod
    def from_settings(cls, conf) -> RankerParams:
        return cls(k=conf.ranking.k, rated_limit=conf.ranking.rated_items_max)


def knn_scores(recent: Sequence[Sequence], neighbours: Mapping[str, Mapping[str, float]], exclude,
               weights: Sequence[float] | None = None) -> dict[str, float]:
    """``{q: sum_r w_r sim(r, q)}`` over the neighbour lists of the ``recent`` items
    (``weights`` default 1 each; a negative weight, a dislike, pushes its neighbours down),
    without the items in ``exclude``: the ``item_knn`` baseline of the streaming
    evaluation (:func:`rank_default` computes the same sums inline)."""
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


def rank_default(recent: Sequence[Sequence], exclude: Iterable[str], index: SimilarityIndex,
                 params: RankerParams, n: int | None = None) -> tuple[list[list], dict[str, str]]:
    """The top-``n`` (default ``params.k``) list ``[[item, score], ...]`` and ``because``.

    ``recent`` is ``[[item, weight, ts], ...]`` oldest first (:func:`add_recent_rating`).
    Reads ``index.related`` (the published co-occurrence lists; the factor neighbours
    when a model has none), ``index.prior`` and ``index.popular``. Ties break on item
    id. Pure: changes none of its arguments. It runs on every interaction, so it does
    the least work that gives the formula's exact list (``tests/unit/test_ranking.py``
    checks it against a loop-by-loop transcription on random models).
    """
    n = params.k if n is None else n
    exclude = _as_set(exclude)
    recent = list(recent)[-params.history:]
    lists = index.related or index.neighbours
    last = len(recent) - 1
    knn: dict = {}
    get = knn.get
    sources = []  # (recent item, its weight, its list): the pairs "because" is chosen from
    for j, entry in enumerate(recent):
        related = lists.get(entry[0])
        if not related:
            continue
        w = params.decay ** (last - j) * (-1.0 if entry[1] < 0 else 1.0)
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
    w_pop, prior = params.w_pop, index.prior
    if w_pop > 0 and prior:
        pget = prior.get
        scores = {q: v / top_knn + w_pop * pget(q, 0.0) for q, v in knn.items()}
        walked = added = 0
        # Popular candidates, most counted first: of those the kNN part did not score,
        # only the first n can make the list (the rest have a lower prior, or an equal
        # one and a later id), so no more are added.
        for q in index.popular:
            if walked == params.n_pop or added == n:
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
    return items, because


def recommend_default(*, item: str, rating: float, ts: float, recent: Sequence[Sequence],
                      rated: Sequence[str], previous: Sequence[Sequence], similarity: SimilarityIndex,
                      params: RankerParams, dislike: bool = False):
    """The default ranker's whole update for one interaction, the counterpart of
    :func:`tables.scoring.recommend_after_rating`: returns
    ``(recent, rated, new_list, because, n_candidates)``.

    A ``dislike`` is kept among the recent interactions with the weight -1 (its
    neighbours move down) and, like everything the user had, never listed again.
    A replayed interaction (:func:`is_replay`) returns the state and ``previous`` as
    they are (at-least-once redelivery changes nothing).
    """
    rating = -1.0 if dislike else rating
    if is_replay(recent, item, rating, ts):
        return list(recent), list(rated), [list(e) for e in previous], {}, 0
    recent = add_recent_rating(recent, item, rating, ts, params.history)
    rated = add_rated_item(rated, item, params.rated_limit)
    new_list, because = rank_default(recent, rated, similarity, params)
    return recent, rated, new_list, because, len(new_list)


# ------------------------------------------------------------------------- on the wire
#: Decimals of a score on the wire (lists on ``recommendations`` and from the API).
WIRE_DECIMALS = 4


def wire_list(items: Sequence[Sequence]) -> list[list]:
    """A list as frontends get it: scores rounded (``None`` stays: a fallback item)."""
    return [[q, None if s is None else round(s, WIRE_DECIMALS)] for q, s in items]


def recommendation_for(rating: Rating, state: UserState, variant: str, version: str, produced_at: float,
                       worker_ms: float) -> Recommendation:
    """The list message a rating produces, from the user's state after it (a redelivered
    rating gets the stored list and the model version that made it)."""
    return Recommendation(user=rating.user, items=wire_list(state.last_list),
                          model_version=state.recs.get("model_version", version), trigger_ts=rating.ts,
                          produced_at=produced_at, emitted_at=time.time(), worker_ms=worker_ms,
                          reason="rating" if rating.source == "explicit" else rating.source,
                          because=state.recs.get("because", {}), variant=variant)


def list_filters(query: Mapping[str, str]) -> tuple[int | None, set[str]]:
    """``?n=`` and ``?exclude=a,b`` of a list request; ``ValueError`` for a bad ``n``."""
    raw = query.get("n")
    n = None
    if raw is not None and raw != "":
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"n={raw!r} is not a whole number >= 1")
        n = int(raw)
    exclude = {x.strip() for x in query.get("exclude", "").split(",") if x.strip()}
    return n, exclude


def filter_list(items: Sequence[Sequence], n: int | None = None, exclude: Iterable[str] = (),
                keep=None) -> list[list]:
    """The wire list without ``exclude``d items and items ``keep(item)`` refuses, cut to ``n``."""
    ex = _as_set(exclude)
    out = [e for e in wire_list(items) if e[0] not in ex and (keep is None or keep(e[0]))]
    return out if n is None else out[:n]


# ------------------------------------------------------------------------- A/B tests
def user_hash(user: str) -> int:
    """A stable 64-bit number of ``user``: the first 8 bytes (big-endian) of
    SHA-256(``"recsys-ab:" + user`` in UTF-8). The worker must use this same function."""
    digest = hashlib.sha256(b"recsys-ab:" + user.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def assign_variant(user: str, arms: list[tuple[str, int]], default: str = "default") -> str:
    """The arm of ``user``: buckets are split between arms in proportion to their weights
    (in the order given). No arms: ``default``."""
    total = sum(w for _, w in arms)
    if not arms or total <= 0:
        return default
    point = user_hash(user) % total
    for name, weight in arms:
        if point < weight:
            return name
        point -= weight
    return arms[-1][0]  # unreachable: point < total


@dataclass(frozen=True)
class Ranking:
    """Which ranker ranks a user, and the knobs of both: what the realtime agent (and any
    replay of it) needs to turn one interaction into the user's next list.

    ``ranker`` is the variant when no A/B test runs; ``arms`` the A/B arms
    (:func:`parse_ab`), which override it.
    """

    ranker: str = "default"
    arms: tuple = ()
    online: OnlineParams = field(default_factory=OnlineParams)
    default: RankerParams = field(default_factory=RankerParams)

    @classmethod
    def from_settings(cls, conf) -> Ranking:
        return cls(ranker=conf.ranking.ranker, arms=tuple(parse_ab(conf.ranking.ab)), online=OnlineParams.from_settings(conf),
                   default=RankerParams.from_settings(conf))

    def variant(self, user: str) -> str:
        return assign_variant(user, list(self.arms), self.ranker)

    def update(self, variant: str, *, item: str, rating: float, ts: float, recent, rated, previous,
               similarity: SimilarityIndex, hot_items: Iterable[str] = (), dislike: bool = False):
        """One interaction through ``variant``'s ranker: ``(recent, rated, new_list,
        because, n_scored)`` (the paper's formula gives no ``because``; to it a dislike is
        the lowest rating, which it already is: ``rating``)."""
        if variant == "paper":
            recent, rated, new_list, n = recommend_after_rating(
                item=item, rating=rating, ts=ts, recent=recent, rated=rated, previous=previous,
                similarity=similarity, hot_items=hot_items, params=self.online)
            return recent, rated, new_list, {}, n
        return recommend_default(item=item, rating=rating, ts=ts, recent=recent, rated=rated, previous=previous,
                                 similarity=similarity, params=self.default, dislike=dislike)

    def apply(self, state: UserState, rating: Rating, offset: int, similarity: SimilarityIndex, version: str,
              hot_items: Iterable[str] = ()) -> tuple[str, bool, int]:
        """The realtime agent's work on one rating of a user whose state is ``state``
        (read from the table; updated in place): returns ``(variant, changed, n_scored)``.
        ``changed`` is False for a redelivered message (``offset`` not after the state's:
        at-least-once), whose list and model version are then the stored ones."""
        variant = self.variant(rating.user)
        if state.already_applied(offset):
            return variant, False, 0
        state.recent, state.rated, new_list, because, n_scored = self.update(
            variant, item=rating.item, rating=rating.rating, ts=rating.ts, recent=state.recent, rated=state.rated,
            previous=state.last_list, similarity=similarity, hot_items=hot_items,
            dislike=rating.source == DISLIKE_SOURCE)
        state.recs = {"items": new_list, "model_version": version, "ts": rating.ts, "because": because}
        state.offset = offset
        return variant, True, n_scored
