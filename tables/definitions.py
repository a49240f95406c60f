"""Every Faust table of a worker, declared once (:func:`declare_tables`).

Per-user tables are RocksDB-backed with a changelog topic (the Faust default store,
``RECSYS_STORE``), so a killed worker gets its partitions' state back on restart or on
another worker. The model and the catalogue are not Faust tables: every worker holds
them in full (``tables/broadcast.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import faust

from app.settings import Settings
from tables.state import UserState

#: Windowed tables have tuple keys ``(user, event)``: JSON keys, not the app's raw ones.
JSON_KEYS = faust.Schema(key_serializer="json", value_serializer="json")


@dataclass(frozen=True)
class Tables:
    """The worker's tables."""

    #: user (UTF-8 bytes) -> everything the realtime agent keeps about the user
    #: (``tables/state.py``: recent interactions, items had, last list, offset). One
    #: table, so one read, one write and one changelog message per rating. Keys are the
    #: input topics' raw keys, so the web router's key -> partition -> worker mapping
    #: agrees with the input topics' partitioner (Faust's default JSON keys would hash
    #: ``"u1"``, not ``u1``).
    user_state: faust.Table
    #: (user, event type) -> count in the current tumbling window (10 minutes).
    user_event_counts_10m: faust.Table
    #: (user, event type) -> count per hopping step (5 minutes): the panes whose sum is the
    #: hopping window's (1 hour) count (``tables/behaviour.py``, ``HotPanes``: one write per
    #: event where a hopping table writes each of its 12 windows).
    user_event_counts_1h: faust.Table
    #: item -> events per hopping step (panes, as above); iterable (``key_index``) for the hot list.
    item_popularity: faust.Table


def store_options(conf: Settings) -> dict:
    """Faust's RocksDB options for one table partition: small memtables and block cache
    (``RECSYS_ROCKSDB_*``), so resident memory follows the state, not Faust's caps."""
    mb = 1 << 20
    return {"write_buffer_size": int(conf.worker.rocksdb_write_buffer_mb * mb), "max_write_buffer_number": 2,
            "block_cache_size": int(conf.worker.rocksdb_block_cache_mb * mb)}


def declare_tables(app: faust.App, conf: Settings) -> Tables:
    expires = timedelta(seconds=conf.behaviour.window_expires_s)

    def counts(name: str, help: str) -> faust.Table:
        return app.Table(name, default=int, partitions=conf.kafka.partitions, schema=JSON_KEYS, help=help,
                         options=store_options(conf))

    return Tables(
        user_state=app.Table("user_state", default=bytes, partitions=conf.kafka.partitions, key_type=bytes,
                             value_type=bytes,  # tables.state.UserState.to_bytes: the agent encodes it once per batch
                             options=store_options(conf), help="recent ratings, rated items and last list per user"),
        user_event_counts_10m=counts("user_event_counts_10m", "events per user and type, tumbling").tumbling(
            conf.behaviour.tumbling_s, expires=expires),
        user_event_counts_1h=counts("user_event_counts_1h", "events per user and type, panes").tumbling(
            conf.behaviour.hopping_step_s, expires=max(expires, timedelta(seconds=conf.behaviour.hopping_size_s))),
        item_popularity=counts("item_popularity", "events per item, panes").tumbling(
            conf.behaviour.hopping_step_s, expires=max(expires, timedelta(seconds=conf.behaviour.hopping_size_s)),
            key_index=True),
    )


def forget_offsets(raw: bytes) -> bytes:
    """A user state written back after the broker lost its log: its offset is of that log."""
    state = UserState.from_bytes(raw)
    state.offset = None
    return state.to_bytes()
