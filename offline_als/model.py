"""Train -> similarity -> model file, shared by the ALS worker and ``recsys train-als``.

Everything here is synchronous, CPU-bound and broker-free, so the worker can run it in
a thread (``asyncio.to_thread``) while it keeps consuming; publishing stays with the
callers (:func:`offline_als.publish.publish_similarity`).
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from app.settings import Settings
from ranking import SimilarityIndex
from ranking.model import RECENT_HALF_LIVES

from .als import ALS, ImplicitALS, available_cpus, ratings_to_csr
from .publish import neighbour_lists
from .selection import Selection, select_blend
from .similarity import cooccurrence_neighbours, top_similar
from .sources import SourceParams, fit_sources

log = logging.getLogger(__name__)


def model_path(conf: Settings) -> Path:
    """Where the ALS worker keeps its latest model: ``<data_dir>/als/model.npz``."""
    return Path(conf.data_dir) / "als" / "model.npz"


def store_path(conf: Settings) -> Path:
    """The ALS worker's rating store: ``<data_dir>/als/ratings``."""
    return Path(conf.data_dir) / "als" / "ratings"


def make_version(n_ratings: int, now: float | None = None) -> str:
    """Model version: UTC time of training + number of ratings, e.g. ``20240101T120000Z-20000``.

    Sorts chronologically as a string (same second: by rating count).
    """
    t = _dt.datetime.fromtimestamp(time.time() if now is None else now, _dt.UTC)
    return f"{t:%Y%m%dT%H%M%SZ}-{int(n_ratings)}"


def als_from_settings(conf: Settings, *, progress: bool = False, behaviour: bool = False, **overrides) -> ALS:
    """The estimator the settings ask for: :class:`ImplicitALS` when ``RECSYS_ALS_FEEDBACK``
    is ``implicit``, or ``auto`` and the input is ``behaviour`` (mostly events, not
    ratings); else the explicit :class:`ALS`."""
    if conf.als.feedback == "implicit" or (conf.als.feedback == "auto" and behaviour):
        params = {"rank": conf.als.rank, "reg": conf.als.implicit_reg, "alpha": conf.als.alpha, "iterations": conf.als.iters,
                      "seed": conf.als.seed, "progress": progress}
        params.update(overrides)
        return ImplicitALS(**params)
    params = {"rank": conf.als.rank, "reg": conf.als.reg, "reg_offset": conf.als.reg_offset, "iterations": conf.als.iters,
                  "biases": conf.als.biases, "seed": conf.als.seed, "progress": progress}
    params.update(overrides)
    return ALS(**params)


