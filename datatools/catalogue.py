"""The item catalogue (names, categories) of a data file, and its compacted ``items`` topic.

Frontends show names and categories, the worker filters lists by category; both read
them from ``items`` (key: item id; value ``{"item", "name", "category"}``), which
``recsys load``, ``recsys generate --publish`` and the demo publish from:

* a names file beside the input (MovieLens ``u.item`` / ``movies.csv``, the generator's
  ``items.csv``): names and categories;
* the rows of behaviour formats that carry a category (Taobao's ``category_id``).
"""
from __future__ import annotations

import json
from pathlib import Path

from datatools.datasets import format_kind, iter_rows, load_item_catalogue

#: Names files looked for beside an input, per format first, then any of them.
NAMES_FILES = {"movielens-100k": ["u.item"], "movielens-csv": ["movies.csv"]}


def names_file_for(path, fmt: str) -> Path | None:
    """The names file beside ``path`` (``u.item``, ``movies.csv``, ``items.csv``), or None."""
    path = Path(path)
    for name in NAMES_FILES.get(fmt, []) + ["items.csv", "u.item", "movies.csv"]:
        beside = path.parent / name
        if beside.is_file() and beside.resolve() != path.resolve():
            return beside
    return None


def catalogue_for(path, fmt: str) -> dict[str, dict]:
    """``{item: {"item", "name", "category"}}`` for the file ``path`` of format ``fmt``
    (empty when nothing beside it or in it names or groups its items)."""
    path = Path(path)
    out: dict[str, dict] = {}
    beside = names_file_for(path, fmt)
    if beside is not None:
        out = {item: {"item": item, "name": n, "category": c} for item, (n, c) in load_item_catalogue(beside).items()}
    if format_kind(fmt) == "events":
        for row in iter_rows(path, fmt):
            if row.item and row.category:
                entry = out.setdefault(row.item, {"item": row.item, "name": row.item, "category": ""})
                entry["category"] = entry["category"] or row.category
    return out


async def publish_catalogue(catalogue: dict[str, dict], *, conf) -> int:
    """Send every entry to ``conf.topics.items`` (compacted: the last one per item stays)."""
    from broker.clients import KafkaClients

    if not catalogue:
        return 0
    producer = await KafkaClients(conf).producer("bulk")
    try:
        for item, entry in catalogue.items():
            await producer.send(conf.topics.items, key=item.encode(), value=json.dumps(entry).encode())
        await producer.flush()
    finally:
        await producer.stop()
    return len(catalogue)
