"""10,000 fuzzed messages, mixed with valid ones, through one real worker.

A seeded generator writes bad messages of every kind we know of (random bytes,
truncated JSON, wrong types, NaN/Infinity/1e400, millisecond, huge, negative and future
timestamps, empty and 100 KB ids, 10,000 levels of ``[``, invalid UTF-8, lone
surrogates, null keys and values, unknown fields and event types, ~430 KB and ~1.5 MB
values, raw-log lines with our prefixes that do not parse) onto ``ratings``,
``user-events`` and ``raw-logs``, among valid ratings, valid events and valid
``RATING:``/``EVENT:`` log lines, plus log lines that are not ours (ignored, counted,
never dead-lettered).

Every message's fate is decided by the generator before it is sent (and cross-checked
against the parsers of ``app/records.py`` on this side); the worker must then

- dead-letter each bad message exactly once (matched by topic/partition/offset from the
  producer's RecordMetadata), with a non-empty reason and its original bytes' prefix;
- dead-letter nothing else (valid messages, ignored log lines, what the worker itself
  forwards to ``ratings``/``user-events``);
- send a list for every valid rating, explicit, from a log line or implicit from an event;
- stay alive, with ``/metrics/`` counters equal to the expected counts.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import json
import random
import time
from collections.abc import Callable

import orjson
import pytest

from app.records import InvalidInput, parse_event, parse_log_line, parse_rating, to_json_bytes
from tests.brokers import run
from tests.fuzz import MUTATIONS, valid_record, with_raw
from tests.helpers import MODEL, start_worker_with_model

pytestmark = pytest.mark.broker

SEED = 20240917
N_MESSAGES = 10_000
SCALE = {"rating_min": 1.0, "rating_max": 5.0}
ITEMS = sorted(MODEL) + ["not-in-model"]
TS0 = 1_700_000_000.25  # valid timestamps: TS0 + message index (in the past, unique per user anyway)
#: The generator's "now": fixed, so the same seed gives the same messages whatever the clock
#: (test_input_validation.valid_record draws randint(0, now), whose draws depend on now).
#: Only "future" timestamps are taken from the real clock.
GEN_NOW = TS0 - 1
BIG = 430_000  # "oversize" values: under the producer's default 1 MB limit
HUGE = 1_500_000  # over it: sent with max_request_size raised
IMPLICIT = {"view", "click", "purchase", "cart", "fav"}  # RECSYS_EVENT_WEIGHTS' default (not search)


@dataclasses.dataclass
class Msg:
    topic: str  # "ratings" | "events" | "raw_logs"
    key: bytes | None
    value: bytes | None
    #: "bad" (one dead letter), "list" (a list for (user, ts)), "quiet" (valid, no list), "ignored" (raw log)
    fate: str
    label: str  # which generator made it, for the report
    user: str = ""
    ts: float = 0.0
    list_reason: str = ""  # the list's ``reason`` ("rating", "implicit:cart" ...)
    reason: str = ""  # for bad ones: the reason the parser gives (filled in by the cross-check)
    # where it landed
    partition: int = -1
    offset: int = -1


# ------------------------------------------------------------------ generators
def some_key(rng: random.Random, user) -> bytes | None:
    """Mostly the user id; sometimes a null key, another user's id or (rarely) 100 KB."""
    r = rng.random()
    if r < 0.12:
        return None
    if r < 0.17:
        return b"someone-else"
    if r < 0.18:
        return b"k" * 100_000
    return str(user).encode("utf-8", "backslashreplace")


