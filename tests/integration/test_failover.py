"""Nothing lost when a worker is killed: counts, on the real broker, real RocksDB, real topics.

One run of each drill (``harness/failover.py``); ``benchmarks/failover_bench.py`` repeats
them and prints the table. Each asserts two things: every rating sent got at least one
list, and every user's last list equals what one worker that never crashed computes.
"""
from __future__ import annotations

import pytest

from harness.failover import Drill, run_drill

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("drill", [
    Drill("failover", rate=400, seconds=24, kill_at=10),
    Drill("restart", rate=300, seconds=16, kill_at=6),
    Drill("restart-wiped", rate=300, seconds=16, kill_at=6),
], ids=lambda d: d.kind)
def test_a_killed_worker_loses_no_rating(broker, tmp_path, drill):
    result = run_drill(drill, broker, tmp_path, say=print)
    print(result.as_row())
    assert result.sent == int(drill.rate * drill.seconds)
    assert result.missing == [], f"{len(result.missing)} ratings got no list, e.g. {result.missing[:5]}"
    assert result.wrong_final == [], f"{len(result.wrong_final)} users' final lists are wrong"
