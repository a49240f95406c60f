"""The batch rankers' per-row loops, compiled (numba).

A batch's rows are a few hundred histories of tens to about a thousand candidates each.
numpy can treat them all at once only with passes over every candidate of every row
(a rows x items mark, a padded array, sorts of the whole batch) or with a Python loop
over the rows (a partition per row): either way most of the time went to numpy's call
overhead and to passes whose results were mostly thrown away (``docs/RESULTS.md``).
These loops walk each row once, in the order the arrays already have.

They compute the very floats the numpy code computed (the same operations in the same
order; numba does not reorder or fuse floating-point operations unless asked), so the
batch rankers still give exactly what the per-history rankers give
(``tests/unit/test_batch_ranker.py``). ``cache=True``: compiled once per machine into
``__pycache__``, loaded in milliseconds after that.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def best_of_rows(indptr, indices, sums, excluded_indptr, excluded_at, prior_at, w_pop, n, n_items):
    """Each row's best ``n`` kNN candidates, as the default ranker ranks them.

    Parameters
    ----------
    indptr, indices, sums : np.ndarray
        The rows' kNN sums as a CSR matrix (rows x item positions; any order within a row).
    excluded_indptr, excluded_at : np.ndarray
        Per row, the positions of the items it must not list (CSR-like; -1: not in the model).
    prior_at, w_pop : np.ndarray, float
        Each item's popularity prior and its weight (``w_pop`` 0: no prior is added).
    n : int
        List length.
    n_items : int
        Items in the model.

    Returns
    -------
    row, at, score : np.ndarray
        The best ``n`` of every row, row after row, each row best first (ties by item
        position, which is id order); ``score`` = sum / the row's scale + ``w_pop`` x prior.
    scale : np.ndarray
        Per row, its largest kNN sum (at least 0; 1 where that is 0).
    scored : np.ndarray
        Per row, its candidates (sums of items it may list).
    """
    n_rows = indptr.size - 1
    mark = np.zeros(n_items, dtype=np.bool_)
    scale = np.ones(n_rows)
    scored = np.zeros(n_rows, dtype=np.intp)
    out_row = np.empty(min(indices.size, n_rows * n), dtype=np.intp)
    out_at = np.empty(out_row.size, dtype=np.intp)
    out_score = np.empty(out_row.size)
    heap_score = np.empty(n)
    heap_at = np.empty(n, dtype=np.intp)
    m = 0
    for r in range(n_rows):
        for e in range(excluded_indptr[r], excluded_indptr[r + 1]):
            if excluded_at[e] >= 0:
                mark[excluded_at[e]] = True
        c = 0
        largest = 0.0
        for e in range(indptr[r], indptr[r + 1]):
            if not mark[indices[e]]:
                largest = max(largest, sums[e])
                c += 1
        scored[r] = c
        if largest != 0.0:
            scale[r] = largest
        size = 0  # the row's best so far: a heap of at most n, its worst at the root
        for e in range(indptr[r], indptr[r + 1]):
            q = indices[e]
            if mark[q]:
                continue
            x = sums[e] / scale[r]
            if w_pop > 0.0:
                x = x + w_pop * prior_at[q]
            if size < n:
                heap_score[size], heap_at[size] = x, q
                _sift_up(heap_score, heap_at, size)
                size += 1
            elif _ranks_before(x, q, heap_score[0], heap_at[0]):
                heap_score[0], heap_at[0] = x, q
                _sift_down(heap_score, heap_at, 0, size)
        for e in range(excluded_indptr[r], excluded_indptr[r + 1]):
            if excluded_at[e] >= 0:
                mark[excluded_at[e]] = False
        for j in range(size - 1, -1, -1):  # the worst first, to the row's last place
            out_row[m + j], out_at[m + j], out_score[m + j] = r, heap_at[0], heap_score[0]
            heap_score[0], heap_at[0] = heap_score[j], heap_at[j]
            _sift_down(heap_score, heap_at, 0, j)
        m += size
    return out_row[:m], out_at[:m], out_score[:m], scale, scored


@numba.njit(cache=True, inline="always")
def _ranks_before(score_a, at_a, score_b, at_b):
    """The default ranker's order: the higher score first, then the lower item position."""
    return score_a > score_b or (score_a == score_b and at_a < at_b)


@numba.njit(cache=True, inline="always")
def _sift_up(heap_score, heap_at, i):
    """Move entry i of a heap (the worst at the root) up to its place."""
    while i > 0:
        parent = (i - 1) // 2
        if not _ranks_before(heap_score[parent], heap_at[parent], heap_score[i], heap_at[i]):
            return
        heap_score[parent], heap_score[i] = heap_score[i], heap_score[parent]
        heap_at[parent], heap_at[i] = heap_at[i], heap_at[parent]
        i = parent


@numba.njit(cache=True, inline="always")
def _sift_down(heap_score, heap_at, i, size):
    """Move entry i of a heap of ``size`` entries (the worst at the root) down to its place."""
    while True:
        worst, left = i, 2 * i + 1
        for child in (left, left + 1):
            if child < size and _ranks_before(heap_score[worst], heap_at[worst], heap_score[child], heap_at[child]):
                worst = child
        if worst == i:
            return
        heap_score[worst], heap_score[i] = heap_score[i], heap_score[worst]
        heap_at[worst], heap_at[i] = heap_at[i], heap_at[worst]
        i = worst