def record_of_kind(rng: random.Random, now: float, rating: bool) -> dict:
    while True:
        data = valid_record(rng, now)
        if ("rating" in data) == rating:
            return data


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def big_ratings(rng: random.Random, i: int, size: int) -> tuple[bytes, str]:
    choice = rng.randrange(3)
    if choice == 0:  # never closed, two-byte characters (the cut must not split one)
        return b'{"user": "u%d", "item": "' % i + "ü".encode() * (size // 2), "big_unclosed"
    if choice == 1:  # valid JSON, an id far too long
        return orjson.dumps({"user": "x" * size, "item": "i0", "rating": 4, "ts": TS0}), "big_long_id"
    return rng.randbytes(size), "big_random_bytes"


def bad_rating(rng: random.Random, i: int, now: float) -> tuple[bytes, str]:
    r = rng.random()
    if r < 0.7:
        mutation = rng.choice(MUTATIONS)
        return mutation(rng, record_of_kind(rng, now, rating=True)), mutation.__name__
    ok = {"user": f"b{i}", "item": "i0", "rating": 4, "ts": TS0 + i}
    extras = [
        (lambda: nested(10_000), "nesting_10000"),
        (lambda: b"[" * 10_000, "nesting_10000_open"),
        (lambda: with_raw(ok, "source", nested(1000)), "nested_source_1000"),
        (lambda: with_raw(ok, "ts", b"1e400"), "ts_1e400"),
        (lambda: with_raw(ok, "rating", rng.choice([b"NaN", b"Infinity", b"-Infinity"])), "rating_nan"),
        (lambda: orjson.dumps({**ok, "ts": rng.choice([1e18, -5, -0.5, (now - 100) * 1000])}), "bad_ts"),
        (lambda: orjson.dumps({**ok, "user": rng.choice(["", "  ", "y" * 100_000])}), "empty_or_100k_user"),
        (lambda: orjson.dumps({**ok, "colour": "red"}), "unknown_field"),
        (lambda: orjson.dumps({**ok, "event": "view"}), "rating_with_event"),
        (lambda: orjson.dumps({**ok, "rating": rng.choice([0, 6, 5.0001, -1])}), "rating_out_of_range"),
        (lambda: orjson.dumps(ok)[:-1] + b', "\\udfff": 1}', "lone_surrogate_key"),
        (lambda: orjson.dumps(ok).replace(b'"b', b'"\xc3\x28', 1), "invalid_utf8"),
        (lambda: None, "null_value"),
        (lambda: b"", "empty_value"),
    ]
    make, label = rng.choice(extras)
    return make(), label


def bad_event(rng: random.Random, i: int, now: float) -> tuple[bytes, str]:
    r = rng.random()
    if r < 0.7:
        mutation = rng.choice(MUTATIONS)
        return mutation(rng, record_of_kind(rng, now, rating=False)), mutation.__name__
    ok = {"user": f"b{i}", "item": "i0", "event": "view", "ts": TS0 + i}
    extras = [
        (lambda: orjson.dumps({**ok, "event": rng.choice(["teleport", "", "View", "purchase ", "buy", "pv"])}),
         "unknown_event"),
        (lambda: with_raw(ok, "event", nested(rng.choice([50, 1000, 1023]))), "nested_event"),
        (lambda: nested(10_000), "nesting_10000"),
        (lambda: with_raw(ok, "ts", rng.choice([b"NaN", b"Infinity", b"1e400"])), "ts_not_finite"),
        (lambda: orjson.dumps({**ok, "ts": rng.choice([1e18, -1, (now - 100) * 1000])}), "bad_ts"),
        (lambda: orjson.dumps({**ok, "item": rng.choice(["", "z" * 100_000])}), "empty_or_100k_item"),
        (lambda: orjson.dumps({**ok, "rating": 4}), "event_with_rating"),
        (lambda: orjson.dumps({**ok, "category": ["shoes"]}), "wrong_type_category"),
        (lambda: with_raw(ok, "query", b'"\\ud800"'), "lone_surrogate"),
        (lambda: orjson.dumps(ok).replace(b"view", b"vi\xffew"), "invalid_utf8"),
        (lambda: None, "null_value"),
    ]
    make, label = rng.choice(extras)
    return make(), label


def bad_log_line(rng: random.Random, i: int, now: float) -> tuple[bytes, str]:
    u = f"bl{i}"
    lines = [
        (f"RATING:{u}|i0|4", "rating_3_fields"), (f"RATING:{u}|i0|4|5|6", "rating_5_fields"),
        ("RATING:", "rating_no_fields"), (f"RATING:{u}|i0|four|5", "rating_not_a_number"),
        (f"RATING:{u}|i0|nan|5", "rating_nan"), (f"RATING:{u}|i0|inf|5", "rating_inf"),
        (f"RATING:{u}|i0|9|5", "rating_out_of_range"), (f"RATING:{u}|i0|4|{(now - 100) * 1000:.0f}", "ts_ms"),
        (f"RATING:{u}|i0|4|1e18", "ts_1e18"), (f"RATING:{u}|i0|4|-5", "ts_negative"),
        (f"RATING:{u}|i0|4|1e400", "ts_1e400"), (f"RATING:{u}|i0|4|{time.time() + 3 * 86400:.0f}", "ts_future"),
        (f"RATING:{u}|i0|4|5\x00", "ts_nul"), ("RATING:|i0|4|5", "missing_user"),
        (f"RATING:{'x' * 300}|i0|4|5", "long_user"), (f"RATING:{u}||4|5", "missing_item"),
        (f"EVENT:{u}|i0|teleport|5", "unknown_event"), (f"EVENT:{u}|i0|view", "event_3_fields"),
        (f"EVENT:{u}|i0|view|5|c|x", "event_6_fields"), (f"EVENT:{u}|i0|view|soon", "event_bad_ts"),
        (f"EVENT:{u}|i0|view|NaN", "event_nan_ts"), ("EVENT:|i0|view|5", "event_missing_user"),
        (f"EVENT:{u}||view|5", "event_missing_item"),
    ]
    raw = [
        (f"RATING:{u}\xff|i0|4|5".encode("latin-1"), "invalid_utf8"),
        (f"  RATING:{u}|i0|4|5".encode() + b"\xc3", "invalid_utf8_after_whitespace"),
        (b"RATING:\xed\xa0\x80|i0|4|5", "surrogate_bytes"),
        (b"EVENT:" + rng.randbytes(40) + b"\xff", "event_random_bytes"),
    ]
    if rng.random() < 0.85:
        line, label = rng.choice(lines)
        return (rng.choice(["", "  ", "\t"]) + line + rng.choice(["", "\n", "\r\n"])).encode(), label
    return rng.choice(raw)


def ignored_log_line(rng: random.Random, i: int) -> tuple[bytes | None, str]:
    lines = [
        (b"INFO GET /index.html 200 %d" % i, "access_log"), (b"rating:u%d|i0|4|5" % i, "lowercase_prefix"),
        (b"xRATING:u|i0|4|5", "text_before_prefix"), (b"RATING :u|i0|4|5", "space_in_prefix"),
        (b"EVENTS:u|i0|view|5", "other_prefix"), (b"2024-06-11 12:00:00 RATING:u|i0|4|5", "timestamp_first"),
        (b"", "empty"), (b"   \n", "blank"), (b'{"user": "u", "item": "i0", "rating": 4, "ts": 5}', "json"),
        (b"\xffRATING:u|i0|4|5", "invalid_utf8_before_prefix"), (b"caf\xe9 au lait", "latin1"),
        (None, "null_value"),
    ]
    if rng.random() < 0.2:
        data = rng.randbytes(rng.randint(1, 200))
        return (b"#" + data if data[:1] in b"REV \t\r\n\x0b\x0c" else data), "random_bytes"
    return rng.choice(lines)


def generate(seed: int, n: int, now: float = GEN_NOW) -> list[Msg]:
    rng = random.Random(seed)
    # Oversize values at fixed, seeded places: ~430 KB on every topic, two of ~1.5 MB.
    specials = dict(zip(rng.sample(range(n), 12), [
        ("ratings", BIG), ("ratings", BIG), ("ratings", BIG), ("ratings", BIG), ("events", BIG),
        ("events", BIG), ("events", BIG), ("raw_logs", BIG), ("raw_logs", BIG), ("raw_logs", BIG),
        ("ratings", HUGE), ("raw_logs", HUGE)], strict=False))
    out: list[Msg] = []
    for i in range(n):
        if i in specials:
            topic, size = specials[i]
            key = rng.choice([None, b"u-big"])
            if topic == "ratings":
                value, label = big_ratings(rng, i, size)
            elif topic == "events":
                value, label = orjson.dumps({"user": "u", "item": "i0", "event": "view", "ts": TS0,
                                             "category": "c" * size}), "big_category"
                value = value[: -rng.choice([1, 2])]  # and cut: bad JSON
            elif size == HUGE:  # our prefix, 1.5 MB of NULs (the JSON encoder's worst case)
                value, label = b"RATING:" + b"\x00" * size, "huge_prefixed"
            else:
                value, label = rng.choice([(b"RATING:u|i0|4|" + b"9" * size, "big_prefixed_ts"),
                                           (b"EVENT:" + "é".encode() * (size // 2), "big_prefixed_event")])
            out.append(Msg(topic, key, value, "bad", label))
            continue
        topic = rng.choices(["ratings", "events", "raw_logs"], weights=[45, 30, 25])[0]
        r = rng.random()
        ts = TS0 + i
        if topic == "ratings":
            if r < 0.35:
                user = rng.choice([f"r{i}", 5_000_000_000 + i, f"  r{i}é "])  # ids are stripped
                data = {"user": user, "item": rng.choice(ITEMS), "rating": rng.choice([1, 2.5, 3, 4, 5]), "ts": ts}
                if rng.random() < 0.2:
                    data["source"] = "explicit"
                out.append(Msg(topic, some_key(rng, user), orjson.dumps(data), "list", "valid_rating",
                               user=str(user).strip(), ts=ts, list_reason="rating"))
            else:
                value, label = bad_rating(rng, i, now)
                out.append(Msg(topic, some_key(rng, f"b{i}"), value, "bad", label))
        elif topic == "events":
            if r < 0.4:
                user = f"e{i}"
                kind = rng.choice(["view", "view", "click", "search", "cart", "fav", "purchase"])
                data = {"user": user, "item": "" if kind == "search" else rng.choice(ITEMS), "event": kind, "ts": ts}
                if rng.random() < 0.5:
                    data["category"] = rng.choice([None, "shoes"])
                if kind == "search":
                    data["query"] = "red shoes"
                key = rng.choice([user.encode(), user.encode(), None])
                if kind in IMPLICIT:
                    out.append(Msg(topic, key, orjson.dumps(data), "list", f"valid_{kind}", user=user, ts=ts,
                                   list_reason=f"implicit:{kind}"))
                else:
                    out.append(Msg(topic, key, orjson.dumps(data), "quiet", f"valid_{kind}"))
            else:
                value, label = bad_event(rng, i, now)
                out.append(Msg(topic, some_key(rng, f"b{i}"), value, "bad", label))
        else:
            key = rng.choice([None, b"host-1", b"host-2"])
            pad = rng.choice(["", "  "]), rng.choice(["", "\n", "\r\n"])
            if r < 0.25:
                user, text = f"l{i}", f"{ts!r}"
                line = f"{pad[0]}RATING:{user}|{rng.choice(ITEMS)}|{rng.choice(['1', '2.5', '4', '5'])}|{text}{pad[1]}"
                out.append(Msg(topic, key, line.encode(), "list", "valid_rating_line", user=user, ts=float(text),
                               list_reason="rating"))
            elif r < 0.35:
                user, kind = f"le{i}", rng.choice(["view", "view", "click", "cart"])
                tail = rng.choice(["", "|shoes"])
                line = f"{pad[0]}EVENT:{user}|{rng.choice(ITEMS)}|{kind}|{ts!r}{tail}{pad[1]}"
                if kind in IMPLICIT:
                    out.append(Msg(topic, key, line.encode(), "list", "valid_event_line_implicit", user=user, ts=ts,
                                   list_reason=f"implicit:{kind}"))
                else:
                    out.append(Msg(topic, key, line.encode(), "quiet", "valid_event_line"))
            elif r < 0.6:
                value, label = ignored_log_line(rng, i)
                out.append(Msg(topic, key, value, "ignored", label))
            else:
                value, label = bad_log_line(rng, i, now)
                out.append(Msg(topic, key, value, "bad", label))
    for m in out:
        if m.value is None and m.key is None:  # aiokafka sends a null value only with a key
            m.key = b"null-value"
    return out


# ------------------------------------------------------------------ the oracle, on this side
def local_outcome(msg: Msg):
    """What app/records.py says about the message: the parsed record, None (ignored) or InvalidInput."""
    if msg.topic == "ratings":
        return parse_rating(msg.value, **SCALE)
    if msg.topic == "events":
        return parse_event(msg.value)
    return parse_log_line(msg.value, **SCALE)


def cross_check(messages: list[Msg]) -> None:
    """The generator's verdicts agree with the parsers (so the worker is judged by the right rules)."""
    wrong = []
    for m in messages:
        try:
            record = local_outcome(m)
        except InvalidInput as err:
            m.reason = err.reason
            if m.fate != "bad" or not err.reason:
                wrong.append((m.label, m.fate, err.reason, (m.value or b"")[:80]))
            continue
        except Exception as err:  # noqa: BLE001  the worker would dead-letter it as internal_error: a parser bug
            wrong.append((m.label, m.fate, repr(err)[:100], (m.value or b"")[:80]))
            continue
        if m.fate == "ignored":
            ok = record is None
        elif m.fate in ("list", "quiet"):
            ok = record is not None
            if ok and m.topic == "raw_logs":  # what the log-cleaning agent forwards must parse again
                parse = parse_rating if hasattr(record, "rating") else parse_event
                ok = parse(to_json_bytes(record), **(SCALE if parse is parse_rating else {})) == record
            if ok and m.fate == "list":
                ok = (record.user, record.ts) == (m.user, m.ts)
        else:
            ok = False
        if not ok:
            wrong.append((m.label, m.fate, record, (m.value or b"")[:80]))
    assert not wrong, f"{len(wrong)} generator verdicts disagree with app/records.py: {wrong[:10]}"


# ------------------------------------------------------------------ kafka
async def produce_all(conf, messages: list[Msg]) -> None:
    """Send everything (one producer whose request limit allows the 1.5 MB values); note where each landed."""
    from aiokafka import AIOKafkaProducer

    names = {"ratings": conf.topics.ratings, "events": conf.topics.events, "raw_logs": conf.topics.raw_logs}
    producer = AIOKafkaProducer(bootstrap_servers=conf.kafka.bootstrap_servers, linger_ms=5,
                                max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        pending = []
        for m in messages:
            fut = await producer.send(names[m.topic], key=m.key, value=m.value)
            if m.value is not None and len(m.value) > 1_000_000:
                await fut  # alone in its request
            pending.append(fut)
        await producer.flush()
        for m, meta in zip(messages, await asyncio.gather(*pending), strict=False):
            m.partition, m.offset = meta.partition, meta.offset
    finally:
        await producer.stop()


async def read_topic(conf, topic: str, *, on_message: Callable, done: Callable[[], bool], timeout: float,
                     settle_polls: int = 0) -> None:
    """Read ``topic`` from the beginning until ``done()`` (or ``timeout``), then until
    ``settle_polls`` polls in a row bring nothing (so late duplicates would be seen)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=conf.kafka.bootstrap_servers, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            if done() and quiet >= settle_polls:
                return
            batch = await consumer.getmany(timeout_ms=300, max_records=2000)
            got = 0
            for records in batch.values():
                for rec in records:
                    on_message(rec)
                    got += 1
            quiet = quiet + 1 if (got == 0 and done()) else 0
    finally:
        await consumer.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what()}"
        time.sleep(0.5)


# ------------------------------------------------------------------ the test
def test_10000_fuzzed_messages_each_bad_one_dead_lettered_once_and_every_valid_rating_listed(stream_env):
    conf = stream_env.conf
    phases = {}
    t0 = time.monotonic()
    messages = generate(SEED, N_MESSAGES)
    cross_check(messages)
    phases["generate+cross-check"] = time.monotonic() - t0

    by_fate = collections.Counter((m.topic, m.fate) for m in messages)
    bad = [m for m in messages if m.fate == "bad"]
    expected_lists = {(m.user, m.ts): m for m in messages if m.fate == "list"}
    assert len(expected_lists) == sum(1 for m in messages if m.fate == "list")  # user+ts unique
    n_ignored = by_fate["raw_logs", "ignored"]
    n_valid_events = by_fate["events", "quiet"] + by_fate["events", "list"]
    sizes = sorted(len(m.value or b"") for m in messages)
    print(f"\nmessages {len(messages)}: " + ", ".join(f"{t}/{f} {c}" for (t, f), c in sorted(by_fate.items())))
    print(f"largest values {sizes[-4:]}, null values {sum(m.value is None for m in messages)}, "
          f"null keys {sum(m.key is None for m in messages)}")

    t = time.monotonic()
    worker = start_worker_with_model(stream_env)
    phases["worker+model"] = time.monotonic() - t
    rss_before = worker.rss_bytes()

    t = time.monotonic()
    run(produce_all(conf, messages))
    phases["produce"] = time.monotonic() - t

    # 1. A list for every valid rating (explicit, from a log line, implicit from an event).
    t = time.monotonic()
    lists: dict = {}

    def on_list(rec):
        value = json.loads(rec.value)
        lists.setdefault((value["user"], value["trigger_ts"]), value)

    run(read_topic(conf, conf.topics.recommendations, on_message=on_list, timeout=150,
                   done=lambda: expected_lists.keys() <= lists.keys()))
    missing = [(m.label, m.user, m.ts) for k, m in expected_lists.items() if k not in lists]
    assert not missing, f"{len(missing)} of {len(expected_lists)} valid ratings got no list: {missing[:10]}"
    for key, m in expected_lists.items():
        assert lists[key]["reason"] == m.list_reason, (m.label, lists[key])
    phases["lists"] = time.monotonic() - t

    # 2. The worker has seen everything: its counters reach the expected numbers.
    t = time.monotonic()
    counters: dict = {}

    def caught_up() -> bool:
        counters.clear()
        counters.update(worker.get("/metrics/json/")["counters"])
        return (counters.get("dead_letters", 0) >= len(bad) and counters.get("raw_logs.ignored", 0) >= n_ignored
                and counters.get("events.accepted", 0) >= n_valid_events)

    wait_for(caught_up, 120, lambda: f"the worker's counters: {counters}\n{worker.log_tail(30)}")

    # 3. Each bad message dead-lettered exactly once, nothing else dead-lettered.
    letters: list = []
    run(read_topic(conf, conf.topics.dead_letters, on_message=lambda rec: letters.append(json.loads(rec.value)),
                   done=lambda: len(letters) >= len(bad), timeout=120, settle_polls=3))
    phases["counters+dead letters"] = time.monotonic() - t
    names = {"ratings": conf.topics.ratings, "events": conf.topics.events, "raw_logs": conf.topics.raw_logs}
    want = {(names[m.topic], m.partition, m.offset): m for m in bad}
    seen = collections.Counter((d["topic"], d["partition"], d["offset"]) for d in letters)
    twice = [(pos, n) for pos, n in seen.items() if n > 1]
    unexpected = [d for d in letters if (d["topic"], d["partition"], d["offset"]) not in want]
    not_lettered = [(m.label, m.topic, (m.value or b"")[:60]) for pos, m in want.items() if pos not in seen]
    assert not twice, f"{len(twice)} messages dead-lettered more than once: {twice[:10]}"
    assert not unexpected, f"{len(unexpected)} unexpected dead letters: " + str(
        [(d["topic"], d["reason"], d["detail"][:80], (d["value"] or "")[:60]) for d in unexpected[:10]])
    assert not not_lettered, f"{len(not_lettered)} bad messages not dead-lettered: {not_lettered[:10]}"
    assert len(letters) == len(bad)

    max_bytes = conf.input.dead_letter_max_bytes
    mismatched = []
    for d in letters:
        m = want[d["topic"], d["partition"], d["offset"]]
        original = m.value or b""
        kept = base64.b64decode(d["value_b64"])
        assert isinstance(d["reason"], str) and d["reason"], d
        assert original.startswith(kept), (m.label, d["detail"])
        if len(original) <= max_bytes:
            assert kept == original and d["truncated"] is False, (m.label, d["detail"])
        else:  # a prefix of at most max_bytes, less at most the start of a cut UTF-8 character
            assert max_bytes - 3 <= len(kept) <= max_bytes and d["truncated"] is True, (m.label, len(kept))
        assert d["original_size"] == len(original)
        try:
            assert d["value"] == kept.decode("utf-8")
        except UnicodeDecodeError:
            assert d["value"] is None
        assert (d["key"] is None) == (m.key is None)
        if d["reason"] != m.reason:  # the worker and this side's parser disagree
            mismatched.append((m.label, d["reason"], m.reason, d["detail"][:80]))
    assert not mismatched, f"{len(mismatched)} dead letters with another reason than expected: {mismatched[:10]}"

    # 4. Alive, and /metrics/ counts what we expect.
    assert worker.alive(), worker.log_tail(40)
    counters = worker.get("/metrics/json/")["counters"]
    assert counters["dead_letters"] == len(bad)
    assert counters.get("raw_logs.ignored", 0) == n_ignored
    for topic, name in names.items():
        expected = collections.Counter(m.reason for m in bad if m.topic == topic)
        got = {k.rsplit(".", 1)[1]: v for k, v in counters.items()
               if k.startswith(f"rejected.{name}.") and v}
        assert got == dict(expected), (topic, got, dict(expected))
    assert counters.get(f"rejected.{conf.topics.ratings}.internal_error", 0) == 0
    rss_after = worker.rss_bytes()

    reasons = collections.Counter(f"{m.topic}:{m.reason}" for m in bad)
    print("bad per topic: " + ", ".join(f"{t} {by_fate[t, 'bad']}" for t in names)
          + f"; valid ratings with a list {len(expected_lists)} (explicit {by_fate['ratings', 'list']}, "
          f"log lines/implicit {len(expected_lists) - by_fate['ratings', 'list']}), valid quiet events "
          f"{by_fate['events', 'quiet'] + by_fate['raw_logs', 'quiet']}, ignored log lines {n_ignored}")
    print(f"dead letters {len(letters)}, truncated {sum(d['truncated'] for d in letters)}; "
          f"reasons ({len(reasons)}): {dict(reasons.most_common())}")
    print(f"worker RSS before {rss_before / 2**20:.1f} MiB, after {rss_after / 2**20:.1f} MiB "
          f"({(rss_after - rss_before) / 2**20:+.1f} MiB)")
    print("phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()))
