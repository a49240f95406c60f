"""Choosing the default ranker's blend for one shop, by validation on its newest events.

Shops differ: direction matters for groceries (the refill after the printer), hardly
for films; a shop of loyal repeat buyers wants a long memory, a shop of one-off visits
a short one. So at every retrain the model worker:

1. holds back its newest events (:data:`VALIDATION_SHARE` of what it stores, at most
   :data:`VALIDATION_MAX`) and fits the sources (``offline_als/sources.py``) on the rest,
   EASE with the penalties of :data:`LAMBDAS` (its best depends on the shop's size and
   density: 1,000 to 3,000 on ml-100k, 500 on ML-20M), keeping the one whose lists alone
   validate best (a step up is not fitted when the step down beat the start);
2. replays the held-back events in time order, test-then-learn: before each event the
   user's list from each candidate blend is checked for the item (HR@10, NDCG@10), then
   the event joins the user's history (the model is not refitted within the slice, as
   the served one is not between retrains);
3. searches the candidates one parameter at a time (source weights on a coarse grid,
   then each weight halved and doubled, then decay, then the popularity prior, each
   with the others at their best so far) and keeps the best
   by NDCG@10 (then HR@10). With a ``deadline`` (the model worker's: a quarter of its
   retrain interval for fits and selection together) it stops trying candidates in time
   for the final fit, and says so.

The same code runs on every data set: the candidates are a fixed small grid, not values
tuned to one file.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ranking import Blend, DefaultRanker, SimilarityIndex
from ranking.history import add_recent_rating

from .sources import SourceParams, ease_columns, fit_learned, fit_sources, tie_breaks

#: Share of the stored events held back for validation, and at most how many.
VALIDATION_SHARE = 0.1
VALIDATION_MAX = 5_000
#: Fewer held-back events than this say nothing: the default blend serves.
VALIDATION_MIN = 100
#: The candidates, searched in this order (the first values are the start).
WEIGHTS = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 1.0, 1.0), (0.0, 1.0, 1.0), (1.0, 0.0, 1.0),
           (1.0, 1.0, 0.0), (0.5, 1.0, 2.0), (0.5, 2.0, 1.0))
DECAYS = (0.8, 0.4, 0.6, 0.9)
#: EASE penalties tried (the first is the start: ``SourceParams.ease_lambda``'s default).
LAMBDAS = (1000.0, 250.0, 4000.0)
PRIORS = (0.5, 0.0, 0.2, 1.0)
#: List length the validation scores.
K = 10


@dataclass(frozen=True)
class Selection:
    """The blend chosen for a shop and the evidence: its validation HR@10 / NDCG@10, the
    runner-up's (a different configuration), on how many held-back events, in how long."""

    blend: Blend
    #: How the sources were fitted (the EASE penalty chosen)
    params: SourceParams = field(default_factory=SourceParams)
    hr_at_10: float | None = None
    ndcg_at_10: float | None = None
    runner_up: dict | None = None
    events: int = 0
    tried: int = 0
    seconds: float = 0.0
    note: str = ""
    scores: dict = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict:
        """What the model's marker carries (``offline_als/publish.py``)."""
        out = {**self.blend.as_dict(), "name": self.blend.name, "validation_events": self.events,
               "tried": self.tried, "selection_s": round(self.seconds, 3), "ease_lambda": self.params.ease_lambda}
        if self.hr_at_10 is not None:
            out.update(hr_at_10=round(self.hr_at_10, 5), ndcg_at_10=round(self.ndcg_at_10, 5))
        if self.runner_up:
            out["runner_up"] = self.runner_up
        if self.note:
            out["note"] = self.note
        return out