@numba.njit(cache=True, nogil=True)
def main_contributors(R_indptr, R_indices, R_data, L_indptr, L_indices, L_data, bounds, listed_at, n_items):
    """For each listed (row, item): the row's recent item whose weighted similarity to it
    is the largest positive one (the oldest on a tie), as its entry in R; -1: none.

    ``R``: the rows' recent items and weights (CSR, each row oldest first); ``L``: the
    model's lists (CSR by item position); row r's listed items are
    ``listed_at[bounds[r]:bounds[r + 1]]``.
    """
    slot = np.full(n_items, -1, dtype=np.intp)
    largest = np.zeros(listed_at.size)
    who = np.full(listed_at.size, -1, dtype=np.intp)
    for r in range(bounds.size - 1):
        for i in range(bounds[r], bounds[r + 1]):
            slot[listed_at[i]] = i
        for e in range(R_indptr[r], R_indptr[r + 1]):
            j, w = R_indices[e], R_data[e]
            for t in range(L_indptr[j], L_indptr[j + 1]):
                i = slot[L_indices[t]]
                if i >= 0:
                    part = w * L_data[t]
                    if part > largest[i]:  # strictly: the older entry keeps a tie
                        largest[i] = part
                        who[i] = e
        for i in range(bounds[r], bounds[r + 1]):
            slot[listed_at[i]] = -1
    return who


@numba.njit(cache=True, nogil=True)
def source_sums(bounds, at, entry_bounds, recent_at, signed, rated, indptr, neighbour_at, values, source, n_lists,
                n_sources, blend_weight, n_items):
    """The learned ranker's sums over the recent items' lists, for every stacked candidate
    (``ranking.features._SourceFeatures``).

    Row r's candidates are ``bounds[r]:bounds[r + 1]`` (``at``: their item positions, -1
    unknown), its recent entries ``entry_bounds[r]:entry_bounds[r + 1]``, oldest first
    (``recent_at``: their positions; ``signed``: ``decay ** age``, negative for a dislike;
    ``rated``: the same with the rating, scaled by the row's largest). Item p's list
    entries are ``indptr[p]:indptr[p + 1]`` of ``neighbour_at``, ``values`` and ``source``
    (the list's number; the first ``n_sources`` are the model's sources, each blended with
    ``blend_weight[source]``).

    Returns
    -------
    knn, own : np.ndarray
        Per list and candidate, the sum of ``signed`` x value over the row's entries, and
        of the values of the row's newest entry alone.
    support : np.ndarray
        Per candidate, the source-list entries that name it.
    knn_rated : np.ndarray
        Per candidate, the sum of ``rated`` x blended value.
    contributor : np.ndarray
        Per candidate, the recent entry whose blended part (``signed`` x its blended sum)
        is the largest positive one, the oldest on a tie; -1: none.
    """
    n = at.size
    knn = np.zeros((n_lists, n))
    own = np.zeros((n_lists, n))
    support = np.zeros(n, dtype=np.intp)
    knn_rated = np.zeros(n)
    largest = np.zeros(n)
    contributor = np.full(n, -1, dtype=np.intp)
    slot = np.full(n_items, -1, dtype=np.intp)
    pair = np.zeros(n)  # one entry's blended sum per candidate
    touched = np.empty(n, dtype=np.intp)
    seen = np.zeros(n, dtype=np.bool_)
    for r in range(bounds.size - 1):
        for c in range(bounds[r], bounds[r + 1]):
            if at[c] >= 0:
                slot[at[c]] = c
        newest = entry_bounds[r + 1] - 1
        for e in range(entry_bounds[r], entry_bounds[r + 1]):
            p = recent_at[e]
            if p < 0:
                continue
            k = 0
            for t in range(indptr[p], indptr[p + 1]):
                c = slot[neighbour_at[t]]
                if c < 0:
                    continue
                s, v = source[t], values[t]
                knn[s, c] += signed[e] * v
                if e == newest:
                    own[s, c] += v
                if s < n_sources:
                    support[c] += 1
                if blend_weight[s] != 0.0:
                    b = v * blend_weight[s]
                    knn_rated[c] += rated[e] * b
                    pair[c] += b
                    if not seen[c]:
                        seen[c] = True
                        touched[k] = c
                        k += 1
            for i in range(k):
                c = touched[i]
                part = signed[e] * pair[c]
                if part > largest[c]:  # strictly: the older entry keeps a tie
                    largest[c] = part
                    contributor[c] = e
                pair[c] = 0.0
                seen[c] = False
        for c in range(bounds[r], bounds[r + 1]):
            if at[c] >= 0:
                slot[at[c]] = -1
    return knn, own, support, knn_rated, contributor


def warm_up() -> None:
    """Compile the loops for the types a batch passes them (or load them from the cache),
    so that a worker's first batch does not wait for the compiler (seconds)."""
    i32, i64 = np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.intp)
    bounds, weights = np.array([0, 1], dtype=np.intp), np.ones(1)
    best_of_rows(i32, np.empty(0, dtype=np.int32), np.empty(0), i64, np.empty(0, dtype=np.intp), weights, 0.0, 1, 1)
    main_contributors(bounds.astype(np.int32), i32, weights, bounds.astype(np.int32), i32, weights, bounds, i64, 1)
    source_sums(bounds, i64, bounds, i64, weights, weights, bounds, i32, weights, np.zeros(1, dtype=np.int8), 1, 1,
                weights, 1)
