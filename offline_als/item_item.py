"""Item-item weights learnt from interactions: the sources behind the strong baselines.

Pure numpy/scipy on a users x items matrix (rows: users, columns: items, both indexed
0..n-1 by the caller), no Faust and no ids:

- :func:`sequential_rules`: directional weights, "after i, people went to j"
  (Ludewig & Jannach, 2018): w[i, j] = sum over users of 1/gap for every j that follows
  i within ``steps`` interactions of that user's time-ordered sequence.
- :func:`ease`: EASE (Steck, WWW 2019), the closed-form item-item regression
  B = I - P / diag(P), P = (X^T X + lambda I)^-1, diag(B) = 0, on a subset of columns.
- :func:`rp3beta`: RP3beta (Paudel et al., 2017), the 3-step random walk
  item -> user -> item with transition probabilities raised to ``alpha``, each target
  divided by its popularity to the power ``beta``, the top-``k`` per item kept.

A user's score of item j is then ``x_u . W[:, j]`` (x_u the user's history vector).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp


def sequential_rules(sequences: Iterable[Sequence[int]], n_items: int, steps: int = 10) -> sp.csr_matrix:
    """Directional rule weights, ``W[i, j]``: how strongly j follows i.

    Parameters
    ----------
    sequences : iterable of sequences of int
        Each user's items in time order (repeats allowed: each position counts).
    n_items : int
        The number of items (columns of the result).
    steps : int
        How far after i a j still counts; a j ``gap`` positions later adds ``1 / gap``.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``n_items x n_items``, float64; a pair of one item with itself counts too (the
        caller decides whether a repeat is a recommendation).
    """
    rows, cols, vals = [], [], []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for gap in range(1, min(steps, len(seq) - 1) + 1):
            rows.append(seq[:-gap])
            cols.append(seq[gap:])
            vals.append(np.full(len(seq) - gap, 1.0 / gap))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float64)
    W = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_items, n_items), dtype=np.float64)
    return W.tocsr()  # duplicates summed


def popular_columns(X: sp.spmatrix, limit: int, recency: np.ndarray | None = None) -> np.ndarray:
    """The (at most ``limit``) columns with the most users, sorted by index; ties go to
    the higher ``recency`` (e.g. each item's last interaction time), then the lower index."""
    users = np.asarray((X > 0).sum(axis=0)).ravel()
    if users.size <= limit:
        return np.arange(users.size)
    recency = np.zeros(users.size) if recency is None else np.asarray(recency, dtype=np.float64)
    order = np.lexsort((np.arange(users.size), -recency, -users))
    return np.sort(order[:limit])


def ease(X: sp.spmatrix, lam: float, dtype=np.float64, block: int = 1024) -> np.ndarray:
    """EASE's item-item matrix ``B`` (dense, ``n x n``, zero diagonal) for the columns of ``X``.

    ``B = I - P / diag(P)`` with ``P = (X^T X + lam I)^-1``, the closed-form solution of
    ``min |X - X B|^2 + lam |B|^2`` subject to ``diag(B) = 0`` (Steck, 2019). ``dtype``
    float32 halves the memory and the time (the penalty keeps the system well conditioned).
    """
    from scipy.linalg import lapack

    potrf, potri = (lapack.spotrf, lapack.spotri) if dtype == np.float32 else (lapack.dpotrf, lapack.dpotri)
    X = sp.csr_matrix(X, dtype=dtype)
    G = (X.T @ X).toarray()
    G[np.diag_indices_from(G)] += lam
    # G is symmetric positive definite: Cholesky and its inverse (potrf + potri) take a
    # third of the work of a general inverse; potri fills the upper triangle only.
    factor, info = potrf(G, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"X^T X + {lam} I is not positive definite (potrf info {info})")
    P, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"cannot invert X^T X + {lam} I (potri info {info})")
    _mirror_upper(P, block)
    # In place: an n x n temporary of a 12,000-item fit is 576 MB and as slow as the
    # inverse. LAPACK hands P back in column order; P is symmetric, so its transpose is
    # the same matrix in row order, which row gathers (a user's items) read fast.
    B = P.T if not P.flags.c_contiguous else P
    B /= -np.diag(B).copy()
    B[np.diag_indices_from(B)] = 0.0
    return B


def _mirror_upper(P: np.ndarray, block: int) -> None:
    """Copy the upper triangle of the square ``P`` onto its lower one, ``block`` rows at a time."""
    for start in range(0, P.shape[0], block):
        stop = min(start + block, P.shape[0])
        P[start:stop, :start] = P[:start, start:stop].T
        diagonal = P[start:stop, start:stop]
        lower = np.tril_indices(stop - start, -1)
        diagonal[lower] = diagonal.T[lower]


