"""The default ranker over a whole batch of histories at once, as arrays.

:meth:`DefaultRanker.rank` runs once per interaction and pays numpy's call overhead
(a few microseconds a call, some thirty calls) each time. :func:`rank_many` gives the
same lists for many histories with one pass of each numpy call over all of them:

- the histories' decayed recent items are the rows of one scipy CSR matrix R (oldest
  first), the model's blended lists the rows of another, L (built once per model); R @ L
  adds each row's terms in R's order, as ``rank``'s ``bincount`` adds them, so the kNN
  sums are the very floats ``rank`` computes (a sum that is exactly 0, which scipy drops
  and ``rank`` keeps, is put back from the product of the two matrices' patterns, made
  only when the product's size says one was dropped);
- each row's best ``k`` of its kNN sums, the user's own items left out, scored by the
  row's largest sum and sorted as ``rank`` sorts them (score, then item position, which is
  id order: ties break on item id) come from one compiled loop over the rows
  (``ranking/kernels.py``: numpy needed a call per row or passes over every sum);
- the popular candidates are picked for every row at once over the popularity order (a
  rows x popular-items mask) and merged with the kNN best: the best ``k`` of the two are
  the list;
- the recent item that put each listed item there (``because``) is found by a second
  compiled loop over each row's recent items' lists.

What stays per history is Python that is cheap or rare: the cold items the catalogue's
text recalls (``ranking/content.py``), and building the list and ``because`` (looked up
for the listed pairs only). ``tests/unit/test_batch_ranker.py`` checks :func:`rank_many`
against ``rank`` on random models and histories: the same lists, scores and ``because``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from operator import itemgetter

import numpy as np
import scipy.sparse as sp

from ranking.content import ContentIndex
from ranking.decimals import rounded
from ranking.default import DefaultRanker
from ranking.kernels import best_of_rows, main_contributors, warm_up
from ranking.model import SimilarityIndex, built_once_per_model

try:  # the first pass of scipy's sparse product: not public API, so a release may move it
    from scipy.sparse._sparsetools import csr_matmat_maxnnz
except ImportError:  # then the patterns' product runs in every batch that can have a zero sum
    csr_matmat_maxnnz = None

#: One history to rank: its recent interactions ``[[item, weight, ts], ...]`` oldest first
#: and the items it must not list.
Row = tuple[Sequence[Sequence], Iterable[str]]


#: Cells of the padded array (rows x candidates) that sorts each row's candidates at once.
DENSE_CELLS = 1 << 21


def rank_many(ranker: DefaultRanker, rows: Sequence[Row], index: SimilarityIndex, *,
              content: ContentIndex | None = None, explain: bool = True) -> list[tuple[list[list], dict[str, str], int]]:
    """``[ranker.rank(recent, exclude, index, explain, content) for recent, exclude in rows]``, as arrays."""
    return _rank_rows(ranker, rows, index, content, explain)


def recall_many(ranker: DefaultRanker, rows: Sequence[Row], index: SimilarityIndex, *,
                content: ContentIndex | None = None) -> list[tuple[list[str], list[float], np.ndarray | None]]:
    """Each row's ``(items, scores, positions)`` of :func:`rank_many` without ``because``:
    what the learned ranker's candidates read (taken from the arrays, not built as lists
    of pairs; the scores rounded to 6 decimals as ``rank`` rounds them; ``positions``: the
    items' places in the model, None where the catalogue's cold items may be among them)."""
    if content is not None and ranker.w_content > 0:  # the cold items are merged row by row
        return [([q for q, _s in items], [s for _q, s in items], None)
                for items, _because, _n in rank_many(ranker, rows, index, content=content, explain=False)]
    return _rank_rows(ranker, rows, index, None, False, pairs=False)


def _rank_rows(ranker: DefaultRanker, rows: Sequence[Row], index: SimilarityIndex, content: ContentIndex | None,
                explain: bool, pairs: bool = True) -> list:
    if not rows:
        return []
    n = ranker.k
    history, decay, w_pop = ranker._resolved(index)
    recents = [list(recent)[-history:] for recent, _exclude in rows]
    excludes = [exclude if isinstance(exclude, (set, frozenset)) else set(exclude) for _recent, exclude in rows]
    knn = _KnnSums.of(_recent_matrix(recents, index, decay), index)
    cold = ([content.recall(_weighted(recent, decay), exclude, n) for recent, exclude in zip(recents, excludes, strict=True)]
            if content is not None and ranker.w_content > 0 else [[] for _ in rows])
    row, at, score, top, counts = knn.best(excludes, index, w_pop if index.prior else 0.0, n)
    # A history with nothing near it gets the popular items whatever w_pop says (as in rank).
    w_row = np.where((counts == 0) & np.array([not c for c in cold], dtype=bool) & (w_pop <= 0), 1.0, w_pop)
    scored = counts
    if index.prior:  # each row's best n kNN candidates and its popular extras: the best n of them
        extra_row, extra_at = (_popular_extras(ranker, knn, excludes, index, w_row, n) if (w_row > 0).any()
                               else (np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)))
        if extra_row.size:
            row, at = np.concatenate([row, extra_row]), np.concatenate([at, extra_at])
            score = np.concatenate([score, 0.0 + w_row[extra_row] * index.prior_at[extra_at]])
            scored = counts + np.bincount(extra_row, minlength=len(rows))
            row, at, score = _best_per_row(row, at, score, n, len(rows))
    bounds = np.searchsorted(row, np.arange(len(rows) + 1)).tolist()
    names = _ids_of(index)[at].tolist()
    rounded_scores = rounded(score, 6)  # round(x, 6) of each, as arrays
    if not pairs:
        return [(names[bounds[r]:bounds[r + 1]], rounded_scores[bounds[r]:bounds[r + 1]], at[bounds[r]:bounds[r + 1]])
                for r in range(len(rows))]
    why = knn.because(row, at, _ids_of(index)) if explain else None
    out = []
    for r in range(len(rows)):
        a, b = bounds[r], bounds[r + 1]
        because = {names[i]: why[i] for i in range(a, b) if why[i] is not None} if explain else {}
        if cold[r]:
            scores = score[a:b].tolist()
            pool = [(-scores[i - a], names[i], int(at[i])) for i in range(a, b)]
            pool = ranker._with_cold(pool, cold[r], float(top[r]), index, float(w_row[r]), because if explain else None)
            out.append(([[q, round(-s, 6)] for s, q, _j in pool], because, int(scored[r]) + len(cold[r])))
        else:
            out.append(([[names[i], rounded_scores[i]] for i in range(a, b)], because, int(scored[r])))
    return out


def prepare(index: SimilarityIndex) -> None:
    """Build the arrays the batch rankers read of a model (its lists as a CSR matrix, its
    ids, and with ``keep_sources`` the features' stacked lists) now, when it is loaded,
    rather than in the first batch that ranks with it (a stall of a few hundred ms), and
    have the compiled loops ready."""
    from ranking.features import stacked_lists_of

    warm_up()

    _lists_of(index)
    _ids_of(index)
    if index.source_lists:
        stacked_lists_of(index)


@built_once_per_model
def _ids_of(index: SimilarityIndex) -> np.ndarray:
    """``index.ids`` as an object array (item names of many positions in one take)."""
    return np.array(index.ids, dtype=object)


def _best_per_row(row: np.ndarray, at: np.ndarray, score: np.ndarray, n: int, n_rows: int):
    """The best ``n`` of each row (its kNN best and its popular extras, in any order),
    ordered as ``rank`` sorts them: by row, score (best first), item position (= id
    order). Each row's, in item order, is sorted by score (stable: ties stay in item
    order) as one row of a padded array."""
    if not row.size:
        return row, at, score
    order = np.argsort(row * (int(at.max()) + 1) + at)  # (row, item) pairs are unique
    row, at, score = row[order], at[order], score[order]
    kept = np.bincount(row, minlength=n_rows)
    width = int(kept.max())
    if n_rows * width > DENSE_CELLS:  # a few rows of many ties: sort them as they are
        order = np.lexsort((at, -score, row))
        row, at, score = row[order], at[order], score[order]
        first = np.arange(row.size) - np.searchsorted(row, np.arange(n_rows))[row] < n
        return row[first], at[first], score[first]
    starts = np.cumsum(kept) - kept
    best = by_score_within_rows(score, kept)[:, :n]
    pick = (starts[:, None] + best)[best < kept[:, None]]  # ties at the n-th score may have kept a few more
    return row[pick], at[pick], score[pick]


def by_score_within_rows(score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row's places, best score first, ties in place order (``score``: the rows one
    after the other, ``counts[r]`` each): the rows sorted as the rows of one padded array
    (a stable ``argsort``; the padding sorts last, so row r's first ``counts[r]`` places
    are its own)."""
    starts = np.cumsum(counts) - counts
    of = np.repeat(np.arange(counts.size), counts)
    dense = np.full((counts.size, int(counts.max(initial=0))), np.inf)
    dense[of, np.arange(score.size) - starts[of]] = -score
    return np.argsort(dense, axis=1, kind="stable")