def select_blend(T: sp.csr_matrix, item_ids: Sequence[str], params: SourceParams | None = None, *,
                 share: float = VALIDATION_SHARE, max_events: int = VALIDATION_MAX,
                 deadline: float | None = None) -> Selection:
    """The best blend for the interactions ``T`` (users x items, each pair's latest time).

    ``deadline``: a ``time.perf_counter()`` time by which the final fit of the sources
    (assumed to take as long as the selection's own) must be done."""
    t0 = time.perf_counter()
    params = params or SourceParams()
    T = sp.csr_matrix(T)
    n_val = min(max_events, math.ceil(share * T.nnz))
    if n_val < VALIDATION_MIN:
        return Selection(Blend(), params, note=f"{n_val} held-back events are too few to choose by: the default")
    users = np.repeat(np.arange(T.shape[0]), np.diff(T.indptr))
    order = np.lexsort((tie_breaks(T), T.data))  # by time (equal times: in no particular order)
    held = order[-n_val:]
    keep = np.ones(T.nnz, dtype=bool)
    keep[held] = False
    fit_part = sp.csr_matrix((T.data[keep], (users[keep], T.indices[keep])), shape=T.shape)
    fit_started = time.perf_counter()
    sources = fit_sources(fit_part, item_ids, params)
    fit_s = time.perf_counter() - fit_started
    ids = [str(q) for q in item_ids]
    counts = dict(zip(ids, np.diff(sp.csc_matrix(fit_part).indptr).tolist(), strict=True))
    events = [(int(users[j]), ids[T.indices[j]], float(T.data[j])) for j in held]
    histories = _histories(fit_part, ids)
    read = lists_read(histories, events)

    scores: dict[Blend, tuple[float, float]] = {}
    # The sources as arrays once (``base``; again when EASE's lists change), and the index
    # of the last source weighting scored: the decay, history and prior candidates only
    # rank it differently.
    base: list = [None]
    last: list = [None, None]

    def score(blend: Blend) -> tuple[float, float]:
        if blend not in scores:
            weights = Blend(related=blend.related, sequential=blend.sequential, learned=blend.learned)
            if base[0] is None:
                base[0] = SimilarityIndex(related=sources["related"], counts=counts, sources=sources, keep_sources=True)
                last[0] = None
            if last[0] != weights:
                last[:] = weights, base[0].reblended(weights, only=read)
            ranker = DefaultRanker(k=K, history=blend.history, decay=blend.decay, w_pop=blend.w_pop)
            scores[blend] = replay(last[1], histories, events, ranker)
        return scores[blend]

    def late() -> bool:
        return deadline is not None and time.perf_counter() + fit_s > deadline

    note = ""
    if ease_columns(fit_part) is not None and not late():  # the penalty first, on the learned lists alone
        alone = Blend(related=0.0, learned=1.0)
        by_lambda = {params.ease_lambda: (score(alone), sources["learned"])}
        while (lam := next_penalty({x: v[0] for x, v in by_lambda.items()}, params.ease_lambda)) is not None:
            if late():
                note = "stopped trying EASE penalties: the retrain's time budget"
                break
            scores.pop(alone)
            base[0] = None  # new learned lists: a new index
            sources["learned"] = fit_learned(fit_part, item_ids, dataclasses.replace(params, ease_lambda=lam))
            by_lambda[lam] = (score(alone), sources["learned"])
        lam = _best_penalty({x: v[0] for x, v in by_lambda.items()})
        scores[alone], sources["learned"] = by_lambda[lam]
        base[0] = None
        params = dataclasses.replace(params, ease_lambda=lam)
    best = Blend()
    score(best)
    for name, values in (("weights", WEIGHTS), ("weights", _finer), ("decay", DECAYS), ("w_pop", PRIORS)):
        for value in (values(best) if callable(values) else values):
            if late():
                note = f"stopped after {len(scores)} candidates: the retrain's time budget"
                break
            candidate = (dataclasses.replace(best, **dict(zip(_SOURCES, value, strict=True)))
                         if name == "weights" else dataclasses.replace(best, **{name: value}))
            if _better(score(candidate), score(best)):
                best = candidate
    ranked = sorted(scores, key=lambda b: (-scores[b][1], -scores[b][0], b.name))
    runner = next((b for b in ranked if b != best), None)
    hr, ndcg = scores[best]
    return Selection(best, params, hr, ndcg,
                     {"name": runner.name, "hr_at_10": round(scores[runner][0], 5),
                      "ndcg_at_10": round(scores[runner][1], 5)} if runner else None,
                     events=len(events), tried=len(scores), seconds=time.perf_counter() - t0, note=note,
                     scores={b.name: scores[b] for b in ranked})


_SOURCES = ("related", "sequential", "learned")


