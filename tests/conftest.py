"""Shared fixtures: one broker per engine for the session, and worker processes.

Integration tests (``tests/integration/``) talk to real brokers started here on free
loopback ports: Tansu and Apache Kafka (``RECSYS_TEST_ENGINE``, see
``tests/brokers.py``); every broker test runs once per engine. Each test gets its own
topic names, consumer group and data directory so tests never see each other's data.
Unit tests (``tests/unit/``) need none of this.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.brokers import engine_summary, engines_to_test, start_engine

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"


def pytest_report_header(config):
    engines = engines_to_test()
    note = "" if "kafka" in engines else "   <<< Apache Kafka SKIPPED: java or mvn missing >>>"
    return f"broker engines: {', '.join(engines)}{note}"


@pytest.hookimpl(trylast=True)  # after the slowest durations: next to the summary line
def pytest_terminal_summary(terminalreporter):
    line = engine_summary(report.nodeid for report in terminalreporter.stats.get("passed", []))
    if line:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", params=engines_to_test())
def broker(request, tmp_path_factory):
    """A running broker of each engine under test (``.engine`` says which)."""
    # The bad-input tests send 1.5-2 MB messages on purpose (Kafka's default limit is 1 MB,
    # and a batch must fit in one log segment; segments roll every 2 s, so that the
    # compaction tests see their segment closed: tests.brokers.roll_and_wait_for_compaction).
    # Tests count every list on the compacted recommendations topic: nothing younger than
    # 5 minutes is compacted away (the compaction test lowers it for its own topics).
    kafka_config = {"message.max.bytes": 8 << 20, "log.segment.bytes": 16 << 20, "log.roll.ms": 2000,
                    "log.cleaner.min.compaction.lag.ms": 300_000}
    b = start_engine(request.param, tmp_path_factory.mktemp(f"broker-{request.param}"), kafka_config=kafka_config)
    b.engine = request.param
    yield b
    b.stop()


@pytest.fixture
def stream_env(broker, tmp_path, monkeypatch, request):
    """An isolated deployment on the session broker (``harness.local.LocalDeployment``:
    its own topics, app id and data dirs; workers started with it are stopped after the
    test). The test process's environment gets the same variables: commands run in-process
    read them.

    The ranker is the test module's ``RANKER`` (default ``paper``): most stream tests
    check every list against an independent implementation of the paper's formula
    (``tests.helpers.expected_lists``); ``test_default_ranker.py`` does the same for the
    default ranker, and the kill drills (``harness/failover.py``) run it too.
    """
    from harness.local import LocalDeployment

    deployment = LocalDeployment(tmp_path, broker=broker, RECSYS_LOG_EVERY_S=2,
                                 RECSYS_RANKER=getattr(request.module, "RANKER", "paper"), **short_group_timing(broker))
    for key, value in deployment.env.items():
        monkeypatch.setenv(key, value)
    yield deployment
    deployment.stop()


def short_group_timing(broker) -> dict:
    """Kafka's group timing is an ordinary setting: tests shorten it so a stopped worker's
    partitions move in seconds (Tansu gets its own short timing by detection)."""
    if getattr(broker, "engine", "tansu") != "kafka":
        return {}
    return {"RECSYS_SESSION_TIMEOUT_S": 10, "RECSYS_HEARTBEAT_INTERVAL_S": 1}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small generated shop (ratings.csv, events.csv, items.csv) for the ALS commands."""
    from datatools.generator import generate_shop

    return generate_shop(tmp_path_factory.mktemp("shop"), n_users=120, n_items=60, n_ratings=2000, seed=5)
