"""``recsys demo --seconds N`` end to end, as on a fresh machine: no broker configured.

The demo starts its own embedded broker (on the free port we give it as
RECSYS_EMBEDDED_PORT), a worker subprocess, trains ALS, replays the synthetic shop and
stops by itself; its last stdout line is a JSON summary. Afterwards nothing it started
may still run.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _processes_of_port(port: int) -> list[str]:
    """Live processes that belong to a deployment on ``port``: the broker listening on it
    (in its command line) or a worker configured for it (in its environment)."""
    found = []
    marker_cmd = f"127.0.0.1:{port}"
    marker_env = f"RECSYS_EMBEDDED_PORT={port}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        cmd = _cmdline(pid)
        if not cmd:
            continue  # gone, or a kernel thread
        if marker_cmd in cmd or (("cli.main" in cmd or "runpy" in cmd) and marker_env in _environ(pid).split(b"\0")):
            found.append(f"{pid}: {cmd[:200]}")
    return found


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() \
        else "X"
    return state not in ("Z", "X")


def test_demo_runs_on_a_fresh_machine_and_cleans_up(tmp_path):
    import socket

    from broker.tansu import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RECSYS_") or k in ("RECSYS_PARTITIONS",)}
    env.update(RECSYS_EMBEDDED_PORT=str(port), PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with socket.socket() as stranger:  # something else listens on the local broker port: never use it
        stranger.bind(("127.0.0.1", port))
        stranger.listen()
        # three arms: the learned one starts the learner too
        proc = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--seconds", "25",
                               "--ab", "default:40,paper:30,learned:30"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=False, timeout=300)
    took = time.monotonic() - started
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    print(f"demo took {took:.0f}s; summary: {summary}")

    assert summary["ratings_sent"] > 0
    assert summary["lists_received"] > 0
    assert summary["users_updated"] > 0
    assert summary["p50_ms"] is not None and math.isfinite(summary["p50_ms"])
    assert summary["p99_ms"] is not None and math.isfinite(summary["p99_ms"])
    # The demo injects malformed ratings on purpose; each must be dead-lettered.
    assert summary["malformed_injected"] > 0
    assert summary["dead_letters"] >= summary["malformed_injected"]
    # A compact line per second by default (--verbose prints every list).
    per_second = [ln for ln in lines[:-1] if ln.startswith("t=")]
    assert len(per_second) >= 20 and all("lists" in ln and "hit rate" in ln for ln in per_second)
    assert "shop page: http://127.0.0.1:" in proc.stderr + proc.stdout
    # The generated shoppers reacted to what they were shown, and both A/B arms got events.
    assert summary["shopper_reactions"] > 0
    assert {row["variant"] for row in summary["ab"] if row["events"] > 0} == {"default", "paper", "learned"}
    assert summary["learner_pid"] is not None
    assert summary["worker_exit_code"] is None  # alive until the demo stopped it
    assert summary["broker"].startswith("embedded")
    assert f"127.0.0.1:{port}" not in proc.stderr  # a broker of its own, on a free port
    assert not (tmp_path / "data").exists(), "the demo wrote into the working directory"

    # Nothing it started is left running.
    deadline = time.monotonic() + 10
    while True:
        leftovers = [pid for pid in (summary["broker_pid"], summary["worker_pid"], summary["web_pid"],
                                     summary["learner_pid"]) if _alive(pid)]
        leftovers += _processes_of_port(int(summary["broker_port"]))
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not leftovers, f"processes left running: {leftovers}"


def test_demo_on_a_configured_broker_uses_it_and_leaves_it_running(broker, tmp_path):
    """``RECSYS_BROKER=kafka://...`` (the README's way to run the demo on Apache Kafka):
    topics of its own on that broker, the broker named in the summary, and still there
    afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env.update(RECSYS_BROKER=f"kafka://127.0.0.1:{broker.port}", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--seconds", "4", "--no-web", "--quiet",
                           "--ab", ""], cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["broker"] == "existing" and summary["broker_pid"] is None
    assert summary["broker_port"] == broker.port
    assert summary["lists_received"] > 0 and summary["dead_letters"] == summary["malformed_injected"] == 3
    assert broker.process.poll() is None, "the demo stopped a broker it did not start"