def _recent_matrix(recents: list[list], index: SimilarityIndex, decay: float) -> sp.csr_matrix:
    """The rows' recent items whose list has an entry, as a CSR matrix (row = a history, oldest
    first), each with its signed decayed weight ``decay ** age``, negative for a dislike."""
    lengths = np.fromiter(map(len, recents), dtype=np.intp, count=len(recents))
    flat = list(chain.from_iterable(recents))
    at = np.fromiter(map(index.position.get, map(itemgetter(0), flat), repeat(-1)), dtype=np.intp, count=len(flat))
    disliked = np.fromiter(map(itemgetter(1), flat), dtype=np.float64, count=len(flat)) < 0
    age = np.repeat(np.cumsum(lengths), lengths) - 1 - np.arange(len(flat))
    owner = np.repeat(np.arange(len(recents)), lengths)
    listed = at >= 0
    listed[listed] = _lists_of(index).has_entries[at[listed]]
    powers = np.array([decay ** k for k in range(int(lengths.max(initial=0)))])  # Python's pow, as rank's
    weight = np.where(disliked, -1.0, 1.0)[listed] * powers[age[listed]]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(owner[listed], minlength=len(recents)))])
    return sp.csr_matrix((weight, at[listed].astype(np.int32), indptr.astype(np.int32)),
                         shape=(len(recents), len(index.ids)))


