"""What a ranker reads besides the user: the model the worker scores with.

:class:`SimilarityIndex` is one published model version (the model worker's factor
neighbours, its named neighbour lists per item, item counts and the :class:`Blend`
chosen for the shop), built whole when the version is complete
(``tables/broadcast.py``, ``SimilarityBroadcast``). :class:`Model` bundles it with the
rest of what a step may read.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: ``{neighbour_item: similarity}`` for one item.
Neighbours = Mapping[str, float]
#: One item's named list: ``{neighbour: weight}``, or the same as ``(neighbours, weights)``
#: (how a worker stages a model it receives: a small part of a dict's memory).
ItemList = Neighbours | tuple[Sequence[str], Sequence[float]]


def _best_first(neighbours: Neighbours) -> dict[str, float]:
    return dict(sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0])))


#: The named neighbour lists a model may carry (``offline_als/sources.py`` fits them).
SOURCES = ("related", "sequential", "learned")

#: The half-lives (seconds of event time) of the model's recent popularity: each item's
#: interactions, each weighing 2^(-age / half-life), age taken at the interaction being
#: ranked (the model's values at its newest training event, decayed since). A day, a
#: week and a month: what is popular lately moves on all three scales in a shop, and the
#: learned ranker weighs them.
RECENT_HALF_LIVES = {"1d": 86_400.0, "7d": 604_800.0, "30d": 2_592_000.0}
_PER_HALF_LIFE = 1.0 / np.array(list(RECENT_HALF_LIVES.values()))


@dataclass(frozen=True)
class Blend:
    """How the default ranker weighs what it reads: one configuration, chosen for each
    shop at every retrain by validation on its newest events (``offline_als/selection.py``)
    and published with the model. The defaults are the ranker's before sources were
    blended (co-occurrence only): what a model without a blend is ranked with.

    Parameters
    ----------
    related, sequential, learned : float
        Weight of each source's lists (:data:`SOURCES`; each source is published on
        one scale, so the weights compare).
    decay : float
        Weight ratio between consecutive recent interactions (newest 1, next ``decay``).
    history : int
        Newest interactions read.
    w_pop : float
        Weight of the popularity prior (the neighbour part is scaled to [0, 1]).
    """

    related: float = 1.0
    sequential: float = 0.0
    learned: float = 0.0
    decay: float = 0.8
    history: int = 20
    w_pop: float = 0.5

    @property
    def weights(self) -> dict[str, float]:
        """The positive source weights by source."""
        return {name: w for name in SOURCES if (w := getattr(self, name)) > 0}

    @property
    def name(self) -> str:
        """The configuration in one line (``GET /health/``, the dashboard, logs)."""
        return " ".join(f"{f.name}={getattr(self, f.name):g}" for f in dataclasses.fields(self))

    @property
    def tag(self) -> str:
        """The configuration in a few characters, for model versions (``r1-s0-l0-d0.8-h20-p0.5``)."""
        letter = {"w_pop": "p"}
        return "-".join(f"{letter.get(f.name, f.name[0])}{getattr(self, f.name):g}" for f in dataclasses.fields(self))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Blend:
        """The blend a published model carries (unknown keys ignored: a newer publisher
        may say more); raises ``ValueError`` on a value of the wrong kind."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in data.items():
            if key in known:
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    raise ValueError(f"blend {key}={value!r} is not a finite number")
                values[key] = int(value) if key == "history" else float(value)
        return cls(**values)


