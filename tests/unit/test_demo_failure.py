"""A demo that went wrong says so (one line, exit status 1, the logs kept), however it ends."""
from harness.demo import demo_failure


def test_a_worker_that_died_or_lists_that_never_came_are_failures():
    ok = {"ratings_sent": 1500, "lists_received": 1480, "worker_exit_code": None}
    assert demo_failure(ok) is None
    assert demo_failure({**ok, "worker_exit_code": 1}) == "the worker exited during the demo (exit status 1)"
    assert demo_failure({**ok, "lists_received": 0}) == "1500 ratings were sent and no list came back"
    assert demo_failure({**ok, "ratings_sent": 0, "lists_received": 0}) is None  # nothing to answer
