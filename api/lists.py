"""The query API's list filters (``?n=``, ``?exclude=``), pure: no Faust."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from app.records import wire_list


def list_filters(query: Mapping[str, str]) -> tuple[int | None, set[str]]:
    """``?n=`` and ``?exclude=a,b`` of a list request; ``ValueError`` for a bad ``n``."""
    raw = query.get("n")
    n = None
    if raw is not None and raw != "":
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"n={raw!r} is not a whole number >= 1")
        n = int(raw)
    exclude = {x.strip() for x in query.get("exclude", "").split(",") if x.strip()}
    return n, exclude


def filter_list(items: Sequence[Sequence], n: int | None = None, exclude: Iterable[str] = (),
                keep=None) -> list[list]:
    """The wire list without ``exclude``d items and items ``keep(item)`` refuses, cut to ``n``."""
    ex = set(exclude)
    out = [e for e in wire_list(items) if e[0] not in ex and (keep is None or keep(e[0]))]
    return out if n is None else out[:n]


def filtered_entry(entry: Mapping, n: int | None = None, exclude: Iterable[str] = (), keep=None) -> dict:
    """A stored list entry (``recs`` of a user's state) as the query API answers it: its
    items filtered (:func:`filter_list`) and ``because`` only for the items that remain."""
    items = filter_list(entry["items"], n, exclude, keep)
    listed = {e[0] for e in items}
    because = {q: r for q, r in (entry.get("because") or {}).items() if q in listed}
    out = {"items": items, "because": because, "model_version": entry.get("model_version"), "ts": entry.get("ts")}
    if "explored" in entry:
        out["explored"] = entry["explored"]
    return out
