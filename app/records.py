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
- ``dead-letters``: :class:`DeadLetter` (huge messages keep only a prefix, see
  ``agents/dead_letters.py``).
- ``ranker-examples`` (key = user): one interaction's labelled candidates
  (:func:`examples_message`): ``{"user", "item", "ts", "items": [positive, ...],
  "features": [[...], ...], "weights": [...], "conversion": bool, "schema"}``.
- ``ranker-model`` (compacted): the learned ranker's weight set (:func:`weights_messages`):
  ``bias/<task>/<n>`` chunks of item biases, then the ``__weights__`` manifest.

Validation rules that are choices, not accidents:

- ``rating`` and ``ts`` must be JSON numbers (``"3"`` is a ``bad_rating``: a producer
  that sends strings has a bug we want to see, not guess around). Raw log lines are text
  by nature, so :func:`parse_log_line` converts its fields itself before validating.
- ``ts`` is Unix seconds, ``0 <= ts <= now + max_future_s`` (a day by default,
  ``RECSYS_MAX_FUTURE_S``); there is no other lower bound (MovieLens 100K is from 1997).
  Above ``1e11`` (year 5138 in seconds, 1973 in milliseconds) it is rejected as
  ``ts_in_milliseconds`` instead of being divided by 1000: the producer is misconfigured,
  a guess would be wrong for microseconds, and one such rating would stay the user's
  newest for ever (recent ratings are keyed by item, newest timestamp wins). A dead
  letter with the reason can be replayed once the producer is fixed.
- Every string of a record that parses is valid Unicode (no lone surrogates), so a
  record that parses can always be encoded, and every ``InvalidInput.detail`` can be
  sent back in a 400 body or a dead letter.
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
import time
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ranking.decimals import rounded
from ranking.features import BASE_FEATURES, FEATURES, with_crosses
from ranking.learned import Examples, LearnedWeights

#: The behaviour event names, in the order reports list them: what ``user-events``
#: accepts and what the data tools turn every source's behaviour column into.
#: ``dislike`` is "not interested": the item leaves the user's lists for good and its
#: neighbours move down (``ranking/default.py``); it is never a positive signal.
EVENT_NAMES: tuple[str, ...] = ("view", "click", "search", "fav", "cart", "purchase", "dislike")
#: The ``source`` of the implicit rating a dislike becomes.
DISLIKE_SOURCE = "implicit:dislike"
EVENT_TYPES = frozenset(EVENT_NAMES)

#: Layout version of ``recommendations`` messages (see :class:`Recommendation`): 3 added
#: ``because`` and ``variant`` (readers of schema 2 keep working: only fields were added).
RECOMMENDATION_SCHEMA = 3

#: Decimals of a score on the wire (lists on ``recommendations`` and from the API).
WIRE_DECIMALS = 4

#: Key of the model-version marker on the ``item-similarity`` topic.
MODEL_MARKER_KEY = "__model__"

MAX_ID_LENGTH = 256
#: A ``ts`` above this is taken for milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
MAX_TS_SECONDS = 1e11
#: Default of ``max_future_s``: how far ahead of the worker's clock a ``ts`` may be.
DEFAULT_MAX_FUTURE_S = 86400.0


