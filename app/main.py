"""``recsys``: the Faust app's command line, with the project's own commands beside it.

``recsys worker`` is a plain Faust worker (every Faust option works: ``--web-port``,
``--datadir``, ``-l info`` ...); before it starts, our topics are created explicitly.
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys

from faust.cli import argument, option

from app.app import app
from app.embedded import require_broker
from app.settings import settings

# Register agents, tables and views (importing them is what declares them).
import agents.log_cleaning  # noqa: F401,E402
import agents.realtime  # noqa: F401,E402
import agents.behaviour  # noqa: F401,E402
from app import views as _views  # noqa: F401,E402

log = logging.getLogger(__name__)


@contextlib.contextmanager
def broker_available(conf=settings):
    """Make sure a broker answers: a configured one, or the embedded one (started if none
    is listening after a few seconds: under a process manager ``broker`` may be starting)."""
    from app.embedded import start_broker, wait_until_listening

    if not conf.uses_embedded_broker or wait_until_listening(conf.embedded_port, 5.0):
        yield None
        return
    print(f"no broker configured and none on 127.0.0.1:{conf.embedded_port}: starting the embedded one "
          "(memory only; it stops with this command)", file=sys.stderr)
    broker = start_broker(conf.embedded_port)
    try:
        yield broker
    finally:
        broker.stop()


def print_json(data: dict) -> None:
    print(json.dumps(data, sort_keys=True), flush=True)


@app.command()
async def create_topics(self) -> None:
    """Create every topic with RECSYS_PARTITIONS partitions (existing ones are kept)."""
    from app.topics import create_topics as create

    require_broker(settings, wait_s=0)
    print_json(await create())


@app.command(
    argument("path"),
    option("--format", "fmt", required=True, help="movielens-100k, movielens-csv, renttherunway, amazon-csv, "
           "taobao, csv, events-csv"),
    option("--limit", type=int, default=None, help="stop after N rows"),
    option("--rate", type=float, default=None, help="events per second (default: as fast as possible)"),
    option("--topic", default=None, help="override the target topic"),
)
async def load(self, path: str, fmt: str, limit, rate, topic) -> None:
    """Stream a dataset into its topic; the last line is JSON counts (sent, skipped by reason)."""
    from app.loader import load_file
    from app.topics import create_topics as create

    require_broker(settings, wait_s=0)
    await create()
    print_json(await load_file(path, fmt, limit=limit, rate=rate, topic=topic))


@app.command(
    option("--out", default="data/shop", help="output directory"),
    option("--users", type=int, default=2000), option("--items", type=int, default=500),
    option("--ratings", type=int, default=20000), option("--seed", type=int, default=42),
)
async def generate(self, out: str, users: int, items: int, ratings: int, seed: int) -> None:
    """Write a seeded synthetic shop (ratings.csv, events.csv, items.csv)."""
    from app.generator import generate_shop

    print_json(generate_shop(out, n_users=users, n_items=items, n_ratings=ratings, seed=seed))


def run_broker_command(argv: list[str]) -> int:
    """``recsys broker [--engine tansu|kafka] [--port N] [--data-dir DIR]``: outside Faust's
    CLI, which would run it off the main thread where signal handlers cannot be installed.
    Tansu (default) keeps everything in memory; ``--engine kafka`` runs Apache Kafka (KRaft,
    on disk: ``broker/apache_kafka.py``). Exit status 2 when the broker cannot be started."""
    import argparse

    parser = argparse.ArgumentParser(prog="recsys broker",
                                     description="Run a local Kafka-compatible broker (dev only): Tansu "
                                                 "(default, memory only) or Apache Kafka (KRaft, on disk).")
    parser.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                        help="tansu: embedded, memory only (default); kafka: Apache Kafka, needs Java 17+ "
                             "(and Maven once, to fetch its jars)")
    parser.add_argument("--port", type=int, default=settings.embedded_port, help="loopback port (0 = any free)")
    parser.add_argument("--data-dir", default=None,
                        help="kafka only: keep topics, messages and offsets here across restarts "
                             "(default: a temporary directory removed on stop)")
    args = parser.parse_args(argv)
    if args.engine == "tansu":
        if args.data_dir:
            parser.error("--data-dir needs --engine kafka (Tansu keeps everything in memory)")
        from app.embedded import run_broker_foreground

        return run_broker_foreground(args.port)
    try:
        from broker.apache_kafka import BrokerUnavailable, run_kafka_foreground
    except ModuleNotFoundError as exc:  # an install whose package list predates broker/: the checkout's
        if exc.name != "broker":
            raise
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from broker.apache_kafka import BrokerUnavailable, run_kafka_foreground
    try:
        return run_kafka_foreground(args.port, args.data_dir)
    except BrokerUnavailable as exc:
        print(f"recsys broker: error: {exc}", file=sys.stderr)
        return 2


#: Commands with their own argparse CLI, dispatched before Faust's (click) CLI sees them.
PROJECT_COMMANDS = {
    "broker": ("app.main", "run_broker_command", "run a local broker: Tansu (memory) or Apache Kafka (dev only)"),
    "train-als": ("offline_als.train_cli", "main", "train ALS once on a file, print RMSE and timings"),
    "als-worker": ("offline_als.worker", "main", "consume ratings, retrain ALS periodically, publish"),
    "evaluate": ("evaluation.run", "main", "replay the paper's evaluation protocol"),
    "demo": ("app.demo", "main", "broker + worker + ALS + replay, printing live list updates"),
}


def main() -> None:
    """Console script entry point (``recsys``)."""
    import importlib

    if len(sys.argv) > 1 and sys.argv[1] in PROJECT_COMMANDS:
        module, function, _ = PROJECT_COMMANDS[sys.argv[1]]
        sys.exit(getattr(importlib.import_module(module), function)(sys.argv[2:]) or 0)
    if len(sys.argv) > 1 and sys.argv[1] in {"--help", "-h", "help"}:
        print("Project commands (recsys COMMAND --help for their options):")
        for name, (_, _, text) in PROJECT_COMMANDS.items():
            print(f"  {name:<14} {text}")
        print()
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        from app.topics import create_topics_sync

        # An embedded broker started here must outlive the worker, so the worker runs
        # inside this context (app.main() exits through SystemExit, which stops it).
        with broker_available():
            create_topics_sync()
            app.main()
    app.main()


if __name__ == "__main__":
    main()
