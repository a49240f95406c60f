"""The commands of ``recsys`` that are not a package's own (``cli/main.py`` lists all).

Each is ``f(argv, conf) -> exit status``; errors that are the user's are raised as the
exceptions ``cli.main.user_errors`` names, which become one line and exit status 2.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
from pathlib import Path


def print_json(data: dict) -> None:
    print(json.dumps(data, sort_keys=True), flush=True)


# ------------------------------------------------------------------ worker
def worker(argv: list[str], conf) -> int:
    """``recsys worker [Faust worker options]``: topics first, then Faust's own worker."""
    if {"-h", "--help"} & set(argv):  # help needs no broker: do not ask one
        return _faust_main(argv, conf.replace(kafka={"broker_engine": "kafka"}))
    from app.faust_patches import check_upstream

    check_upstream(conf.worker.faust_guard)  # before any broker is started or asked
    from broker.ports import require_free_port

    host, port = _worker_web_address(argv, conf)
    if port is not None:
        require_free_port(port, host, "the worker's web port (--web-port or RECSYS_WEB_PORT)")
    with local_broker_if_needed(conf):
        from broker.detect import require_broker
        from broker.topics import create_topics_sync

        # Asked once here, so building the worker does not ask again.
        conf = conf.replace(kafka={"broker_engine": require_broker(conf, wait_s=0)})
        require_transactions(conf)
        create_topics_sync(conf)
        (conf.data_dir / "worker").mkdir(parents=True, exist_ok=True)  # Faust's tables live here
        return _faust_main(argv, conf)


def require_transactions(conf) -> None:
    """Refuse ``exactly_once`` on Tansu, which has no transactions (one line, exit 2)."""
    from app.settings import SettingError
    from broker.detect import TANSU

    if conf.worker.processing_guarantee == "exactly_once" and conf.kafka.broker_engine == TANSU:
        raise SettingError("RECSYS_PROCESSING_GUARANTEE=exactly_once needs Apache Kafka: the broker is Tansu, "
                           "which has no transactions (use at_least_once)")


def _worker_web_address(argv: list[str], conf) -> tuple[str, int | None]:
    """The address the worker's web server will bind: Faust's ``--web-port``/``--web-bind``
    options when given, else the settings' (port None: not a number, Faust's to refuse)."""
    found = {"--web-port": str(conf.api.web_port), "--web-bind": conf.api.web_host}
    for j, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in found:
            found[name] = value if eq else (argv[j + 1] if j + 1 < len(argv) else "")
    port = found["--web-port"]
    return found["--web-bind"], int(port) if port.isdigit() else None


def _faust_main(argv: list[str], conf) -> int:
    from threadpoolctl import threadpool_limits

    from agents.batches import collect_garbage_between_batches, keep_freed_memory
    from app.worker import build_worker

    worker = build_worker(conf)
    collect_garbage_between_batches(conf.worker.batch_max)
    keep_freed_memory()
    # A batch's products are many and short: BLAS threads on the other cores only spin (a
    # worker is one core; it scales by processes over partitions).
    threadpool_limits(1, "blas")
    gc.freeze()  # the libraries and the app: never garbage (app.worker.freeze_long_lived does the model)
    sys.argv = ["recsys", "worker", *argv]
    worker.app.main()  # exits through SystemExit
    return 0


@contextlib.contextmanager
def local_broker_if_needed(conf):
    """With ``RECSYS_BROKER`` unset: the local broker on ``RECSYS_EMBEDDED_PORT``, started
    here (memory only) if none listens after 5 s (under a process manager ``broker`` may
    be starting). It must outlive the worker, so the worker runs inside this context."""
    from broker.ports import wait_until_listening
    from broker.tansu import start_broker

    if not conf.kafka.uses_embedded_broker or wait_until_listening(conf.kafka.embedded_port, 5.0):
        yield None
        return
    print(f"no broker configured and none on 127.0.0.1:{conf.kafka.embedded_port}: starting the embedded one "
          "(memory only; it stops with this command)", file=sys.stderr)
    broker = start_broker(conf.kafka.embedded_port)
    try:
        yield broker
    finally:
        broker.stop()


