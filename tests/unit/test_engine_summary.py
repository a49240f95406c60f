"""The test run's closing line says which broker engines the integration tests ran on."""
from __future__ import annotations

from tests.brokers import engine_summary


def test_counts_per_engine_and_says_when_kafka_did_not_run():
    both = ["tests/integration/test_a.py::test_x[tansu]", "tests/integration/test_a.py::test_x[kafka]",
            "tests/integration/test_b.py::test_y[kafka-2]", "tests/unit/test_c.py::test_z"]
    assert engine_summary(both) == "broker tests passed: 1 on tansu, 2 on kafka"
    only_tansu = engine_summary(["tests/integration/test_a.py::test_x[tansu]"])
    assert only_tansu.startswith("broker tests passed: 1 on tansu, 0 on kafka") and "NONE on Apache Kafka" in only_tansu
    assert engine_summary(["tests/unit/test_c.py::test_z[kafkaesque]"]) == ""
    assert engine_summary(iter(both)) == "broker tests passed: 1 on tansu, 2 on kafka"  # read once, as pytest gives it
