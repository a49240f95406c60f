"""The foreground brokers' signal handling (``recsys broker``), without a broker."""
import os
import signal

import pytest

from broker.apache_kafka import serve_until_signal


def test_a_sigterm_stops_what_was_started_and_exits_zero():
    seen = []
    before = signal.getsignal(signal.SIGTERM)

    def serve(thing):
        seen.append(("serving", thing))
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not end serve")

    def stop(thing):
        seen.append(("stopping", thing, signal.getsignal(signal.SIGTERM)))
        os.kill(os.getpid(), signal.SIGTERM)  # ignored while stopping

    assert serve_until_signal(lambda: "broker", serve, stop) == 0
    assert seen == [("serving", "broker"), ("stopping", "broker", signal.SIG_IGN)]
    assert signal.getsignal(signal.SIGTERM) is before


def test_serve_returning_gives_its_status_and_a_failed_start_stops_nothing():
    stopped = []
    assert serve_until_signal(lambda: "broker", lambda thing: 3, stopped.append) == 3
    assert stopped == ["broker"]

    def failing_start():
        raise RuntimeError("no java")

    with pytest.raises(RuntimeError, match="no java"):
        serve_until_signal(failing_start, lambda thing: 0, stopped.append)
    assert stopped == ["broker"]