def _finer(blend: Blend) -> list[tuple[float, ...]]:
    """Source weights near ``blend``'s: each weight halved and doubled, a source it does
    not use added at a quarter of its largest weight (the grid's steps are coarse)."""
    weights = [getattr(blend, name) for name in _SOURCES]
    top, out = max(weights), []
    for j, w in enumerate(weights):
        for new in ((w / 2, w * 2) if w > 0 else (top / 4,)):
            out.append(tuple(new if i == j else v for i, v in enumerate(weights)))
    return out


def next_penalty(tried: dict[float, tuple[float, float]], start: float) -> float | None:
    """The next of :data:`LAMBDAS` to fit, given the (HR, NDCG) of those ``tried``; None when
    done. A penalty on the other side of ``start`` from the best so far is skipped: the
    validation is taken to rise and fall once over the penalty (each fit is the cost of
    a retrain: on most shops the step down wins and the step up is never fitted)."""
    best = _best_penalty(tried)
    for lam in LAMBDAS:
        if lam not in tried and (lam - start) * (best - start) >= 0:
            return lam
    return None


def _best_penalty(tried: dict[float, tuple[float, float]]) -> float:
    """By NDCG@10, then HR@10, then the smaller penalty."""
    return max(tried, key=lambda x: (tried[x][1], tried[x][0], -x))


def _better(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """NDCG@10 first, then HR@10; a tie keeps what is in place."""
    return (a[1], a[0]) > (b[1], b[0])


def _histories(T: sp.csr_matrix, ids: list[str]) -> dict[int, tuple[list, set]]:
    """Each user's ``(recent, rated)`` from ``T``: the newest interactions as the ranker
    reads them (``[[item, 1.0, ts], ...]`` oldest first) and every item had."""
    ties, out = tie_breaks(T), {}
    for u in range(T.shape[0]):
        lo, hi = T.indptr[u], T.indptr[u + 1]
        if hi == lo:
            continue
        cols, times = T.indices[lo:hi], T.data[lo:hi]
        order = np.lexsort((ties[lo:hi], times))
        recent = [[ids[cols[j]], 1.0, float(times[j])] for j in order[-DefaultRanker.KEPT:]]
        out[u] = (recent, {ids[c] for c in cols})
    return out


def lists_read(histories: dict[int, tuple[list, set]], events: list[tuple[int, str, float]]) -> set[str]:
    """The items whose lists a :func:`replay` of ``events`` reads: the recent items of
    their users' histories and the items of the events (each joins its user's recent ones)."""
    users = {user for user, _item, _ts in events}
    read = {entry[0] for u in users if u in histories for entry in histories[u][0]}
    read.update(item for _user, item, _ts in events)
    return read


def replay(index: SimilarityIndex, histories: dict[int, tuple[list, set]], events: list[tuple[int, str, float]],
           ranker: DefaultRanker | None = None) -> tuple[float, float]:
    """HR@k and NDCG@k (``k`` the ranker's; default: the default ranker with the index's
    blend, lists of :data:`K`) over ``events`` (user, item, time; in time order),
    test-then-learn from ``histories``; a user's first event (no history yet) only learns."""
    ranker = ranker or DefaultRanker(k=K)
    state: dict[int, tuple[list, set]] = {}  # the held-back events' users only, copied when first met
    hits, gain, scored = 0, 0.0, 0
    for user, item, ts in events:
        if user in state:
            recent, rated = state[user]
        else:
            recent, rated = histories.get(user) or ([], set())
            recent, rated = list(recent), set(rated)
        if recent:
            listed = [q for q, _s in ranker.rank(recent, rated, index, explain=False)[0]]
            scored += 1
            if item in listed:
                hits += 1
                gain += 1.0 / math.log2(listed.index(item) + 2)
        rated.add(item)  # the state's own set (copied above)
        state[user] = (add_recent_rating(recent, item, 1.0, ts, DefaultRanker.KEPT), rated)
    return (hits / scored, gain / scored) if scored else (0.0, 0.0)


__all__ = ["DECAYS", "PRIORS", "VALIDATION_MAX", "VALIDATION_SHARE", "WEIGHTS", "Selection", "lists_read", "next_penalty", "replay",
           "select_blend"]
