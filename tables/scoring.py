"""The paper's online algorithm as plain functions (no Kafka, no Faust).

On a rating (u, p, r) the realtime agent calls, in order:

1. :func:`add_recent_rating`  - RK: u's K most recent ratings, one entry per item;
2. :func:`candidate_items`    - S: the M items most similar to p that u has not rated;
3. :func:`score_candidates`   - E_uq for every q in S (ARCHITECTURE.md, section 3),
   with sim() read from a :class:`SimilarityIndex`:

   E_uq = (sum_{r in RK, sim(q,r) > theta} sim(q,r) * R_r) / n_sim
          + lg(max(incount, 1)) - lg(max(recount, 1))

   candidates with n_sim = 0 get no score;
4. :func:`merge_lists`        - NewRec = topK(updated U previous), rated items dropped;
5. :func:`fill_with_fallback` - pad a short list with hot items (no score).

Lists are ``[[item, score], ...]`` best first; ``score`` is ``None`` for fallback items.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

#: ``[item, rating, ts]`` - one entry of a user's recent ratings.
RecentRating = list
#: ``{neighbour_item: similarity}`` for one item.
Neighbours = Mapping[str, float]


def _as_set(items: Iterable[str]) -> set | frozenset:
    """``items`` as a set, without copying one the caller already built."""
    return items if isinstance(items, (set, frozenset)) else set(items)


def high_rating_cut(rating_min: float, rating_max: float) -> float:
    """Ratings at or above the middle of the scale are "high" (6 on 2..10, 3 on 1..5)."""
    return (rating_min + rating_max) / 2.0


def add_recent_rating(recent: Sequence[RecentRating], item: str, rating: float, ts: float,
                      k: int) -> list[RecentRating]:
    """Return u's K most recent ratings after adding (item, rating, ts).

    One entry per item; the entry with the newer timestamp wins (a tie goes to the new
    one), so a redelivered or stale event changes nothing. Sorted oldest first; equal
    timestamps keep arrival order, so the rating that just arrived is the "most
    recent" of its second and is never the one evicted (ties broken by item id used
    to let a new rating evict itself).
    """
    for entry in recent:
        if entry[0] == item and ts < entry[2]:  # stale: older than what we have for the item
            return [list(e) for e in recent][-k:] if k > 0 else []
    kept = [list(e) for e in recent if e[0] != item]
    kept.append([item, float(rating), float(ts)])
    kept.sort(key=lambda e: e[2])  # stable: ties stay in arrival order
    return kept[-k:] if k > 0 else []


def is_replay(recent: Sequence[RecentRating], item: str, rating: float, ts: float) -> bool:
    """True for a rating that changes nothing: a redelivery (same item, rating and time)
    or a stale one (older than the user's recent rating of that item)."""
    for entry in recent:
        if entry[0] == item:
            return entry[2] > ts or (entry[2] == ts and entry[1] == rating)
    return False


def add_rated_item(rated: Sequence[str], item: str, limit: int) -> list[str]:
    """Remember that the user rated ``item`` (most recent last, at most ``limit`` items)."""
    items = [i for i in rated if i != item]
    items.append(item)
    return items[-limit:] if limit > 0 else []


class SimilarityIndex:
    """The similarity model as the online side reads it: top-M lists plus symmetric rows.

    ``neighbours[a]`` is a's top-M list, best first (candidates come from it).
    ``rows[a][b]`` is sim(a, b) for the scoring loop, one dict lookup: the pair's score
    from a's list or from b's (cosine is symmetric, top-M lists are not: b may be among
    a's best, not the reverse); if both lists hold it, the larger (they differ only by
    rounding); an unlisted pair has similarity 0 and no entry; sim(a, a) = 1. Rows are
    kept up to date item by item, as a new model streams in.

    Parameters
    ----------
    neighbours : mapping of item -> {neighbour: similarity}, optional
        Initial lists (any order; stored best first).
    related : mapping of item -> {neighbour: co-occurrence}, optional
        The model's co-occurrence lists, for the default ranker (``tables/ranking.py``).
    counts : mapping of item -> interactions in the training data, optional
        The popularity prior of the default ranker.
    """

    def __init__(self, neighbours: Mapping[str, Neighbours] | None = None, *,
                 related: Mapping[str, Neighbours] | None = None,
                 counts: Mapping[str, int] | None = None) -> None:
        self.neighbours: dict[str, dict[str, float]] = {}
        self.rows: dict[str, dict[str, float]] = {}
        for item, neigh in (neighbours or {}).items():
            self.set_neighbours(item, neigh)
        self.related = {item: dict(sorted(neigh.items(), key=lambda kv: (-kv[1], kv[0])))
                        for item, neigh in (related or {}).items() if neigh}
        self.counts = {item: int(c) for item, c in (counts or {}).items() if c > 0}
        self.max_count = max(self.counts.values(), default=0)
        #: lg(1 + count) / lg(1 + max count): the popularity prior in [0, 1], computed once per model.
        lg_max = math.log1p(self.max_count) or 1.0
        self.prior = {item: math.log1p(c) / lg_max for item, c in self.counts.items()}
        #: Items by count, most first (ties by id); the top 1,000 is plenty of candidates.
        self.popular = [q for _c, q in sorted((-c, q) for q, c in self.counts.items())[:1000]]

    def __len__(self) -> int:
        return len(self.neighbours)

    def similarity(self, a: str, b: str) -> float:
        """sim(a, b) as the formula uses it (0 for an unlisted pair)."""
        if a == b:
            return 1.0
        return self.rows.get(a, {}).get(b, 0.0)

    def set_neighbours(self, item: str, neighbours: Neighbours) -> None:
        """Replace ``item``'s top-M list (a new model version, or a first load)."""
        old = self.neighbours.get(item, {})
        self.neighbours[item] = dict(sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0])))
        for other in old.keys() | self.neighbours[item].keys():
            self._refresh_pair(item, other)

    def remove(self, item: str) -> None:
        """Forget ``item``'s list (a tombstone: the item left the catalogue)."""
        for other in self.neighbours.pop(item, {}):
            self._refresh_pair(item, other)

    def _refresh_pair(self, a: str, b: str) -> None:
        if a == b:
            return
        listed = [s for x, y in ((a, b), (b, a)) if (s := self.neighbours.get(x, {}).get(y)) is not None]
        if listed:
            s = max(listed)
            self.rows.setdefault(a, {a: 1.0})[b] = s
            self.rows.setdefault(b, {b: 1.0})[a] = s
            return
        for x, y in ((a, b), (b, a)):
            row = self.rows.get(x)
            if row is not None and row.pop(y, None) is not None and len(row) == 1:
                del self.rows[x]  # only its own 1.0 left


