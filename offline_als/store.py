"""The ALS worker's durable rating store: every (user, item) -> its latest (rating, ts).

A RocksDB database (``rocksdict.Rdict`` in raw mode, under ``settings.data_dir / "als"``)
holds, in one keyspace separated by a one-byte prefix:

=============================  ==========================================================
key                            value
=============================  ==========================================================
``b"r" + >u4 user + >u4 item``  ``<d rating, <d ts`` (16 bytes): the latest rating of a pair
``b"U" + >u4 index``            user id (UTF-8): the persisted :class:`IdMap` of users
``b"I" + >u4 index``            item id (UTF-8): the persisted :class:`IdMap` of items
``b"o" + topic + 0 + >u4 part``  ``<q`` next offset to read of that topic partition
``b"m" + name``                 metadata: ``count``, ``seq`` (``<q``), ``trained`` (JSON)
=============================  ==========================================================

Why dense indices in the rating key rather than ``b"user\\x00item"``: the key is fixed
width (9 bytes), ids may contain any character (no separator ambiguity), and the
export for training is a single ``np.frombuffer`` over the concatenated keys, with no
per-rating id lookup. The indices come from the append-only :class:`IdMap`, persisted
in the same store, so they stay stable across restarts and retrains.

Every :meth:`RatingStore.apply` is one atomic, synced ``WriteBatch``: rating changes,
new ids, the consumed offsets and the counters land together or not at all. The store,
not the Kafka group, is therefore the source of truth for where to resume (the worker
still commits the same offsets to its group, for lag monitoring); a deleted store makes
the worker re-read the topic from the beginning instead of silently missing history.

Conflict rule: the rating with the newer ``ts`` wins; on equal ``ts`` the one applied
later wins (the later Kafka offset). Re-applying a rating already stored (at-least-once
redelivery) changes nothing and does not bump :attr:`RatingStore.seq`.
"""
from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import scipy.sparse as sp
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from .als import ratings_to_csr
from .ids import IdMap

log = logging.getLogger(__name__)

_RATING = b"r"
_USER = b"U"
_ITEM = b"I"
_OFFSET = b"o"
_META = b"m"

_VALUE = struct.Struct("<dd")  # rating, ts
_INT = struct.Struct("<q")
_INDEX = struct.Struct(">I")  # big-endian: key order == index order
_PAIR = struct.Struct(">II")
_KEY_DTYPE = np.dtype([("prefix", "S1"), ("user", ">u4"), ("item", ">u4")])
_VALUE_DTYPE = np.dtype([("rating", "<f8"), ("ts", "<f8")])


def rating_key(user_idx: int, item_idx: int) -> bytes:
    return _RATING + _PAIR.pack(user_idx, item_idx)


def _offset_key(topic: str, partition: int) -> bytes:
    return _OFFSET + topic.encode() + b"\x00" + _INDEX.pack(partition)


@dataclass
class ApplyResult:
    """What one :meth:`RatingStore.apply` did."""

    received: int = 0
    #: Pairs seen for the first time.
    new: int = 0
    #: Pairs whose stored (rating, ts) changed (includes ``new``).
    changed: int = 0
    #: Ratings that changed nothing: redeliveries, or older than the stored one.
    unchanged: int = 0
    new_users: int = 0
    new_items: int = 0


@dataclass
class RatingsSnapshot:
    """Everything in the store as arrays, ready for training (one row per pair)."""

    user_idx: np.ndarray  # int32
    item_idx: np.ndarray  # int32
    ratings: np.ndarray  # float32
    ts: np.ndarray  # float64
    user_ids: np.ndarray  # str, index order (IdMap.to_array())
    item_ids: np.ndarray
    #: The store's change counter at export time (see RatingStore.seq).
    seq: int = 0
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    def to_csr(self) -> sp.csr_matrix:
        """The (n_users x n_items) rating matrix (pairs are unique by construction)."""
        return ratings_to_csr(self.user_idx, self.item_idx, self.ratings, shape=(self.n_users, self.n_items))


