"""The learned ranker's candidates and their features: one fixed vector per (user, candidate).

Candidates are the recall ranker's (``ranking.DefaultRanker``: the model's blended
sources, recency decay and popularity prior) top ``n`` for the user's history, then the
hot items it did not list. Every candidate gets the vector :data:`FEATURES` names, each
feature on a scale that does not depend on the shop (shares, ranks, logs of counts
over their maximum), so one model fits any data set; a feature the data does not have
(no catalogue, no categories, no behaviour events) is 0. Pure: the worker (serving and
making examples) and the streaming evaluation call the same :func:`candidates`.
"""
from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter

import numpy as np

from ranking.kernels import source_sums
from ranking.model import FACTOR_NEIGHBOURS, RECENT_HALF_LIVES, SOURCES, SimilarityIndex, built_once_per_model

#: The lists whose scores are features: the named sources and the ALS factor neighbours.
_LISTS = {**{name: name for name in SOURCES}, "factor": FACTOR_NEIGHBOURS}

#: Event types a list can be triggered by, as features (a rating is ``rating``; cart and fav one).
EVENTS = ("rating", "view", "click", "cart", "purchase")
_EVENT_SLOT = {"fav": "cart", "search": "click"}

#: The item of a history entry or a list entry.
_first = itemgetter(0)

#: A log time scale: a year in seconds.
_YEAR_S = 3.2e7

#: The candidate features that are not per-list constants (the crosses read them).
ITEM_FEATURES = (
    "recall",  # the recall ranker's score (the default ranker's formula)
    "recall_rank",  # 1 / log2(2 + position in the recall order)
    *(f"knn_{s}" for s in (*SOURCES, "factor")),  # each list's decayed sum over the history / its largest
    *(f"last_{s}" for s in (*SOURCES, "factor")),  # the newest interaction's own weight in each list
    "knn_rated",  # the blend's decayed sum with each interaction weighed by its rating / the scale's top
    "prior",  # lg(1 + count) / lg(1 + max count)
    "trending",  # 1 - rank / n in the hot items (0: not hot)
    *(f"recent_{h}" for h in RECENT_HALF_LIVES),  # the model's recent popularity, on the prior's scale
    "support",  # lists of the recent items that hold the candidate / (3 sources x recent items)
    "because_recency",  # 1 / (1 + how many newer interactions than the one that contributed most)
    "because_age",  # lg(1 + seconds since that interaction) / lg(1 + a year)
    "category_affinity",  # share of the recent interactions in the candidate's category
    "item_age",  # lg(1 + seconds since the catalogue added the item) / lg(1 + a year)
    "shown",  # 1 / log2(2 + position in the list the user had) (0: not in it)
)
#: Per-list constants: they move a list's scores together, so they matter through crosses.
USER_FEATURES = ("activity", "mainstream", *(f"event_{e}" for e in EVENTS))
#: The item features crossed with every user feature.
_CROSSED = ("recall", "recall_rank", "knn_related", "knn_sequential", "knn_learned", "last_sequential", "prior",
            "trending", "item_age")
#: Products of a user feature and an item feature.
CROSSES = tuple((u, i) for u in USER_FEATURES for i in _CROSSED)
#: The features that are computed (the rest are their crosses): what examples carry on the wire.
BASE_FEATURES = ("bias", *ITEM_FEATURES, *USER_FEATURES)
#: The feature vector, in order (``bias`` first).
FEATURES = (*BASE_FEATURES, *(f"{u}*{i}" for u, i in CROSSES))
_AT = {name: j for j, name in enumerate(FEATURES)}
_KNN_AT = [_AT[f"knn_{name}"] for name in _LISTS]
_RECENT_AT = [_AT[f"recent_{h}"] for h in RECENT_HALF_LIVES]
_LAST_AT = [_AT[f"last_{name}"] for name in _LISTS]
_CROSS_AT = np.array([[_AT[u], _AT[i]] for u, i in CROSSES], dtype=np.intp).reshape(-1, 2)
_CROSS_USER_AT = [_AT[u] for u in USER_FEATURES]
_CROSS_ITEM_AT = [_AT[i] for i in _CROSSED]


