"""Start either local engine the same way (tests, benchmarks, harnesses)."""
from __future__ import annotations

from pathlib import Path

from broker.detect import ENGINES


def start_engine(engine: str, work_dir, kafka_config: dict | None = None):
    """A fresh broker of ``engine`` on a free loopback port: an object with ``.port``,
    ``.bootstrap``, ``.process``, ``.stop()`` (and, for Kafka, ``.restart()``, ``.kill9()``).
    Its log (and Kafka's data) go under ``work_dir``; ``kafka_config`` adds
    ``server.properties`` entries (Kafka only)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if engine == "tansu":
        from broker.tansu import start_broker

        broker = start_broker(0, log_file=str(work_dir / "tansu.log"))
    elif engine == "kafka":
        from broker.apache_kafka import start_kafka

        broker = start_kafka(0, data_dir=work_dir / "kafka-data", log_file=work_dir / "kafka.log",
                             config=kafka_config)
    else:
        raise ValueError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    broker.engine = engine
    return broker
