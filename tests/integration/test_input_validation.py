"""Input validation: timestamps, JSON numbers, bodies that must never crash the API, and
dead letters that must fit on the topic however big the bad message was."""
from __future__ import annotations

import base64
import collections
import http.client
import json
import random
import time
from types import SimpleNamespace

import orjson
import pytest

from app.records import (
    DeadLetter,
    InvalidInput,
    Rating,
    UserEvent,
    parse_event,
    parse_log_line,
    parse_rating,
    to_json_bytes,
)
from tests.brokers import consume, json_values, run
from tests.fuzz import ML_100K_TS, fuzz_bodies

SCALE = {"rating_min": 1.0, "rating_max": 5.0}
NOW = 1_700_000_000.0


def reject(fn, *args, **kw) -> InvalidInput:
    with pytest.raises(InvalidInput) as err:
        fn(*args, **kw)
    return err.value


def rating(**fields) -> dict:
    return {"user": "u", "item": "i", "rating": 4, "ts": 100, **fields}


def event(**fields) -> dict:
    return {"user": "u", "item": "i", "event": "view", "ts": 100, **fields}


# ------------------------------------------------------------------ 1. timestamps
@pytest.mark.parametrize("parse, make", [
    (lambda d, **kw: parse_rating(d, **SCALE, **kw), rating),
    (parse_event, event),
])
def test_timestamps_in_milliseconds_or_the_future_are_rejected(parse, make):
    err = reject(parse, make(ts=NOW * 1000), now=NOW)
    assert err.reason == "ts_in_milliseconds" and "milliseconds" in err.detail and "seconds" in err.detail
    assert reject(parse, make(ts=1e18), now=NOW).reason == "ts_in_milliseconds"
    assert reject(parse, make(ts=NOW + 86400 + 1), now=NOW).reason == "ts_in_future"
    assert reject(parse, make(ts=NOW + 11), now=NOW, max_future_s=10).reason == "ts_in_future"
    assert reject(parse, make(ts=-1), now=NOW).reason == "bad_ts"
    # No lower bound beyond 0: 1997 MovieLens ratings stay legal, and so does a day of clock skew.
    for ts in (0, ML_100K_TS, NOW, NOW + 86400):
        assert parse(make(ts=ts), now=NOW).ts == ts


def test_future_limit_defaults_to_the_wall_clock():
    assert reject(parse_rating, rating(ts=time.time() + 3 * 86400), **SCALE).reason == "ts_in_future"
    assert parse_rating(rating(ts=time.time() - 5), **SCALE).ts > 0  # existing call sites: no new arguments


def test_max_future_s_comes_from_the_environment():
    from app.settings import Settings

    assert Settings.from_env({}).input.max_future_s == 86400.0
    assert Settings.from_env({"RECSYS_MAX_FUTURE_S": "60"}).input.max_future_s == 60.0


def test_log_lines_get_the_same_timestamp_rules():
    assert reason_of(parse_log_line, b"RATING:u|i|4|1700000000000", **SCALE) == "ts_in_milliseconds"
    assert reason_of(parse_log_line, b"EVENT:u|i|view|1e18", **SCALE) == "ts_in_milliseconds"
    assert parse_log_line(b"RATING:u|i|4|874965758", **SCALE).ts == ML_100K_TS


def reason_of(fn, *args, **kw) -> str:
    return reject(fn, *args, **kw).reason


# ------------------------------------------------------------------ 2. JSON numbers only
@pytest.mark.parametrize("raw, why", [
    (b'{"user": "u", "item": "i", "rating": "3", "ts": 5}', "bad_rating"),
    (b'{"user": "u", "item": "i", "rating": 3, "ts": "5"}', "bad_ts"),
    (b'{"user": "u", "item": "i", "rating": "", "ts": 5}', "bad_rating"),
    (b'{"user": "u", "item": "i", "rating": [3], "ts": 5}', "bad_rating"),
])
def test_numbers_must_be_json_numbers_on_the_topics(raw, why):
    err = reject(parse_rating, raw, **SCALE)
    assert (err.reason, err.detail) == (why, "must be a JSON number")


