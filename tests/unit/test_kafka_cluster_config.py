"""What a replicated cluster is configured with, without starting one (the drill that
starts one is tests/integration/test_kafka_cluster.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings
from broker.apache_kafka import _server_properties
from broker.topics import topic_config


def settings_with(**env) -> Settings:
    return Settings.from_env(env)


def properties(**kwargs) -> dict[str, str]:
    text = _server_properties(port=9092, controller_port=9093, log_dirs=Path("/tmp/x"), extra={}, **kwargs)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_one_node_is_its_own_quorum_with_single_replicas():
    props = properties()
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "1"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "1"


def test_three_nodes_share_the_voters_and_replicate_internal_topics_three_times():
    voters = "1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3"
    props = properties(node_id=2, voters=voters, replicas=3)
    assert props["node.id"] == "2" and props["controller.quorum.voters"] == voters
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "3"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"


@pytest.mark.parametrize("replication, min_insync, expected", [(1, 0, None), (3, 0, "2"), (3, 3, "3"), (2, 5, "2")],
                         ids=["single", "default", "all three", "capped"])
def test_topics_get_min_insync_replicas_only_when_replicated(replication, min_insync, expected):
    conf = settings_with(RECSYS_REPLICATION=str(replication), RECSYS_MIN_INSYNC=str(min_insync))
    config = topic_config(conf, conf.topics.recommendations)
    assert config.get("min.insync.replicas") == expected
    assert config["cleanup.policy"] == "compact"
    assert "cleanup.policy" not in topic_config(conf, conf.topics.ratings)
