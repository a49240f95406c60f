"""Plain metric functions (lists of item ids in, floats out)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def precision_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    """Hits in the top ``k`` divided by ``k`` (a list shorter than k counts missing slots as misses)."""
    rel = set(relevant)
    return sum(1 for x in ranked[:k] if x in rel) / k if k > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    """Hits in the top ``k`` divided by the number of relevant items (0 when there are none)."""
    rel = set(relevant)
    if not rel:
        return 0.0
    return sum(1 for x in ranked[:k] if x in rel) / len(rel)


def hit_rate_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    """1.0 when at least one relevant item is in the top ``k``."""
    rel = set(relevant)
    return 1.0 if any(x in rel for x in ranked[:k]) else 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int = 10) -> float:
    """Binary-relevance NDCG: sum 1/log2(pos+1) over hits, divided by the ideal DCG."""
    rel = set(relevant)
    if not rel or k <= 0:
        return 0.0
    dcg = sum(1.0 / math.log2(pos + 2) for pos, x in enumerate(ranked[:k]) if x in rel)
    ideal = sum(1.0 / math.log2(pos + 2) for pos in range(min(len(rel), k)))
    return dcg / ideal


RANKING_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "hit_rate": hit_rate_at_k,
}


def change_rate(previous: Sequence[str], new: Sequence[str]) -> float | None:
    """Share of the items of ``new`` that were not in ``previous`` (None for an empty new list)."""
    if not new:
        return None
    before = set(previous)
    return sum(1 for x in new if x not in before) / len(new)


def rmse(pred, truth) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((pred - truth) ** 2)))