def test_events_need_a_json_number_ts_too():
    err = reject(parse_event, b'{"user": "u", "item": "i", "event": "view", "ts": "5"}')
    assert (err.reason, err.detail) == ("bad_ts", "must be a JSON number")


def test_raw_log_lines_are_text_and_convert_their_own_numbers():
    assert parse_log_line(b"RATING:u1|i1|4.5|17", **SCALE) == Rating(user="u1", item="i1", rating=4.5, ts=17.0)
    assert parse_log_line(b"EVENT:u1|i1|view|17", **SCALE).ts == 17.0
    assert reason_of(parse_log_line, b"RATING:u1|i1|four|17", **SCALE) == "bad_rating"
    assert reason_of(parse_log_line, b"RATING:u1|i1|4|later", **SCALE) == "bad_ts"
    assert reason_of(parse_log_line, b"RATING:u1|i1|nan|17", **SCALE) == "bad_rating"
    assert reason_of(parse_log_line, b"EVENT:u1|i1|view|inf", **SCALE) == "bad_ts"


# ------------------------------------------------------------------ 3. nothing but InvalidInput
LONE = "\ud800"


@pytest.mark.parametrize("parse, data, why", [
    (lambda d: parse_rating(d, **SCALE), rating(user=LONE), "bad_user"),
    (lambda d: parse_rating(d, **SCALE), rating(item="x" + LONE), "bad_item"),
    (lambda d: parse_rating(d, **SCALE), rating(source=LONE), "bad_source"),
    (parse_event, event(user="\udcff"), "bad_user"),
    (parse_event, event(category=LONE), "bad_category"),
    (parse_event, event(event="search", item="", query=LONE), "bad_query"),
    (parse_event, event(event=[]), "unknown_event"),  # unhashable: a TypeError today
    (parse_event, event(event={"a": 1}), "unknown_event"),
    (parse_event, {**event(), LONE: 1}, "unknown_fields"),
    (parse_event, {**event(), 1: 1, "x": 2}, "unknown_fields"),  # keys of mixed types
])
def test_dicts_that_cannot_be_encoded_raise_invalid_input(parse, data, why):
    err = reject(parse, data)
    assert err.reason == why
    orjson.dumps({"error": err.reason, "detail": err.detail})  # a 400 body / dead letter can carry it


def fuzz_value(rng: random.Random, depth: int = 0):
    """Any JSON-ish value, including the awkward ones (lone surrogates, huge ints, NaN)."""
    choices = [None, True, False, 0, -1, 3, 2**70, -(2**70), 4.5, float("nan"), float("inf"), 1e308, "", " ",
               "u", "3", "x" * 300, LONE, "a\udc80b", "😀", "view", "search", "\x00"]
    if depth < 3:
        choices += [[fuzz_value(rng, depth + 1)], {"k": fuzz_value(rng, depth + 1)}]
    return rng.choice(choices)


def fuzz_dict(rng: random.Random) -> dict:
    """A valid rating or event with 0-2 fields replaced by fuzz values, sometimes with an odd extra key."""
    data = rating(source="explicit") if rng.random() < 0.5 else event(category="c", query=None)
    for name in rng.sample(sorted(data), rng.choice([0, 0, 1, 1, 2])):
        data[name] = fuzz_value(rng)
    if rng.random() < 0.1:
        data[rng.choice([LONE, 7, ("t",), "extra"])] = 1
    return data


def test_fuzzed_dicts_raise_only_invalid_input_and_what_parses_encodes():
    rng = random.Random(1234)
    outcomes: collections.Counter = collections.Counter()
    for _ in range(3000):
        data = fuzz_dict(rng)
        for name, parse in (("rating", lambda d: parse_rating(d, **SCALE)), ("event", parse_event)):
            try:
                record = parse(data)
            except InvalidInput as err:
                orjson.dumps({"error": err.reason, "detail": err.detail})
                outcomes[f"{name}:rejected"] += 1
                continue
            encoded = to_json_bytes(record)  # never a TypeError: every string in it is valid Unicode
            record.user.encode()
            assert parse(encoded) == record
            outcomes[f"{name}:accepted"] += 1
    # The generator reaches both outcomes of both parsers (else the test proves nothing).
    assert min(outcomes[k] for k in ("rating:accepted", "rating:rejected", "event:accepted",
                                     "event:rejected")) >= 50, outcomes