# ------------------------------------------------------------------ broker
def broker(argv: list[str], conf) -> int:
    """``recsys broker [--engine tansu|kafka] [--port N] [--data-dir DIR] [--nodes N]``: in the
    foreground until SIGINT/SIGTERM. Tansu (default) keeps everything in memory;
    ``--engine kafka`` runs Apache Kafka (KRaft, on disk: ``broker/apache_kafka.py``)."""
    parser = argparse.ArgumentParser(prog="recsys broker",
                                     description="Run a local Kafka-compatible broker (dev only): Tansu "
                                                 "(default, memory only) or Apache Kafka (KRaft, on disk).")
    parser.add_argument("--engine", choices=("tansu", "kafka"), default="tansu",
                        help="tansu: embedded, memory only (default); kafka: Apache Kafka, needs Java 17+ "
                             "(and Maven once, to fetch its jars)")
    parser.add_argument("--port", type=int, default=conf.kafka.embedded_port,
                        help=f"loopback port (0 = any free; default RECSYS_EMBEDDED_PORT={conf.kafka.embedded_port})")
    parser.add_argument("--data-dir", default=None,
                        help="kafka only: keep topics, messages and offsets here across restarts "
                             "(default: a temporary directory removed on stop)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="kafka only: a replicated cluster of N KRaft nodes (3: any one can die), the first "
                             "on --port; a node that exits is started again")
    parser.add_argument("--restart-after", type=float, default=10.0, metavar="S",
                        help="with --nodes: seconds before a node that exited is started again (default 10)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.restart_after < 0:
        parser.error("--nodes must be at least 1 and --restart-after at least 0")
    if args.engine == "tansu":
        if args.nodes > 1:
            parser.error("--nodes needs --engine kafka (Tansu is one embedded broker)")
        if args.data_dir:
            parser.error("--data-dir needs --engine kafka (Tansu keeps everything in memory)")
        from broker.ports import is_listening
        from broker.tansu import run_broker_foreground

        if args.port and is_listening(args.port):
            parser.error(f"port {args.port} on 127.0.0.1 is in use: choose another with --port (0 = any free)")
        return run_broker_foreground(args.port)
    if args.nodes > 1:
        from broker.kafka_cluster import run_cluster_foreground

        return run_cluster_foreground(args.nodes, args.port, args.data_dir, restart_after=args.restart_after)
    from broker.apache_kafka import run_kafka_foreground

    return run_kafka_foreground(args.port, args.data_dir)


# ------------------------------------------------------------------ topics and data
def create_topics(argv: list[str], conf) -> int:
    argparse.ArgumentParser(prog="recsys create-topics",
                            description="Create every topic with RECSYS_PARTITIONS partitions "
                                        "(existing ones are kept).").parse_args(argv)
    from broker.detect import require_broker
    from broker.topics import create_topics_sync

    require_broker(conf, wait_s=0)
    print_json(create_topics_sync(conf))
    return 0


def load(argv: list[str], conf) -> int:
    from datatools.datasets import FORMATS

    parser = argparse.ArgumentParser(prog="recsys load", description="Stream a data file into its topic; the "
                                     "last line is JSON counts (sent, skipped by reason).")
    parser.add_argument("path", help="data file (plain or gzip)")
    parser.add_argument("--format", dest="fmt", required=True, choices=sorted(FORMATS), help="input format")
    parser.add_argument("--limit", type=int, default=None, help="send at most N rows (and read at most N bad lines)")
    parser.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    parser.add_argument("--topic", default=None, help="override the target topic")
    args = parser.parse_args(argv)
    if not Path(args.path).is_file():
        raise FileNotFoundError(f"{args.path}: no such file")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    from datatools.datasets import require_format

    require_format(args.path, args.fmt)  # before anything is published
    from broker.detect import require_broker
    from broker.topics import create_topics
    from datatools.loader import load_file

    require_broker(conf, wait_s=0)

    async def _load() -> dict:
        from datatools.catalogue import catalogue_for, publish_catalogue

        await create_topics(conf)
        items = await publish_catalogue(catalogue_for(args.path, args.fmt), conf=conf)  # names first, for the page
        counts = await load_file(args.path, args.fmt, limit=args.limit, rate=args.rate, topic=args.topic, conf=conf)
        return {**counts, "catalogue_items": items}

    print_json(asyncio.run(_load()))
    return 0


def generate(argv: list[str], conf) -> int:
    parser = argparse.ArgumentParser(prog="recsys generate",
                                     description="Write a seeded synthetic shop (ratings.csv, events.csv, items.csv).")
    parser.add_argument("--publish", action="store_true",
                        help="also publish items.csv (names, categories) to the items topic")
    parser.add_argument("--out", default="data/shop", help="output directory (default data/shop)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--ratings", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if min(args.users, args.items, args.ratings) < 1:
        parser.error("--users, --items and --ratings must be at least 1")
    from datatools.generator import generate_shop

    result = generate_shop(args.out, n_users=args.users, n_items=args.items, n_ratings=args.ratings, seed=args.seed)
    if args.publish:
        from broker.detect import require_broker
        from broker.topics import create_topics
        from datatools.catalogue import catalogue_for, publish_catalogue

        require_broker(conf, wait_s=0)

        async def _publish() -> int:
            await create_topics(conf)
            return await publish_catalogue(catalogue_for(Path(args.out) / "ratings.csv", "csv"), conf=conf)

        result["catalogue_items"] = asyncio.run(_publish())
    print_json(result)
    return 0
