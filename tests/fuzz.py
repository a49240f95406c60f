"""Bodies for fuzzing the input path: valid records and the ways to break them
(``POST /collect/`` in tests/integration/test_input_validation.py, the topics in
test_bad_input_at_volume.py)."""
from __future__ import annotations

import random
import time

import orjson

from app.records import EVENT_TYPES

ML_100K_TS = 874_965_758  # a MovieLens 100K timestamp (1997): old data must stay valid

ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:éß日本😀"
MUTATIONS = []


def mutation(fn):
    MUTATIONS.append(fn)
    return fn


def random_id(rng: random.Random) -> str:
    n = rng.choice([1, 2, 8, 20, 256]) if rng.random() < 0.2 else rng.randint(1, 30)
    return "".join(rng.choice(ID_CHARS) for _ in range(n))


def valid_record(rng: random.Random, now: float) -> dict:
    ts = rng.choice([rng.randint(0, int(now)), ML_100K_TS, round(rng.uniform(0, now), 3), int(now)])
    user = rng.choice([random_id(rng), rng.randint(0, 2**40)])
    if rng.random() < 0.5:
        data = {"user": user, "item": rng.choice([random_id(rng), rng.randint(0, 10**6)]),
                "rating": rng.choice([rng.randint(1, 5), round(rng.uniform(1, 5), 2)]), "ts": ts}
        if rng.random() < 0.3:
            data["source"] = "explicit"
        return data
    kind = rng.choice(sorted(EVENT_TYPES))
    data = {"user": user, "item": "" if kind == "search" else random_id(rng), "event": kind, "ts": ts}
    if rng.random() < 0.5:
        data["category"] = rng.choice([None, random_id(rng)])
    if kind == "search":
        data["query"] = rng.choice([None, "red shoes", "日本"])
    return data


def with_raw(data: dict, field: str, raw: bytes) -> bytes:
    """The JSON of ``data`` with ``field``'s value replaced by raw (possibly invalid) JSON text."""
    return orjson.dumps({**data, field: "@@RAW@@"}).replace(b'"@@RAW@@"', raw)


@mutation
def random_bytes(rng, data):
    return rng.randbytes(rng.randint(0, 300))


@mutation
def truncated_json(rng, data):
    body = orjson.dumps(data)
    return body[: rng.randrange(len(body) - 1)]


@mutation
def wrong_type(rng, data):
    field = rng.choice([f for f in ("user", "item", "rating", "ts", "event", "source", "category", "query")
                        if f in data])
    wrong = {
        "user": [1.5, [], {}, True, None, "", "   "], "item": [1.5, [], {"a": 1}, False, None, "  \t"],
        "rating": ["3", "", [], {}, True, None], "ts": ["5", "", [5], {}, False, None],
        "event": [5, "teleport", "VIEW", [], None], "source": [5, [], None, {}],
        "category": [5, [], {}, True], "query": [5, ["q"], {}, False],
    }[field]
    if field == "item" and data.get("event") == "search":
        wrong = [w for w in wrong if w != "  \t"]  # an empty item is legal for searches
    return orjson.dumps({**data, field: rng.choice(wrong)})


@mutation
def not_a_number(rng, data):
    return with_raw(data, rng.choice(["ts", "rating"] if "rating" in data else ["ts"]),
                    rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400]))


@mutation
def bad_timestamp(rng, data):
    now = time.time()
    return orjson.dumps({**data, "ts": rng.choice([-1, -1e-9, 1e18, now * 1000, now + 3 * 86400, 2**63])})


@mutation
def rating_out_of_scale(rng, data):
    return orjson.dumps({**{k: v for k, v in data.items() if k not in ("event", "category", "query")},
                         "rating": rng.choice([0, 5.5, -3, 1e308, 0.999])})


@mutation
def bad_id(rng, data):
    field = rng.choice(["user", "item"] if data.get("event") != "search" else ["user"])
    return orjson.dumps({**data, field: rng.choice(["", "a" * 100_000, "b" * 257, " " * 10])})


@mutation
def deep_nesting(rng, data):
    depth = rng.choice([50, 1100, 5000, 50_000])
    return with_raw(data, rng.choice(["user", "rating", "ts"]), b"[" * depth + b"]" * depth)


@mutation
def lone_surrogate(rng, data):
    where = rng.choice(["value", "key", "raw"])
    if where == "value":
        return with_raw(data, rng.choice(["user", "item", "category"]), rng.choice([b'"\\ud800"', b'"a\\udfffb"']))
    if where == "key":
        return orjson.dumps(data)[:-1] + b', "\\udc00": 1}'
    return with_raw(data, "user", b'"\xed\xa0\x80"')  # a surrogate encoded as UTF-8 bytes


@mutation
def invalid_utf8(rng, data):
    return with_raw(data, rng.choice(["user", "item"]), b'"ab' + rng.choice([b"\xff", b"\xc3", b"\xe6\x97", b"\x80"])
                    + b'cd"')


@mutation
def unknown_or_missing_field(rng, data):
    if rng.random() < 0.5:
        other_kind = "event" if "rating" in data else "rating"  # a rating with "event" is not a rating
        return orjson.dumps({**data, rng.choice(["colour", "rating ", "Ts", other_kind]): 1})
    required = ["user", "ts", "rating" if "rating" in data else "event"]
    if data.get("event") != "search":
        required.append("item")
    drop = rng.choice(required)
    return orjson.dumps({k: v for k, v in data.items() if k != drop})


@mutation
def not_an_object(rng, data):
    return rng.choice([b"[]", b"[1, 2]", b'"rating"', b"1", b"null", b"true", b"", b" ", b"\xef\xbb\xbf{}",
                       b"\xef\xbb\xbf" + orjson.dumps(data), orjson.dumps([data])])


def fuzz_bodies(seed: int, n: int, ts_optional: bool = False) -> list[tuple[bytes, bool]]:
    """``n`` (body, valid) pairs: about a third valid records, the rest broken on purpose.
    ``ts_optional``: a record whose only change is a missing ``ts`` is valid (``POST
    /collect/`` stamps the receive time)."""
    rng = random.Random(seed)
    now = time.time()
    bodies = []
    for _ in range(n):
        data = valid_record(rng, now)
        if rng.random() < 0.33:
            bodies.append((orjson.dumps(data), True))
        else:
            body = rng.choice(MUTATIONS)(rng, data)
            without_ts = orjson.dumps({k: v for k, v in data.items() if k != "ts"})
            bodies.append((body, ts_optional and body == without_ts))
    return bodies