def candidate_items(trigger_neighbours: Neighbours | None, rated: Iterable[str], m: int) -> list[str]:
    """S: the M most similar items to the rated item, skipping items u already rated.

    ``trigger_neighbours`` must be best first, as :class:`SimilarityIndex` keeps them:
    no sort per rating.
    """
    if not trigger_neighbours:
        return []
    seen = _as_set(rated)
    result = []
    for item in trigger_neighbours:
        if item not in seen:
            result.append(item)
            if len(result) == m:
                break
    return result


@functools.lru_cache(maxsize=8)
def _lg_table(n: int) -> tuple[float, ...]:
    """``lg(max(c, 1))`` for c = 0..n: a tuple lookup instead of two max() and two
    log10() calls per candidate in the hot loop."""
    return tuple(math.log10(max(c, 1)) for c in range(n + 1))


def score_candidates(candidates: Iterable[str], recent: Sequence[RecentRating], similarity: SimilarityIndex,
                     *, theta: float, high_cut: float) -> dict[str, float]:
    """E_uq for every candidate with at least one recent item more similar than theta.

    The hot path of the realtime agent (M x K lookups per rating). The loop runs over
    the K recent items outside and the M candidates inside, so each recent item's row
    (:attr:`SimilarityIndex.rows`) is looked up once: K row lookups instead of M, which
    for users with one or two ratings took a replay of the benchmark's ratings from 15.6
    to 9.6 us per rating.
    """
    candidates = list(candidates)
    rows = similarity.rows
    sums: dict[str, list] = {}  # q -> [sum of sim * rating, n_sim, incount]
    for item, rating, _ts in recent:
        row = rows.get(item)
        if not row:
            continue
        high = 1 if rating >= high_cut else 0
        for q in candidates:
            s = row.get(q)
            if s is not None and s > theta:
                acc = sums.get(q)
                if acc is None:
                    sums[q] = [s * rating, 1, high]
                else:
                    acc[0] += s * rating
                    acc[1] += 1
                    acc[2] += high
    lg = _lg_table(len(recent))
    return {q: weighted / n_sim + lg[incount] - lg[n_sim - incount]
            for q, (weighted, n_sim, incount) in sums.items()}


