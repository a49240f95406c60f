"""What every Kafka client of the project is built with (broker/clients.py), per engine and
guarantee, without a broker (the engine is given, not asked)."""
from __future__ import annotations

import asyncio

import pytest

from app.settings import Settings
from broker.clients import PRODUCER_PROFILES, KafkaClients


def clients(engine: str, guarantee: str = "at_least_once") -> KafkaClients:
    return KafkaClients(Settings().replace(kafka={"broker_engine": engine},
                                           worker={"processing_guarantee": guarantee}))


@pytest.mark.parametrize("guarantee, isolation", [("exactly_once", "read_committed"),
                                                  ("at_least_once", "read_uncommitted")], ids=["eos", "alo"])
def test_every_reader_reads_committed_under_exactly_once(guarantee, isolation):
    assert asyncio.run(clients("kafka", guarantee).consumer_options())["isolation_level"] == isolation


@pytest.mark.parametrize("profile", sorted(PRODUCER_PROFILES))
def test_every_producer_waits_for_the_replicas_and_is_idempotent_on_apache_kafka(profile):
    on_kafka = asyncio.run(clients("kafka").producer_options(profile))
    assert on_kafka["acks"] == "all" and on_kafka["enable_idempotence"] is True
    on_tansu = asyncio.run(clients("tansu").producer_options(profile))  # Tansu refuses producer ids
    assert on_tansu["acks"] == "all" and on_tansu["enable_idempotence"] is False
