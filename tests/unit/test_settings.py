"""Settings come from the environment; Kafka security passes through; `recsys broker`."""
import os
import signal
import subprocess
import sys

import faust
import pytest

from app.app import broker_credentials
from app.settings import SettingError, Settings
from broker.clients import security_kwargs
from broker.detect import KAFKA, TANSU, engine_of_cluster_id
from broker.ports import free_port, is_listening
from tests.conftest import ROOT


def settings_with(**env):
    return Settings.from_env(env)


def test_defaults_use_the_embedded_broker():
    conf = settings_with(RECSYS_EMBEDDED_PORT="19999")
    assert conf.kafka.uses_embedded_broker
    assert conf.kafka.broker_url == "kafka://127.0.0.1:19999"
    assert conf.kafka.bootstrap_servers == ["127.0.0.1:19999"]
    assert security_kwargs(conf) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(conf) is None


def test_a_configured_cluster_with_sasl_ssl(tmp_path):
    import ssl

    conf = settings_with(RECSYS_BROKER="k1:9093;k2:9093", RECSYS_SECURITY_PROTOCOL="SASL_SSL",
                         RECSYS_SASL_MECHANISM="SCRAM-SHA-256", RECSYS_SASL_USERNAME="shop",
                         RECSYS_SASL_PASSWORD="secret", RECSYS_SSL_CAFILE="", RECSYS_API_TOKEN="t0ken")
    assert not conf.kafka.uses_embedded_broker
    assert conf.kafka.bootstrap_servers == ["k1:9093", "k2:9093"]
    kw = security_kwargs(conf)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("shop", "secret")
    assert isinstance(kw["ssl_context"], ssl.SSLContext)
    creds = broker_credentials(conf)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password) == ("shop", "secret")
    assert conf.api.api_token.value == "t0ken"
    for shown in (repr(conf), str(conf), repr(conf.kafka), repr(conf.api)):  # settings get logged
        assert "secret" not in shown and "t0ken" not in shown
    assert isinstance(creds.ssl_context, ssl.SSLContext)


def test_algorithm_settings_and_implicit_ratings():
    conf = settings_with(RECSYS_K="5", RECSYS_THETA="0.4", RECSYS_RATING_MIN="2",
                         RECSYS_RATING_MAX="10", RECSYS_IMPLICIT_RATINGS="purchase:10, cart:8")
    assert (conf.ranking.k, conf.ranking.theta, conf.input.rating_min, conf.input.rating_max) == (5, 0.4, 2.0, 10.0)
    assert conf.event_weight_map() == {"purchase": 10.0, "cart": 8.0}


def test_recsys_broker_runs_in_the_foreground_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "broker", "--port", str(port)], cwd=ROOT,
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


#: Runs ``recsys broker`` with a stdout that sends this process SIGTERM the moment the
#: ready line is written: the earliest a supervisor reading that line could send it.
SIGTERM_ON_READY = """
import os, signal, sys

class SigtermOnReady:
    def __init__(self, out):
        self.out = out

    def write(self, text):
        written = self.out.write(text)
        if "listening on" in text:
            self.out.flush()
            os.kill(os.getpid(), signal.SIGTERM)
        return written

    def __getattr__(self, name):
        return getattr(self.out, name)

sys.stdout = SigtermOnReady(sys.stdout)
from cli.main import run
sys.exit(run(["broker", "--port", sys.argv[1]]))
"""


def test_recsys_broker_stops_cleanly_on_a_sigterm_sent_as_soon_as_it_says_ready():
    port = free_port()
    proc = subprocess.run([sys.executable, "-c", SIGTERM_ON_READY, str(port)], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=60, env=dict(os.environ, RECSYS_BROKER=""))
    assert proc.returncode == 0, proc.stderr  # -15: killed before its handler was installed
    assert f"127.0.0.1:{port}" in proc.stdout and "stopped" in proc.stdout
    assert not is_listening(port)  # the Tansu child was stopped too, not left behind


def test_worker_tuning_reaches_faust(tmp_path):
    from app.app import create_app

    conf = settings_with(RECSYS_DATA_DIR=str(tmp_path), RECSYS_BROKER_ENGINE="kafka", RECSYS_PRODUCER_LINGER_MS="25",
                         RECSYS_PRODUCER_BATCH_BYTES="65536", RECSYS_MAX_POLL_RECORDS="300")
    faust_conf = create_app(conf).conf
    assert faust_conf.producer_linger == 0.025
    assert faust_conf.producer_max_batch_size == 65536
    assert faust_conf.broker_max_poll_records == 300


def test_default_poll_fits_below_a_full_stream_buffer(tmp_path):
    """A stream stops fetching when its buffer is 80% full (mode's pressure_high_ratio);
    one poll's records must fit in the remaining 20%, else the buffer fills and every
    further message is delivered through a task and a wait."""
    from mode.utils.queues import FlowControlQueue

    from app.app import create_app

    faust_conf = create_app(settings_with(RECSYS_DATA_DIR=str(tmp_path), RECSYS_BROKER_ENGINE="kafka")).conf
    size = faust_conf.stream_buffer_maxsize
    headroom = size - size // FlowControlQueue.pressure_high_ratio
    assert 0 < faust_conf.broker_max_poll_records <= headroom