def _recent_values(recent: Mapping[str, Sequence[float]], position: Mapping[str, int]) -> np.ndarray:
    """The recent popularity by item position and half-life (0 for an item without one)."""
    scales = len(RECENT_HALF_LIVES)
    out = np.zeros((len(position), scales))
    known = [(position[q], v) for q, v in recent.items() if q in position and len(v) == scales]
    if known:
        out[[j for j, _v in known]] = np.maximum(np.array([v for _j, v in known], dtype=np.float64), 0.0)
    return out


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
    related : mapping of item -> ItemList, optional
        The model's co-occurrence lists (the source ``related``).
    counts : mapping of item -> interactions in the training data, optional
        The popularity prior of the default ranker.
    sources : mapping of source name -> {item: ItemList}, optional
        The model's other named lists (``sequential``, ``learned``).
    blend : Blend, optional
        How the default ranker weighs the sources.
    recent : mapping of item -> sequence of float, optional
        Each item's recent popularity, one value per :data:`RECENT_HALF_LIVES` (what the
        learned ranker reads; the default ranker does not).
    recent_ts : float
        The event time the recent popularity was summed at (the newest training event).

    Of the named lists only their blend is kept (:attr:`lists`): a catalogue of 100,000
    items has tens of millions of entries, too many to keep twice, or as dicts.
    """

    def __init__(self, neighbours: Mapping[str, Neighbours] | None = None, *,
                 related: Mapping[str, ItemList] | None = None,
                 counts: Mapping[str, int] | None = None,
                 sources: Mapping[str, Mapping[str, ItemList]] | None = None,
                 blend: Blend | None = None, keep_sources: bool = False,
                 recent: Mapping[str, Sequence[float]] | None = None, recent_ts: float = 0.0) -> None:
        self.neighbours: dict[str, dict[str, float]] = {
            item: _best_first(neigh) for item, neigh in (neighbours or {}).items()}
        self.rows = _symmetric_rows(self.neighbours)
        self.blend = blend or Blend()
        # An item without neighbours in a source is no list of it (a model without
        # co-occurrence lists sends every item's as empty: it is then ranked by its factors).
        named = {name: nonempty for name, lists in {**(sources or {}), "related": related or {}}.items()
                 if (nonempty := {item: neigh for item, neigh in lists.items() if len(_pairs(neigh)[0])})}
        #: The sources this model has (``related`` and the named ones that came with it).
        self.source_names = ("related", *sorted(name for name in named if name != "related"))
        if self.neighbours:  # what a blend of none of the model's sources reads
            named[_FACTOR] = self.neighbours
        self.counts = {item: int(c) for item, c in (counts or {}).items() if c > 0}
        self.max_count = max(self.counts.values(), default=0)
        #: lg(1 + count) / lg(1 + max count): the popularity prior in [0, 1], computed once per model.
        lg_max = math.log1p(self.max_count) or 1.0
        self.prior = {item: math.log1p(c) / lg_max for item, c in self.counts.items()}
        #: Items by count, most first (ties by id); the top 1,000 is plenty of candidates.
        self.popular = [q for _c, q in sorted((-c, q) for q, c in self.counts.items())[:1000]]
        # The default ranker's lists as arrays over item positions: it adds up a few
        # thousand weights per interaction, which numpy does in one pass.
        kept = named if keep_sources else {name: named[name] for name, _w in _used(named, self.blend)}
        #: Every item the lists kept or the counts name (``ids[position]``, sorted) and each item's position.
        names = set(self.counts)
        for lists in kept.values():
            names.update(lists)
            for neigh in lists.values():
                names.update(_pairs(neigh)[0])
        self.ids = sorted(names)
        self.position = {q: j for j, q in enumerate(self.ids)}
        # With keep_sources, each source's lists as arrays, to blend again (:meth:`reblended`).
        self._coded = ({name: {item: self._code(neigh) for item, neigh in lists.items()} for name, lists in kept.items()}
                       if keep_sources else None)
        #: item -> (positions, weights) of its blended neighbours, best first (ties by id);
        #: a negative weight (a learned source's "having this argues against that") pushes its item down.
        self.lists = self._blended_lists(self._coded or kept, coded=keep_sources)
        #: The prior by position (0 for an item without a count).
        self.prior_at = np.array([self.prior.get(q, 0.0) for q in self.ids], dtype=np.float64)
        #: The recent popularity by position, one column per half-life, at ``recent_ts``.
        self.recent_at, self.recent_ts = _recent_values(recent or {}, self.position), float(recent_ts)

    def recent_popularity(self, at: np.ndarray, now, of: np.ndarray | None = None) -> np.ndarray:
        """The recent popularity of the items at positions ``at`` at the time ``now`` (one,
        or one per item; with ``of``, one per row and ``of[j]`` item j's row), per
        half-life: decayed since :attr:`recent_ts`, on the prior's scale (lg(1 + value)
        over lg(1 + the largest count): one denominator for all, so a log with few recent
        interactions, or a model long unrefreshed, gets small values)."""
        age = np.maximum(np.asarray(now, dtype=np.float64) - self.recent_ts, 0.0)
        fade = np.exp2(-np.multiply.outer(age, _PER_HALF_LIFE))
        if of is not None:
            fade = fade[of]
        return np.log1p(self.recent_at[at] * fade) / (math.log1p(self.max_count) or 1.0)

    @property
    def source_lists(self) -> Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]:
        """Each source's lists as arrays (item -> (positions, weights)), when built with
        ``keep_sources`` (the learned ranker reads each source apart); else empty."""
        return self._coded or {}

    @property
    def blend_sources(self) -> list[tuple[str, float]]:
        """The names among :attr:`source_lists` whose weighted sum :attr:`lists` holds, with their weights."""
        return _used(self._coded or {}, self.blend)

    def reblended(self, blend: Blend, only: Iterable[str] | None = None) -> SimilarityIndex:
        """This model with another blend (the selection scores many): built with ``keep_sources``.
        With ``only``, the lists of those items alone (all a replay of known histories reads)."""
        if self._coded is None:
            raise ValueError("reblended() needs an index built with keep_sources=True")
        other = copy.copy(self)
        other.blend = blend
        other.lists = other._blended_lists(self._coded, coded=True, only=only)
        return other

    def _blended_lists(self, lists_by_name: Mapping[str, Mapping], coded: bool,
                       only: Iterable[str] | None = None) -> dict:
        used = [(lists_by_name[name], w) for name, w in _used(lists_by_name, self.blend)]
        items = dict.fromkeys(item for lists, _w in used for item in lists) if only is None else only
        out = {}
        for item in items:
            weighted = [(lists[item] if coded else self._code(lists[item]), w) for lists, w in used if item in lists]
            if not weighted:
                continue
            at, values = _blend(weighted)
            if at.size:
                out[item] = (at, values)
        return out

    def _code(self, neigh: ItemList) -> tuple[np.ndarray, np.ndarray]:
        names, weights = _pairs(neigh)
        return (np.fromiter(map(self.position.__getitem__, names), dtype=np.int32, count=len(names)),
                np.fromiter(weights, dtype=np.float64, count=len(names)))

    def __len__(self) -> int:
        return len(self.neighbours)

    def blended(self, item: str) -> dict[str, float]:
        """``item``'s list as the default ranker reads it (its sources blended), best first."""
        positions, weights = self.lists.get(item, ((), ()))
        return {self.ids[j]: float(s) for j, s in zip(positions, weights, strict=True)}

    def similarity(self, a: str, b: str) -> float:
        """sim(a, b) as the formula uses it (0 for an unlisted pair)."""
        if a == b:
            return 1.0
        return self.rows.get(a, {}).get(b, 0.0)


