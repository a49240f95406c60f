"""Content neighbours: how an item nobody has had yet can be recommended.

The model's lists come from interactions, so an item with few of them has no list, and
sits in nobody's. The catalogue says what every item is (its name, category and any
other text an ``items`` message carries), so an item with fewer than ``cold_min``
interactions in the model's training data (``RECSYS_COLD_ITEM_MIN``) is recalled by
its text instead: a shopper whose recent items read like it meets it.

:class:`CatalogueText` is the catalogue's TF-IDF vectors (scikit-learn), fitted once per
catalogue; :class:`ContentIndex` is it with the cold items of one model version: each
item's nearest cold items by cosine, a recall source like the model's lists. The content
sum of a cold item q for a history is the decayed, signed sum of q's weight in each
recent item's list, as the kNN part sums the model's lists.
"""
from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

#: Words are runs of letters or digits, single characters included (a category id "7").
_TOKEN = r"(?u)\b\w+\b"


class CatalogueText:
    """Every catalogue item's text as an L2-normalised TF-IDF row.

    Parameters
    ----------
    texts : mapping of item -> text
        What the catalogue says of each item (name, category, description, ...).
    """

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.items = sorted(texts)
        self.row = {q: j for j, q in enumerate(self.items)}
        try:
            vectorizer = TfidfVectorizer(token_pattern=_TOKEN, sublinear_tf=True, dtype=np.float64)
            self.vectors = vectorizer.fit_transform([texts[q] for q in self.items]).tocsr()
        except ValueError:  # no words at all (or no items): nothing reads like anything
            self.vectors = sp.csr_matrix((len(self.items), 0))

    def __len__(self) -> int:
        return len(self.items)


class ContentIndex:
    """The cold items of one model version, recalled by their text: every catalogue item's
    ``m`` nearest cold items (cosine of the text vectors, an item never its own
    neighbour), scaled so that the median item's nearest has the weight 1, as the model's
    sources are scaled (``offline_als/sources.py``): the content lists add up on the
    same scale as the kNN part the default ranker reads.

    Parameters
    ----------
    text : CatalogueText
        The catalogue's vectors.
    counts : mapping of item -> interactions
        The model's training counts (``SimilarityIndex.counts``).
    cold_min : int
        An item with fewer interactions than this is cold (0: none is).
    m : int
        Cold neighbours kept per catalogue item.
    listed : container of str, optional
        The items the catalogue holds by now (default: every item of ``text``): a replayed
        log whose only catalogue is its own events knows an item from its first event on,
        or the cold items would be exactly those the log's future holds.
    """

    #: Catalogue rows compared at once (bounds the memory of a chunk's products).
    CHUNK = 512

    def __init__(self, text: CatalogueText, counts: Mapping[str, int], cold_min: int, m: int = 20,
                 listed: Container[str] | None = None) -> None:
        self.text = text
        rows = [j for j, q in enumerate(text.items)
                if counts.get(q, 0) < cold_min and (listed is None or q in listed)]
        self.cold_items = [text.items[j] for j in rows]
        self.cold_at = {q: c for c, q in enumerate(self.cold_items)}
        #: item -> (cold item numbers, weights) of its nearest cold items, best first.
        self.lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if rows and text.vectors.shape[1]:
            self._fill_lists(np.array(rows), m)

    def _fill_lists(self, rows: np.ndarray, m: int) -> None:
        cold_t = self.text.vectors[rows].T.tocsr()
        own = np.full(len(self.text), -1)
        own[rows] = np.arange(rows.size)  # a cold item's own column, never its neighbour
        for first in range(0, len(self.text), self.CHUNK):
            block = (self.text.vectors[first:first + self.CHUNK] @ cold_t).tocsr()
            for r in range(block.shape[0]):
                lo, hi = block.indptr[r], block.indptr[r + 1]
                cols, values = block.indices[lo:hi], block.data[lo:hi]
                keep = (values > 0) & (cols != own[first + r])
                cols, values = cols[keep], values[keep]
                if cols.size:
                    order = np.lexsort((cols, -values))[:m]
                    self.lists[self.text.items[first + r]] = (cols[order].astype(np.int32), values[order])
        best = np.median([values[0] for _cols, values in self.lists.values()]) if self.lists else 1.0
        for item, (cols, values) in self.lists.items():
            self.lists[item] = (cols, values / best)

    def __len__(self) -> int:
        return len(self.cold_items)

    def _sums(self, recent: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list] | None:
        """The recent items' lists (of those with one): every entry's cold item, weighted
        part and recent item (its place in the last element), or None when none has a list."""
        picked = [(q, w, got) for q, w in recent if w != 0.0 and (got := self.lists.get(q)) is not None]
        if not picked:
            return None
        sizes = [got[0].size for _q, _w, got in picked]
        at = np.concatenate([got[0] for _q, _w, got in picked])
        parts = np.concatenate([got[1] for _q, _w, got in picked]) * np.repeat([w for _q, w, _g in picked], sizes)
        owner = np.repeat(np.arange(len(picked)), sizes)
        return at, parts, owner, [q for q, _w, _got in picked]

    def recall(self, recent: Sequence[tuple[str, float]], exclude: Container[str], n: int
               ) -> list[tuple[str, float, str]]:
        """The ``n`` cold items with the largest positive content sum for a history
        ``recent`` (``(item, weight)``: decayed, negative for a dislike), but ``exclude``:
        ``[(item, sum, because), ...]`` best first (ties by id), ``because`` the recent
        item whose weighted part is the largest (the first such)."""
        found = self._sums(recent) if n > 0 else None
        if found is None:
            return []
        at, parts, owner, names = found
        sums = np.bincount(at, parts, minlength=len(self.cold_items))
        hit = np.flatnonzero(sums > 0.0)
        best = []  # cold numbers best first (ties: by number, which is by id), the user's own skipped
        for c in hit[np.lexsort((hit, -sums[hit]))].tolist():
            if self.cold_items[c] not in exclude:
                best.append(c)
                if len(best) == n:
                    break
        if not best:
            return []
        chosen = np.zeros(len(self.cold_items), dtype=bool)
        chosen[best] = True
        mine = np.flatnonzero(chosen[at])
        order = mine[np.lexsort((owner[mine], -parts[mine], at[mine]))]  # per cold item: its largest part first
        first = np.ones(order.size, dtype=bool)
        first[1:] = at[order][1:] != at[order][:-1]
        why = dict(zip(at[order][first].tolist(), owner[order][first].tolist(), strict=True))
        return [(self.cold_items[c], float(sums[c]), names[why[c]]) for c in best]

    def scores(self, recent: Sequence[tuple[str, float]], items: Iterable[str]) -> dict[str, float]:
        """The content sum of each cold item among ``items`` (others are left out)."""
        cold = [q for q in dict.fromkeys(items) if q in self.cold_at]
        found = self._sums(recent) if cold else None
        if found is None:
            return dict.fromkeys(cold, 0.0)
        sums = np.bincount(found[0], found[1], minlength=len(self.cold_items))  # (at, parts, ...)
        return {q: float(sums[self.cold_at[q]]) for q in cold}


def catalogue_text(entry: Mapping) -> str:
    """The words of one ``items`` message: every text field but the id (name, category,
    description, brand, ...)."""
    return " ".join(v for k, v in entry.items() if k != "item" and isinstance(v, str))