def _weighted(recent: list, decay: float) -> list[tuple[str, float]]:
    last = len(recent) - 1
    return [(entry[0], decay ** (last - j) * (-1.0 if entry[1] < 0 else 1.0)) for j, entry in enumerate(recent)]


class _Lists:
    """A model's blended lists as a scipy CSR matrix (row = an item's position, its list in
    list order)."""

    def __init__(self, index: SimilarityIndex) -> None:
        size = self.size = len(index.ids)
        rows = [index.lists.get(q) for q in index.ids]
        lengths = np.array([0 if r is None else len(r[0]) for r in rows], dtype=np.intp)
        at = np.concatenate([r[0] for r in rows if r is not None] or [np.empty(0, dtype=np.int32)]).astype(np.int32)
        weights = np.concatenate([r[1] for r in rows if r is not None] or [np.empty(0)])
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        self.matrix = sp.csr_matrix((weights, at, indptr), shape=(size, size))
        self.negative = bool((weights < 0).any())
        #: Per item position: whether its list has an entry (a recent item without one adds nothing).
        self.has_entries = lengths > 0
        #: Where the lists have an entry (True each): what a kNN sum that is exactly 0 still reaches.
        self.pattern = sp.csr_matrix((np.ones(weights.size, dtype=bool), at, indptr), shape=(size, size))


_lists_of = built_once_per_model(_Lists)