#: Where the factor neighbours stand among the named lists: read when a blend uses none of them.
_FACTOR = "factor neighbours"


def built_once_per_model(build):
    """``build(index)`` made once per model (a :class:`SimilarityIndex`) and kept while the
    model lives: the arrays the batch rankers read of it. ``.cache`` holds them."""
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @functools.wraps(build)
    def of(index: SimilarityIndex):
        made = cache.get(index)
        if made is None:
            made = cache[index] = build(index)
        return made

    of.cache = cache
    return of
#: The name the factor neighbour lists have among ``SimilarityIndex.source_lists``.
FACTOR_NEIGHBOURS = _FACTOR


def _used(lists_by_name: Mapping[str, Mapping], blend: Blend) -> list[tuple[str, float]]:
    """The names of the lists ``blend`` adds up, with their weights (the factor neighbours
    when it uses none of the model's sources)."""
    used = [(name, w) for name, w in blend.weights.items() if lists_by_name.get(name)]
    return used or ([(_FACTOR, 1.0)] if lists_by_name.get(_FACTOR) else [])


def _blend(weighted: list[tuple[tuple[np.ndarray, np.ndarray], float]]) -> tuple[np.ndarray, np.ndarray]:
    """One item's ``sum over sources of w * list`` (each as positions and weights), best
    first (ties by position: by id), zeros dropped. The sums are added in source order,
    as a loop over the sources would add them."""
    at = np.concatenate([positions for (positions, _v), _w in weighted])
    values = np.concatenate([v * w if w != 1.0 else v for (_p, v), w in weighted])
    if len(weighted) > 1:
        at, inverse = np.unique(at, return_inverse=True)
        values = np.bincount(inverse.ravel(), values, minlength=at.size)
    keep = values != 0
    at, values = at[keep], values[keep]
    order = np.lexsort((at, -values))
    return at[order], values[order]


def _pairs(neigh: ItemList) -> tuple[Sequence[str], Sequence[float]]:
    """``(neighbours, weights)`` of one item's list in either form."""
    return neigh if isinstance(neigh, tuple) else (neigh.keys(), neigh.values())


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
    #: The learned ranker's serving weight set (``ranking.learned.LearnedWeights``; None: none yet).
    learned: object = None
    #: What its features read besides the index (``ranking.features.Context``; None: the hot items only).
    context: object = None
    #: The cold items' content neighbours (``ranking.content.ContentIndex``; None: no catalogue text).
    content: object = None
