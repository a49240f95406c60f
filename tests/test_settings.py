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