def test_collect_body_parser_is_the_topic_parser():
    from app.records import parse_collected

    assert parse_collected(b'{"user": "u", "item": "i", "rating": 4, "ts": 5}', **SCALE) == Rating(
        user="u", item="i", rating=4.0, ts=5.0)
    assert parse_collected(b'{"user": "u", "item": "i", "event": "cart", "ts": 5}', **SCALE) == UserEvent(
        user="u", item="i", event="cart", ts=5.0)
    for body in (b'{"user": "\\ud800", "item": "i", "rating": 4, "ts": 5}', b"[" * 5000 + b"]" * 5000,
                 b'{"user": "u", "item": "i", "rating": 4, "ts": 1e400}', b"\xff", b"", b"[]"):
        assert reason_of(parse_collected, body, **SCALE) == "bad_json"
    assert reason_of(parse_collected, b'{"user": "u", "item": "i", "rating": 4, "ts": 5e12}',
                     **SCALE) == "ts_in_milliseconds"


# ------------------------------------------------------------------ 4. dead-letter truncation
def fake_event(value: bytes, key: bytes | None = b"u1"):
    return SimpleNamespace(message=SimpleNamespace(topic="ratings", partition=1, offset=7, key=key, value=value))


def test_dead_letters_keep_a_bounded_prefix_of_huge_messages():
    from agents.dead_letters import dead_letter_for

    original = ("é" * 400_000).encode()  # 800 KB of two-byte characters
    letter = dead_letter_for(fake_event(original), "bad_json", "unexpected end", max_bytes=1001)
    kept = base64.b64decode(letter.value_b64)
    assert original.startswith(kept) and 998 <= len(kept) <= 1001
    assert len(kept) % 2 == 0 and letter.value == kept.decode()  # no character cut in half: text and bytes agree
    assert (letter.truncated, letter.original_size, letter.reason) == (True, len(original), "bad_json")
    assert "truncated" in letter.detail and str(len(original)) in letter.detail and "unexpected end" in letter.detail


def test_small_dead_letters_are_whole_and_untruncated():
    from agents.dead_letters import dead_letter_for

    original = b'{"user": "u1", "rating": 11}'
    letter = dead_letter_for(fake_event(original), "rating_out_of_range", "11", max_bytes=1000)
    assert base64.b64decode(letter.value_b64) == original and letter.value == original.decode()
    assert (letter.truncated, letter.original_size, letter.detail) == (False, len(original), "11")
    binary = dead_letter_for(fake_event(b"\xff" * 5000), "bad_json", max_bytes=100)
    assert binary.value is None and base64.b64decode(binary.value_b64) == b"\xff" * 100 and binary.truncated


def test_dead_letter_of_any_message_fits_under_the_producer_limit():
    from agents.dead_letters import dead_letter_for

    # Control characters are the JSON encoder's worst case (\u0000 is six bytes); a huge key too.
    letter = dead_letter_for(fake_event(b"\x00" * 3_000_000, key=b"k" * 2_000_000), "bad_json")
    assert len(to_json_bytes(letter)) < 900_000 and letter.truncated
    assert len(letter.key) <= 1024


def test_dead_letter_record_reads_letters_written_before_truncation_existed():
    old = {"topic": "ratings", "partition": 0, "offset": 3, "reason": "bad_json", "detail": "", "value": "x",
           "value_b64": "eA==", "key": "u1", "rejected_at": 1.0}
    letter = DeadLetter.from_dict(old)
    assert letter.truncated is False and letter.original_size == -1 and letter.value == "x"


def test_dead_letter_max_bytes_setting():
    from agents.dead_letters import VALUE_MAX_BYTES
    from app.settings import Settings

    assert Settings.from_env({}).input.dead_letter_max_bytes == VALUE_MAX_BYTES == 65536
    assert Settings.from_env({"RECSYS_DEAD_LETTER_MAX_BYTES": "1000"}).input.dead_letter_max_bytes == 1000