class _KnnSums:
    """The rows' kNN sums ``K`` (a CSR matrix, rows x item positions: every (row, item)
    pair a row's lists reach, the user's own items too); ``R`` the rows' recent items and
    weights (a CSR matrix, oldest first)."""

    def __init__(self, K: sp.csr_matrix, R: sp.csr_matrix, lists: _Lists) -> None:
        self.K, self.R, self.lists = K, R, lists

    @classmethod
    def of(cls, R: sp.csr_matrix, index: SimilarityIndex) -> _KnnSums:
        """One sparse product R @ L (``R``: :func:`_recent_matrix`): scipy adds each row's
        products in R's stored order (oldest first), as ``rank``'s ``bincount`` does, so the
        sums are the same floats."""
        lists = _lists_of(index)
        K = R @ lists.matrix
        if lists.negative or (R.data < 0).any():  # a sum can be exactly 0: scipy drops it, rank keeps it
            K = cls._with_zero_sums(K, R, lists)
        return cls(K, R, lists)

    @staticmethod
    def _with_zero_sums(K, R, lists: _Lists):
        """``K`` with an explicit 0 for every (row, item) the lists reach whose sum is 0."""
        if csr_matmat_maxnnz is not None and K.nnz == _structural_nnz(R, lists.matrix):
            return K  # none was dropped (known without multiplying the patterns)
        pattern = sp.csr_matrix((np.ones(R.data.size, dtype=bool), R.indices, R.indptr), shape=R.shape) @ lists.pattern
        if pattern.nnz == K.nnz:
            return K
        K.sort_indices()
        pattern.sort_indices()
        size = K.shape[1]
        k_keys = np.repeat(np.arange(K.shape[0], dtype=np.int64), np.diff(K.indptr)) * size + K.indices
        p_keys = np.repeat(np.arange(K.shape[0], dtype=np.int64), np.diff(pattern.indptr)) * size + pattern.indices
        data = np.zeros(pattern.nnz)
        data[np.searchsorted(p_keys, k_keys)] = K.data
        return sp.csr_matrix((data, pattern.indices, pattern.indptr), shape=K.shape)

    def best(self, excludes: list[set], index: SimilarityIndex, w_pop: float, n: int):
        """Each row's best ``n`` kNN candidates (not the user's own items), scored as ``rank``
        scores them: ``(row, position, score)`` row after row, each best first, then each
        row's scale (its largest sum; 1 where none is positive) and candidates scored
        (:func:`ranking.kernels.best_of_rows`)."""
        sizes = np.fromiter(map(len, excludes), dtype=np.intp, count=len(excludes))
        excluded_at = np.fromiter(map(index.position.get, chain.from_iterable(excludes), repeat(-1)), dtype=np.intp,
                                  count=int(sizes.sum()))
        excluded_indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.intp)
        K = self.K
        return best_of_rows(K.indptr, K.indices, K.data, excluded_indptr, excluded_at, index.prior_at, float(w_pop), n,
                            len(index.ids))

    @property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """``(row, position)`` of every sum, the user's own items too."""
        return np.repeat(np.arange(self.K.shape[0], dtype=np.intp), np.diff(self.K.indptr)), self.K.indices

    def because(self, row: np.ndarray, at: np.ndarray, ids: np.ndarray) -> list[str | None]:
        """For each listed (row, item), ``row`` grouped: the recent item whose weighted
        similarity to it is the largest (the first on a tie), or None (no positive part; a
        popular extra). ``ids``: the model's item names by position."""
        R, L = self.R, self.lists.matrix
        if not row.size or not R.nnz:
            return [None] * row.size
        bounds = np.searchsorted(row, np.arange(R.shape[0] + 1))
        who = main_contributors(R.indptr, R.indices, R.data, L.indptr, L.indices, L.data, bounds, at, self.lists.size)
        out = np.full(row.size, None, dtype=object)
        won = who >= 0
        out[won] = ids[R.indices[who[won]]]
        return out.tolist()


def _structural_nnz(A: sp.csr_matrix, B: sp.csr_matrix) -> int:
    """How many (row, column) pairs ``A @ B`` reaches, zero sums included: the size scipy
    reserves for the product (its first pass, on the patterns only: a sixth of the product's
    time, where multiplying the patterns costs as much as the product)."""
    dtype = B.indptr.dtype
    return int(csr_matmat_maxnnz(A.shape[0], B.shape[1], A.indptr.astype(dtype, copy=False),
                                 A.indices.astype(dtype, copy=False), B.indptr, B.indices.astype(dtype, copy=False)))


def _popular_extras(ranker: DefaultRanker, knn: _KnnSums, excludes: list[set], index: SimilarityIndex,
                    w_row: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(row, position)`` of the popular items each row adds as candidates (as ``rank``
    walks ``index.popular``): of the first ``n_pop`` popular items the user did not have,
    those the kNN part did not score, the first ``n``; none where ``w_row`` is 0."""
    popular = index.popular
    if not popular:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    n_rows, width = len(excludes), len(popular)
    rank_of = {q: i for i, q in enumerate(popular)}
    had = np.zeros((n_rows, width), dtype=bool)
    for r, exclude in enumerate(excludes):
        ranks = [i for i in map(rank_of.get, exclude) if i is not None] if len(exclude) < width else \
            [i for i, q in enumerate(popular) if q in exclude]
        had[r, ranks] = True
    popular_at = np.array([index.position[q] for q in popular], dtype=np.intp)
    rank_at = np.full(len(index.ids), -1, dtype=np.intp)
    rank_at[popular_at] = np.arange(width)
    touched = np.zeros((n_rows, width), dtype=bool)
    knn_row, knn_at = knn.pairs  # the user's own items among them too: ``had`` leaves those out anyway
    in_popular = rank_at[knn_at] >= 0
    touched[knn_row[in_popular], rank_at[knn_at[in_popular]]] = True
    walked = np.cumsum(~had, axis=1)
    take = ~had & (walked <= ranker.n_pop) & ~touched
    take &= np.cumsum(take, axis=1) <= n
    take &= (w_row > 0)[:, None]
    rows, ranks = np.nonzero(take)
    return rows.astype(np.intp), popular_at[ranks]
