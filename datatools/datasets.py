"""Every input format the project reads, parsed in one place.

Used by the ``recsys load`` CLI (rows -> Kafka topics), the offline ALS CLI and the
evaluation. Nothing here talks to Kafka or reads settings: it is pure parsing.

Formats (``FORMATS``; ``format_kind(fmt)`` says "ratings" or "events"):

=================  ========  ==================================================  =========
name               kind      line                                                 scale
=================  ========  ==================================================  =========
movielens-100k     ratings   ``user<TAB>item<TAB>rating<TAB>unix_ts`` (u.data)    1..5
movielens-csv      ratings   ``userId,movieId,rating,timestamp`` + header, CRLF   0.5..5
renttherunway      ratings   JSON lines: user_id, item_id, rating, review_date    2..10
amazon-csv         ratings   ``userId,productId,score,timestamp``, no header      1..5
csv                ratings   ``user,item,rating[,ts]``, no header                 unknown
taobao             events    ``user,item,category,behavior,unix_ts``, no header   -
events-csv         events    ``user,item,event,ts[,category]``, no header         -
=================  ========  ==================================================  =========

Decisions (each bad row raises :class:`InvalidInput` with a short ``reason``; ``iter_rows``
counts them in its ``skipped`` Counter and goes on):

* Compression is detected from the gzip magic bytes, never from the file name.
* Text is decoded per line as UTF-8; a line that is not valid UTF-8 is decoded as
  latin-1 instead (lossless and deterministic, so distinct ids stay distinct). Such
  rows are kept, not counted as skipped.
* Leading/trailing whitespace and CR (CRLF files) are stripped from every field;
  blank lines are skipped as ``"blank"``; a header row of a CSV format is skipped as
  ``"header"`` (recognised by its column names, wherever it is).
* Ratings must be finite numbers (``"bad_rating"``); for formats with a known scale
  they must also lie inside it (``"out_of_scale"``). Timestamps must be finite
  numbers (``"bad_timestamp"``).
* Rent the Runway: an absent/null ``rating`` -> ``"missing_rating"``; ``review_date``
  ("April 20, 2016") -> unix seconds at midnight UTC. A missing or unparseable date
  is skipped as ``"bad_timestamp"``: the evaluation orders each user's ratings by
  time, so a made-up timestamp (0.0) would silently corrupt it. (The shared file has
  no such row.)
* ``csv`` without a ts column: ``parse_line`` uses its ``default_ts`` argument, and
  ``iter_rows``/``load_ratings`` pass the 0-based index of the line among the file's
  non-blank, non-header lines (bad rows count), so file order is kept as chronological
  order on replay.
* Taobao behaviours map to the project's event names: pv=view, cart=cart, fav=fav,
  buy=purchase; anything else -> ``"unknown_behavior"``. ``events-csv`` accepts the
  project's event names (``EVENT_TYPES``) only, with the same reason otherwise.
* Duplicates (same user and item twice) and out-of-order timestamps are kept as in the
  file, in file order: de-duplication and sorting are the consumer's business
  (:meth:`RatingsArrays.sorted_by_time` helps).
"""
from __future__ import annotations

import calendar
import collections
import csv
import gzip
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from app.records import EVENT_NAMES as EVENT_TYPES
from app.records import InvalidInput

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "EVENT_TYPES",
    "FORMATS",
    "SCALES",
    "TAOBAO_BEHAVIORS",
    "EventRow",
    "FormatInfo",
    "RatingRow",
    "RatingsArrays",
    "format_kind",
    "is_gzip",
    "iter_rows",
    "load_item_catalogue",
    "load_item_names",
    "load_ratings",
    "open_text_lines",
    "parse_line",
    "parse_review_date",
]


# --------------------------------------------------------------------------- rows
@dataclass(frozen=True, slots=True)
class RatingRow:
    user: str
    item: str
    rating: float
    ts: float  # unix seconds


@dataclass(frozen=True, slots=True)
class EventRow:
    user: str
    item: str
    event: str
    ts: float  # unix seconds
    category: str | None = None


