"""Settings come from the environment; Kafka security passes through; `recsys broker`."""
import os
import signal
import subprocess
import sys

import faust

from app.app import broker_credentials
from app.embedded import free_port, is_listening
from app.settings import Settings
from tests.conftest import ROOT


def settings_with(monkeypatch, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_defaults_use_the_embedded_broker(monkeypatch):
    monkeypatch.delenv("RECSYS_BROKER", raising=False)
    conf = settings_with(monkeypatch, RECSYS_EMBEDDED_PORT="19999")
    assert conf.uses_embedded_broker
    assert conf.broker_url == "kafka://127.0.0.1:19999"
    assert conf.bootstrap_servers == ["127.0.0.1:19999"]
    assert conf.kafka_security_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(conf) is None


def test_a_configured_cluster_with_sasl_ssl(monkeypatch, tmp_path):
    import ssl

    conf = settings_with(monkeypatch, RECSYS_BROKER="k1:9093;k2:9093", RECSYS_SECURITY_PROTOCOL="SASL_SSL",
                         RECSYS_SASL_MECHANISM="SCRAM-SHA-256", RECSYS_SASL_USERNAME="shop",
                         RECSYS_SASL_PASSWORD="secret", RECSYS_SSL_CAFILE="")
    assert not conf.uses_embedded_broker
    assert conf.bootstrap_servers == ["k1:9093", "k2:9093"]
    kw = conf.kafka_security_kwargs()
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("shop", "secret")
    assert isinstance(kw["ssl_context"], ssl.SSLContext)
    creds = broker_credentials(conf)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password) == ("shop", "secret")
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_algorithm_settings_and_implicit_ratings(monkeypatch):
    conf = settings_with(monkeypatch, RECSYS_K="5", RECSYS_THETA="0.4", RECSYS_RATING_MIN="2",
                         RECSYS_RATING_MAX="10", RECSYS_IMPLICIT_RATINGS="purchase:10, cart:8")
    assert (conf.k, conf.theta, conf.rating_min, conf.rating_max) == (5, 0.4, 2.0, 10.0)
    assert conf.implicit_rating_map() == {"purchase": 10.0, "cart": 8.0}


def test_recsys_broker_runs_in_the_foreground_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "app.main", "broker", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, RECSYS_BROKER=""))
    try:
        first = proc.stdout.readline()  # printed once the broker answers metadata requests
        assert f"127.0.0.1:{port}" in first
        assert is_listening(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "stopped" in proc.stdout.read()
        assert not is_listening(port)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_worker_tuning_reaches_faust(monkeypatch, tmp_path):
    from app.app import create_app

    conf = settings_with(monkeypatch, RECSYS_DATA_DIR=str(tmp_path), RECSYS_PRODUCER_LINGER_MS="25",
                         RECSYS_PRODUCER_BATCH_BYTES="65536", RECSYS_MAX_POLL_RECORDS="300")
    faust_conf = create_app(conf).conf
    assert faust_conf.producer_linger == 0.025
    assert faust_conf.producer_max_batch_size == 65536
    assert faust_conf.broker_max_poll_records == 300


def test_default_poll_fits_below_a_full_stream_buffer(monkeypatch, tmp_path):
    """A stream stops fetching when its buffer is 80% full (mode's pressure_high_ratio);
    one poll's records must fit in the remaining 20%, else the buffer fills and every
    further message is delivered through a task and a wait."""
    from mode.utils.queues import FlowControlQueue

    from app.app import create_app

    faust_conf = create_app(settings_with(monkeypatch, RECSYS_DATA_DIR=str(tmp_path))).conf
    size = faust_conf.stream_buffer_maxsize
    headroom = size - size // FlowControlQueue.pressure_high_ratio
    assert 0 < faust_conf.broker_max_poll_records <= headroom
