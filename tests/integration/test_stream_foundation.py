"""Topics, loaders, log cleaning and dead letters against the embedded broker."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.records import parse_event, parse_rating
from broker.topics import create_topics
from tests.brokers import consume, json_values, produce, run
from tests.conftest import DATASETS, ROOT

pytestmark = pytest.mark.broker


def test_create_topics_makes_every_topic_with_one_partition_count(stream_env):
    from aiokafka.admin import AIOKafkaAdminClient

    from broker.topics import create_topics, topic_names

    conf = stream_env.conf
    assert set(run(create_topics(conf)).values()) == {"created"}
    assert set(run(create_topics(conf)).values()) == {"exists"}  # idempotent

    async def describe():
        admin = AIOKafkaAdminClient(bootstrap_servers=conf.kafka.bootstrap_servers)
        await admin.start()
        try:
            return await admin.describe_topics(topic_names(conf))
        finally:
            await admin.close()

    described = {t["topic"]: len(t["partitions"]) for t in run(describe())}
    assert described == {name: conf.kafka.partitions for name in topic_names(conf)}


def test_loader_streams_a_generated_shop_and_counts_skipped_rows(stream_env, tmp_path):
    from datatools.generator import generate_shop
    from datatools.loader import load_file

    conf = stream_env.conf
    run(create_topics(conf))  # recsys load creates them too; load_file alone does not
    shop = generate_shop(tmp_path / "shop", n_users=50, n_items=40, n_ratings=300, seed=7)
    ratings_file = tmp_path / "ratings.csv"
    good = Path(shop["ratings"]).read_text()
    ratings_file.write_text(good + "u1,i1,notanumber,5\nu2,,3,5\n\n")
    result = run(load_file(str(ratings_file), "csv", conf=conf, progress=False))
    assert result["sent"] == 300
    assert result["skipped"] == {"bad_rating": 1, "missing_item": 1, "blank": 1}

    messages = run(consume(conf, conf.topics.ratings, until=lambda m: len(m) >= 300, timeout=30))
    assert len(messages) == 300
    parsed = [parse_rating(m.value, rating_min=1, rating_max=5) for m in messages]
    assert all(m.key == p.user.encode() for m, p in zip(messages, parsed, strict=False))  # keyed by user

    events = run(load_file(shop["events"], "events-csv", conf=conf, limit=100, progress=False))
    assert events["sent"] == 100 and events["topics"] == {conf.topics.events: 100}
    got = run(consume(conf, conf.topics.events, until=lambda m: len(m) >= 100, timeout=30))
    assert {parse_event(m.value).event for m in got} <= {"view", "click", "cart", "purchase", "search"}


@pytest.mark.skipif(not (DATASETS / "renttherunway").exists(), reason="shared datasets not present")
def test_recsys_load_rent_the_runway_prints_exact_counts(stream_env):
    path = DATASETS / "renttherunway" / "renttherunway_ratings.jsonl.gz"
    out = subprocess.run([sys.executable, "-m", "cli.main", "load", str(path), "--format", "renttherunway"],
                         cwd=ROOT, env=stream_env.child_env, capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["sent"] == 192_462
    assert counts["skipped"] == {"missing_rating": 82}


def test_log_cleaning_forwards_good_lines_and_dead_letters_bad_ones(stream_env):
    conf = stream_env.conf
    worker = stream_env.start_worker()
    lines = [
        b"RATING:u1|i1|4|1700000000",
        b"EVENT:u1|i2|cart|1700000001|shoes",
        b"2024-01-01 INFO healthcheck ok",  # not ours: ignored
        b"RATING:u1|i1|4",  # wrong field count
        b"RATING:u2|i3|9|1700000002",  # out of range on 1..5
        b"EVENT:u3|i4|teleport|1700000003",  # unknown event
        b"RATING:\xff\xfe|x|1|1",  # not UTF-8
    ]
    run(produce(conf, conf.topics.raw_logs, [(b"log", line) for line in lines]))
    letters = json_values(run(consume(conf, conf.topics.dead_letters, until=lambda m: len(m) >= 4)))
    assert sorted(d["reason"] for d in letters) == ["bad_encoding", "rating_out_of_range", "unknown_event",
                                                    "wrong_field_count"]
    for letter in letters:
        assert letter["topic"] == conf.topics.raw_logs and letter["offset"] >= 0
        assert base64.b64decode(letter["value_b64"]) in lines  # the original bytes, exactly
    # The cart event also becomes an implicit rating (behaviour agent); it may or may not be
    # there yet: only the explicit one comes from the log line.
    ratings = run(consume(conf, conf.topics.ratings, until=lambda m: len(m) >= 1))
    parsed = [parse_rating(m.value, rating_min=1, rating_max=5) for m in ratings]
    assert [(r.item, r.source) for r in parsed if r.source == "explicit"] == [("i1", "explicit")]
    assert {(r.item, r.source) for r in parsed if r.source != "explicit"} <= {("i2", "implicit:cart")}
    events = json_values(run(consume(conf, conf.topics.events, until=lambda m: len(m) >= 1)))
    assert [(e["item"], e["event"], e["category"]) for e in events] == [("i2", "cart", "shoes")]
    assert worker.alive()


def test_malformed_input_goes_to_dead_letters_and_the_worker_keeps_going(stream_env):
    conf = stream_env.conf
    worker = stream_env.start_worker()
    bad_ratings = [
        b"{not json",
        b'{"user": "u1", "item": "i1", "rating": 4, "ts": 1, "colour": "red"}',
        b'{"user": "u1", "item": "i1", "rating": 11, "ts": 1}',
        b'{"item": "i1", "rating": 4, "ts": 1}',
        b'[1, 2, 3]',
    ]
    bad_events = [b'{"user": "u1", "item": "i1", "event": "view"}', b"\x00\x01"]
    run(produce(conf, conf.topics.ratings, [(b"u1", v) for v in bad_ratings]))
    run(produce(conf, conf.topics.events, [(b"u1", v) for v in bad_events]))
    good = b'{"user": "u9", "item": "i1", "rating": 4, "ts": 5}'
    run(produce(conf, conf.topics.ratings, [(b"u9", good)]))

    letters = json_values(run(consume(conf, conf.topics.dead_letters, until=lambda m: len(m) >= 7)))
    reasons = sorted((d["topic"] == conf.topics.ratings, d["reason"]) for d in letters)
    assert reasons == sorted([(True, "bad_json"), (True, "unknown_fields"), (True, "rating_out_of_range"),
                              (True, "missing_user"), (True, "bad_json"), (False, "missing_ts"),
                              (False, "bad_json")])
    lists = json_values(run(consume(conf, conf.topics.recommendations, until=lambda m: len(m) >= 1)))
    assert [rec["user"] for rec in lists] == ["u9"]  # the good rating after the bad ones was processed
    assert worker.alive()
    counters = worker.get("/metrics/json/")["counters"]
    assert counters["dead_letters"] == 7
    assert counters[f"rejected.{conf.topics.ratings}.bad_json"] == 2