class RatingStore:
    """Durable latest-rating-per-pair store with stable dense id indices.

    Not thread-safe for writers: call :meth:`apply` from one thread (the worker's event
    loop). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), Options(raw_mode=True))
        self._sync = WriteOptions()
        self._sync.sync = True  # survives a machine crash, not just a process crash
        self._load_state()

    # ------------------------------------------------------------------ lifecycle
    def _load_state(self) -> None:
        self.users = IdMap(v.decode() for _, v in self._prefix_items(_USER))
        self.items = IdMap(v.decode() for _, v in self._prefix_items(_ITEM))
        self.count = self._get_int(b"count")
        self.seq = self._get_int(b"seq")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return (f"RatingStore({str(self.path)!r}, ratings={self.count}, users={len(self.users)}, "
                f"items={len(self.items)}, seq={self.seq})")

    # ------------------------------------------------------------------ helpers
    def _prefix_items(self, prefix: bytes):
        for key, value in self._db.items(from_key=prefix):
            if not key.startswith(prefix):
                break
            yield key, value

    def _get_int(self, name: bytes) -> int:
        raw = self._db.get(_META + name)
        return _INT.unpack(raw)[0] if raw is not None else 0

    # ------------------------------------------------------------------ writing
    def apply(self, ratings: Iterable[tuple[str, str, float, float]],
              offsets: Mapping[tuple[str, int], int] | None = None) -> ApplyResult:
        """Store a batch of ``(user, item, rating, ts)`` and the consumed offsets atomically.

        ``offsets`` maps ``(topic, partition)`` to the next offset to read. Ratings are
        applied in order (newest ts wins; equal ts: the later one wins).
        """
        res = ApplyResult()
        n_users0, n_items0 = len(self.users), len(self.items)
        batch = WriteBatch(raw_mode=True)
        try:
            rows = []
            for user, item, rating, ts in ratings:
                rows.append((rating_key(self.users.add(user), self.items.add(item)), float(rating), float(ts)))
            res.received = len(rows)
            distinct = list(dict.fromkeys(k for k, _, _ in rows))
            current: dict[bytes, tuple[float, float] | None] = {}
            if distinct:
                stored = self._db[distinct]
                current = {k: (_VALUE.unpack(v) if v is not None else None) for k, v in zip(distinct, stored, strict=False)}
            dirty: set[bytes] = set()
            for key, rating, ts in rows:
                cur = current[key]
                if cur is None:
                    res.new += 1
                elif ts < cur[1] or (ts == cur[1] and rating == cur[0]):
                    res.unchanged += 1
                    continue
                current[key] = (rating, ts)
                dirty.add(key)
                res.changed += 1
            for key in dirty:
                batch.put(key, _VALUE.pack(*current[key]))
            for idx in range(n_users0, len(self.users)):
                batch.put(_USER + _INDEX.pack(idx), self.users.id_of(idx).encode())
            for idx in range(n_items0, len(self.items)):
                batch.put(_ITEM + _INDEX.pack(idx), self.items.id_of(idx).encode())
            res.new_users = len(self.users) - n_users0
            res.new_items = len(self.items) - n_items0
            for (topic, partition), offset in (offsets or {}).items():
                batch.put(_offset_key(topic, partition), _INT.pack(int(offset)))
            count, seq = self.count + res.new, self.seq + res.changed
            batch.put(_META + b"count", _INT.pack(count))
            batch.put(_META + b"seq", _INT.pack(seq))
            self._db.write(batch, self._sync)
        except BaseException:
            # Ids added to the in-memory maps were not persisted: reload the truth.
            self._load_state()
            raise
        self.count, self.seq = count, seq
        return res

    def delete(self, user_idx: Iterable[int], item_idx: Iterable[int]) -> int:
        """Delete the ratings of these (user index, item index) pairs, in one atomic, synced
        write; returns how many were stored. :attr:`seq` moves by as many (the next
        training must see the change)."""
        keys = [rating_key(int(u), int(i)) for u, i in zip(user_idx, item_idx, strict=True)]
        gone = [k for k, v in zip(keys, self._db[keys], strict=True) if v is not None] if keys else []
        if not gone:
            return 0
        batch = WriteBatch(raw_mode=True)
        for key in gone:
            batch.delete(key)
        count, seq = self.count - len(gone), self.seq + len(gone)
        batch.put(_META + b"count", _INT.pack(count))
        batch.put(_META + b"seq", _INT.pack(seq))
        self._db.write(batch, self._sync)
        self.count, self.seq = count, seq
        return len(gone)

    def set_meta(self, name: str, value: dict) -> None:
        """Store a small JSON document (e.g. what was last trained) durably."""
        self._db.write(self._single(_META + b"j" + name.encode(), json.dumps(value).encode()), self._sync)

    def get_meta(self, name: str) -> dict | None:
        raw = self._db.get(_META + b"j" + name.encode())
        return json.loads(raw) if raw is not None else None

    @staticmethod
    def _single(key: bytes, value: bytes) -> WriteBatch:
        batch = WriteBatch(raw_mode=True)
        batch.put(key, value)
        return batch

    # ------------------------------------------------------------------ reading
    def offsets(self, topic: str) -> dict[int, int]:
        """``{partition: next offset}`` stored for ``topic``."""
        prefix = _OFFSET + topic.encode() + b"\x00"
        return {_INDEX.unpack(k[len(prefix):])[0]: _INT.unpack(v)[0] for k, v in self._prefix_items(prefix)
                if len(k) == len(prefix) + 4}

    def get(self, user: str, item: str) -> tuple[float, float] | None:
        """``(rating, ts)`` stored for a pair, or None."""
        u, i = self.users.get(user), self.items.get(item)
        if u < 0 or i < 0:
            return None
        raw = self._db.get(rating_key(u, i))
        return _VALUE.unpack(raw) if raw is not None else None

    def export(self) -> RatingsSnapshot:
        """Every stored rating as arrays (ordered by user index, then item index)."""
        keys, values = [], []
        for k, v in self._prefix_items(_RATING):
            keys.append(k)
            values.append(v)
        karr = np.frombuffer(b"".join(keys), dtype=_KEY_DTYPE)
        varr = np.frombuffer(b"".join(values), dtype=_VALUE_DTYPE)
        return RatingsSnapshot(
            user_idx=karr["user"].astype(np.int32), item_idx=karr["item"].astype(np.int32),
            ratings=varr["rating"].astype(np.float32), ts=varr["ts"].astype(np.float64),
            user_ids=self.users.to_array(), item_ids=self.items.to_array(), seq=self.seq)

    def to_csr(self) -> sp.csr_matrix:
        return self.export().to_csr()


__all__ = ["ApplyResult", "RatingStore", "RatingsSnapshot", "rating_key"]