# ------------------------------------------------------------------ against a real worker
async def produce_big(conf, topic: str, messages) -> None:
    """Like conftest.produce, with a producer that may send messages over 1 MB."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=conf.kafka.bootstrap_servers, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


@pytest.mark.broker
def test_oversize_bad_messages_are_dead_lettered_truncated_and_the_agent_goes_on(stream_env):
    conf = stream_env.conf
    worker = stream_env.start_worker()
    malformed = b'{"user": "u9", "item": "' + "ü".encode() * 215_000  # ~430 KB, never closed
    too_long_id = orjson.dumps({"user": "u9" * 1_000_000, "item": "i", "rating": 4, "ts": 5})  # 2 MB
    good = b'{"user": "u9", "item": "i1", "rating": 4, "ts": 5}'
    run(produce_big(conf, conf.topics.ratings, [(b"u9", malformed), (b"u9", too_long_id), (b"u9", good)]))

    lists = json_values(run(consume(conf, conf.topics.recommendations, until=lambda m: len(m) >= 1)))
    assert [rec["user"] for rec in lists] == ["u9"]  # same partition, after both: the agent kept going
    letters = json_values(run(consume(conf, conf.topics.dead_letters, until=lambda m: len(m) >= 2)))
    assert sorted(d["reason"] for d in letters) == ["bad_json", "bad_user"]
    for letter, original in zip(sorted(letters, key=lambda d: d["offset"]), (malformed, too_long_id), strict=False):
        kept = base64.b64decode(letter["value_b64"])
        assert letter["truncated"] is True and letter["original_size"] == len(original)
        assert original.startswith(kept) and 65536 - 3 <= len(kept) <= 65536
        assert letter["value"].encode() == kept
    assert worker.alive()
    counters = worker.get("/metrics/json/")["counters"]
    assert counters["dead_letters"] == 2 and counters[f"rejected.{conf.topics.ratings}.bad_user"] == 1


# ------------------------------------------------------------------ fuzzing POST /collect/
class Client:
    """A keep-alive HTTP connection to one worker that reconnects once if the server closed it."""

    def __init__(self, port: int, headers: dict | None = None) -> None:
        self.port, self.headers, self.conn = port, headers or {}, None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                                    **self.headers})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@pytest.mark.broker
def test_collect_answers_2000_fuzzed_bodies_without_a_server_error(stream_env):
    conf = stream_env.conf
    worker = stream_env.start_worker()
    bodies = fuzz_bodies(seed=20240611, n=2000, ts_optional=True)
    assert any(valid and b'"ts"' not in body for body, valid in bodies)  # some are valid only thanks to the stamp
    client = Client(stream_env.conf.api.web_port)
    answers = collections.Counter()
    for body, valid in bodies:
        status, payload = client.post("/collect/", body)
        assert status < 500, (status, body[:200], payload[:300])
        if valid:
            assert status == 202, (body[:200], payload[:300])
        else:
            assert status == 400, (body[:200], payload[:300])
            assert json.loads(payload)["error"], payload  # a machine-readable reason
        answers[status] += 1
    n_valid = sum(valid for _, valid in bodies)
    assert answers == {202: n_valid, 400: len(bodies) - n_valid} and 500 < n_valid < 1000
    assert worker.alive()

    counters = worker.get("/metrics/json/")["counters"]
    assert counters["collect.accepted"] == n_valid
    assert sum(v for k, v in counters.items() if k.startswith("collect.rejected.")) == len(bodies) - n_valid
    # Every accepted record reached its topic and reads back through the topic parser.
    n_ratings = sum(1 for body, valid in bodies if valid and b'"rating"' in body)
    ratings = run(consume(conf, conf.topics.ratings, timeout=60, until=lambda m: sum(
        1 for x in m if b'"source":"explicit"' in x.value) >= n_ratings))
    events = run(consume(conf, conf.topics.events, until=lambda m: len(m) >= n_valid - n_ratings, timeout=60))
    explicit = [r for r in (parse_rating(m.value, **SCALE) for m in ratings) if r.source == "explicit"]
    assert len(explicit) == n_ratings and len([parse_event(m.value) for m in events]) == n_valid - n_ratings
