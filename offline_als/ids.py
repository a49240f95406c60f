"""Stable mapping between external string ids and dense integer indices.

ALS works on dense ``0..n-1`` row and column numbers, while the rest of the system talks
about user and item ids as strings. :class:`IdMap` is the bridge. It is *append-only*:
an id keeps its index forever, and a new id always gets the next free index. That keeps
indices of a saved model valid after new users or items arrive, so a model trained
yesterday can still be used (new ids simply fall outside its trained range, and
``ALS.predict`` falls back to biases / the global mean for them).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


class IdMap:
    """Append-only map ``str id -> int index``.

    Parameters
    ----------
    ids : iterable of str, optional
        Initial ids, indexed in order of first appearance (duplicates are ignored).

    Examples
    --------
    >>> m = IdMap(["a", "b"])
    >>> m.add("c"), m.add("a")
    (2, 0)
    >>> m.lookup(["b", "zz"]).tolist()
    [1, -1]
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self.add_many(ids)

    # --- adding -------------------------------------------------------------------
    def add(self, id_: str) -> int:
        """Return the index of ``id_``, giving it the next free index if it is new."""
        id_ = str(id_)
        idx = self._index.get(id_)
        if idx is None:
            idx = len(self._ids)
            self._index[id_] = idx
            self._ids.append(id_)
        return idx

    def add_many(self, ids: Iterable[str]) -> np.ndarray:
        """Add every id (new ones in order of first appearance); return their indices."""
        add = self.add  # local name: this loop runs once per rating when loading data
        return np.fromiter((add(i) for i in ids), dtype=np.int64)

    # --- reading ------------------------------------------------------------------
    def get(self, id_: str, default: int = -1) -> int:
        """Index of ``id_``, or ``default`` (-1) when unknown. Never adds."""
        return self._index.get(str(id_), default)

    def lookup(self, ids: Iterable[str]) -> np.ndarray:
        """Indices of many ids as an int64 array, -1 for unknown ones. Never adds.

        -1 is what :meth:`offline_als.als.ALS.predict` treats as "unseen", so the
        result can be passed straight to it.
        """
        get = self._index.get
        return np.fromiter((get(str(i), -1) for i in ids), dtype=np.int64)

    def id_of(self, index: int) -> str:
        """The id at ``index`` (raises IndexError if out of range)."""
        if index < 0:
            raise IndexError(index)
        return self._ids[index]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return str(id_) in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._ids == other._ids

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    # --- saving -------------------------------------------------------------------
    def to_array(self) -> np.ndarray:
        """The ids in index order as a numpy unicode array (saveable without pickle)."""
        return np.array(self._ids, dtype=str) if self._ids else np.array([], dtype="<U1")

    @classmethod
    def from_array(cls, arr: Iterable[str]) -> IdMap:
        """Rebuild a map saved with :meth:`to_array` (same indices as before)."""
        m = cls(str(x) for x in arr)
        if isinstance(arr, np.ndarray) and len(m) != len(arr):
            raise ValueError("id array contains duplicates; it was not made by IdMap.to_array")
        return m