class InvalidInput(ValueError):
    """Raised for input we must reject; ``reason`` is short and machine-friendly."""

    def __init__(self, reason: str, detail: str = "") -> None:
        detail = printable(detail)  # details quote input: it may hold lone surrogates
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class _Record:
    """Plain dataclasses (no Faust: the ALS worker and the data tools use them too)."""

    __slots__ = ()

    @classmethod
    def from_dict(cls, data: dict):
        """Build from a decoded message, ignoring fields this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def asdict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class Rating(_Record):
    user: str
    item: str
    rating: float
    ts: float
    source: str = "explicit"
    #: The shopper took the item from their recommendations list (a shop page's click on
    #: it): the learner's gate does not judge rankings on such feedback (``learner/online.py``).
    from_list: bool = False


@dataclass(slots=True)
class UserEvent(_Record):
    user: str
    item: str
    event: str
    ts: float
    category: str | None = None
    query: str | None = None
    #: As :attr:`Rating.from_list`.
    from_list: bool = False


@dataclass(slots=True)
class Recommendation(_Record):
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
    #: ``{item: recent_item}``: the user's recent interaction that contributed most to the
    #: item being there (default ranker; items from the popularity prior have none).
    because: dict = dataclasses.field(default_factory=dict)
    #: The ranker that made the list (``default``, ``paper``: ``RECSYS_RANKER`` / ``RECSYS_AB``).
    variant: str = "default"
    #: The slot explored (learned ranker, ``RECSYS_EXPLORE``): ``{"item", "position",
    #: "propensity"}``, propensity = the chance this item was put in the list by exploring.
    explored: dict | None = None
    #: Version of this message's layout (:data:`RECOMMENDATION_SCHEMA`; lists written
    #: before the field existed have none and read as schema 1).
    schema: int = RECOMMENDATION_SCHEMA


def wire_list(items) -> list[list]:
    """A list ``[[item, score], ...]`` as frontends get it: scores rounded to
    :data:`WIRE_DECIMALS` (``None`` stays: an item that only pads the list)."""
    return [[q, None if s is None else round(s, WIRE_DECIMALS)] for q, s in items]


def wire_lists(lists) -> list[list[list]]:
    """:func:`wire_list` of many lists, their scores rounded together (``ranking.decimals``)."""
    scores = iter(rounded([s for items in lists for _q, s in items if s is not None], WIRE_DECIMALS))
    return [[[q, None if s is None else next(scores)] for q, s in items] for items in lists]


@dataclass(slots=True)
class DeadLetter(_Record):
    """A rejected input message: where it came from, why, and its exact bytes."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    #: The original value, decoded as UTF-8 where possible ...
    value: str | None
    #: ... and always base64 of the original bytes, so nothing is lost.
    value_b64: str
    key: str | None
    rejected_at: float
    #: True when the message was too big to keep: ``value`` and ``value_b64`` then hold
    #: the same prefix of it (``RECSYS_DEAD_LETTER_MAX_BYTES``) ...
    truncated: bool = False
    #: ... of this many bytes (-1 in letters written before truncation existed).
    original_size: int = -1


# --------------------------------------------------------------------------- parsing
def printable(text: str) -> str:
    """``text`` with lone surrogates escaped (``\\ud800``), so that it can always be encoded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _load_json_object(raw: bytes | str | dict) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        # One parser for the topics and POST /collect/: 6x faster than json.loads, and it
        # rejects NaN, 1e400, bad UTF-8, lone surrogates and nesting deeper than 1024.
        data = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise InvalidInput("bad_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise InvalidInput("bad_json", "not a JSON object")
    return data


def _require_text(value: str, name: str) -> str:
    """``value`` if it can be encoded as UTF-8; a lone surrogate would fail every send later."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"bad_{name}", "not valid Unicode (lone surrogate)") from None
    return value


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
    return _require_text(value, name)


def _optional_text(data: dict, name: str, default: str | None = None) -> str | None:
    value = data.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"bad_{name}")
    return _require_text(value, name)


def _optional_flag(data: dict, name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"bad_{name}", "must be true or false")
    return value


def _require_number(data: dict, name: str) -> float:
    value = data.get(name)
    if value is None:
        raise InvalidInput(f"missing_{name}")
    # JSON numbers only (bool is an int in Python): see the module docstring.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"bad_{name}", "must be a JSON number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a double (only from a dict: orjson makes those floats)
        raise InvalidInput(f"bad_{name}", "too large") from None
    if not math.isfinite(number):
        raise InvalidInput(f"bad_{name}", "not finite")
    return number


def _require_ts(data: dict, max_future_s: float, now: float | None) -> float:
    ts = _require_number(data, "ts")
    if ts < 0:
        raise InvalidInput("bad_ts", "negative")
    if ts > MAX_TS_SECONDS:
        raise InvalidInput("ts_in_milliseconds", f"{ts:.0f} looks like milliseconds; send seconds")
    now = time.time() if now is None else now
    if ts > now + max_future_s:
        raise InvalidInput("ts_in_future", f"{ts:.0f} is more than {max_future_s:g} s after now ({now:.0f})")
    return ts


def _reject_unknown_fields(data: dict, allowed: set[str]) -> None:
    unknown = set(data) - allowed
    if unknown:  # keys of a dict handed to us may be of any type: sort their text
        raise InvalidInput("unknown_fields", ",".join(sorted(map(str, unknown)))[:200])


def parse_rating(raw: bytes | str | dict, *, rating_min: float, rating_max: float,
                 max_future_s: float = DEFAULT_MAX_FUTURE_S, now: float | None = None) -> Rating:
    """Validate one ``ratings`` message; raise :class:`InvalidInput` if it is bad.

    ``now`` (default: the wall clock) and ``max_future_s`` bound ``ts`` from above.
    """
    data = _load_json_object(raw)
    _reject_unknown_fields(data, {"user", "item", "rating", "ts", "source", "from_list"})
    rating = _require_number(data, "rating")
    if not rating_min <= rating <= rating_max:
        raise InvalidInput("rating_out_of_range", f"{rating} not in [{rating_min}, {rating_max}]")
    ts = _require_ts(data, max_future_s, now)
    source = _optional_text(data, "source", "explicit")
    if source is None:
        raise InvalidInput("bad_source")
    return Rating(user=_require_id(data, "user"), item=_require_id(data, "item"), rating=rating, ts=ts, source=source,
                  from_list=_optional_flag(data, "from_list"))


