"""Typed records on the wire, and the validation that turns raw bytes into them.

Everything on our topics is JSON (never pickle); ids are strings. Agents read their
input topics as raw bytes and call :func:`parse_rating` / :func:`parse_event` here, so
that a malformed message becomes an :class:`InvalidInput` with a reason (and then a
dead letter) instead of a deserialisation crash inside Faust.

Wire formats (key = user id as UTF-8 bytes unless noted):

- ``ratings``: ``{"user": "u1", "item": "i9", "rating": 4.0, "ts": 1700000000.0,
  "source": "explicit"}`` (``source`` is ``implicit:purchase`` etc. for events turned
  into ratings).
- ``user-events``: ``{"user": "u1", "item": "i9", "event": "view", "ts": ...,
  "category": "shoes", "query": null}`` (``item`` may be empty for ``search``).
- ``item-similarity`` (compacted, key = item id): ``{"item": "i9", "neighbours":
  {"i3": 0.93, ...}, "version": "...", "trained_at": ...}`` (neighbours best first; an
  object so that readers get a lookup table straight from the JSON decoder); the key ``__model__``
  carries ``{"version": ..., "items": n, "trained_at": ...}`` once all items are sent.
  A ``null`` value (tombstone) removes an item that left the model.
- ``recommendations`` (compacted): :class:`Recommendation`.
- ``dead-letters``: :class:`DeadLetter`.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import faust
import orjson

from app.datasets import EVENT_TYPES as _DATASET_EVENT_TYPES

#: Behaviour event types we accept on ``user-events`` (the loaders' list).
EVENT_TYPES = frozenset(_DATASET_EVENT_TYPES)

#: Key of the model-version marker on the ``item-similarity`` topic.
MODEL_MARKER_KEY = "__model__"

MAX_ID_LENGTH = 256


class InvalidInput(ValueError):
    """Raised for input we must reject; ``reason`` is short and machine-friendly."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Rating(faust.Record, serializer="json", include_metadata=False):
    user: str
    item: str
    rating: float
    ts: float
    source: str = "explicit"


class UserEvent(faust.Record, serializer="json", include_metadata=False):
    user: str
    item: str
    event: str
    ts: float
    category: Optional[str] = None
    query: Optional[str] = None


class Recommendation(faust.Record, serializer="json", include_metadata=False):
    """One user's new top-K list, as frontends consume it."""

    user: str
    #: ``[[item, score], ...]`` best first.
    items: list
    #: Version of the similarity model used (empty when none was loaded yet).
    model_version: str
    #: Timestamp of the event that triggered this list (event time, seconds).
    trigger_ts: float
    #: Wall-clock time the triggering message was produced to Kafka (seconds).
    produced_at: float
    #: Wall-clock time this list was emitted (seconds).
    emitted_at: float
    #: Time spent inside the worker, from taking the message to sending the list.
    worker_ms: float
    #: ``rating``, ``implicit:purchase``, ``fallback`` ...
    reason: str = "rating"


