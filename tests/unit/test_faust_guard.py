"""The guard of the patches of Faust internals (app/faust_patches/upstream.py): a worker
refuses to start, with one line naming what changed, when faust-streaming, mode or
aiokafka is not what the patches were checked against; RECSYS_FAUST_GUARD=off lets it start."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tomllib

import pytest

from app import faust_patches
from app.faust_patches import upstream
from app.metrics import Metrics
from broker.ports import free_port
from tests.conftest import ROOT


def one_line_refusal(**check) -> str:
    with pytest.raises(upstream.UpstreamChanged) as refused:
        upstream.check_upstream(**check)
    line = str(refused.value)
    assert "\n" not in line and "RECSYS_FAUST_GUARD=off" in line, line
    return line


def test_the_installed_upstream_is_what_the_patches_were_checked_against():
    assert upstream.differences() == []
    upstream.check_upstream(guard=True)


def test_a_changed_fingerprint_refuses_to_start_naming_the_method(monkeypatch):
    rows = [row._replace(fingerprint="0" * 12) if row.target.endswith("Consumer._drain_messages") else row
            for row in upstream.UPSTREAM]
    monkeypatch.setattr(upstream, "UPSTREAM", tuple(rows))
    line = one_line_refusal(guard=True)
    assert line.startswith("faust.transport.consumer:Consumer._drain_messages changed upstream")
    assert "at_least_once.drain_messages" in line  # and which patch to re-read


def test_a_changed_upstream_method_refuses_to_start_naming_it(monkeypatch):
    from faust.transport.drivers.aiokafka import Producer

    def _ensure_producer(self):  # as if a release had changed it
        return self._producer

    monkeypatch.setattr(Producer, "_ensure_producer", _ensure_producer)
    line = one_line_refusal(guard=True)
    assert line.startswith("faust.transport.drivers.aiokafka:Producer._ensure_producer changed upstream")


def test_a_patched_method_is_checked_as_upstream_has_it():
    """Once installed, a patch is not what the guard fingerprints: the upstream function it replaced is."""
    from faust.transport.consumer import Consumer

    from app.faust_patches import at_least_once

    faust_patches.apply(tansu=False, value_resets={}, metrics=Metrics())
    assert Consumer.ack is at_least_once.ack
    assert upstream.resolve("faust.transport.consumer:Consumer.ack") is at_least_once._original_ack
    assert upstream.differences() == []


def installed_as(dist: str, release: str):
    real = upstream.version
    return lambda name: release if name == dist else real(name)


def test_a_wrong_faust_version_refuses_to_start(monkeypatch):
    monkeypatch.setattr(upstream, "version", installed_as("faust-streaming", "0.15.4"))
    line = one_line_refusal(guard=True)
    assert line.startswith("faust-streaming 0.15.4 is installed, but the patches of Faust internals were "
                           "checked against 0.15.3")


def test_with_the_guard_off_a_difference_is_only_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(upstream, "version", installed_as("aiokafka", "0.15.0"))
    with caplog.at_level(logging.WARNING, logger=upstream.__name__):
        upstream.check_upstream(guard=False)
    assert "aiokafka 0.15.0 is installed" in caplog.text and "starting anyway" in caplog.text


def test_apply_refuses_before_installing_anything(monkeypatch):
    from app.faust_patches import at_least_once

    installed = []
    monkeypatch.setattr(at_least_once, "apply", lambda sink: installed.append("at_least_once"))
    monkeypatch.setattr(upstream, "version", installed_as("mode-streaming", "0.8.0"))
    with pytest.raises(upstream.UpstreamChanged, match="mode-streaming 0.8.0"):
        faust_patches.apply(tansu=False, value_resets={}, metrics=Metrics(), guard=True)
    assert installed == []
    faust_patches.apply(tansu=False, value_resets={}, metrics=Metrics(), guard=False)  # off: installs anyway
    assert installed == ["at_least_once"]


def test_the_pins_are_the_releases_the_guard_accepts():
    with open(ROOT / "pyproject.toml", "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    for dist, release in upstream.VERSIONS.items():
        assert f"{dist}=={release}" in dependencies


IMPORT_THEN_APPLY = """
import importlib, pkgutil
from app.faust_patches import upstream

def installed(target):
    module, _, path = target.partition(":")
    *owners, name = path.split(".")
    obj = importlib.import_module(module)
    for part in owners:
        obj = getattr(obj, part)
    return getattr(obj, name)

before = {row.target: installed(row.target) for row in upstream.UPSTREAM}
import app.faust_patches
for module in pkgutil.iter_modules(app.faust_patches.__path__):
    importlib.import_module("app.faust_patches." + module.name)
assert {row.target: installed(row.target) for row in upstream.UPSTREAM} == before, "an import patched"

from app.metrics import Metrics
app.faust_patches.apply(tansu=True, value_resets={}, metrics=Metrics())
replaced = {f"{owner.__module__}:{owner.__qualname__}.{name}" for owner, name in upstream._replaced}
missing = replaced - set(before)
assert replaced and not missing, f"replaced without a fingerprint: {missing}"
print("ok", len(replaced))
"""


def test_importing_the_seam_patches_nothing_and_everything_it_replaces_is_fingerprinted():
    result = subprocess.run([sys.executable, "-c", IMPORT_THEN_APPLY], cwd=ROOT, capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr


#: Stands in for a faust-streaming release whose Consumer.ack differs (imported by Python
#: at start-up, before the command line runs).
CHANGED_ACK = '''
from faust.transport.consumer import Consumer

_released_ack = Consumer.ack


def ack(self, message):
    return _released_ack(self, message)


Consumer.ack = ack
'''


def recsys_worker_with_changed_ack(tmp_path, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(CHANGED_ACK)
    port = free_port()  # nothing listens here: the worker can never get further than asking it
    full_env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONWARNINGS": "ignore",
                "RECSYS_BROKER": f"kafka://127.0.0.1:{port}", "RECSYS_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, check=False, timeout=120)


def test_recsys_worker_refuses_a_changed_upstream_method_with_one_line_and_status_2(tmp_path):
    result = recsys_worker_with_changed_ack(tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("recsys worker: error: faust.transport.consumer:Consumer.ack changed upstream")
    assert "RECSYS_FAUST_GUARD=off" in lines[0]


def test_recsys_worker_with_the_guard_off_goes_on_to_the_broker(tmp_path):
    result = recsys_worker_with_changed_ack(tmp_path, RECSYS_FAUST_GUARD="off")
    assert result.returncode == 2, result.stderr  # now it is the broker that is not there
    assert "starting anyway: faust.transport.consumer:Consumer.ack changed upstream" in result.stderr
    assert "RECSYS_BROKER" in result.stderr.strip().splitlines()[-1]
