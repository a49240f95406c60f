"""Importing the project connects to nothing, patches nothing and reads no environment:
only ``build_worker(settings)`` makes a worker (app/worker.py)."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

#: Every module a worker is made of, and the command line.
MODULES = ["app.app", "app.worker", "app.topics", "agents.realtime", "agents.behaviour", "agents.log_cleaning",
           "agents.batches", "api.views", "tables.definitions", "tables.broadcast", "cli.main", "cli.commands"]

IMPORT_ALL = textwrap.dedent(f"""
    import importlib
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer
    before = (Consumer.ack, Consumer._drain_messages, Recovery.on_recovery_completed, Recovery._build_offsets)
    for name in {MODULES!r}:
        importlib.import_module(name)
    after = (Consumer.ack, Consumer._drain_messages, Recovery.on_recovery_completed, Recovery._build_offsets)
    print("patched" if before != after else "untouched")
""")


def test_importing_every_worker_module_opens_no_connection_and_patches_nothing():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "RECSYS_BROKER": f"kafka://127.0.0.1:{port}", "RECSYS_K": "not a number"}
        done = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr  # RECSYS_K was never read: no Settings built at import
        assert done.stdout.strip() == "untouched"
        try:
            conn, _ = listener.accept()
            conn.close()
            connected = True
        except TimeoutError:
            connected = False
    assert not connected, "an import connected to the broker named by RECSYS_BROKER"


def test_building_a_worker_applies_the_patches_and_registers_every_agent(tmp_path):
    from faust.transport.consumer import Consumer

    from app.faust_patches import at_least_once
    from app.settings import Settings
    from app.worker import build_worker

    worker = build_worker(Settings().replace(kafka={"broker_engine": "kafka"}, data_dir=tmp_path))
    assert Consumer.ack is at_least_once.ack
    assert set(worker.app.agents) == {"agents.realtime.recommend", "agents.behaviour.count_behaviour",
                                      "agents.behaviour.count_item_popularity", "agents.log_cleaning.clean_logs"}
    assert {t.name for t in worker.app.tables.values()} == {"user_state", "user_event_counts_10m",
                                                            "user_event_counts_1h", "item_popularity",
                                                            "item_popularity-key_index"}
    assert worker.tables.user_state.changelog_topic.get_topic_name() == "recsys-user_state-changelog"


def test_the_installed_package_holds_every_top_level_package():
    """``pip install`` ships the packages ``pyproject.toml`` names: a package left out is
    missing from an installed ``recsys`` (run from another directory)."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages <= {name.rstrip("*") for name in include}, packages - {name.rstrip("*") for name in include}