def parse_event(raw: bytes | str | dict, *, max_future_s: float = DEFAULT_MAX_FUTURE_S,
                now: float | None = None) -> UserEvent:
    """Validate one ``user-events`` message; raise :class:`InvalidInput` if it is bad."""
    data = _load_json_object(raw)
    _reject_unknown_fields(data, {"user", "item", "event", "ts", "category", "query", "from_list"})
    event = data.get("event")
    if not isinstance(event, str) or event not in EVENT_TYPES:  # a list or dict is not even hashable
        # reprlib: a plain repr() of a list nested ~1000 deep (orjson allows 1024) raises RecursionError
        raise InvalidInput("unknown_event", reprlib.repr(event)[:50])
    ts = _require_ts(data, max_future_s, now)
    item = _require_id(data, "item", allow_empty=(event == "search"))
    category, query = _optional_text(data, "category"), _optional_text(data, "query")
    return UserEvent(user=_require_id(data, "user"), item=item, event=event, ts=ts, category=category, query=query,
                     from_list=_optional_flag(data, "from_list"))


def parse_collected(raw: bytes | str | dict, *, rating_min: float, rating_max: float,
                    max_future_s: float = DEFAULT_MAX_FUTURE_S, now: float | None = None,
                    default_ts: float | None = None) -> Rating | UserEvent:
    """Validate one ``POST /collect/`` body: a rating if it has ``rating``, else an event.
    A body without ``ts`` gets ``default_ts`` (the receive time; a browser need not send it)."""
    data = _load_json_object(raw)
    if default_ts is not None and "ts" not in data:
        data = {**data, "ts": default_ts}
    if "rating" in data:
        return parse_rating(data, rating_min=rating_min, rating_max=rating_max, max_future_s=max_future_s, now=now)
    return parse_event(data, max_future_s=max_future_s, now=now)


def to_json_bytes(record: _Record | dict[str, Any]) -> bytes:
    """Serialise a record (or dict) to compact JSON bytes, the only wire encoding we use.
    (orjson encodes dataclasses natively, fields in declaration order.)"""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def to_message(record: Rating | UserEvent) -> tuple[bytes, bytes]:
    """``(key, value)`` of an input record: keyed by user (the partitioning rule)."""
    return record.user.encode(), to_json_bytes(record)


# ------------------------------------------------------------------ raw log lines
#: Prefixes of the log lines the log-cleaning agent keeps (the paper's log module).
RATING_PREFIX = "RATING:"
EVENT_PREFIX = "EVENT:"


def _log_number(text: str, name: str) -> float:
    """A log line's field is text by nature: convert it here, the JSON rules apply after."""
    try:
        return float(text)
    except ValueError:
        raise InvalidInput(f"bad_{name}", repr(text)[:50]) from None


def parse_log_line(line: bytes | str, *, rating_min: float, rating_max: float,
                   max_future_s: float = DEFAULT_MAX_FUTURE_S, now: float | None = None) -> Rating | UserEvent | None:
    """Parse one ``raw-logs`` line.

    - ``RATING:user|item|score|ts`` -> :class:`Rating`
    - ``EVENT:user|item|event|ts[|category]`` -> :class:`UserEvent`
    - any other line is not ours: ``None`` (ignored, counted by the agent);
    - a line with our prefix that does not parse raises :class:`InvalidInput`.
    """
    if line is None:  # a null value (tombstone) is no line at all: not ours
        return None
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            # the same stripping as below, so "  RATING:...\xff" is ours too (bad_encoding, not ignored)
            if line.decode("utf-8", "replace").strip().startswith((RATING_PREFIX, EVENT_PREFIX)):
                raise InvalidInput("bad_encoding") from None
            return None
    text = line.strip()
    if text.startswith(RATING_PREFIX):
        fields = text[len(RATING_PREFIX):].split("|")
        if len(fields) != 4:
            raise InvalidInput("wrong_field_count", f"{len(fields)} fields, want 4")
        user, item, score, ts = fields
        data = {"user": user, "item": item, "rating": _log_number(score, "rating"), "ts": _log_number(ts, "ts")}
        return parse_rating(data, rating_min=rating_min, rating_max=rating_max, max_future_s=max_future_s, now=now)
    if text.startswith(EVENT_PREFIX):
        fields = text[len(EVENT_PREFIX):].split("|")
        if len(fields) not in (4, 5):
            raise InvalidInput("wrong_field_count", f"{len(fields)} fields, want 4 or 5")
        data = dict(zip(("user", "item", "event", "ts", "category"), fields, strict=False))
        data["ts"] = _log_number(data["ts"], "ts")
        return parse_event(data, max_future_s=max_future_s, now=now)
    return None


