"""The item neighbour lists the model worker publishes beside the factor cosines.

Each source answers "which items go with item i" in its own way, all fitted from the
model worker's store (the latest interaction of every user-item pair, with its time):

- ``related``: co-occurrence cosine, "users who had i also had j" (symmetric);
- ``sequential``: sequential rules, "after i, people went to j" (directional;
  :func:`offline_als.item_item.sequential_rules` over each user's items in time order);
- ``learned``: learnt item-item weights that discount what is merely popular: EASE
  (float32) on the items at least two users had when they are at most
  :data:`EASE_MAX_ITEMS`, RP3beta beyond (a dense EASE of 100,000 items would take 40 GB).

Every list is the item's top ``m`` by weight; EASE's lists also hold the item's ``m``
most negative weights (what having i argues against: EASE's own score subtracts them,
and without them its lists rank measurably worse). Each source is scaled so that the
median of its lists' best weights is 1: the default ranker blends the
sources with weights (``ranking.model.Blend``), which only mean something when the
sources speak on one scale.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ranking.model import SOURCES

from .item_item import ease, rp3beta, sequential_rules, top_k_dense, top_k_per_row
from .similarity import cooccurrence_neighbours

#: EASE's matrix is dense (8 bytes x items^2 while it is fitted): beyond this, RP3beta.
EASE_MAX_ITEMS = 12_000


@dataclass(frozen=True)
class SourceParams:
    """How the sources are fitted (fixed, not tuned per data set: the blend weighs them).

    Parameters
    ----------
    m : int
        Neighbours kept per item and source.
    steps : int
        Sequential rules: how far after i a j still counts (1/gap).
    ease_lambda : float
        EASE's L2 penalty (the model worker chooses it per shop among
        ``offline_als.selection.LAMBDAS``; this is where the search starts).
    rp3_alpha, rp3_beta : float
        RP3beta's walk exponent and popularity penalty (catalogues beyond EASE's cap).
    """

    m: int = 50
    steps: int = 10
    ease_lambda: float = 1000.0
    rp3_alpha: float = 1.0
    rp3_beta: float = 0.5


def tie_breaks(T: sp.csr_matrix) -> np.ndarray:
    """A key per stored pair of ``T`` that orders pairs of equal time, at random (seeded).

    Not by column: a shop's clock can be coarse (three quarters of MovieLens-100k's
    ratings share their second with another of the same user), and the order of equal
    times is unknown. Ordered by item id, the sequential rules would learn the ids' order
    and a validation replayed in that order would reward them for it."""
    return np.random.default_rng(0).random(sp.csr_matrix(T).nnz)


def sequences_by_time(T: sp.csr_matrix) -> list[np.ndarray]:
    """Each user's items (column indices) in the order of ``T``'s times (users x items,
    the time of the pair's latest interaction; ties: :func:`tie_breaks`)."""
    T = sp.csr_matrix(T)
    ties, out = tie_breaks(T), []
    for u in range(T.shape[0]):
        lo, hi = T.indptr[u], T.indptr[u + 1]
        out.append(T.indices[lo:hi][np.lexsort((ties[lo:hi], T.data[lo:hi]))])
    return out


def fit_sources(T: sp.csr_matrix, item_ids: Sequence[str], params: SourceParams | None = None
                ) -> dict[str, dict[str, dict[str, float]]]:
    """``{source: {item: {neighbour: weight}}}`` for :data:`SOURCES`, each list best first.

    ``T`` is users x items with the time of each pair's latest interaction (a stored
    pair is an interaction, whatever its rating: the sources say what goes together).
    """
    params = params or SourceParams()
    T = sp.csr_matrix(T)
    X = sp.csr_matrix((np.ones(T.nnz), T.indices, T.indptr), shape=T.shape)
    ids = [str(q) for q in item_ids]
    n = len(ids)
    related = cooccurrence_neighbours(X, ids, params.m)
    rules = sequential_rules(sequences_by_time(T), n, params.steps)
    rules.setdiag(0.0)  # a pair of the same item: the user had it, it is never listed again
    return {"related": _scaled(related),
            "sequential": _scaled_lists(top_k_per_row(_positive(rules), params.m), ids),
            "learned": fit_learned(T, ids, params)}


def ease_columns(T: sp.spmatrix) -> np.ndarray | None:
    """The items EASE learns from (those at least two users had: an item of one user
    teaches it nothing about pairs, and the long tail is most of a catalogue while the
    fit's cost is cubic), or None when they are more than :data:`EASE_MAX_ITEMS` (the
    ``learned`` source is then RP3beta)."""
    columns = np.flatnonzero(sp.csr_matrix(T).getnnz(axis=0) >= 2)
    return columns if columns.size <= EASE_MAX_ITEMS else None


def fit_learned(T: sp.csr_matrix, item_ids: Sequence[str], params: SourceParams) -> dict[str, dict[str, float]]:
    """The ``learned`` source alone (scaled lists): EASE's ``m`` largest and ``m`` most
    negative weights per item, or RP3beta's (never negative) beyond :data:`EASE_MAX_ITEMS` items."""
    T = sp.csr_matrix(T)
    X = sp.csr_matrix((np.ones(T.nnz), T.indices, T.indptr), shape=T.shape)
    columns = ease_columns(X)
    if columns is not None:
        B = top_k_dense(ease(X[:, columns], params.ease_lambda, dtype=np.float32), params.m, negative=params.m)
        rows = columns[np.repeat(np.arange(columns.size), np.diff(B.indptr))]
        learned = sp.csr_matrix((B.data.astype(np.float64), (rows, columns[B.indices])), shape=(X.shape[1],) * 2)
    else:
        learned = top_k_per_row(_positive(rp3beta(X, params.rp3_alpha, params.rp3_beta, params.m)), params.m)
    return _scaled_lists(learned, [str(q) for q in item_ids])


def _positive(W: sp.spmatrix) -> sp.csr_matrix:
    W = sp.csr_matrix(W)
    W.data[W.data < 0] = 0.0
    W.eliminate_zeros()
    return W


def _scaled_lists(W: sp.csr_matrix, ids: list[str], decimals: int = 6) -> dict[str, dict[str, float]]:
    """Each row's entries as ``{neighbour: weight}``, best first (ties by id), divided by
    the median of the rows' best positive weights (:func:`_scaled`, done on the arrays)."""
    W = sp.csr_matrix(W)
    W.eliminate_zeros()
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    if not rows.size:
        return {}
    best = np.full(W.shape[0], -np.inf)
    np.maximum.at(best, rows, W.data)
    scale = float(np.median(best[best > 0])) if (best > 0).any() else 1.0
    id_array = np.array(ids, dtype=object)
    id_rank = np.argsort(np.argsort(id_array))
    order = np.lexsort((id_rank[W.indices], -W.data, rows))
    rows, names, weights = rows[order], id_array[W.indices[order]], W.data[order] / scale
    weights = [round(w, decimals) for w in weights.tolist()]
    bounds = np.flatnonzero(np.diff(rows)) + 1
    starts, ends = np.r_[0, bounds], np.r_[bounds, rows.size]
    names = names.tolist()
    return {ids[rows[a]]: dict(zip(names[a:b], weights[a:b], strict=True))
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)}


def _scaled(lists: dict[str, dict[str, float]], decimals: int = 6) -> dict[str, dict[str, float]]:
    """``lists`` divided by the median of their best positive weights (so that it is 1),
    in place (a large catalogue's lists are millions of entries: no second copy)."""
    best = [b for neigh in lists.values() if neigh and (b := max(neigh.values())) > 0]
    scale = float(np.median(best)) if best else 1.0
    for neigh in lists.values():
        for q, w in neigh.items():
            neigh[q] = round(w / scale, decimals)
    return lists


__all__ = ["EASE_MAX_ITEMS", "SOURCES", "SourceParams", "ease_columns", "fit_learned", "fit_sources",
           "sequences_by_time", "tie_breaks"]