def compute_similarity(item_factors: np.ndarray, m: int, min_similarity: float,
                       n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``m`` cosine neighbours of every item (see :func:`top_similar`)."""
    return top_similar(item_factors, m=m, min_similarity=min_similarity,
                       n_threads=n_threads or available_cpus())


@dataclass
class TrainedModel:
    """A fitted model with its ids, neighbours and timings."""

    model: ALS
    user_ids: np.ndarray
    item_ids: np.ndarray
    version: str
    trained_at: float
    n_ratings: int
    #: ``{item: {neighbour: score}}`` best first (every item of the model has an entry).
    neighbours: dict[str, dict[str, float]]
    fit_s: float
    sim_s: float
    metrics: dict = field(default_factory=dict)
    #: ``{item: {item: co-occurrence cosine}}`` best first (the default ranker's neighbours).
    related: dict[str, dict[str, float]] = field(default_factory=dict)
    #: ``{item: users who interacted with it}`` in the training data (its popularity prior).
    counts: dict[str, int] = field(default_factory=dict)
    #: The other named lists (``{"sequential": {item: {...}}, "learned": {...}}``, ``offline_als/sources.py``).
    sources: dict[str, dict] = field(default_factory=dict)
    #: The blend chosen for the default ranker, with its validation (``offline_als/selection.py``).
    selection: Selection | None = None
    #: ``{item: [recent popularity per ranking.model.RECENT_HALF_LIVES]}`` (:func:`recent_popularity`)
    #: at the event time ``recent_ts``.
    recent: dict[str, list[float]] = field(default_factory=dict)
    recent_ts: float = 0.0

    def publication(self) -> dict:
        """What ``publish_similarity`` sends besides the neighbours and the version."""
        return {"trained_at": self.trained_at, "related": self.related, "counts": self.counts,
                "sources": self.sources, "blend": self.selection.as_dict() if self.selection else None,
                "recent": self.recent, "recent_ts": self.recent_ts}

    def index(self, keep_sources: bool = False) -> SimilarityIndex:
        """The model as a worker holds it once the publication has landed (``keep_sources``:
        each source's lists too, as a worker serving the learned ranker holds them)."""
        return SimilarityIndex({i: n for i, n in self.neighbours.items() if n}, related=self.related,
                               counts=self.counts, sources=self.sources,
                               blend=self.selection.blend if self.selection else None, keep_sources=keep_sources,
                               recent=self.recent, recent_ts=self.recent_ts)

    @property
    def train_rmse(self) -> float | None:
        return self.model.train_rmse_[-1] if self.model.train_rmse_ else None

    def save(self, path: str | Path) -> str:
        """Write the model (factors, biases, id maps, metrics) atomically (temp file + rename)."""
        metrics = dict(self.metrics, version=self.version, trained_at=self.trained_at, n_ratings=self.n_ratings,
                       fit_s=round(self.fit_s, 4), sim_s=round(self.sim_s, 4), train_rmse=self.train_rmse)
        return self.model.save(path, user_ids=self.user_ids, item_ids=self.item_ids, metrics=metrics)


def times_csr(user_idx, item_idx, shape: tuple[int, int], ts=None) -> sp.csr_matrix:
    """Users x items, the time of each pair's latest interaction (``ts``; default: the
    position in the input, for triples given in time order without times)."""
    ts = np.arange(len(user_idx), dtype=np.float64) if ts is None else np.asarray(ts, dtype=np.float64)
    return ratings_to_csr(user_idx, item_idx, ts, shape=shape, dtype=np.float64)


def recent_popularity(times: sp.csr_matrix, item_ids: Sequence[str]) -> tuple[dict[str, list[float]], float]:
    """Each item's recent popularity at the newest time of ``times`` (users x items, each
    pair's latest time in seconds): the sum over its users of 2^(-age / half-life), one value
    per ``ranking.model.RECENT_HALF_LIVES``, rounded to 4 significant digits (what is
    published); and that newest time. Items without a pair are left out."""
    times = sp.csr_matrix(times)
    if times.nnz == 0:
        return {}, 0.0
    newest = float(times.data.max())
    age = newest - times.data
    per_item = np.column_stack([np.bincount(times.indices, np.exp2(-age / h), minlength=len(item_ids))
                                for h in RECENT_HALF_LIVES.values()])
    has = np.flatnonzero(np.bincount(times.indices, minlength=len(item_ids)))
    rounded = [[float(f"{v:.4g}") for v in row] for row in per_item[has].tolist()]
    return dict(zip((str(item_ids[j]) for j in has.tolist()), rounded, strict=True)), newest


def train_and_similar(R: sp.csr_matrix, user_ids, item_ids, *, conf: Settings, m: int | None = None,
                      min_similarity: float | None = None, progress: bool = False,
                      als: ALS | None = None, version: str | None = None,
                      times: sp.csr_matrix | None = None, budget_s: float | None = None) -> TrainedModel:
    """The published model: fit ALS on ``R`` (users x items, ids in index order), every
    item's top-M factor neighbours, and with ``times`` (the same pairs' latest times) the
    named sources (``offline_als/sources.py``) and the blend chosen for them by
    validation on the newest events (``offline_als/selection.py``). Without ``times``,
    the co-occurrence lists alone (and the default blend).

    ``m`` / ``min_similarity`` (factor neighbours) default to ``conf.als.similar`` /
    ``conf.als.min_similarity``; each source keeps ``conf.als.related`` per item.
    ``als``: the estimator to fit (default: :func:`als_from_settings` for ratings).
    ``budget_s``: seconds the whole retrain may take; the selection stops trying
    candidates in time for it (``offline_als.selection.select_blend``'s ``deadline``).
    """
    if R.nnz == 0:
        raise ValueError("no ratings to train on")
    user_ids = np.asarray(user_ids, dtype=str)
    item_ids = np.asarray(item_ids, dtype=str)
    if R.shape != (len(user_ids), len(item_ids)):
        raise ValueError(f"matrix shape {R.shape} does not match ids ({len(user_ids)}, {len(item_ids)})")
    model = als or als_from_settings(conf, progress=progress)
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    trained_at = time.time()
    t0 = time.perf_counter()
    model.fit(R)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx, scores = compute_similarity(model.item_factors, conf.als.similar if m is None else m,
                                     conf.als.min_similarity if min_similarity is None else min_similarity)
    neighbours = neighbour_lists(idx, scores, item_ids.tolist())
    selection, sources = None, {}
    if times is None:
        related = cooccurrence_neighbours(R, item_ids, conf.als.related)
    else:
        params = SourceParams(m=conf.als.related)
        selection = select_blend(times, item_ids.tolist(), params, deadline=deadline)
        sources = fit_sources(times, item_ids.tolist(), selection.params)
        related = sources.pop("related")
    sim_s = time.perf_counter() - t0
    counts = dict(zip(item_ids.tolist(), np.diff(sp.csc_matrix(R).indptr).tolist(), strict=False))
    recent, recent_ts = recent_popularity(times, item_ids) if times is not None else ({}, 0.0)
    return TrainedModel(model=model, user_ids=user_ids, item_ids=item_ids,
                        version=(version or make_version(R.nnz, trained_at))
                        + (f"+{selection.blend.tag}" if selection else ""), trained_at=trained_at,
                        n_ratings=int(R.nnz), neighbours=neighbours, fit_s=fit_s, sim_s=sim_s,
                        related=related, counts=counts, sources=sources, selection=selection, recent=recent,
                        recent_ts=recent_ts)


def saved_item_ids(path: str | Path) -> list[str]:
    """Item ids of a saved model (empty if there is none or it cannot be read)."""
    if not os.path.exists(path):
        return []
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            return z["item_ids"].tolist() if "item_ids" in z.files else []
    except Exception as exc:  # noqa: BLE001  a corrupt file must not stop the next model
        log.warning("cannot read item ids of the previous model %s: %s", path, exc)
        return []


__all__ = [
    "TrainedModel",
    "als_from_settings",
    "compute_similarity",
    "make_version",
    "model_path",
    "recent_popularity",
    "saved_item_ids",
    "store_path",
    "times_csr",
    "train_and_similar",
]
