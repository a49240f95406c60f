"""What a ranker reads besides the user: the model the worker scores with.

:class:`SimilarityIndex` is one published model version (the ALS worker's factor and
co-occurrence neighbour lists and item counts), built whole when the version is
complete (``tables/definitions.py``, ``SimilarityBroadcast``). :class:`Model` bundles
it with the rest of what a step may read.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: ``{neighbour_item: similarity}`` for one item.
Neighbours = Mapping[str, float]


def _best_first(neighbours: Neighbours) -> dict[str, float]:
    return dict(sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0])))


class SimilarityIndex:
    """The similarity model as the online side reads it: top-M lists plus symmetric rows.

    ``neighbours[a]`` is a's top-M list, best first (candidates come from it).
    ``rows[a][b]`` is sim(a, b) for the scoring loop, one dict lookup: the pair's score
    from a's list or from b's (cosine is symmetric, top-M lists are not: b may be among
    a's best, not the reverse); if both lists hold it, the larger (they differ only by
    rounding); an unlisted pair has similarity 0 and no entry; sim(a, a) = 1.

    Parameters
    ----------
    neighbours : mapping of item -> {neighbour: similarity}, optional
        The factor neighbour lists (any order; stored best first).
    related : mapping of item -> {neighbour: co-occurrence}, optional
        The model's co-occurrence lists, for the default ranker (``ranking/default.py``).
    counts : mapping of item -> interactions in the training data, optional
        The popularity prior of the default ranker.
    """

    def __init__(self, neighbours: Mapping[str, Neighbours] | None = None, *,
                 related: Mapping[str, Neighbours] | None = None,
                 counts: Mapping[str, int] | None = None) -> None:
        self.neighbours: dict[str, dict[str, float]] = {
            item: _best_first(neigh) for item, neigh in (neighbours or {}).items()}
        self.rows = _symmetric_rows(self.neighbours)
        self.related = {item: _best_first(neigh) for item, neigh in (related or {}).items() if neigh}
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


def _symmetric_rows(neighbours: Mapping[str, Neighbours]) -> dict[str, dict[str, float]]:
    """``rows[a][b] = rows[b][a]`` = the larger score of the pair in a's and b's lists;
    a row exists only for an item in at least one listed pair, and holds its own 1.0."""
    rows: dict[str, dict[str, float]] = {}
    for a, neigh in neighbours.items():
        for b, s in neigh.items():
            if a == b:
                continue
            row = rows.setdefault(a, {a: 1.0})
            old = row.get(b)
            if old is None or s > old:
                row[b] = s
                rows.setdefault(b, {b: 1.0})[a] = s
    return rows


@dataclass(frozen=True)
class Model:
    """Everything a step may read besides the user's own history.

    Parameters
    ----------
    index : SimilarityIndex
        The model version in service.
    hot_items : sequence of str
        This worker's hottest items, most first (the paper pads short lists with them).
    version : str
        The model version's name, stored with every list it made.
    """

    index: SimilarityIndex = field(default_factory=SimilarityIndex)
    hot_items: Sequence[str] = ()
    version: str = ""
