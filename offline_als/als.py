"""Explicit-feedback Alternating Least Squares on numpy + scipy.sparse.

The model predicts a rating as::

    r_hat(u, i) = global_mean + user_bias[u] + item_bias[i] + user_factors[u] @ item_factors[i]

and is fitted by ALS with *weighted-lambda* regularisation (Zhou et al. 2008, "Large-scale
Parallel Collaborative Filtering for the Netflix Prize"; the formulation Spark MLlib
uses): a user with ``n_u`` ratings gets the ridge term ``reg * n_u * I``, an item with
``n_i`` ratings ``reg * n_i * I``. With biases on, the bias is solved jointly with the
factors, as one more unknown that gets the same ridge term: the item side is augmented
to ``[item_factors, 1]`` when users are solved (the 1 multiplies the user bias), and the
item bias moves to the target ``r - global_mean - item_bias``; and symmetrically.

Why it is fast without a Python loop per user (see ``_HalfStep`` and ``_solve_side``):

* Users with many ratings ("primal" rows) need ``G_u = sum_i v_i v_i^T + reg n_u I``
  and ``b_u = sum_i t_ui v_i``. Users are sorted by rating count and cut into chunks
  of similar counts; a chunk's rated item vectors, zero-padded to its largest count,
  form one dense (users, m, k) array, so every Gram matrix of the chunk comes from one
  batched BLAS product (``einsum``), and one batched solve of the (users, k, k) stack
  solves them all (``_spd_solve``: a Cholesky vectorised across the stack, ~2x faster
  than ``np.linalg.solve`` for these tiny systems; ``solver="numpy"`` uses the latter). (We first built the Gram matrices as the classic
  "indicator CSR @ (items x k*k outer products)" scipy product: exact too, but it has
  to form the outer product of *every* other-side row each half-iteration, which cost
  ~10x more on Rent the Runway's 105k users and ran at ~1 GFLOP/s in scipy.)
* Users with few ratings (``n_u <= dual_max``, default rank; 68% of Rent the Runway
  users have a single rating) are solved in the *dual*: for a user with rating rows A (n_u x k),
  ``(A^T A + lam I)^-1 A^T t == A^T (A A^T + lam I)^-1 t`` (push-through identity), an
  exact n_u x n_u system instead of a k x k one; n_u = 1 is a closed form.
* Chunks bound the temporary memory (millions of users are fine) and run on a small
  thread pool: numpy's BLAS products and batched solve release the GIL.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

log = logging.getLogger("offline_als")

#: Format version written by :meth:`ALS.save`; bump when the file layout changes.
FORMAT_VERSION = 1


def ratings_to_csr(users, items, ratings, shape=None, dtype=np.float32) -> sp.csr_matrix:
    """Build the (users x items) CSR rating matrix that :meth:`ALS.fit` expects.

    scipy would *sum* duplicate (user, item) pairs, which is wrong for ratings, so
    duplicates are resolved here: the last occurrence wins (pass triples in time
    order to keep each user's latest rating of an item).

    Parameters
    ----------
    users, items : array-like of int
        Dense row and column indices (see :class:`offline_als.ids.IdMap`).
    ratings : array-like of float
    shape : (n_users, n_items), optional
        Default: ``(max(users) + 1, max(items) + 1)``.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=dtype)
    if shape is None:
        shape = (int(users.max()) + 1 if users.size else 0, int(items.max()) + 1 if items.size else 0)
    # Keep the last occurrence of each pair: unique() on the reversed keys keeps the
    # first of the reversed order, i.e. the last of the original order.
    key = users * shape[1] + items
    _, first_rev = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - first_rev
    m = sp.csr_matrix((ratings[keep], (users[keep], items[keep])), shape=shape, dtype=dtype)
    m.sort_indices()
    return m


#: Padded entries per primal chunk (bounds the gathered (rows, m, k) array).
_CHUNK_ENTRIES = 1 << 18
#: Rows per chunk: keeps a chunk's Gram matrices cache-sized for the solve.
_CHUNK_ROWS = 4096


