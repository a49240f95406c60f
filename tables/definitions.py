"""Every Faust table, declared once.

Per-user tables are RocksDB-backed with a changelog topic (the Faust default store,
``RECSYS_STORE``), so a killed worker gets its partitions' state back on restart or on
another worker. The similarity table is a GlobalTable (every worker holds every item's
neighbours) read straight from the compacted ``item-similarity`` topic the ALS worker
publishes: that topic IS its changelog, so it lives in memory and is rebuilt from the
topic at start-up.
"""
from __future__ import annotations

from datetime import timedelta

import faust

from app.app import app
from app.records import MODEL_MARKER_KEY
from app.settings import settings


#: Windowed tables have tuple keys ``(user, event)``: JSON keys, not the app's raw ones.
JSON_KEYS = faust.Schema(key_serializer="json", value_serializer="json")


def _user_table(name: str, default, help: str):
    # The app's raw UTF-8 keys, exactly as on the input topics, so the web router's
    # key -> partition -> worker mapping agrees with the ratings topic's partitioner.
    return app.Table(name, default=default, partitions=settings.partitions, help=help)


#: user -> the K most recent ratings ``[[item, rating, ts], ...]``, one per item.
recent_ratings = _user_table("recent_ratings", list, "K most recent ratings per user")
#: user -> items the user rated, most recent last (bounded by RECSYS_RATED_ITEMS_MAX).
rated_items = _user_table("rated_items", list, "items each user has rated")
#: user -> ``{"items": [[item, score], ...], "model_version": ..., "ts": ...}``.
last_recs = _user_table("last_recs", dict, "last recommendation list per user")


class SimilarityTable(faust.GlobalTable):
    """item -> ``{neighbour: similarity}``; converts each message once, on arrival."""

    def _changelog_topic_name(self) -> str:
        # Faust's assignor asks for this name instead of the custom changelog topic's,
        # finds no such topic and the group join hangs (faust-streaming 0.15.3).
        return self.changelog_topic.get_topic_name()

    def _to_value(self, v):
        if isinstance(v, dict) and "neighbours" in v:
            return {"neighbours": {str(n): float(s) for n, s in v["neighbours"]},
                    "version": v.get("version", "")}
        return v


item_similarity = app.tables.add(SimilarityTable(
    app,
    name=settings.topic_similarity,
    beacon=app.tables.beacon,
    is_global=True,
    standby_buffer_size=1,  # apply model updates as they arrive, like app.GlobalTable does
    # The ALS worker's topic is this table's changelog: JSON values, raw item-id keys.
    changelog_topic=app.topic(settings.topic_similarity, key_type=bytes, key_serializer="raw",
                              value_serializer="json", partitions=settings.partitions, compacting=True),
    partitions=settings.partitions,
    store="memory://",
    help="item neighbours from the offline ALS model",
))


def neighbours_of(item: str):
    """``{neighbour: similarity}`` of one item, or None when the model does not know it."""
    entry = item_similarity.get(item.encode())
    return entry["neighbours"] if entry else None


def model_version() -> str:
    marker = item_similarity.get(MODEL_MARKER_KEY.encode())
    return str(marker.get("version", "")) if marker else ""


# --------------------------------------------------------------- behaviour windows
def _windowed(name: str, help: str, *, hopping: bool):
    table = app.Table(name, default=int, partitions=settings.partitions, schema=JSON_KEYS, help=help)
    if hopping:
        return table.hopping(settings.hopping_size_s, settings.hopping_step_s,
                             expires=timedelta(seconds=settings.window_expires_s))
    return table.tumbling(settings.tumbling_s, expires=timedelta(seconds=settings.window_expires_s))


#: (user, event type) -> count in the current 10-minute tumbling window.
user_event_counts_10m = _windowed("user_event_counts_10m", "events per user and type, tumbling", hopping=False)
#: (user, event type) -> count in the last hour, hopping by 5 minutes.
user_event_counts_1h = _windowed("user_event_counts_1h", "events per user and type, hopping", hopping=True)