# --------------------------------------------------------------------------- formats
@dataclass(frozen=True)
class FormatInfo:
    name: str
    kind: str  # "ratings" | "events"
    scale: tuple[float, float] | None
    description: str


#: Taobao ``behavior`` column -> project event name.
TAOBAO_BEHAVIORS: dict[str, str] = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "purchase"}
_EVENT_SET = frozenset(EVENT_TYPES)

FORMATS: dict[str, FormatInfo] = {
    f.name: f
    for f in (
        FormatInfo("movielens-100k", "ratings", (1.0, 5.0), "u.data: user\\titem\\trating\\tunix_ts"),
        FormatInfo("movielens-csv", "ratings", (0.5, 5.0), "ratings.csv: userId,movieId,rating,timestamp (header)"),
        FormatInfo("renttherunway", "ratings", (2.0, 10.0), "JSON lines: user_id, item_id, rating, review_date"),
        FormatInfo("amazon-csv", "ratings", (1.0, 5.0), "userId,productId,score,timestamp (no header)"),
        FormatInfo("csv", "ratings", None, "user,item,rating[,ts] (no header)"),
        FormatInfo("taobao", "events", None, "user,item,category,behavior,unix_ts (no header)"),
        FormatInfo("events-csv", "events", None, "user,item,event,ts[,category] (no header)"),
    )
}

#: Rating scale (min, max) of every rating format; None = not known from the format.
SCALES: dict[str, tuple[float, float] | None] = {
    name: info.scale for name, info in FORMATS.items() if info.kind == "ratings"
}


def _info(fmt: str) -> FormatInfo:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}") from None


def format_kind(fmt: str) -> str:
    """``"ratings"`` or ``"events"``."""
    return _info(fmt).kind


# --------------------------------------------------------------------------- field helpers
_HEADER_WORDS = frozenset(
    {
        "user", "userid", "user_id", "item", "itemid", "item_id", "movieid", "productid",
        "product_id", "rating", "score", "timestamp", "ts", "time", "event", "behavior",
        "behaviour", "category", "category_id", "categoryid",
    }
)


def _looks_like_header(fields: list[str]) -> bool:
    return sum(f.strip().lower() in _HEADER_WORDS for f in fields) >= 2


def _ids(user: str, item: str) -> tuple[str, str]:
    user = user.strip()
    item = item.strip()
    if not user:
        raise InvalidInput("missing_user")
    if not item:
        raise InvalidInput("missing_item")
    return user, item


def _rating(value: object, scale: tuple[float, float] | None) -> float:
    if value is None:
        raise InvalidInput("missing_rating")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise InvalidInput("missing_rating")
    try:
        r = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput("bad_rating", repr(value)) from None
    if not math.isfinite(r):
        raise InvalidInput("bad_rating", repr(value))
    if scale is not None and not (scale[0] <= r <= scale[1]):
        raise InvalidInput("out_of_scale", repr(value))
    return r


