"""The gap checker of the at-least-once patch asks a real broker (unit tests of its
decisions are in tests/unit/test_faust_patches.py)."""
import types

import pytest
from faust.types import TP

from app.app import app
from app.faust_patches import at_least_once
from tests.brokers import run


@pytest.mark.broker
def test_the_gap_checker_finds_the_first_record_on_a_real_broker(stream_env):
    from broker.topics import create_topics
    from tests.brokers import produce

    conf = stream_env.conf
    run(create_topics(conf))
    run(produce(conf, conf.topics.dead_letters, [(b"k", str(n).encode()) for n in range(6)]))
    owner = types.SimpleNamespace(app=app, in_transaction=False)
    app.conf.kafka.broker = conf.kafka.broker_url  # the checker reads the app's broker setting
    checker = at_least_once.GapChecker(owner)

    async def ask():
        partitions = {}
        try:
            for p in range(conf.kafka.partitions):
                partitions[p] = await checker.first_offset_from(TP(conf.topics.dead_letters, p), 0, 10)
        finally:
            await checker.stop()
        return partitions

    found = run(ask())
    assert sorted(found.values(), key=str) == [0] + [None] * (conf.kafka.partitions - 1)  # one key: one partition