# ------------------------------------------------------------------ the learned ranker
#: Key of a learned weight set's manifest on ``ranker-model`` (its item biases are in
#: chunks keyed ``bias/<task>/<n>``, sent before it).
WEIGHTS_MANIFEST_KEY = "__weights__"
#: Key of the learner's newest refused offers on ``ranker-model`` (``{"refused": n, "rejected": [...]}``).
REJECTED_KEY = "__rejected__"
#: Item biases per chunk message (each well under the producer's 1 MB).
WEIGHTS_CHUNK_ITEMS = 10_000


def features_schema() -> str:
    """A short digest of the feature names: examples and weights of other features are refused."""
    return f"{zlib.crc32(' '.join(FEATURES).encode()):08x}"


def examples_message(ex: Examples) -> tuple[bytes, bytes]:
    """``(key, value)`` of one interaction's examples on ``ranker-examples`` (key: user).
    Only the computed features travel (:data:`ranking.features.BASE_FEATURES`, 6 decimals);
    their crosses are made again where they are read. Row 0 is the positive."""
    base = np.round(ex.X[:, : len(BASE_FEATURES)], 6)
    return ex.user.encode(), orjson.dumps({
        "user": ex.user, "item": ex.item, "ts": ex.ts, "items": list(ex.items), "features": base.tolist(),
        "weights": ex.weights.tolist(), "conversion": bool(ex.labels["conversion"][0]), "from_list": ex.from_list,
        "schema": features_schema()})


def parse_examples(raw: bytes) -> Examples:
    """One ``ranker-examples`` message as :class:`ranking.learned.Examples`; raises
    :class:`InvalidInput` for anything else (``wrong_schema`` for other features)."""
    data = _load_json_object(raw)
    if data.get("schema") != features_schema():
        raise InvalidInput("wrong_schema", f"features {data.get('schema')!r}, this learner's {features_schema()}")
    user, item = _require_id(data, "user"), _require_id(data, "item")
    items, rows, weights = data.get("items"), data.get("features"), data.get("weights")
    if not (isinstance(items, list) and isinstance(rows, list) and isinstance(weights, list)
            and len(items) == len(rows) == len(weights) >= 1 and items[0] == item):
        raise InvalidInput("bad_examples", "items, features and weights: lists of one length, the item first")
    try:
        base = np.array(rows, dtype=np.float64)
        w = np.array(weights, dtype=np.float64)
        ts = float(data.get("ts"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput("bad_examples", str(exc)) from None
    if base.shape != (len(items), len(BASE_FEATURES)) or not (np.all(np.isfinite(base)) and np.all(np.isfinite(w))
                                                             and np.all(w >= 0) and math.isfinite(ts)):
        raise InvalidInput("bad_examples", f"features of shape {base.shape} or values not finite")
    labels = {"interaction": np.zeros(len(items)), "conversion": np.zeros(len(items))}
    labels["interaction"][0] = 1.0
    labels["conversion"][0] = 1.0 if data.get("conversion") is True else 0.0
    return Examples(user, item, ts, tuple(str(q) for q in items), with_crosses(base), labels, w,
                    from_list=data.get("from_list") is True)


def weights_messages(weights: LearnedWeights, published_at: float) -> list[tuple[bytes, bytes]]:
    """A weight set as ``ranker-model`` messages: its item biases in chunks, the manifest last."""
    out, chunks = [], {}
    for task, biases in weights.item_bias.items():
        pairs = list(biases.items())
        chunks[task] = (len(pairs) + WEIGHTS_CHUNK_ITEMS - 1) // WEIGHTS_CHUNK_ITEMS
        for n in range(chunks[task]):
            part = dict(pairs[n * WEIGHTS_CHUNK_ITEMS:(n + 1) * WEIGHTS_CHUNK_ITEMS])
            out.append((f"bias/{task}/{n}".encode(),
                        orjson.dumps({"version": weights.version, "task": task, "chunk": n, "items": part})))
    manifest = {"version": weights.version, "features": list(weights.features), "schema": features_schema(),
                "heads": {t: w.tolist() for t, w in weights.heads.items()}, "chunks": chunks,
                "validation": weights.validation, "published_at": published_at}
    out.append((WEIGHTS_MANIFEST_KEY.encode(), orjson.dumps(manifest, option=orjson.OPT_SERIALIZE_NUMPY)))
    return out