def crossed_dot(base: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``with_crosses(base) @ w`` without making the crosses' columns: the crosses of each
    user feature are one product of the item features they cross with their weights."""
    n_base = len(BASE_FEATURES)
    per_user = w[n_base:].reshape(len(USER_FEATURES), len(_CROSSED))  # CROSSES: user-major
    return base @ w[:n_base] + np.einsum("nu,nu->n", base[:, _CROSS_USER_AT], base[:, _CROSS_ITEM_AT] @ per_user.T)


def with_crosses(base: np.ndarray) -> np.ndarray:
    """The whole feature rows (:data:`FEATURES`) of rows of :data:`BASE_FEATURES`."""
    X = np.empty((base.shape[0], len(FEATURES)))
    X[:, : len(BASE_FEATURES)] = base
    X[:, len(BASE_FEATURES):] = base[:, _CROSS_AT[:, 0]] * base[:, _CROSS_AT[:, 1]]
    return X


@dataclass(frozen=True)
class Context:
    """What the features read besides the user's history and the model's index.

    Parameters
    ----------
    hot_items : sequence of str
        The worker's hot items, most first (the trending feature).
    categories : mapping of item -> category
        The catalogue's categories (empty: no catalogue).
    first_seen : mapping of item -> time
        When each item was added to the catalogue (empty: unknown).
    """

    hot_items: Sequence[str] = ()
    categories: Mapping[str, str] = field(default_factory=dict)
    first_seen: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Candidates:
    """One user's candidates: ``items`` in recall order, ``X[j]`` the features of
    ``items[j]`` (:data:`FEATURES`; or only :data:`BASE_FEATURES`, whose products the
    crosses are, as :func:`features_many` and :meth:`kept` leave them), ``because[j]``
    the recent item that contributed most to it (``None``: it came from the prior or the
    hot items alone)."""

    items: list
    X: np.ndarray
    because: list

    def kept(self) -> Candidates:
        """These candidates as a worker keeps them until the user's next interaction: the
        computed features only, in float32 (a sixth of the bytes); :func:`with_crosses` of
        their rows in float64 gives the whole rows again."""
        return Candidates(self.items, self.X[:, : len(BASE_FEATURES)].astype(np.float32), self.because)


class KeptCandidates:
    """The candidates each user's current list was made from, until the user's next
    interaction makes its examples (:meth:`ranking.learned.LearnedRanker.examples`), for
    at most ``users`` users (the least recently used go first; theirs are recomputed).

    Each entry is tagged with the offset of the interaction that made the list: the
    next interaction takes it only if the user's state still says that offset."""

    def __init__(self, users: int = 20_000) -> None:
        self.users = users
        self._kept: collections.OrderedDict = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def put(self, user, offset, made: Candidates | None) -> None:
        if made is None or self.users <= 0:
            return
        self._kept[user] = (offset, made.kept())
        self._kept.move_to_end(user)
        if len(self._kept) > self.users:
            self._kept.popitem(last=False)

    def take(self, user, offset) -> Candidates | None:
        entry = self._kept.pop(user, None)
        return entry[1] if entry is not None and entry[0] == offset else None


def event_of(source: str) -> str:
    """The feature slot of an interaction's event (``rating`` for an explicit rating)."""
    event = _EVENT_SLOT.get(source, source)
    return event if event in EVENTS else "rating"


def candidates(recent: Sequence[Sequence], rated, shown: Sequence[Sequence], event: str, ts: float,
               index: SimilarityIndex, context: Context, *, recall, n_hot: int = 20, content=None) -> Candidates:
    """The candidates of a user whose history is ``recent`` (``[[item, weight, ts], ...]``
    oldest first) and ``rated``, who has the list ``shown`` and whose latest interaction
    was an ``event`` at ``ts``: ``recall``'s list (a ``DefaultRanker``; its ``k`` is how
    many; with ``content``, new items among them), then up to ``n_hot`` hot items it did not list."""
    rated = rated if isinstance(rated, (set, frozenset)) else set(rated)
    history = recall.history if recall.history is not None else index.blend.history
    recent = list(recent)[-history:]
    listed = recall.rank(recent, rated, index, explain=False, content=content)[0]
    items = [q for q, _s in listed]
    recall_score = [s for _q, s in listed]
    _add_hot(items, recall_score, rated, tuple(dict.fromkeys(context.hot_items)), recall.k + n_hot)
    return features(items, recall_score, recent, rated, shown, event, ts, index, context, recall=recall)


def features(items: list, recall_score: Sequence[float], recent: list, rated: set, shown: Sequence[Sequence],
             event: str, ts: float, index: SimilarityIndex, context: Context, *, recall) -> Candidates:
    """The :data:`FEATURES` of ``items`` (in recall order, ``recall_score`` each) for a user
    whose history is ``recent`` (already cut to the recall ranker's length) and ``rated``."""
    n = len(items)
    X = np.zeros((n, len(BASE_FEATURES)), dtype=np.float64)
    if not items:
        return Candidates(items, with_crosses(X), [])
    position = index.position
    at = np.fromiter(map(position.get, items, repeat(-1)), dtype=np.intp, count=n)
    known = at >= 0
    slot = np.full(len(index.ids), -1, dtype=np.intp)  # item position -> candidate row (-1: none)
    slot[at[known]] = np.flatnonzero(known)
    X[:, _AT["bias"]] = 1.0
    X[:, _AT["recall"]] = recall_score
    X[:, _AT["recall_rank"]] = 1.0 / np.log2(2.0 + np.arange(n))
    best = _source_features(X, recent, slot, index, recall, ts)
    _item_columns(X, items, at, ts, index, context)
    _user_columns(X, items, recent, rated, shown, event, index, context)
    becauses = [recent[r][0] if r >= 0 else None for r in best.tolist()]
    return Candidates(items, with_crosses(X), becauses)


def _item_columns(X: np.ndarray, items: list, at: np.ndarray, now, index: SimilarityIndex, context: Context,
                  of: np.ndarray | None = None) -> None:
    """Write each candidate's prior, trending rank and age in the catalogue (``at``: its
    item position, -1 unknown; ``now``: the interaction's time, or with ``of`` one per
    row, ``of[j]`` candidate j's row)."""
    known = at >= 0
    X[known, _AT["prior"]] = index.prior_at[at[known]]
    X[np.ix_(known, _RECENT_AT)] = index.recent_popularity(at[known], now, None if of is None else of[known])
    if context.hot_items:
        hot = len(context.hot_items)
        rank = {q: r for r, q in enumerate(context.hot_items)}
        rank_at = np.full(len(index.ids), hot, dtype=np.float64)  # by item position: a lookup per hot item only
        for q, r in rank.items():
            if (p := index.position.get(q)) is not None:
                rank_at[p] = r
        column = np.full(len(items), float(hot))
        column[known] = rank_at[at[known]]
        for j in np.flatnonzero(~known).tolist():  # an item the model does not know: by name
            column[j] = rank.get(items[j], hot)
        X[:, _AT["trending"]] = 1.0 - column / hot
    if context.first_seen:
        first = np.fromiter(map(context.first_seen.get, items, repeat(math.nan)), dtype=np.float64, count=len(items))
        seen = ~np.isnan(first)
        now = (now if of is None else now[of])[seen] if isinstance(now, np.ndarray) else now
        X[seen, _AT["item_age"]] = np.log1p(np.maximum(now - first[seen], 0.0)) / math.log1p(_YEAR_S)


def _user_columns(X: np.ndarray, items: list, recent: list, rated, shown: Sequence[Sequence], event: str,
                  index: SimilarityIndex, context: Context) -> None:
    """Write what one user's candidates read of the user (``X``: their rows): the affinity
    to each one's category, its place in the list shown, the user's activity and
    mainstreamness and the triggering event."""
    if context.categories:
        _category_affinity(X, items, recent, context)
    place = {entry[0]: p for p, entry in enumerate(shown)}
    if place:
        X[:, _AT["shown"]] = [1.0 / math.log2(2.0 + place[q]) if q in place else 0.0 for q in items]
    X[:, _AT["activity"]] = math.log1p(len(rated)) / math.log1p(1000.0)
    position = index.position
    mine = [position[entry[0]] for entry in recent if entry[0] in position]
    X[:, _AT["mainstream"]] = float(index.prior_at[mine].sum()) / len(mine) if mine else 0.0
    X[:, _AT[f"event_{event_of(event)}"]] = 1.0


def _category_affinity(X: np.ndarray, items: list, recent: list, context: Context) -> None:
    """Write the share of the user's recent interactions in each candidate's category."""
    mine = [context.categories.get(entry[0]) for entry in recent]
    share = {c: mine.count(c) / len(mine) for c in set(mine) if c is not None}
    X[:, _AT["category_affinity"]] = [share.get(context.categories.get(q), 0.0) for q in items]


def _source_features(X: np.ndarray, recent: list, slot: np.ndarray, index: SimilarityIndex, recall, ts: float
                     ) -> np.ndarray:
    """The features of the recent items' lists, in one pass over them: each source's
    decayed sum over the history (over its largest absolute value among the candidates),
    the newest interaction's own weight, the recent items' support, the blend's sum with
    every interaction weighed by its rating, and ``because``: the recent interaction that
    contributed most to each candidate's blended score, as the default ranker chooses it
    (its place in ``recent``, the oldest on a tie; -1: none contributed a positive part),
    with its recency and age. Returns ``because``."""
    decay = recall.decay if recall.decay is not None else index.blend.decay
    n, last, names = X.shape[0], len(recent) - 1, list(_LISTS.values())
    named = [index.source_lists.get(listed) or {} for listed in names]
    got = [(s, j, neigh) for j, entry in enumerate(recent) for s, lists in enumerate(named)
           if (neigh := lists.get(entry[0])) is not None]  # every list of every recent item, by list number
    best = np.full(n, -1, dtype=np.intp)
    if not got:
        return best
    sizes = [len(neigh[0]) for _s, _j, neigh in got]
    rows = slot[np.concatenate([neigh[0] for _s, _j, neigh in got])]
    keep = np.flatnonzero(rows >= 0)  # the entries that name a candidate: all that is read below
    rows = rows[keep]
    values = np.concatenate([neigh[1] for _s, _j, neigh in got])[keep]
    source = np.repeat(np.array([s for s, _j, _n in got], dtype=np.intp), sizes)[keep]
    from_row = np.repeat(np.array([j for _s, j, _n in got], dtype=np.intp), sizes)[keep]
    sign = np.array([-1.0 if entry[1] < 0 else 1.0 for entry in recent])
    signed_row = decay ** (last - np.arange(len(recent))) * sign
    signed = signed_row[from_row] * values
    knn = np.bincount(source * n + rows, signed, minlength=len(names) * n).reshape(len(names), n)
    top = np.abs(knn).max(axis=1)
    X[:, _KNN_AT] = knn.T / np.where(top > 0.0, top, 1.0)
    own = np.bincount(source * n + rows, np.where(from_row == last, values, 0.0), minlength=len(names) * n)
    X[:, _LAST_AT] = np.minimum(np.maximum(own.reshape(len(names), n).T, -2.0), 2.0) / 2.0
    sourced = source < len(SOURCES)
    X[:, _AT["support"]] = np.bincount(rows[sourced], minlength=n) / (len(SOURCES) * max(len(recent), 1))
    # The blended lists the default ranker reads are sum over sources of weight * list: the
    # same sums, made here for the candidates only ([recent item, candidate]).
    weight_of = np.zeros(len(names))
    for listed, w in index.blend_sources:
        weight_of[names.index(listed)] = w
    bw = weight_of[source]
    blended_in = bw != 0.0
    blended = np.bincount(from_row[blended_in] * n + rows[blended_in], values[blended_in] * bw[blended_in],
                          minlength=len(recent) * n).reshape(len(recent), n)
    top_weight = max(abs(float(entry[1])) for entry in recent) or 1.0
    rated = decay ** (last - np.arange(len(recent))) * np.array([float(entry[1]) for entry in recent]) / top_weight
    knn_rated = rated @ blended
    top = np.abs(knn_rated).max()
    if top > 0:
        X[:, _AT["knn_rated"]] = knn_rated / top
    part = signed_row[:, None] * blended
    best = np.argmax(part, axis=0)  # the first (oldest) of equal largest parts
    best[part[best, np.arange(n)] <= 0.0] = -1
    got = best >= 0
    X[got, _AT["because_recency"]] = 1.0 / (1.0 + (last - best[got]))
    when = np.array([float(entry[2]) for entry in recent])
    X[got, _AT["because_age"]] = np.log1p(np.maximum(ts - when[best[got]], 0.0)) / math.log1p(_YEAR_S)
    return best


#: One user's candidates to make, for :func:`candidates_many`: the history ``recent``
#: (``[[item, weight, ts], ...]`` oldest first), ``rated``, the list ``shown``, the
#: latest interaction's ``event`` and ``ts``.
Wanted = tuple[Sequence[Sequence], Iterable, Sequence[Sequence], str, float]


def candidates_many(wanted: Sequence[Wanted], index: SimilarityIndex, context: Context, *, recall, n_hot: int = 20,
                    content=None) -> tuple[np.ndarray, list[Candidates], np.ndarray]:
    """``[candidates(*w, index, context, recall=recall, n_hot=n_hot, content=content) for w in wanted]``,
    made together: the recall lists by ``ranking.batch.rank_many``, the features by
    :func:`features_many`. Returns every candidate's features in one array (each
    ``Candidates.X`` is a view of its rows; :data:`BASE_FEATURES` only: scores are
    :func:`crossed_dot`), the candidates, and every candidate's item position (-1: unknown)."""
    from ranking.batch import recall_many  # the batch ranker imports the model, as this module does

    history = recall.history if recall.history is not None else index.blend.history
    rows = []
    for recent, rated, _shown, _event, _ts in wanted:
        rows.append((list(recent)[-history:], rated if isinstance(rated, (set, frozenset)) else set(rated)))
    listed = recall_many(recall, rows, index, content=content)
    position = index.position
    hot_items = tuple(dict.fromkeys(context.hot_items))
    hot_at = {q: position.get(q, -1) for q in hot_items}
    made, at = [], []
    for (recent, rated), (items, recall_score, places), (_r, _q, shown, event, ts) in zip(rows, listed, wanted,
                                                                                         strict=True):
        if places is None:  # cold items may be among them: by name
            places = np.array([position.get(q, -1) for q in items], dtype=np.intp)
        hot = _add_hot(items, recall_score, rated, hot_items, recall.k + n_hot)
        at.append(places)
        if hot:
            at.append(np.array([hot_at[q] for q in hot], dtype=np.intp))
        made.append((items, recall_score, recent, rated, shown, event, ts))
    at = np.concatenate(at) if at else np.empty(0, dtype=np.intp)
    return (*features_many(made, index, context, recall=recall, at=at), at)


def _add_hot(items: list, recall_score: list, rated, hot_items: Sequence[str], limit: int) -> list:
    """Append the hot items (``hot_items``: no repeats) ``items`` does not hold and the
    user did not have, up to ``limit`` in all; returns those appended."""
    room = limit - len(items)
    if room <= 0 or not hot_items:
        return []
    have = set(items)
    added = [q for q in hot_items if q not in have and q not in rated][:room]
    items.extend(added)
    recall_score.extend([0.0] * len(added))
    return added


def features_many(rows: Sequence[tuple], index: SimilarityIndex, context: Context, *, recall, at: np.ndarray
                  ) -> tuple[np.ndarray, list[Candidates]]:
    """``[features(*row, index, context, recall=recall) for row in rows]`` (each row is
    ``(items, recall_score, recent, rated, shown, event, ts)``), one pass of each numpy
    call over every row's candidates: the candidates of all rows are stacked, row after
    row, and every per-user sum is a ``bincount`` over the stacked rows, or the compiled
    walk of :class:`_SourceFeatures`, in the order :func:`features` adds it. Returns the
    stacked :data:`BASE_FEATURES` (the crosses are left to :func:`with_crosses` or
    :func:`crossed_dot`) and each row's candidates.
    ``at``: the stacked candidates' item positions (-1: unknown), as the recall found them."""
    counts = np.array([len(row[0]) for row in rows], dtype=np.intp)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
    size = int(bounds[-1])
    of = np.repeat(np.arange(len(rows), dtype=np.intp), counts)  # the row of every stacked candidate
    X = np.zeros((size, len(BASE_FEATURES)), dtype=np.float64)
    items = list(chain.from_iterable(row[0] for row in rows))
    X[:, _AT["bias"]] = 1.0
    X[:, _AT["recall"]] = list(chain.from_iterable(row[1] for row in rows))
    X[:, _AT["recall_rank"]] = 1.0 / np.log2(2.0 + (np.arange(size) - bounds[of]))
    # Every row's recent items, one after the other, and their item positions (-1: unknown).
    recent_items = list(map(_first, chain.from_iterable(row[2] for row in rows)))
    recent_at = np.fromiter(map(index.position.get, recent_items, repeat(-1)), dtype=np.intp, count=len(recent_items))
    contributor = _SourceFeatures(rows, of, bounds, at, recent_at, index, recall).write(X)
    _item_columns(X, items, at, np.array([float(row[6]) for row in rows]), index, context, of)
    _user_columns_many(X, rows, items, at, recent_at, of, bounds, index, context)
    # Each candidate's ``because``: its main contributor's item (-1, none: the None after them all).
    recent_items.append(None)
    because = np.array(recent_items, dtype=object)[contributor].tolist()
    ends = bounds.tolist()
    return X, [Candidates(row[0], X[a:b], because[a:b]) for row, a, b in zip(rows, ends, ends[1:], strict=False)]


def _user_columns_many(X: np.ndarray, rows: Sequence[tuple], items: list, at: np.ndarray, recent_at: np.ndarray,
                       of: np.ndarray, bounds: np.ndarray, index: SimilarityIndex, context: Context) -> None:
    """:func:`_user_columns` of every row of :func:`features_many` (``items``: the stacked
    candidates, ``of`` the row of each; ``recent_at``: the rows' recent items' positions):
    a per-row value is made once per row and spread over its candidates."""
    if context.categories:
        for r, row in enumerate(rows):
            if bounds[r] < bounds[r + 1]:
                _category_affinity(X[bounds[r]:bounds[r + 1]], row[0], row[2], context)
    _shown_column(X, rows, items, at, of, bounds, index)
    X[:, _AT["activity"]] = np.array([math.log1p(len(row[3])) / math.log1p(1000.0) for row in rows])[of]
    entry_row = np.repeat(np.arange(len(rows), dtype=np.intp), [len(row[2]) for row in rows])
    known = recent_at >= 0
    n_known = np.bincount(entry_row[known], minlength=len(rows))
    prior_sum = np.bincount(entry_row[known], index.prior_at[recent_at[known]], minlength=len(rows))
    X[:, _AT["mainstream"]] = (prior_sum / np.maximum(n_known, 1))[of]
    event_at = np.array([_AT[f"event_{event_of(row[5])}"] for row in rows], dtype=np.intp)
    X[np.arange(X.shape[0]), event_at[of]] = 1.0


def _shown_column(X: np.ndarray, rows: Sequence[tuple], items: list, at: np.ndarray, of: np.ndarray,
                  bounds: np.ndarray, index: SimilarityIndex) -> None:
    """Write each candidate's place in the list its row's user had (``1 / log2(2 + place)``,
    0: not in it): the shown items and the candidates are matched by (row, item position)
    in one search; a row with an item the model does not know is matched by name."""
    sizes = [len(row[4]) for row in rows]
    if not any(sizes):
        return
    shown_at = np.fromiter(map(index.position.get, map(_first, chain.from_iterable(row[4] for row in rows)), repeat(-1)),
                           dtype=np.intp, count=sum(sizes))
    shown_row = np.repeat(np.arange(len(rows), dtype=np.intp), sizes)
    place = np.arange(shown_at.size) - (np.cumsum(sizes) - sizes)[shown_row]
    by_name = np.zeros(len(rows), dtype=bool)
    by_name[shown_row[shown_at < 0]] = True
    by_name[of[at < 0]] = True
    span = len(index.ids) + 1
    keys = shown_row * span + shown_at
    order = np.argsort(keys, kind="stable")
    keys, place = keys[order], place[order]
    last = np.r_[keys[1:] != keys[:-1], True]  # an item shown twice: its last place (as a dict of them keeps)
    keys, place = keys[last], place[last]
    wanted = of * span + at
    where = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    found = (keys[where] == wanted) & (at >= 0) & ~by_name[of]
    column = np.zeros(X.shape[0])
    column[found] = 1.0 / np.log2(2.0 + place[where[found]])
    for r in np.flatnonzero(by_name).tolist():
        places = {entry[0]: p for p, entry in enumerate(rows[r][4])}
        column[bounds[r]:bounds[r + 1]] = [1.0 / math.log2(2.0 + places[q]) if q in places else 0.0
                                           for q in rows[r][0]]
    X[:, _AT["shown"]] = column


class _StackedLists:
    """Every list the features read (:data:`_LISTS`: each source's and the factor
    neighbours), stacked by item position: item ``p``'s entries are
    ``indptr[p]:indptr[p + 1]`` of ``at`` (neighbour position), ``values`` and ``source``
    (its list's number in ``names``), one list after another in ``names`` order, each
    in its own order. Built once per model: a batch then walks the entries of all its
    recent items (:func:`ranking.kernels.source_sums`) instead of looking up each item's lists."""

    def __init__(self, index: SimilarityIndex) -> None:
        self.names = tuple(_LISTS.values())
        named = [index.source_lists.get(listed) or {} for listed in self.names]
        at, values, source = [], [], []
        lengths = np.zeros(len(index.ids), dtype=np.intp)
        for p, item in enumerate(index.ids):
            for s, lists in enumerate(named):
                neigh = lists.get(item)
                if neigh is not None:
                    at.append(neigh[0])
                    values.append(neigh[1])
                    source.append(np.full(len(neigh[0]), s, dtype=np.int8))
                    lengths[p] += len(neigh[0])
        self.indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
        self.at = np.concatenate(at).astype(np.int32) if at else np.empty(0, dtype=np.int32)
        self.values = np.concatenate(values) if values else np.empty(0)
        self.source = np.concatenate(source) if source else np.empty(0, dtype=np.int8)


#: The model's :class:`_StackedLists`, built on the first call.
stacked_lists_of = built_once_per_model(_StackedLists)


class _SourceFeatures:
    """:func:`_source_features` of many rows at once: each row's recent interactions are
    numbered one after the other (``entry``), their decayed weights are arrays, and one
    compiled walk over their lists (:func:`ranking.kernels.source_sums`) adds each list
    entry that names one of its row's candidates to that candidate's sums, in the order
    :func:`_source_features` adds them."""

    def __init__(self, rows, of, bounds, at, recent_at, index: SimilarityIndex, recall) -> None:
        self.rows, self.of, self.bounds, self.at, self.index = rows, of, bounds, at, index
        self.recent_at = recent_at  # the position of every row's recent items, one after the other
        self.decay = recall.decay if recall.decay is not None else index.blend.decay
        self.n_items = len(index.ids)

    def write(self, X: np.ndarray) -> np.ndarray:
        """Write the features of the recent items' lists into ``X``; returns each candidate's
        main contributor (``because``) as its place among every row's recent entries, one
        row after the other, or -1."""
        rows, index = self.rows, self.index
        stacked = stacked_lists_of(index)
        names = stacked.names
        lengths = np.array([len(row[2]) for row in rows], dtype=np.intp)
        entry_bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.intp)
        recent = list(chain.from_iterable(row[2] for row in rows))  # every row's, one after the other
        entry_row = np.repeat(np.arange(len(rows), dtype=np.intp), lengths)  # the row of every recent entry
        newest = entry_bounds[1:] - 1  # each row's newest recent entry
        weight = np.fromiter(map(itemgetter(1), recent), dtype=np.float64, count=len(recent))
        age = newest[entry_row] - np.arange(len(recent))  # newer interactions than each entry's, in its row
        decayed = self.decay ** age
        signed_entry = decayed * np.where(weight < 0, -1.0, 1.0)
        top_weight = np.zeros(len(rows))
        np.maximum.at(top_weight, entry_row, np.abs(weight))
        top_weight[top_weight == 0.0] = 1.0
        rated = decayed * weight / top_weight[entry_row]
        weight_of = np.zeros(len(names))
        for listed, w in index.blend_sources:
            weight_of[names.index(listed)] = w
        knn, own, support, knn_rated, contributor = source_sums(
            self.bounds, self.at, entry_bounds, self.recent_at, signed_entry, rated, stacked.indptr, stacked.at,
            stacked.values, stacked.source, len(names), len(SOURCES), weight_of, self.n_items)
        top = self._largest_per_row(np.abs(knn))
        X[:, _KNN_AT] = (knn / np.where(top > 0.0, top, 1.0)[:, self.of]).T
        X[:, _LAST_AT] = np.minimum(np.maximum(own.T, -2.0), 2.0) / 2.0
        X[:, _AT["support"]] = support / (len(SOURCES) * np.maximum(lengths, 1))[self.of]
        top = self._largest_per_row(np.abs(knn_rated)[None, :])[0]
        X[:, _AT["knn_rated"]] = knn_rated / np.where(top > 0.0, top, 1.0)[self.of]
        got = contributor >= 0
        X[got, _AT["because_recency"]] = 1.0 / (1.0 + (newest[self.of[got]] - contributor[got]))
        when = np.fromiter(map(itemgetter(2), recent), dtype=np.float64, count=len(recent))
        ts = np.array([float(row[6]) for row in rows])
        X[got, _AT["because_age"]] = (np.log1p(np.maximum(ts[self.of[got]] - when[contributor[got]], 0.0))
                                      / math.log1p(_YEAR_S))
        return contributor

    def _largest_per_row(self, values: np.ndarray) -> np.ndarray:
        """``values`` (lists x stacked candidates) reduced to lists x rows: each row's largest."""
        out = np.zeros((values.shape[0], len(self.rows)))
        filled = np.flatnonzero(np.diff(self.bounds) > 0)
        if filled.size:
            out[:, filled] = np.maximum.reduceat(values, self.bounds[filled], axis=1)
        return out
