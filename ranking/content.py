"""Content neighbours: how an item nobody has had yet can be recommended.

The model's lists come from interactions, so an item with few of them has no list, and
sits in nobody's. The catalogue says what every item is (its name, category and any
other text an ``items`` message carries), so an item with fewer than ``cold_min``
interactions in the model's training data (``RECSYS_COLD_ITEM_MIN``) is recalled by
its text instead: a shopper whose recent items read like it meets it.

:class:`CatalogueText` is the catalogue's TF-IDF vectors (scikit-learn), fitted once per
catalogue; :class:`ContentIndex` is it with the cold items of one model version. The
content score of a cold item q for a history is the decayed, signed mean of the cosine
between q and each recent item: 1 when every recent item reads exactly like q.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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
    """The cold items of one model version, recalled by their text.

    Parameters
    ----------
    text : CatalogueText
        The catalogue's vectors.
    counts : mapping of item -> interactions
        The model's training counts (``SimilarityIndex.counts``).
    cold_min : int
        An item with fewer interactions than this is cold (0: none is).
    """

    def __init__(self, text: CatalogueText, counts: Mapping[str, int], cold_min: int) -> None:
        self.text = text
        rows = [j for j, q in enumerate(text.items) if counts.get(q, 0) < cold_min]
        self.cold_items = [text.items[j] for j in rows]
        self.cold_at = {q: c for c, q in enumerate(self.cold_items)}
        self._cold_t = text.vectors[rows].T.tocsr()  # features x cold items

    def __len__(self) -> int:
        return len(self.cold_items)

    def _similarities(self, recent: Sequence[tuple[str, float]]) -> tuple[np.ndarray, sp.csr_matrix] | None:
        """The recent items' weights and their cosine with every cold item (rows: the recent
        items the catalogue has), or None when none has a vector or no item is cold."""
        mine = [(self.text.row[q], w) for q, w in recent if q in self.text.row and w != 0.0]
        if not mine or not self.cold_items or self._cold_t.shape[0] == 0:
            return None
        weights = np.array([w for _r, w in mine])
        cosine = self.text.vectors[[r for r, _w in mine]] @ self._cold_t
        return weights / np.abs(weights).sum(), cosine.tocsr()

    def recall(self, recent: Sequence[tuple[str, float]], exclude: Iterable[str], n: int
               ) -> list[tuple[str, float, str]]:
        """The ``n`` cold items with the largest positive content score for a history
        ``recent`` (``(item, weight)``: decayed, negative for a dislike), but ``exclude``:
        ``[(item, score, because), ...]`` best first (ties by id), ``because`` the recent
        item whose weighted cosine with it is the largest."""
        found = self._similarities(recent)
        if found is None or n <= 0:
            return []
        weights, cosine = found
        total = sp.csr_matrix(weights[None, :]) @ cosine
        at, score = total.indices, total.data
        gone = np.fromiter((self.cold_at[q] for q in exclude if q in self.cold_at), dtype=np.int64)
        keep = (score > 0.0) & ~np.isin(at, gone)
        at, score = at[keep], score[keep]
        if at.size > n:
            cut = np.partition(score, at.size - n)[at.size - n]
            at, score = at[score >= cut], score[score >= cut]
        best = sorted(zip((-score).tolist(), [self.cold_items[c] for c in at.tolist()], at.tolist(), strict=True))[:n]
        if not best:
            return []
        parts = cosine[:, [c for _s, _q, c in best]].toarray() * weights[:, None]
        mine = [q for q, w in recent if q in self.text.row and w != 0.0]
        return [(q, -s, mine[int(np.argmax(parts[:, j]))]) for j, (s, q, _c) in enumerate(best)]

    def scores(self, recent: Sequence[tuple[str, float]], items: Iterable[str]) -> dict[str, float]:
        """The content score of each cold item among ``items`` (others are left out)."""
        cold = [q for q in dict.fromkeys(items) if q in self.cold_at]
        found = self._similarities(recent) if cold else None
        if found is None:
            return {}
        weights, cosine = found
        return dict(zip(cold, (weights @ cosine[:, [self.cold_at[q] for q in cold]].toarray()).tolist(), strict=True))


def catalogue_text(entry: Mapping) -> str:
    """The words of one ``items`` message: every text field but the id (name, category,
    description, brand, ...)."""
    return " ".join(v for k, v in entry.items() if k != "item" and isinstance(v, str))
