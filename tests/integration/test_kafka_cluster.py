"""A replicated three-node Apache Kafka cluster (``recsys broker --engine kafka --nodes
3``) losing a broker under load: nothing lost, every final list right, and the worker
and the model worker carry on (Apache Kafka only: Tansu is one embedded broker).

The drill: ``harness.failover`` (``broker-kill``); its repeated runs under each guarantee
are ``benchmarks/failover_bench.py --drill broker-kill``.
"""
from __future__ import annotations

import pytest

from harness.cluster import SupervisedCluster
from harness.failover import Drill, run_drill

pytestmark = pytest.mark.broker


def test_a_cluster_losing_the_busiest_broker_loses_nothing(broker, tmp_path):
    if broker.engine != "kafka":
        pytest.skip("Apache Kafka only (Tansu is one embedded broker)")
    cluster = SupervisedCluster(tmp_path / "cluster", nodes=3, restart_after=10)
    try:
        drill = Drill("broker-kill", rate=1000, seconds=20, kill_at=6, wait_s=120)
        result = run_drill(drill, cluster, tmp_path / "drill", say=print, RECSYS_REPLICATION=3,
                           RECSYS_SESSION_TIMEOUT_S=10)
        print(result.as_row())
        restarted = cluster.restarts()
        log = cluster.log()
    finally:
        cluster.stop()
    assert result.sent == int(drill.rate * drill.seconds)
    assert result.missing == [], f"{len(result.missing)} ratings got no list, e.g. {result.missing[:5]}"
    assert result.wrong_final == []
    assert result.cluster["node_restarted"] and restarted == [result.cluster["killed_node"]], log[-2000:]
    assert f"node {result.cluster['killed_node']} (pid" in log and "exited with code" in log
    assert result.cluster["worker_carried_on"] and result.cluster["model_worker_carried_on"]
    assert result.cluster["model_worker_read"] >= result.sent