def base_score(q: str, recent: Sequence[RecentRating], sim: Callable[[str, str], float],
               theta: float) -> float | None:
    """The weighted-average part of E_uq alone: a rating prediction (used by evaluation)."""
    pairs = [(s, rating) for item, rating, _ in recent if (s := sim(q, item)) > theta]
    if not pairs:
        return None
    return sum(s * r for s, r in pairs) / len(pairs)


def merge_lists(previous: Sequence[Sequence], updated: Mapping[str, float], k: int,
                exclude: Iterable[str] = (), decay: float = 1.0) -> list[list]:
    """NewRec = topK(updated U previous): an item in both takes its new score.

    Fallback entries (score ``None``) of the previous list are dropped (they are
    recomputed), and so are items in ``exclude`` (items the user has rated).
    Ties break on item id so the result is deterministic.

    ``decay`` (not in the paper; 1.0 = the paper) multiplies the previous list's scores
    before the union, so older priorities fade and the newest rating's candidates win
    more often; 0.0 keeps previous items only as filler below every new candidate with
    a positive score.
    """
    excluded = _as_set(exclude)
    merged = {entry[0]: entry[1] for entry in previous if entry[1] is not None and entry[0] not in excluded}
    if decay != 1.0:
        merged = {item: score * decay for item, score in merged.items()}
    for item, score in updated.items():
        if item not in excluded:
            merged[item] = score
    # (-score, item) tuples sort in C, with no key function called per entry.
    ranked = sorted([(-score, item) for item, score in merged.items()])[:k]
    return [[item, float(-negated)] for negated, item in ranked]


def fill_with_fallback(ranked: Sequence[Sequence], hot_items: Iterable[str], k: int,
                       exclude: Iterable[str] = ()) -> list[list]:
    """Pad a list shorter than K with hot items (score ``None``) the user has not rated."""
    result = list(ranked)  # a new list; the entries are not modified
    if len(result) >= k:
        return result
    taken = {entry[0] for entry in result} | _as_set(exclude)
    for item in hot_items:
        if len(result) >= k:
            break
        if item not in taken:
            result.append([item, None])
            taken.add(item)
    return result


@dataclass(frozen=True)
class OnlineParams:
    """The knobs of the online update, in one frozen object (see ``docs/ARCHITECTURE.md``).

    ``k`` list length and recent ratings kept; ``m`` candidates per rating; ``theta``
    minimum similarity; ``high_cut`` the high/low rating cut; ``rated_limit`` rated items
    remembered; ``decay`` weight of the previous list's scores (1.0 = the paper).
    """

    k: int = 20
    m: int = 20
    theta: float = 0.6
    high_cut: float = 3.0
    rated_limit: int = 1000
    decay: float = 1.0

    @classmethod
    def from_settings(cls, conf) -> OnlineParams:
        return cls(k=conf.ranking.k, m=conf.ranking.m, theta=conf.ranking.theta, high_cut=high_rating_cut(conf.input.rating_min, conf.input.rating_max),
                   rated_limit=conf.ranking.rated_items_max, decay=conf.ranking.decay)


def recommend_after_rating(*, item: str, rating: float, ts: float, recent: Sequence[RecentRating],
                           rated: Sequence[str], previous: Sequence[Sequence],
                           similarity: SimilarityIndex, hot_items: Iterable[str],
                           params: OnlineParams | None = None, **knobs):
    """The whole update for one rating: returns ``(recent, rated, new_list, n_scored)``.

    A replayed rating (:func:`is_replay`) returns the state and the previous list as they
    are, so at-least-once redelivery after a crash changes nothing.

    This is what the realtime agent calls between reading and writing its tables.
    ``params`` (or its fields as keywords: ``k=5, theta=0.5``...) are the knobs.
    """
    p = params or OnlineParams(**knobs)
    k, m, theta, high_cut, rated_limit, decay = p.k, p.m, p.theta, p.high_cut, p.rated_limit, p.decay
    if is_replay(recent, item, rating, ts):  # at-least-once redelivery: nothing changes
        return list(recent), list(rated), [list(entry) for entry in previous], 0
    recent = add_recent_rating(recent, item, rating, ts, k)
    rated = add_rated_item(rated, item, rated_limit)
    rated_set = set(rated)  # once: up to rated_limit items, used three times
    candidates = candidate_items(similarity.neighbours.get(item), rated_set, m)
    updated = score_candidates(candidates, recent, similarity, theta=theta, high_cut=high_cut)
    ranked = merge_lists(previous, updated, k, exclude=rated_set, decay=decay)
    return recent, rated, fill_with_fallback(ranked, hot_items, k, exclude=rated_set), len(updated)