@pytest.mark.parametrize("name, value, says", [
    ("RECSYS_K", "ten", "RECSYS_K='ten' is not an integer"),
    ("RECSYS_THETA", "0,6", "RECSYS_THETA='0,6' is not a number"),
    ("RECSYS_ALS_BIASES", "maybe", "RECSYS_ALS_BIASES='maybe' is not a boolean"),
    ("RECSYS_PROCESSING_GUARANTEE", "exactly-once", "one of at_least_once, exactly_once"),
    ("RECSYS_BROKER", "http://localhost:9092", "use kafka://host:port (not http://)"),
    ("RECSYS_BROKER", "localhost", "'localhost' is not host:port"),
    ("RECSYS_BROKER", "kafka://k1:9092,k2", "'k2' is not host:port"),
    ("RECSYS_BATCH_MAX", "0", "RECSYS_BATCH_MAX=0 is out of range: it must be at least 1"),
    ("RECSYS_BATCH_WAIT_MS", "-5", "RECSYS_BATCH_WAIT_MS=-5.0 is out of range: it must be at least 0.1"),
    ("RECSYS_BATCH_WAIT_MS", "0", "RECSYS_BATCH_WAIT_MS=0.0 is out of range: it must be at least 0.1"),
    ("RECSYS_K", "0", "RECSYS_K=0 is out of range: it must be at least 1"),
    ("RECSYS_K", "-1", "RECSYS_K=-1 is out of range"),
    ("RECSYS_WEB_PORT", "99999", "RECSYS_WEB_PORT=99999 is out of range: it must be between 1 and 65535"),
    ("RECSYS_EXPLORE", "1.5", "RECSYS_EXPLORE=1.5 is out of range: it must be between 0 and 1"),
])
def test_a_setting_that_does_not_parse_names_the_variable(name, value, says):
    with pytest.raises(SettingError) as exc:
        Settings.from_env({name: value})
    assert says in str(exc.value)


def test_a_valid_broker_list_and_engine_choice():
    conf = settings_with(RECSYS_BROKER="kafka://k1:9092,k2:9093", RECSYS_BROKER_ENGINE="kafka")
    assert conf.kafka.bootstrap_servers == ["k1:9092", "k2:9093"] and conf.kafka.broker_engine == "kafka"


@pytest.mark.parametrize("cluster_id, engine", [("tansu_cluster", TANSU), ("MkU3OEVBNTcwNTJENDM2Qk", KAFKA),
                                                (None, KAFKA), ("", KAFKA)],
                         ids=["tansu id", "kraft id", "no id", "empty id"])  # not counted as broker tests
def test_the_engine_is_told_by_the_cluster_id(cluster_id, engine):
    assert engine_of_cluster_id(cluster_id) == engine


def test_tansu_workarounds_follow_the_detected_engine_not_the_url(tmp_path):
    from app.app import create_app

    url = "kafka://127.0.0.1:9"  # a URL, as if naming a real cluster
    tansu = create_app(settings_with(RECSYS_BROKER=url, RECSYS_BROKER_ENGINE="tansu",
                                     RECSYS_DATA_DIR=str(tmp_path))).conf
    assert (tansu.broker_session_timeout, tansu.broker_heartbeat_interval) == (6.0, 1.0)
    kafka = create_app(settings_with(RECSYS_BROKER=url, RECSYS_BROKER_ENGINE="kafka",
                                     RECSYS_DATA_DIR=str(tmp_path))).conf
    assert kafka.broker_session_timeout == 60.0  # Faust's default: no workaround on real Kafka


def test_ranges_hold_for_settings_built_in_code_too():
    with pytest.raises(SettingError, match="RECSYS_HOT_ITEMS=0 is out of range"):
        Settings().replace(behaviour={"hot_items": 0})
    assert Settings().replace(ranking={"k": 1}).ranking.k == 1


def test_a_near_miss_of_a_setting_name_is_reported():
    from app.settings import near_misses

    env = {"RECSYS_PARTITONS": "8", "RECSYS_K": "5", "RECSYS_TEST_ENGINE": "kafka", "RECSYS_IMPLICIT_RATINGS": "1",
           "RECSYS_SOMETHING_ELSE_ENTIRELY": "1", "PATH": "/bin"}
    assert near_misses(env) == ["RECSYS_PARTITONS is not a setting (ignored): did you mean RECSYS_PARTITIONS?"]


def test_every_table_partition_opens_rocksdb_with_the_memory_settings(tmp_path):
    from app.app import create_app
    from tables.definitions import declare_tables

    conf = settings_with(RECSYS_DATA_DIR=str(tmp_path), RECSYS_ROCKSDB_WRITE_BUFFER_MB="2",
                         RECSYS_ROCKSDB_BLOCK_CACHE_MB="3", RECSYS_BROKER_ENGINE="kafka")
    tables = declare_tables(create_app(conf), conf)
    for table in (tables.user_state, tables.user_event_counts_10m, tables.user_event_counts_1h,
                  tables.item_popularity):
        options = getattr(table, "table", table).data.rocksdb_options  # a windowed table wraps one
        assert (options.write_buffer_size, options.max_write_buffer_number, options.block_cache_size) == (
            2 << 20, 2, 3 << 20)
