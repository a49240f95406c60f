"""``recsys``: the one command line of the project.

The edge of the house: it reads the environment once (:func:`app.settings.load_settings`),
passes that ``Settings`` to the command, and turns a user's mistake into one line on
stderr and exit status 2 (a typo in a setting, a missing file, an unreachable broker, a
bad option), never a traceback. Commands are imported only when run, so ``--help`` of
every command is instant and needs no broker. ``recsys worker`` hands over to Faust's
own command line (every Faust worker option works: ``--web-port``, ``-l info`` ...).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

#: name -> (module, function, one-line help). Each function is ``f(argv, conf) -> int``.
COMMANDS = {
    "worker": ("cli.commands", "worker", "run a stream worker (Faust): ratings and events in, lists out"),
    "broker": ("cli.commands", "broker", "run a local broker: Tansu (memory) or Apache Kafka (dev only)"),
    "create-topics": ("cli.commands", "create_topics", "create every topic with RECSYS_PARTITIONS partitions"),
    "load": ("cli.commands", "load", "stream a data file into its topic; prints JSON counts"),
    "generate": ("cli.commands", "generate", "write a seeded synthetic shop (ratings, events, items)"),
    "train-als": ("offline_als.train_cli", "main", "train ALS once on a file, print RMSE and timings"),
    "als-worker": ("offline_als.worker", "main", "consume ratings, retrain ALS periodically, publish"),
    "learner": ("learner.worker", "main", "learn the learned ranker's weights from the stream's examples, publish"),
    "evaluate": ("evaluation.run", "main", "replay the paper's evaluation protocol"),
    "demo": ("harness.demo", "main", "broker + worker + ALS + replay, printing live list updates"),
    "web": ("web.server", "main", "the shop page and the live dashboard (SSE), on loopback"),
}


def _one_line_error(self: argparse.ArgumentParser, message: str) -> None:
    """argparse prints its usage block before the error; one line says it all here."""
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are a user's mistake, not a bug: printed as one line, exit 2."""
    from app.faust_patches import UpstreamChanged
    from app.records import InvalidInput
    from app.settings import SettingError
    from broker.apache_kafka import BrokerUnavailable
    from broker.detect import BrokerUnreachable
    from broker.ports import PortInUse
    from broker.topics import TopicsUnavailable

    return (SettingError, BrokerUnreachable, BrokerUnavailable, InvalidInput, UpstreamChanged, PortInUse, TopicsUnavailable,
            FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def print_commands() -> None:
    print("usage: recsys COMMAND [options]   (recsys COMMAND --help for a command's options)\n")
    for name, (_, _, text) in COMMANDS.items():
        print(f"  {name:<14} {text}")


def run(argv: list[str]) -> int:
    """Run ``recsys argv...``; returns the exit status."""
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print_commands()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"recsys: error: unknown command {name!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    argparse.ArgumentParser.error = _one_line_error  # this process is ours: the CLI's own parsers
    errors = user_errors()
    try:
        from app.settings import load_settings, near_misses

        for warning in near_misses(os.environ):
            print(f"recsys {name}: warning: {warning}", file=sys.stderr)
        conf = load_settings()
        module, function, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), function)(rest, conf) or 0
    except errors as exc:
        print(f"recsys {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main() -> None:
    """Console script entry point (``recsys``)."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
