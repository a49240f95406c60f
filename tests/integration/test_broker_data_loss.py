"""A broker that lost everything (the memory-only Tansu restarted): the restarted worker
keeps its local state, writes it back to the empty changelog, and goes on."""
from __future__ import annotations

import shutil
import time

import pytest

from app.faust_patches.changelog_rebuild import lost_changelogs
from broker.tansu import start_broker
from harness.local import LocalDeployment
from tests.brokers import run
from tests.helpers import (
    MODEL,
    assert_same_list,
    expected_lists,
    lists_for,
    rating_message,
    start_worker_with_model,
)

pytestmark = pytest.mark.broker


def test_a_persisted_offset_past_the_changelog_end_means_the_changelog_was_lost():
    assert lost_changelogs({"a": 120, "b": 5, "c": -1, "d": None}, {"a": -1, "b": 9, "c": -1, "d": 3}) == {"a"}


def test_state_survives_a_broker_that_lost_all_its_data(tmp_path):
    from broker.topics import create_topics
    from tests.brokers import produce

    broker = start_broker(0, log_file=str(tmp_path / "broker.log"))
    port = broker.port
    local = LocalDeployment(tmp_path, broker=port, RECSYS_LOG_EVERY_S=2, RECSYS_RANKER="paper")  # expected_lists
    conf = local.conf
    try:
        first = start_worker_with_model(local)
        before = [("i0", 5, 1.0), ("i1", 4, 2.0), ("i4", 2, 3.0)]
        run(produce(conf, conf.topics.ratings, [rating_message("erin", *r) for r in before]))
        assert len(lists_for(conf, "erin", 3)) == 3
        time.sleep(3.5)  # a commit interval: the state is in RocksDB with its changelog offsets
        first.stop()
        broker.stop()

        broker = start_broker(port, log_file=str(tmp_path / "broker2.log"))  # same port, nothing in it
        run(create_topics(conf))
        second = local.restart_worker(first, ready=True)  # on its data dir: crash-looped before
        local.publish_model(MODEL, "v-after")
        after = ("i3", 5, 4.0)
        run(produce(conf, conf.topics.ratings, [rating_message("erin", *after)]))
        got = lists_for(conf, "erin", 1)
        assert_same_list(got[-1]["items"], expected_lists(before + [after])[-1])  # the old ratings count
        assert second.get("/metrics/json/")["counters"].get("changelog.keys_rewritten", 0) >= 1
        time.sleep(3.5)
        second.kill9()

        # The state is in the changelog again: a worker without its data dir recovers it.
        shutil.rmtree(conf.data_dir)
        local.restart_worker(second, ready=True)
        local.publish_model(MODEL, "v-third")
        last = ("i10", 1, 5.0)
        run(produce(conf, conf.topics.ratings, [rating_message("erin", *last)]))
        got = lists_for(conf, "erin", 2)
        assert_same_list(got[-1]["items"], expected_lists(before + [after, last])[-1])
    finally:
        local.stop()
        broker.stop()
