"""The command line: a user's mistake is one line on stderr and exit status 2, never a
traceback; ``--help`` needs no broker; commands honour the settings they use."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from broker.ports import free_port, is_listening
from cli.main import COMMANDS
from tests.conftest import ROOT


def recsys(*args: str, timeout: float = 120, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RECSYS_BROKER": "", "PYTHONWARNINGS": "ignore", **env}
    full_env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, check=False, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("command", ["worker", "evaluate", "demo", "als-worker", "web"])
def test_recsys_runs_from_any_directory(command, tmp_path):
    """From outside the repository only the installed packages are importable: each
    top-level package must be in pyproject.toml's package list (``worker --help`` builds
    the whole worker, ``evaluate`` imports the rankers and the evaluation)."""
    result = recsys(command, "--help", cwd=tmp_path, RECSYS_EMBEDDED_PORT=str(free_port()))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command_needs_no_broker(command):
    port = free_port()  # nothing listens here, and nothing may be started
    result = recsys(command, "--help", RECSYS_EMBEDDED_PORT=str(port))
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower() and "Traceback" not in result.stderr
    assert not is_listening(port)


@pytest.mark.parametrize("args, env, words", [
    (["nope"], {}, ["unknown command 'nope'"]),
    (["load", "/nope.csv", "--format", "csv"], {}, ["/nope.csv", "no such file"]),
    (["load", "x.csv", "--format", "exel"], {}, ["invalid choice: 'exel'"]),
    (["create-topics"], {"RECSYS_BROKER": "http://127.0.0.1:9092"}, ["use kafka://host:port"]),
    (["create-topics"], {"RECSYS_BROKER": "127.0.0.1"}, ["is not host:port"]),
    (["create-topics"], {"RECSYS_K": "many"}, ["RECSYS_K='many' is not an integer"]),
    (["demo", "--input", "/nope.csv", "--format", "csv"], {}, ["/nope.csv: no such file"]),
    (["train-als", "--input", "/nope.csv", "--format", "csv"], {}, ["/nope.csv"]),
    (["generate", "--users", "0"], {}, ["at least 1"]),
    (["broker", "--nodes", "3"], {}, ["--nodes needs --engine kafka"]),
    (["broker", "--engine", "kafka", "--nodes", "0"], {}, ["--nodes must be at least 1"]),
])
def test_user_mistakes_get_one_line_and_status_2(args, env, words):
    assert_one_line_error(recsys(*args, **env), *words)


def test_an_unreachable_broker_is_one_line():
    port = free_port()
    result = recsys("create-topics", RECSYS_BROKER=f"kafka://127.0.0.1:{port}")
    assert_one_line_error(result, f"127.0.0.1:{port}", "RECSYS_BROKER")


def test_no_local_broker_is_one_line_saying_how_to_start_one():
    port = free_port()
    assert_one_line_error(recsys("create-topics", RECSYS_EMBEDDED_PORT=str(port)), f"recsys broker --port {port}")


def test_a_port_in_use_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line_error(recsys("broker", "--port", str(port)), f"port {port}", "in use")


def test_train_als_trains_with_the_als_settings(tmp_path):
    from datatools.generator import generate_shop

    shop = generate_shop(tmp_path / "shop", n_users=60, n_items=30, n_ratings=900, seed=1)
    args = ("train-als", "--input", str(shop["ratings"]), "--format", "csv", "--out", "", "--no-progress")
    result = recsys(*args, RECSYS_ALS_RANK="3", RECSYS_ALS_ITERS="2", RECSYS_ALS_SIMILAR="4")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["rank"], out["iters"], out["similar"]) == (3, 2, 4)
    assert json.loads(recsys(*args).stdout.strip().splitlines()[-1])["rank"] == 20  # RECSYS_ALS_RANK's default


def test_broker_port_defaults_to_the_setting():
    assert "RECSYS_EMBEDDED_PORT=19123" in recsys("broker", "--help", RECSYS_EMBEDDED_PORT="19123").stdout


def test_a_bad_number_is_one_line_and_a_misspelt_name_a_warning():
    assert_one_line_error(recsys("create-topics", "--help", RECSYS_K="0"), "RECSYS_K=0 is out of range")
    result = recsys("--help", RECSYS_PARTITONS="8")
    assert result.returncode == 0
    result = recsys("create-topics", "--help", RECSYS_PARTITONS="8")
    assert result.returncode == 0 and "did you mean RECSYS_PARTITIONS?" in result.stderr, result.stderr


def test_a_web_port_in_use_is_one_line_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        # No broker answers on RECSYS_BROKER: the port is checked first.
        assert_one_line_error(recsys("worker", "--web-port", port, RECSYS_BROKER="kafka://127.0.0.1:1"),
                              f"127.0.0.1:{port} is not free")
        assert_one_line_error(recsys("worker", RECSYS_WEB_PORT=port, RECSYS_BROKER="kafka://127.0.0.1:1"),
                              "RECSYS_WEB_PORT")
        assert_one_line_error(recsys("web", "--port", port), "recsys web --port", f"127.0.0.1:{port} is not free")


def test_load_refuses_a_file_of_another_format_before_publishing(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{u + 1}\t3\t881250949\n" for u in range(1, 300)))
    # No broker answers: the format is checked before anything is asked or published.
    assert_one_line_error(recsys("load", str(path), "--format", "taobao", "--limit", "1000",
                                 RECSYS_BROKER="kafka://127.0.0.1:1"), "wrong_format", "is --format right?")