def _ts(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise InvalidInput("bad_timestamp", repr(value)) from None
    if not math.isfinite(t):
        raise InvalidInput("bad_timestamp", repr(value))
    return t


def _split(line: str, sep: str = ",") -> list[str]:
    if sep == "," and '"' in line:
        return next(csv.reader([line]))
    return line.split(sep)


_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_DATE_CACHE: dict[str, float] = {}


def parse_review_date(text: object) -> float:
    """"April 20, 2016" -> unix seconds at midnight UTC; raises InvalidInput("bad_timestamp")."""
    if not isinstance(text, str):
        raise InvalidInput("bad_timestamp", repr(text))
    hit = _DATE_CACHE.get(text)
    if hit is not None:
        return hit
    try:
        month, day, year = text.replace(",", " ").split()
        m = _MONTHS[month.lower()]
        d, y = int(day), int(year)
        if not (1 <= d <= calendar.monthrange(y, m)[1]):
            raise ValueError(text)
        ts = float(calendar.timegm((y, m, d, 0, 0, 0, 0, 0, 0)))
    except (ValueError, KeyError):
        raise InvalidInput("bad_timestamp", repr(text)) from None
    if len(_DATE_CACHE) < 100_000:
        _DATE_CACHE[text] = ts
    return ts


# --------------------------------------------------------------------------- parsers
# Each returns a plain tuple (fast path for load_ratings); parse_line wraps it.
# ratings: (user, item, rating, ts); events: (user, item, event, ts, category)

def _p_ml100k(line: str, default_ts: float) -> tuple:
    f = line.split("\t") if "\t" in line else line.split()
    if len(f) != 4:
        raise InvalidInput("wrong_field_count", f"{len(f)} fields")
    u, i = _ids(f[0], f[1])
    return u, i, _rating(f[2], (1.0, 5.0)), _ts(f[3].strip())


def _csv_ratings(scale: tuple[float, float] | None, counts: tuple[int, ...]) -> Callable[[str, float], tuple]:
    def parse(line: str, default_ts: float) -> tuple:
        f = _split(line)
        if len(f) not in counts:
            raise InvalidInput("wrong_field_count", f"{len(f)} fields")
        u, i = _ids(f[0], f[1])
        try:
            r = _rating(f[2], scale)
            t = _ts(f[3].strip()) if len(f) > 3 else default_ts
        except InvalidInput:
            if _looks_like_header(f):
                raise InvalidInput("header") from None
            raise
        return u, i, r, t

    return parse


def _p_rtr(line: str, default_ts: float) -> tuple:
    try:
        o = json.loads(line)
    except ValueError:
        raise InvalidInput("bad_json") from None
    if not isinstance(o, dict):
        raise InvalidInput("bad_json", "not an object")
    u, i = o.get("user_id"), o.get("item_id")
    u, i = _ids("" if u is None else str(u), "" if i is None else str(i))
    r = _rating(o.get("rating"), (2.0, 10.0))
    return u, i, r, parse_review_date(o.get("review_date"))


def _p_taobao(line: str, default_ts: float) -> tuple:
    f = _split(line)
    if len(f) != 5:
        raise InvalidInput("wrong_field_count", f"{len(f)} fields")
    u, i = _ids(f[0], f[1])
    behavior = f[3].strip()
    event = TAOBAO_BEHAVIORS.get(behavior)
    if event is None:
        if _looks_like_header(f):
            raise InvalidInput("header")
        raise InvalidInput("unknown_behavior", repr(behavior))
    cat = f[2].strip() or None
    return u, i, event, _ts(f[4].strip()), cat


def _p_events_csv(line: str, default_ts: float) -> tuple:
    f = _split(line)
    if len(f) not in (4, 5):
        raise InvalidInput("wrong_field_count", f"{len(f)} fields")
    u, i = _ids(f[0], f[1])
    event = f[2].strip()
    if event not in _EVENT_SET:
        if _looks_like_header(f):
            raise InvalidInput("header")
        raise InvalidInput("unknown_behavior", repr(event))
    cat = (f[4].strip() or None) if len(f) == 5 else None
    return u, i, event, _ts(f[3].strip()), cat


_PARSERS: dict[str, Callable[[str, float], tuple]] = {
    "movielens-100k": _p_ml100k,
    "movielens-csv": _csv_ratings((0.5, 5.0), (4,)),
    "renttherunway": _p_rtr,
    "amazon-csv": _csv_ratings((1.0, 5.0), (4,)),
    "csv": _csv_ratings(None, (3, 4)),
    "taobao": _p_taobao,
    "events-csv": _p_events_csv,
}
assert set(_PARSERS) == set(FORMATS)


def _parse_tuple(parser: Callable[[str, float], tuple], line: str, default_ts: float) -> tuple:
    if not line or line.isspace():
        raise InvalidInput("blank")
    return parser(line.strip(), default_ts)


def parse_line(fmt: str, line: str, *, default_ts: float = 0.0) -> RatingRow | EventRow:
    """Parse one line of ``fmt`` (with or without its line end). Pure; raises InvalidInput.

    ``default_ts`` is the timestamp of a ``csv`` row that has no ts column.
    """
    info = _info(fmt)
    t = _parse_tuple(_PARSERS[fmt], line, default_ts)
    return RatingRow(*t) if info.kind == "ratings" else EventRow(*t)


# --------------------------------------------------------------------------- files
def is_gzip(path: PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_binary(raw: BinaryIO) -> BinaryIO:
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def open_text_lines(path: PathLike) -> Iterator[str]:
    """The decoded lines of a plain or gzip file (UTF-8, latin-1 per-line fallback)."""
    with open(path, "rb", buffering=1 << 20) as raw:
        for line in _open_binary(raw):
            yield _decode(line)


def _iter_tuples(
    path: PathLike,
    fmt: str,
    limit: int | None,
    skipped: collections.Counter | None,
    progress: bool,
    max_bad: int | None = None,
) -> Iterator[tuple]:
    parser = _PARSERS[fmt]
    if skipped is None:
        skipped = collections.Counter()
    bar = None
    with open(path, "rb", buffering=1 << 20) as raw:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=os.fstat(raw.fileno()).st_size, unit="B", unit_scale=True,
                       desc=Path(path).name, leave=False)
        stream = _open_binary(raw)
        n_out = n_bad = 0
        data_index = 0  # index of non-blank, non-header lines: default ts for csv
        last_pos = 0
        try:
            for lineno, bline in enumerate(stream):
                if bar is not None and not (lineno & 0x3FFF):
                    pos = raw.tell()
                    bar.update(pos - last_pos)
                    last_pos = pos
                if limit is not None and n_out >= limit:
                    break
                try:
                    t = _parse_tuple(parser, _decode(bline), float(data_index))
                except InvalidInput as exc:
                    skipped[exc.reason] += 1
                    if exc.reason not in ("blank", "header"):
                        data_index += 1
                        n_bad += 1
                        if max_bad is not None and n_bad >= max_bad:
                            break
                    continue
                data_index += 1
                n_out += 1
                yield t
        finally:
            if bar is not None:
                bar.update(max(0, raw.tell() - last_pos))
                bar.close()


def iter_rows(
    path: PathLike,
    fmt: str,
    *,
    limit: int | None = None,
    skipped: collections.Counter | None = None,
    progress: bool = False,
    max_bad: int | None = None,
) -> Iterator[RatingRow | EventRow]:
    """Stream the rows of a (possibly gzip) file in file order.

    ``limit`` caps the number of rows yielded (skipped lines do not count), ``max_bad``
    the bad lines read (blank lines and headers are not bad). Bad lines are counted by
    reason into ``skipped`` (if given) and never raise. ``progress`` shows a tqdm bar over the file's bytes (compressed
    bytes for gzip) on stderr.
    """
    kind = _info(fmt).kind
    cls = RatingRow if kind == "ratings" else EventRow
    for t in _iter_tuples(path, fmt, limit, skipped, progress, max_bad):
        yield cls(*t)


def require_format(path: PathLike, fmt: str, lines: int = 100) -> None:
    """Raise :class:`InvalidInput` (``wrong_format``) when none of the first ``lines``
    lines of ``path`` is a ``fmt`` row: a file given with the wrong ``--format``."""
    skipped: collections.Counter = collections.Counter()
    if next(iter_rows(path, fmt, limit=1, skipped=skipped, max_bad=lines), None) is None and skipped:
        reason, n = skipped.most_common(1)[0]
        raise InvalidInput("wrong_format", f"{path}: none of its first {sum(skipped.values())} lines is a {fmt} "
                                           f"row ({n} x {reason}): is --format right?")


@dataclass
class RatingsArrays:
    """Ratings as numpy arrays, in file order (duplicates and disorder kept)."""

    users: np.ndarray  # object array of str ids
    items: np.ndarray  # object array of str ids
    ratings: np.ndarray  # float32
    ts: np.ndarray  # float64 unix seconds
    skipped: collections.Counter = field(default_factory=collections.Counter)

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    @property
    def n_users(self) -> int:
        return len(set(self.users.tolist()))

    @property
    def n_items(self) -> int:
        return len(set(self.items.tolist()))

    def sorted_by_time(self) -> RatingsArrays:
        """A copy in chronological order (stable: ties keep file order)."""
        order = np.argsort(self.ts, kind="stable")
        return RatingsArrays(self.users[order], self.items[order], self.ratings[order],
                             self.ts[order], collections.Counter(self.skipped))

    def encode(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(user_idx int32, item_idx int32, user_ids, item_ids)``; ids sorted."""
        user_ids, user_idx = np.unique(self.users.astype(str), return_inverse=True)
        item_ids, item_idx = np.unique(self.items.astype(str), return_inverse=True)
        return (user_idx.astype(np.int32).ravel(), item_idx.astype(np.int32).ravel(),
                user_ids.astype(object), item_ids.astype(object))


def load_ratings(
    path: PathLike,
    fmt: str,
    *,
    limit: int | None = None,
    progress: bool = False,
) -> RatingsArrays:
    """Read a whole ratings file into :class:`RatingsArrays` (``skipped`` filled)."""
    if _info(fmt).kind != "ratings":
        raise ValueError(f"{fmt!r} is an events format, not ratings")
    skipped: collections.Counter = collections.Counter()
    rows = list(_iter_tuples(path, fmt, limit, skipped, progress))
    n = len(rows)
    if n:
        users, items, ratings, ts = zip(*rows, strict=False)
    else:
        users = items = ratings = ts = ()
    u = np.empty(n, dtype=object)
    u[:] = users
    i = np.empty(n, dtype=object)
    i[:] = items
    return RatingsArrays(u, i, np.asarray(ratings, dtype=np.float32).reshape(n),
                         np.asarray(ts, dtype=np.float64).reshape(n), skipped)


# --------------------------------------------------------------------------- item names
def load_item_names(path: PathLike) -> dict[str, str]:
    """Item id -> display name (see :func:`load_item_catalogue`)."""
    return {item: name for item, (name, _category) in load_item_catalogue(path).items()}


def load_item_catalogue(path: PathLike) -> dict[str, tuple[str, str]]:
    """Item id -> (display name, category), from any of:

    * MovieLens 100K ``u.item`` (``id|title|...|19 genre flags``, latin-1): the first
      genre flagged, named from ``u.genre`` beside it when there is one;
    * MovieLens ``movies.csv`` (``movieId,title,genres`` with a header, quoted titles):
      the first of the ``|``-separated genres;
    * the generator's ``items.csv`` (``item,name,category``, no header).

    Plain or gzip; the layout is recognised from the content, not the name. A missing
    category is ``""``.
    """
    lines = [ln.rstrip("\r\n") for ln in open_text_lines(path)]
    out: dict[str, tuple[str, str]] = {}
    first = next((ln for ln in lines if ln.strip()), "")
    if len(first.split("|")) >= 5:  # u.item
        genres = _ml100k_genres(Path(path).parent / "u.genre")
        for ln in lines:
            f = ln.split("|")
            if len(f) >= 2 and f[0].strip():
                flags = [n for n, flag in enumerate(f[5:]) if flag.strip() == "1"]
                category = genres.get(flags[0], f"genre {flags[0]}") if flags else ""
                out[f[0].strip()] = (f[1].strip(), category)
        return out
    for f in csv.reader(ln for ln in lines if ln.strip()):
        if len(f) < 2 or not f[0].strip():
            continue
        if not out and f[0].strip().lower() in _HEADER_WORDS | {"id", "movie_id"}:
            continue  # header row (movies.csv: movieId,title,genres)
        category = f[2].split("|")[0].strip() if len(f) > 2 else ""
        out[f[0].strip()] = (f[1].strip(), "" if category == "(no genres listed)" else category)
    return out


def _ml100k_genres(path: Path) -> dict[int, str]:
    """``u.genre`` (``name|index``) as ``{index: name}``; empty when there is none."""
    if not path.is_file():
        return {}
    genres = {}
    for ln in open_text_lines(path):
        name, _, index = ln.strip().rpartition("|")
        if name and index.isdigit():
            genres[int(index)] = name
    return genres