@dataclass
class _HalfStep:
    """Precomputed layout of one side (users or items) for repeated solving.

    Rows are permuted once, by rating count descending, so that rows with more than
    ``dual_max`` ratings come first (solved in the primal), then groups of rows with
    exactly m ratings for m = dual_max..1 (solved in the dual), then rows with none.
    Every dual group is a contiguous slice of the CSR data, so its rated columns and
    targets are a plain ``reshape(n_rows, m)``.

    Primal rows are cut into chunks of rows with similar counts (within 3/4 of the
    chunk's largest), padded to the largest: a chunk is then a dense (rows, m, k)
    array of the rated vectors, and all its Gram matrices come from one batched
    product. Padding points at a sentinel: an extra all-zero row of the other side
    (index ``n_other``) and an extra zero target (index ``nnz``), so it adds nothing.
    """

    order: np.ndarray  # permuted position -> original row
    indptr: np.ndarray
    indices: np.ndarray  # columns (the other side's rows), permuted row order
    data: np.ndarray  # ratings minus global mean, permuted row order
    counts: np.ndarray  # ratings per row (permuted order), float32
    primal_chunks: list  # [(row_lo, row_hi, cols (rows, m) int32, entry positions (rows, m))]
    dual_groups: list  # [(m, row_lo, row_hi)]

    @classmethod
    def build(cls, R: sp.csr_matrix, dual_max: int, chunk_entries: int = _CHUNK_ENTRIES) -> _HalfStep:
        counts = np.diff(R.indptr)
        # Stable sort by count descending: deterministic and groups equal counts.
        order = np.argsort(-counts, kind="stable")
        Rp = R[order]
        Rp.sort_indices()
        counts_p = counts[order]
        neg_counts = -counts_p  # ascending, for searchsorted
        n_primal = int(np.count_nonzero(counts_p > dual_max))
        n_other, nnz = R.shape[1], Rp.nnz

        chunks = []
        lo = 0
        while lo < n_primal:
            cmax = int(counts_p[lo])
            # Rows down to 3/4 of the largest count (so padding wastes < 25%)...
            hi = int(np.searchsorted(neg_counts[:n_primal], -((3 * cmax + 3) // 4), side="right"))
            # ...and no more padded entries than the budget (at least one row).
            hi = max(lo + 1, min(hi, lo + chunk_entries // cmax, lo + _CHUNK_ROWS))
            pos = Rp.indptr[lo:hi, None] + np.arange(cmax)
            valid = np.arange(cmax) < counts_p[lo:hi, None]
            pos = np.where(valid, pos, nnz)  # nnz -> the zero target sentinel
            cols = np.where(valid, Rp.indices[np.minimum(pos, nnz - 1)], n_other)
            pos_dtype = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
            chunks.append((lo, hi, cols.astype(np.int32), pos.astype(pos_dtype)))
            lo = hi

        groups = []
        for m in range(dual_max, 0, -1):
            lo = int(np.searchsorted(neg_counts, -m, side="left"))
            hi = int(np.searchsorted(neg_counts, -m, side="right"))
            # Cache-sized chunks (also shares big groups between threads).
            n_chunks = -(-(hi - lo) // _CHUNK_ROWS)
            for k in range(n_chunks):
                a = lo + (hi - lo) * k // n_chunks
                b = lo + (hi - lo) * (k + 1) // n_chunks
                if b > a:
                    groups.append((m, a, b))
        return cls(
            order=order,
            indptr=Rp.indptr,
            indices=Rp.indices,
            data=Rp.data.astype(np.float32, copy=False),
            counts=counts_p.astype(np.float32),
            primal_chunks=chunks,
            dual_groups=groups,
        )


class ALS:
    """Explicit-feedback matrix factorisation by Alternating Least Squares.

    Parameters
    ----------
    rank : int, default 20
        Number of latent factors.
    reg : float, default 1.0
        Regularisation strength lambda (> 0), weighted by each row's rating count
        (weighted-lambda, as in Spark MLlib).
    iterations : int, default 10
        ALS sweeps (each solves all users, then all items).
    biases : bool, default True
        Fit a bias per user and per item (jointly with the factors, same weighted
        ridge penalty). The global mean is removed in every case, so with
        ``biases=False`` the model is ``global_mean + x_u . y_i``.
    seed : int, default 42
        Seed for the initial item factors; same seed and data give the same model.
    dtype : numpy dtype, default float32
    progress : bool, default True
        Show a tqdm bar over the iterations.
    n_threads : int, optional
        Threads solving chunks of rows in parallel (numpy's gathers, BLAS products
        and the batched solves release the GIL). Default: the CPUs this process may
        use. Results do not depend on it.
    chunk_entries : int, default 262144
        Ratings (padded) handled per chunk of rows; bounds the temporary memory to
        about ``chunk_entries * (rank+1) * 4`` bytes (+ the chunk's Gram matrices)
        per thread, whatever the number of users.
    dual_max : int, optional
        Rows with at most this many ratings are solved in the (exact) dual form.
        Default ``rank`` (measured fastest: the dual m x m system beats the primal
        k x k one up to about m = k). 0 disables it.
    reg_offset : float, default 0.0
        Extension, off by default: the ridge term becomes ``reg * (n + reg_offset) * I``.
        0 is exactly Zhou et al. / Spark. Weighted lambda keeps the penalty-to-data
        ratio the same for every row, so a user with ONE rating is fitted as
        confidently (per rating) as one with a hundred, and overfits it; a positive
        offset (a prior worth ``reg_offset`` pseudo-ratings) shrinks such rows harder
        while barely touching heavy ones. On Rent the Runway (68% one-rating users)
        ``reg_offset=5`` lowers test RMSE (see ``benchmarks/als_bench.py``).
    solver : {"cholesky", "numpy"}, default "cholesky"
        How the stacks of small SPD systems are solved: a Cholesky vectorised across
        the stack (:func:`_spd_solve`, ~2x faster here), or ``np.linalg.solve``
        (LAPACK per matrix). Same solution up to float32 rounding.

    Attributes
    ----------
    user_factors : ndarray of shape (n_users, rank)
    item_factors : ndarray of shape (n_items, rank)
    user_bias : ndarray of shape (n_users,)
        Zeros when ``biases=False``.
    item_bias : ndarray of shape (n_items,)
    global_mean : float
    train_rmse_ : list of float
        Training RMSE after each iteration.
    fit_time_ : float
        Seconds spent in the last :meth:`fit`.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> R = sp.random(50, 40, density=0.2, format="csr", random_state=0) * 4 + 1
    >>> model = ALS(rank=4, iterations=3, progress=False).fit(R)
    >>> model.predict([0, 1], [2, 3]).shape
    (2,)
    """

    def __init__(
        self,
        rank: int = 20,
        reg: float = 1.0,
        iterations: int = 10,
        biases: bool = True,
        seed: int = 42,
        dtype=np.float32,
        progress: bool = True,
        n_threads: int | None = None,
        chunk_entries: int = _CHUNK_ENTRIES,
        dual_max: int | None = None,
        solver: str = "cholesky",
        reg_offset: float = 0.0,
    ) -> None:
        self.rank = rank
        self.reg = reg
        self.iterations = iterations
        self.biases = biases
        self.seed = seed
        self.dtype = dtype
        self.progress = progress
        self.n_threads = n_threads
        self.chunk_entries = chunk_entries
        self.dual_max = dual_max
        self.solver = solver
        self.reg_offset = reg_offset
        # Fitted state (also set by load()).
        self.user_factors = np.zeros((0, rank), dtype=dtype)
        self.item_factors = np.zeros((0, rank), dtype=dtype)
        self.user_bias = np.zeros(0, dtype=dtype)
        self.item_bias = np.zeros(0, dtype=dtype)
        self.global_mean = 0.0
        self.train_rmse_: list[float] = []
        self.fit_time_ = 0.0
        # Filled by load() from the file; save() takes them as arguments.
        self.user_ids: np.ndarray | None = None
        self.item_ids: np.ndarray | None = None
        self.metrics: dict = {}

    def get_params(self) -> dict:
        """Constructor parameters (scikit-learn convention)."""
        names = ["rank", "reg", "iterations", "biases", "seed", "dtype", "progress",
                 "n_threads", "chunk_entries", "dual_max", "solver", "reg_offset"]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        return f"ALS(rank={self.rank}, reg={self.reg}, iterations={self.iterations}, biases={self.biases})"

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    # ------------------------------------------------------------------ fitting
    def fit(self, R: sp.spmatrix) -> ALS:
        """Fit the model to a (users x items) sparse rating matrix.

        Parameters
        ----------
        R : scipy.sparse matrix, shape (n_users, n_items)
            Stored entries are the ratings (any float; an explicitly stored 0 counts as
            a rating of 0, so do not store non-ratings). Duplicates must already be
            resolved (see :func:`ratings_to_csr`). Users or items without ratings get
            zero factors and biases, i.e. they are predicted like unseen ones.

        Returns
        -------
        self
        """
        t_start = time.perf_counter()
        if self.rank < 1:
            raise ValueError("rank must be >= 1")
        if self.solver not in ("cholesky", "numpy"):
            raise ValueError("solver must be 'cholesky' or 'numpy'")
        if self.reg_offset < 0:
            raise ValueError("reg_offset must be >= 0")
        if not self.reg > 0:
            raise ValueError("reg must be > 0 (the per-row systems are singular without it)")
        dtype = np.dtype(self.dtype)
        nnz = R.nnz if sp.issparse(R) else None  # before COO->CSR sums duplicates
        R = sp.csr_matrix(R, dtype=dtype, copy=True)  # copy: we centre it in place
        nnz = R.nnz if nnz is None else nnz
        R.sum_duplicates()  # canonical form (sorted, no duplicates) for the layout
        if R.nnz != nnz:  # scipy summed two ratings of one pair: never what we want
            raise ValueError("R has duplicate (user, item) entries; build it with ratings_to_csr()")
        n_users, n_items = R.shape
        n_threads = max(1, int(self.n_threads or available_cpus()))
        k = self.rank + 1 if self.biases else self.rank  # unknowns per row
        dual_max = self.rank if self.dual_max is None else int(self.dual_max)

        self.global_mean = float(R.data.mean(dtype=np.float64)) if R.nnz else 0.0
        R.data -= dtype.type(self.global_mean)  # every solve works on centred ratings
        users = _HalfStep.build(R, dual_max, self.chunk_entries)
        items = _HalfStep.build(R.T.tocsr(), dual_max, self.chunk_entries)

        # Initial item factors as in Spark: Gaussian vectors scaled to unit length.
        # Users are solved first, so user factors need no initial values.
        rng = np.random.default_rng(self.seed)
        Y = rng.standard_normal((n_items, self.rank)).astype(dtype)
        Y /= np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), dtype.type(1e-12))
        X = np.zeros((n_users, self.rank), dtype=dtype)
        bu = np.zeros(n_users, dtype=dtype)
        bi = np.zeros(n_items, dtype=dtype)

        self.train_rmse_ = []
        with ThreadPoolExecutor(n_threads) as pool:
            bar = tqdm(range(self.iterations), desc="ALS", unit="it", disable=not self.progress)
            for it in bar:
                # Users: design rows [y_i, 1] (the 1 multiplies b_u), target r - mu - c_i.
                sol, _ = self._solve_side(users, _design(Y, self.biases), bi, k, pool)
                X, bu = _split(sol, self.rank, self.biases, bu)
                # Items: design rows [x_u, 1], target r - mu - b_u.
                sol, sse = self._solve_side(items, _design(X, self.biases), bu, k, pool)
                Y, bi = _split(sol, self.rank, self.biases, bi)

                # The item solve returns the squared errors of the updated model on
                # every training rating, so the RMSE costs no extra pass over R.
                rmse = float(np.sqrt(sse / R.nnz)) if R.nnz else 0.0
                self.train_rmse_.append(rmse)
                log.info("ALS iteration %d/%d: train RMSE %.4f", it + 1, self.iterations, rmse)
                bar.set_postfix(rmse=f"{rmse:.4f}")
            bar.close()

        self.user_factors, self.item_factors = X, Y
        self.user_bias, self.item_bias = bu, bi
        self.fit_time_ = time.perf_counter() - t_start
        log.info("ALS fit: %d users x %d items, %d ratings, %.2f s", n_users, n_items, R.nnz, self.fit_time_)
        return self

    def _solve_side(self, side: _HalfStep, D: np.ndarray, other_bias: np.ndarray, k: int, pool):
        """Solve every row of one side given the other side's design matrix ``D``.

        Returns the (n_rows, k) solutions in the side's original row order, and the
        sum of squared training errors of the model after this solve.
        """
        dtype = D.dtype
        n_rows = side.order.size
        # Targets: centred rating minus the other side's bias (zeros without biases).
        t = side.data - other_bias[side.indices] if self.biases else side.data
        # Sentinels for the primal padding: a zero design row and a zero target.
        D_ext = np.vstack([D, np.zeros((1, k), dtype=dtype)])
        t_ext = np.append(t, dtype.type(0))
        out = np.zeros((n_rows, k), dtype=dtype)  # rows without ratings stay 0
        reg = dtype.type(self.reg)
        diag = np.arange(k)
        offset = dtype.type(self.reg_offset)
        solve = _spd_solve if self.solver == "cholesky" else _lapack_solve

        def primal(lo, hi, cols, pos):
            A = D_ext[cols]  # (rows, m, k): each row's rated vectors, zero-padded
            # All Gram matrices sum_i v_i v_i^T at once. optimize=True lets einsum use
            # BLAS; it measured ~5x faster than np.matmul on these small stacks.
            G = np.einsum("nmi,nmj->nij", A, A, optimize=True)
            G[:, diag, diag] += (reg * (side.counts[lo:hi] + offset))[:, None]  # weighted lambda
            rhs = np.einsum("nmk,nm->nk", A, t_ext[pos])  # sum_i t_ui v_i
            x = solve(G, rhs)
            out[side.order[lo:hi]] = x
            # Training residuals come free here: A is already gathered (padding has
            # t = 0 and A = 0, so it adds 0).
            err = t_ext[pos] - np.einsum("nmk,nk->nm", A, x)
            return float(np.dot(err.ravel(), err.ravel()))

        def dual(m, lo, hi):
            a, b = side.indptr[lo], side.indptr[hi]
            cols = side.indices[a:b].reshape(hi - lo, m)
            tt = t[a:b].reshape(hi - lo, m)
            A = D[cols]  # (rows, m, k): the rated other-side vectors of each row
            lam = reg * (dtype.type(m) + offset)
            if m == 1:
                # (a a^T + lam I) x = t a  =>  x = a * t / (|a|^2 + lam)
                a0 = A[:, 0, :]
                coef = tt[:, 0] / (np.einsum("nk,nk->n", a0, a0) + lam)
                x = a0 * coef[:, None]
            else:
                K = np.einsum("nik,njk->nij", A, A)  # (rows, m, m)
                K[:, np.arange(m), np.arange(m)] += lam
                alpha = solve(K, tt)  # (rows, m)
                x = np.einsum("nmk,nm->nk", A, alpha)  # A^T alpha
            out[side.order[lo:hi]] = x
            err = tt - np.einsum("nmk,nk->nm", A, x)
            return float(np.dot(err.ravel(), err.ravel()))

        futures = [pool.submit(primal, *chunk) for chunk in side.primal_chunks]
        futures += [pool.submit(dual, *grp) for grp in side.dual_groups]
        # result() re-raises worker exceptions. Summing in submission order keeps
        # the RMSE bit-for-bit deterministic whatever the thread timing.
        sse = sum(f.result() for f in futures)
        return out, sse

    # ------------------------------------------------------------------ predicting
    def predict(self, user_idx, item_idx, clip: tuple[float, float] | None = None) -> np.ndarray:
        """Predicted ratings for pairs ``(user_idx[j], item_idx[j])``.

        Indices outside the trained range (-1, as returned by ``IdMap.lookup`` for
        unknown ids, any negative value, or >= n_users / n_items) are "unseen": their
        factors and bias count as zero. So an unseen user gets
        ``global_mean + item_bias[i]``, an unseen item ``global_mean + user_bias[u]``,
        and both unseen ``global_mean``.

        Parameters
        ----------
        user_idx, item_idx : array-like of int, same length (or scalars)
        clip : (lo, hi), optional
            Clip predictions into the rating scale.

        Returns
        -------
        ndarray of float32
        """
        u = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        i = np.atleast_1d(np.asarray(item_idx, dtype=np.int64))
        u, i = np.broadcast_arrays(u, i)
        ku = (u >= 0) & (u < self.n_users)
        ki = (i >= 0) & (i < self.n_items)
        pred = np.full(u.shape, self.global_mean, dtype=np.float32)
        pred[ku] += self.user_bias[u[ku]]
        pred[ki] += self.item_bias[i[ki]]
        both = ku & ki
        if both.any():
            pred[both] += np.einsum("nk,nk->n", self.user_factors[u[both]], self.item_factors[i[both]])
        if clip is not None:
            np.clip(pred, clip[0], clip[1], out=pred)
        return pred

    def recommend(self, user_idx: int, exclude=None, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` items for one user by predicted rating, excluding items given.

        Parameters
        ----------
        user_idx : int
            An unseen user (-1 or out of range) gets the items with the highest
            ``item_bias`` (the best-rated items overall).
        exclude : sparse matrix or array-like of int, optional
            Items not to recommend, typically those already rated: a 1-row sparse
            matrix (the user's row of the rating matrix), the full (users x items)
            matrix (row ``user_idx`` is used), or item indices.
        N : int, default 10

        Returns
        -------
        items : ndarray of int32, scores : ndarray of float32
            Best first; fewer than ``N`` if fewer items remain.
        """
        scores = self.global_mean + self.item_bias.astype(np.float32, copy=True)
        if 0 <= user_idx < self.n_users:
            scores += self.item_factors @ self.user_factors[user_idx] + self.user_bias[user_idx]
        if exclude is not None:
            if sp.issparse(exclude):
                ex = sp.csr_matrix(exclude)
                if ex.shape[0] > 1:
                    ex = ex[user_idx] if 0 <= user_idx < ex.shape[0] else ex[:0]
                ex_idx = ex.indices
            else:
                ex_idx = np.asarray(exclude, dtype=np.int64).ravel()
            ex_idx = ex_idx[(ex_idx >= 0) & (ex_idx < scores.size)]
            scores[ex_idx] = -np.inf
        n = min(int(N), int(np.isfinite(scores).sum()))
        if n <= 0:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        best = np.argpartition(-scores, n - 1)[:n] if n < scores.size else np.arange(scores.size)
        best = best[np.lexsort((best, -scores[best]))]  # by score desc, then index
        return best.astype(np.int32), scores[best].astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def save(self, path, user_ids=None, item_ids=None, metrics: dict | None = None) -> str:
        """Write the model to a ``.npz`` file (no pickle), atomically.

        Parameters
        ----------
        path : str or Path
            Destination; ``.npz`` is appended if missing.
        user_ids, item_ids : array-like of str, optional
            External ids of rows / columns (e.g. ``IdMap.to_array()``), so the file is
            self-contained for publishing.
        metrics : dict, optional
            JSON-serialisable metrics stored alongside (e.g. test RMSE, fit time).

        Returns
        -------
        str : the path written.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        params = {k: v for k, v in self.get_params().items() if k != "dtype"}
        params["dtype"] = np.dtype(self.dtype).name
        arrays = {
            "format_version": np.array(FORMAT_VERSION),
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "global_mean": np.array(self.global_mean, dtype=np.float64),
            "train_rmse": np.asarray(self.train_rmse_, dtype=np.float64),
            "params": np.array(json.dumps(params)),
            "metrics": np.array(json.dumps(metrics or {})),
        }
        for name, ids in (("user_ids", user_ids), ("item_ids", item_ids)):
            if ids is not None:
                arr = np.asarray([str(x) for x in ids], dtype=str)
                arrays[name] = arr if arr.size else np.array([], dtype="<U1")
        # Write to a temp file in the same directory, then rename: readers (the
        # publisher, a restarted worker) never see a half-written model.
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npz.tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path) -> ALS:
        """Read a model written by :meth:`save`.

        The returned model has ``user_ids`` / ``item_ids`` (numpy str arrays, or None if
        not saved) and ``metrics`` (dict) set from the file.
        """
        with np.load(os.fspath(path), allow_pickle=False) as z:
            version = int(z["format_version"])
            if version > FORMAT_VERSION:
                raise ValueError(f"model file format {version} is newer than this code ({FORMAT_VERSION})")
            params = json.loads(str(z["params"]))
            params["dtype"] = np.dtype(params["dtype"])
            model = (ImplicitALS if "alpha" in params else ALS)(**params)
            model.user_factors = z["user_factors"]
            model.item_factors = z["item_factors"]
            model.user_bias = z["user_bias"]
            model.item_bias = z["item_bias"]
            model.global_mean = float(z["global_mean"])
            model.train_rmse_ = z["train_rmse"].tolist()
            model.metrics = json.loads(str(z["metrics"]))
            model.user_ids = z["user_ids"] if "user_ids" in z.files else None
            model.item_ids = z["item_ids"] if "item_ids" in z.files else None
        return model


# ---------------------------------------------------------------------- helpers
def available_cpus() -> int:
    """CPUs this process may run on (respects taskset / container CPU sets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _spd_solve(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve the stack of symmetric positive definite systems ``G[n] x[n] = b[n]``.

    A Cholesky factorisation vectorised *across* the stack: the data is laid out as
    (k, k, n) so each step is one numpy operation over all n systems at once, on
    contiguous memory. For the tiny (k <= ~30) systems of ALS this measured ~2x faster
    than ``np.linalg.solve`` (which calls LAPACK once per matrix, paying a per-call
    overhead comparable to the arithmetic), and much faster still for the 2x2..10x10
    dual systems. Only the lower triangle of G is read.

    Parameters
    ----------
    G : ndarray, shape (n, k, k)
    b : ndarray, shape (n, k)

    Returns
    -------
    x : ndarray, shape (n, k)
    """
    n, k, _ = G.shape
    # Rows 0..k-1: G (symmetric, so rows = columns); row k: b. Factorising this
    # (k+1) x k "augmented" lower triangle yields, in its last row, y = L^-1 b: the
    # forward substitution comes for free with the factorisation.
    M = np.empty((k + 1, k, n), dtype=G.dtype)
    M[:k] = G.transpose(1, 2, 0)
    M[k] = b.T
    L = np.zeros_like(M)
    inv_d = np.empty((k, n), dtype=G.dtype)
    for j in range(k):
        # Column j below (and on) the diagonal: M[j:, j] - sum_{p<j} L[j:, p] L[j, p]
        col = M[j:, j] - np.einsum("ipn,pn->in", L[j:, :j], L[j, :j]) if j else M[j:, j]
        d = np.sqrt(col[0])
        inv_d[j] = 1.0 / d
        L[j, j] = d
        L[j + 1 :, j] = col[1:] * inv_d[j]
    y = L[k]  # (k, n)
    # Back substitution with L^T: x_i = (y_i - sum_{p>i} L[p, i] x_p) / L[i, i].
    x = np.empty((k, n), dtype=G.dtype)
    for i in range(k - 1, -1, -1):
        acc = y[i] - np.einsum("pn,pn->n", L[i + 1 : k, i], x[i + 1 :]) if i < k - 1 else y[i]
        x[i] = acc * inv_d[i]
    return x.T


def _lapack_solve(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.linalg.solve`` on a stack (LU per matrix): the reference for _spd_solve."""
    return np.linalg.solve(G, b[:, :, None])[:, :, 0]


def _design(F: np.ndarray, biases: bool) -> np.ndarray:
    """The other side's rows as seen by a solve: ``[F, 1]`` with biases, else ``F``."""
    if not biases:
        return np.ascontiguousarray(F)
    return np.hstack([F, np.ones((F.shape[0], 1), dtype=F.dtype)])


def _split(sol: np.ndarray, rank: int, biases: bool, bias: np.ndarray):
    """Solutions -> (factors, bias); without biases the bias stays all-zero."""
    if not biases:
        return sol, bias
    return np.ascontiguousarray(sol[:, :rank]), np.ascontiguousarray(sol[:, rank])


__all__ = ["ALS", "FORMAT_VERSION", "ImplicitALS", "ratings_to_csr"]


class ImplicitALS(ALS):
    """Implicit-feedback ALS (Hu, Koren & Volinsky, 2008) for behaviour input, fitted by
    the ``implicit`` library; scored, saved and loaded as :class:`ALS` (biases zero).

    A view, click or purchase is not a rating: it says the shopper preferred the item
    (``p_ui = 1``) with a confidence that grows with the event's weight ``w_ui``
    (``c_ui = 1 + alpha * w_ui``); every pair the user did not touch is a weak
    ``p_ui = 0`` (``c_ui = 1``). The loss is
    ``sum_ui c_ui (p_ui - x_u . y_i)^2 + reg (|x_u|^2 + |y_i|^2)`` over ALL pairs, which
    ``implicit`` solves by conjugate gradient in native code (Takacs et al., 2011) without
    ever forming the dense matrix. Why the library and not a numpy solver of our own:
    README, "Libraries".

    Parameters
    ----------
    rank, iterations, seed, progress, dtype : as :class:`ALS`.
    reg : float, default 0.01
        The ridge term (not weighted by counts: HKV's form).
    alpha : float, default 1.0
        Confidence per unit of event weight.
    n_threads : int, optional
        ``implicit``'s threads (default: the CPUs this process may use).
    """

    def __init__(self, rank: int = 20, reg: float = 0.01, iterations: int = 15, alpha: float = 1.0, seed: int = 42,
                 dtype=np.float32, progress: bool = True, n_threads: int | None = None) -> None:
        super().__init__(rank=rank, reg=reg, iterations=iterations, biases=False, seed=seed, dtype=dtype,
                         progress=progress, n_threads=n_threads)
        self.alpha = alpha

    def get_params(self) -> dict:
        return {n: getattr(self, n) for n in ("rank", "reg", "iterations", "alpha", "seed", "dtype", "progress",
                                              "n_threads")}

    def __repr__(self) -> str:
        return f"ImplicitALS(rank={self.rank}, reg={self.reg}, alpha={self.alpha}, iterations={self.iterations})"

    def fit(self, R: sp.spmatrix) -> ImplicitALS:
        """Fit to a (users x items) matrix of event weights (stored entries > 0)."""
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        t0 = time.perf_counter()
        C = sp.csr_matrix(R, dtype=np.float32, copy=True)
        C.data = 1.0 + self.alpha * np.abs(C.data)  # implicit reads the stored value as c_ui
        with threadpool_limits(1, "blas"):  # implicit runs its own threads; nested BLAS threads only slow it
            model = AlternatingLeastSquares(factors=self.rank, regularization=self.reg, iterations=self.iterations,
                                            dtype=self.dtype, num_threads=self.n_threads or available_cpus(),
                                            random_state=self.seed)
            model.fit(C, show_progress=self.progress)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=self.dtype)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=self.dtype)
        self.user_bias = np.zeros(C.shape[0], dtype=self.dtype)
        self.item_bias = np.zeros(C.shape[1], dtype=self.dtype)
        self.global_mean = 0.0
        self.fit_time_ = time.perf_counter() - t0
        return self