class DeadLetter(faust.Record, serializer="json", include_metadata=False):
    """A rejected input message: where it came from, why, and its exact bytes."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    #: The original value, decoded as UTF-8 where possible ...
    value: Optional[str]
    #: ... and always base64 of the original bytes, so nothing is lost.
    value_b64: str
    key: Optional[str]
    rejected_at: float


# --------------------------------------------------------------------------- parsing
def _load_json_object(raw: bytes | str | dict) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        data = orjson.loads(raw)  # 6x faster than json.loads; rejects NaN, 1e400 and bad UTF-8 too
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise InvalidInput("bad_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise InvalidInput("bad_json", "not a JSON object")
    return data


def _require_id(data: dict, name: str, *, allow_empty: bool = False) -> str:
    value = data.get(name)
    if value is None or (value == "" and not allow_empty):
        raise InvalidInput(f"missing_{name}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"bad_{name}", f"{name} must be a string")
    if isinstance(value, int) and value.bit_length() > 64:  # str() of a huge int is slow or fails
        raise InvalidInput(f"bad_{name}", "too long")
    value = str(value).strip()
    if (not value and not allow_empty) or len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"bad_{name}", "empty or too long")
    return value


def _require_number(data: dict, name: str, *, default: float | None = None) -> float:
    value = data.get(name, default)
    if value is None:
        raise InvalidInput(f"missing_{name}")
    if isinstance(value, bool):
        raise InvalidInput(f"bad_{name}", "boolean")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
        raise InvalidInput(f"bad_{name}", repr(value)[:50]) from None
    if not math.isfinite(number):
        raise InvalidInput(f"bad_{name}", "not finite")
    return number


def _reject_unknown_fields(data: dict, allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise InvalidInput("unknown_fields", ",".join(sorted(unknown))[:200])


def parse_rating(raw: bytes | str | dict, *, rating_min: float, rating_max: float) -> Rating:
    """Validate one ``ratings`` message; raise :class:`InvalidInput` if it is bad."""
    data = _load_json_object(raw)
    _reject_unknown_fields(data, {"user", "item", "rating", "ts", "source"})
    rating = _require_number(data, "rating")
    if not rating_min <= rating <= rating_max:
        raise InvalidInput("rating_out_of_range", f"{rating} not in [{rating_min}, {rating_max}]")
    ts = _require_number(data, "ts")
    if ts < 0:
        raise InvalidInput("bad_ts", "negative")
    source = data.get("source", "explicit")
    if not isinstance(source, str):
        raise InvalidInput("bad_source")
    return Rating(
        user=_require_id(data, "user"), item=_require_id(data, "item"), rating=rating, ts=ts, source=source
    )


def parse_event(raw: bytes | str | dict) -> UserEvent:
    """Validate one ``user-events`` message; raise :class:`InvalidInput` if it is bad."""
    data = _load_json_object(raw)
    _reject_unknown_fields(data, {"user", "item", "event", "ts", "category", "query"})
    event = data.get("event")
    if event not in EVENT_TYPES:
        raise InvalidInput("unknown_event", repr(event)[:50])
    ts = _require_number(data, "ts")
    if ts < 0:
        raise InvalidInput("bad_ts", "negative")
    item = _require_id(data, "item", allow_empty=(event == "search"))
    category, query = data.get("category"), data.get("query")
    if category is not None and not isinstance(category, str):
        raise InvalidInput("bad_category")
    if query is not None and not isinstance(query, str):
        raise InvalidInput("bad_query")
    return UserEvent(user=_require_id(data, "user"), item=item, event=event, ts=ts, category=category, query=query)


def to_json_bytes(record: faust.Record | dict[str, Any]) -> bytes:
    """Serialise a record (or dict) to compact JSON bytes, the only wire encoding we use."""
    data = record.asdict() if isinstance(record, faust.Record) else record
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


# ------------------------------------------------------------------ raw log lines
#: Prefixes of the log lines the log-cleaning agent keeps (the paper's log module).
RATING_PREFIX = "RATING:"
EVENT_PREFIX = "EVENT:"


def parse_log_line(line: bytes | str, *, rating_min: float, rating_max: float) -> Rating | UserEvent | None:
    """Parse one ``raw-logs`` line.

    - ``RATING:user|item|score|ts`` -> :class:`Rating`
    - ``EVENT:user|item|event|ts[|category]`` -> :class:`UserEvent`
    - any other line is not ours: ``None`` (ignored, counted by the agent);
    - a line with our prefix that does not parse raises :class:`InvalidInput`.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            if line.startswith((RATING_PREFIX.encode(), EVENT_PREFIX.encode())):
                raise InvalidInput("bad_encoding") from None
            return None
    text = line.strip()
    if text.startswith(RATING_PREFIX):
        fields = text[len(RATING_PREFIX):].split("|")
        if len(fields) != 4:
            raise InvalidInput("wrong_field_count", f"{len(fields)} fields, want 4")
        user, item, score, ts = fields
        return parse_rating({"user": user, "item": item, "rating": score, "ts": ts},
                            rating_min=rating_min, rating_max=rating_max)
    if text.startswith(EVENT_PREFIX):
        fields = text[len(EVENT_PREFIX):].split("|")
        if len(fields) not in (4, 5):
            raise InvalidInput("wrong_field_count", f"{len(fields)} fields, want 4 or 5")
        data = dict(zip(("user", "item", "event", "ts", "category"), fields))
        return parse_event(data)
    return None