def rp3beta(X: sp.spmatrix, alpha: float = 1.0, beta: float = 0.5, k: int = 200,
            block: int = 2048) -> sp.csr_matrix:
    """RP3beta's item-item matrix: ``W[i, j] = sum_u P(u|i)^alpha P(j|u)^alpha / pop(j)^beta``,
    the top ``k`` of each row kept, no self loops.

    ``P(u|i)`` is ``X[u, i]`` over item i's column sum, ``P(j|u)`` is ``X[u, j]`` over
    user u's row sum, ``pop(j)`` is item j's number of users.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    X.eliminate_zeros()
    user_sums = np.asarray(X.sum(axis=1)).ravel()
    item_sums = np.asarray(X.sum(axis=0)).ravel()
    p_ju = sp.csr_matrix(sp.diags(1.0 / np.where(user_sums > 0, user_sums, 1.0)) @ X)  # users x items: P(j|u)
    p_ui = sp.csr_matrix((X @ sp.diags(1.0 / np.where(item_sums > 0, item_sums, 1.0))).T)  # items x users: P(u|i)
    p_ju.data **= alpha
    p_ui.data **= alpha
    pop = np.asarray((X > 0).sum(axis=0)).ravel().astype(np.float64)
    p_ju = sp.csr_matrix(p_ju @ sp.diags(1.0 / np.where(pop > 0, pop, 1.0) ** beta))
    # Row blocks: a heavy user's items pair with each other, so the whole product can be
    # far larger than its top-k part; only the top-k of each block is kept.
    blocks = []
    for start in range(0, X.shape[1], block):
        W = sp.csr_matrix(p_ui[start:start + block] @ p_ju)
        W.setdiag(0.0, k=start)  # the block's rows start at item ``start``: no self loops
        W.eliminate_zeros()
        blocks.append(top_k_per_row(W, k))
    return sp.csr_matrix(sp.vstack(blocks, format="csr")) if blocks else sp.csr_matrix((0, 0))


def top_k_per_row(W: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row (ties: the lower column)."""
    W = sp.csr_matrix(W)
    indptr, indices, data = W.indptr, W.indices, W.data
    keep = np.zeros(data.size, dtype=bool)
    for row in range(W.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        if end - start <= k:
            keep[start:end] = True
            continue
        order = np.lexsort((indices[start:end], -data[start:end]))[:k]
        keep[start + order] = True
    out = sp.csr_matrix((data[keep], indices[keep], np.concatenate(([0], np.cumsum(
        [keep[indptr[r]:indptr[r + 1]].sum() for r in range(W.shape[0])])))), shape=W.shape)
    out.sort_indices()
    return out


def top_k_dense(B: np.ndarray, k: int, block: int = 1024, *, negative: int = 0,
                n_threads: int = 2) -> sp.csr_matrix:
    """:func:`top_k_per_row` of a dense matrix, positive entries only, without making it
    sparse first (half of a 12,000-item EASE matrix is positive: 72 million entries);
    with ``negative``, each row's ``negative`` most negative entries too. Blocks of rows
    on ``n_threads`` threads (numpy's partition releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    n_rows, n_cols = B.shape
    k, negative = min(k, n_cols), min(negative, n_cols)
    if n_rows == 0 or n_cols == 0 or k + negative == 0:
        return sp.csr_matrix((n_rows, n_cols))
    # One partition per row puts the `negative` smallest first and the `k` largest last.
    kth = sorted(({n_cols - k} if k else set()) | ({negative - 1} if negative else set()))

    def block_top(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        part = B[start:start + block]
        order = np.argpartition(part, kth, axis=1)
        top, bottom = order[:, n_cols - k:], order[:, :negative]
        rows, cols, vals = [], [], []
        for chosen, sign in ((top, 1.0), (bottom, -1.0)):
            values = np.take_along_axis(part, chosen, axis=1)
            keep = sign * values > 0  # a row's top is its positive entries, its bottom its negative ones
            rows.append(np.nonzero(keep)[0] + start)
            cols.append(chosen[keep])
            vals.append(values[keep])
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

    with ThreadPoolExecutor(max(1, n_threads)) as pool:
        parts = list(pool.map(block_top, range(0, n_rows, block)))
    rows, cols, vals = (np.concatenate(x) for x in zip(*parts, strict=True))
    out = sp.csr_matrix((vals, (rows, cols)), shape=(n_rows, n_cols))
    out.sort_indices()
    return out


__all__ = ["ease", "popular_columns", "rp3beta", "sequential_rules", "top_k_dense", "top_k_per_row"]
