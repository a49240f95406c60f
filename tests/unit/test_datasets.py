"""Tests of datatools.datasets: parsers on real lines read at test time, and on hand-written bad
lines; whole-file counts on the real shared data sets (never copied into the repo)."""
from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest

from app.records import InvalidInput as BadRow
from datatools import datasets as ds
from datatools.datasets import EventRow, RatingRow
from tests.conftest import DATASETS

DATA = DATASETS
ML100K = DATA / "ml-100k" / "u.data"
ML100K_ITEMS = DATA / "ml-100k" / "u.item"
MLSMALL = DATA / "ml-latest-small" / "ratings.csv"
MLSMALL_MOVIES = DATA / "ml-latest-small" / "movies.csv"
RTR = DATA / "renttherunway" / "renttherunway_ratings.jsonl.gz"
TAOBAO = DATA / "taobao-userbehavior" / "UserBehavior_sample.csv.gz"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data set not available: {path} (tests read ../shared/datasets)")
    return path


def raw_lines(path: Path, n: int) -> list[bytes]:
    """The first n raw lines (line ends kept) of a plain or gzip file."""
    opener = gzip.open if ds.is_gzip(path) else open
    out = []
    with opener(path, "rb") as fh:
        for line in fh:
            out.append(line)
            if len(out) == n:
                break
    return out


def reason(fmt: str, line: str) -> str:
    with pytest.raises(BadRow) as exc:
        ds.parse_line(fmt, line)
    return exc.value.reason


# ------------------------------------------------------------------ registry
def test_formats_and_scales():
    assert set(ds.SCALES) == {"movielens-100k", "movielens-csv", "renttherunway", "amazon-csv", "csv"}
    assert ds.SCALES["movielens-100k"] == (1, 5)
    assert ds.SCALES["movielens-csv"] == (0.5, 5)
    assert ds.SCALES["renttherunway"] == (2, 10)
    assert ds.SCALES["amazon-csv"] == (1, 5)
    assert ds.SCALES["csv"] is None
    assert ds.format_kind("taobao") == "events"
    assert ds.format_kind("events-csv") == "events"
    assert ds.format_kind("renttherunway") == "ratings"
    with pytest.raises(ValueError):
        ds.format_kind("nope")
    with pytest.raises(ValueError):
        ds.parse_line("nope", "a,b,1")


def test_rows_are_frozen_slotted():
    r = RatingRow("u", "i", 4.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.rating = 5.0  # type: ignore[misc]
    assert not hasattr(r, "__dict__")
    assert EventRow("u", "i", "view", 1.0).category is None


# ------------------------------------------------------------------ parse_line on real lines
def test_parse_ml100k_first_line():
    line = raw_lines(need(ML100K), 1)[0].decode()
    fields = line.strip().split("\t")
    row = ds.parse_line("movielens-100k", line)
    assert row == RatingRow(fields[0], fields[1], float(fields[2]), float(fields[3]))
    assert isinstance(row.user, str) and isinstance(row.ts, float)


def test_parse_mlsmall_crlf_and_header():
    header, first = (b.decode() for b in raw_lines(need(MLSMALL), 2))
    assert first.endswith("\r\n")  # the real file has CRLF line ends
    assert reason("movielens-csv", header) == "header"
    row = ds.parse_line("movielens-csv", first)
    u, i, r, t = first.rstrip("\r\n").split(",")
    assert row == RatingRow(u, i, float(r), float(t))
    assert "\r" not in row.item and not isinstance(row.ts, str)


def test_parse_rtr_lines_and_missing_rating():
    lines = [b.decode() for b in raw_lines(need(RTR), 50)]
    obj = json.loads(lines[0])
    row = ds.parse_line("renttherunway", lines[0])
    assert row.user == obj["user_id"] and row.item == obj["item_id"]
    assert row.rating == float(obj["rating"])
    assert row.ts % 86400 == 0 and row.ts > 1e9  # midnight UTC
    no_rating = next(ln for ln in ds.open_text_lines(RTR) if '"rating"' not in ln)
    assert reason("renttherunway", no_rating) == "missing_rating"


def test_parse_taobao_first_line():
    line = raw_lines(need(TAOBAO), 1)[0].decode()
    u, i, c, b, t = line.strip().split(",")
    row = ds.parse_line("taobao", line)
    assert row == EventRow(u, i, ds.TAOBAO_BEHAVIORS[b], float(t), c)


# ------------------------------------------------------------------ parse_line on bad lines
@pytest.mark.parametrize(
    "fmt,line,expected",
    [
        ("renttherunway", '{"user_id": "1", "item_id": "2", "rating": "10"', "bad_json"),
        ("renttherunway", "[1, 2, 3]", "bad_json"),
        ("renttherunway", '{"user_id": "1", "item_id": "2", "review_date": "May 1, 2016"}', "missing_rating"),
        ("renttherunway", '{"user_id": "1", "item_id": "2", "rating": null, "review_date": "May 1, 2016"}',
         "missing_rating"),
        ("renttherunway", '{"user_id": "1", "item_id": "2", "rating": "ten", "review_date": "May 1, 2016"}',
         "bad_rating"),
        ("renttherunway", '{"user_id": "", "item_id": "2", "rating": "8", "review_date": "May 1, 2016"}',
         "missing_user"),
        ("renttherunway", '{"item_id": "2", "rating": "8", "review_date": "May 1, 2016"}', "missing_user"),
        ("renttherunway", '{"user_id": "1", "rating": "8", "review_date": "May 1, 2016"}', "missing_item"),
        ("renttherunway", '{"user_id": "1", "item_id": "2", "rating": "8"}', "bad_timestamp"),
        ("renttherunway", '{"user_id": "1", "item_id": "2", "rating": "8", "review_date": "Foo 1, 2016"}',
         "bad_timestamp"),
        ("renttherunway", '{"user_id": "1", "item_id": "2", "rating": "8", "review_date": "February 30, 2016"}',
         "bad_timestamp"),
        ("renttherunway", '{"user_id": "1", "item_id": "2", "rating": "12", "review_date": "May 1, 2016"}',
         "out_of_scale"),
        ("movielens-100k", "1\t2\t3", "wrong_field_count"),
        ("movielens-100k", "1\t2\t3\t4\t5", "wrong_field_count"),
        ("movielens-100k", "1\t2\tgood\t900000000", "bad_rating"),
        ("movielens-100k", "1\t2\tnan\t900000000", "bad_rating"),
        ("movielens-100k", "1\t2\t7\t900000000", "out_of_scale"),
        ("movielens-100k", "1\t2\t3\tyesterday", "bad_timestamp"),
        ("movielens-csv", "1,2,,950000000", "missing_rating"),
        ("movielens-csv", ",2,4.0,950000000", "missing_user"),
        ("movielens-csv", "1, ,4.0,950000000", "missing_item"),
        ("movielens-csv", "1,2,4.0", "wrong_field_count"),
        ("amazon-csv", "A1,B2,five,1365811200", "bad_rating"),
        ("amazon-csv", "userId,productId,score,timestamp", "header"),
        ("csv", "u1,i1", "wrong_field_count"),
        ("csv", "user,item,rating", "header"),
        ("csv", "u1,i1,4,inf", "bad_timestamp"),
        ("taobao", "1,2,3,like,1500000000", "unknown_behavior"),
        ("taobao", "1,2,3,pv", "wrong_field_count"),
        ("taobao", "1,2,3,pv,soon", "bad_timestamp"),
        ("taobao", "user_id,item_id,category_id,behavior,ts", "header"),
        ("events-csv", "u1,i1,like,1.0", "unknown_behavior"),
        ("events-csv", "u1,i1,view", "wrong_field_count"),
        ("events-csv", "user,item,event,ts", "header"),
        ("csv", "", "blank"),
        ("taobao", "  \r\n", "blank"),
    ],
)
def test_bad_lines(fmt, line, expected):
    assert reason(fmt, line) == expected


def test_bad_row_is_value_error():
    with pytest.raises(ValueError):
        ds.parse_line("csv", "u1,i1,x")


def test_parse_good_handwritten_lines():
    assert ds.parse_line("csv", "u1, i2 ,4.5,100 \r\n") == RatingRow("u1", "i2", 4.5, 100.0)
    assert ds.parse_line("csv", "u1,i2,3", default_ts=7) == RatingRow("u1", "i2", 3.0, 7.0)
    assert ds.parse_line("csv", '"u,1",i2,3,5') == RatingRow("u,1", "i2", 3.0, 5.0)  # quoted id
    assert ds.parse_line("amazon-csv", "A1,B2,5.0,1365811200") == RatingRow("A1", "B2", 5.0, 1365811200.0)
    assert ds.parse_line("events-csv", "u1,i2,purchase,12.5,dress") == EventRow("u1", "i2", "purchase", 12.5, "dress")
    assert ds.parse_line("events-csv", "u1,i2,search,12.5") == EventRow("u1", "i2", "search", 12.5, None)
    for b, e in ds.TAOBAO_BEHAVIORS.items():
        assert ds.parse_line("taobao", f"1,2,3,{b},4").event == e
    assert set(ds.TAOBAO_BEHAVIORS.values()) <= set(ds.EVENT_TYPES)
    row = ds.parse_line("renttherunway", '{"user_id": 5, "item_id": "2", "rating": 8, "review_date": "April 20, 2016"}')
    assert row == RatingRow("5", "2", 8.0, 1461110400.0)  # 2016-04-20T00:00:00Z


# ------------------------------------------------------------------ file handling (synthetic tmp files)
def test_gzip_detected_by_magic_not_name(tmp_path):
    content = "u1,i1,4,10\nu2,i1,5,20\n"
    gz_named_csv = tmp_path / "ratings.csv"
    gz_named_csv.write_bytes(gzip.compress(content.encode()))
    plain_named_gz = tmp_path / "ratings.csv.gz"
    plain_named_gz.write_text(content)
    a = list(ds.iter_rows(gz_named_csv, "csv"))
    b = list(ds.iter_rows(plain_named_gz, "csv"))
    assert a == b == [RatingRow("u1", "i1", 4.0, 10.0), RatingRow("u2", "i1", 5.0, 20.0)]


def test_quirks_blank_crlf_whitespace_dupes_disorder_latin1(tmp_path):
    p = tmp_path / "r.txt"
    p.write_bytes(
        b"u1,i1,4,30\r\n"
        b"\r\n"
        b"u1,i1,5,10   \r\n"  # duplicate pair, earlier ts, trailing whitespace
        b"   \n"
        b"caf\xe9,i2,3,20\n"  # latin-1 byte, invalid UTF-8
        b"u\xc3\xa9,i2,2,25\n"  # valid UTF-8
        b"u2,i3,x,40\n"
    )
    skipped = collections.Counter()
    rows = list(ds.iter_rows(p, "csv", skipped=skipped))
    assert [(r.user, r.item, r.rating, r.ts) for r in rows] == [
        ("u1", "i1", 4.0, 30.0),
        ("u1", "i1", 5.0, 10.0),
        ("café", "i2", 3.0, 20.0),
        ("ué", "i2", 2.0, 25.0),
    ]
    assert skipped == {"blank": 2, "bad_rating": 1}
    arr = ds.load_ratings(p, "csv")
    assert len(arr) == 4 and arr.skipped == skipped
    assert arr.ratings.dtype == np.float32 and arr.ts.dtype == np.float64
    assert arr.users.dtype == object and all(isinstance(u, str) for u in arr.users)
    s = arr.sorted_by_time()
    assert s.ts.tolist() == [10.0, 20.0, 25.0, 30.0]
    ui, ii, uids, iids = arr.encode()
    assert ui.dtype == np.int32 and list(uids[ui]) == list(arr.users) and list(iids[ii]) == list(arr.items)


def test_csv_without_ts_uses_data_line_index(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("u1,i1,4\n\nu2,i1,bad\nu2,i2,3\n")
    rows = list(ds.iter_rows(p, "csv"))
    assert [r.ts for r in rows] == [0.0, 2.0]  # blank lines not counted, bad rows are


def test_limit_and_progress(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("".join(f"u{k},i{k},view,{k}\n" for k in range(100)))
    assert len(list(ds.iter_rows(p, "events-csv", limit=7, progress=True))) == 7
    r = tmp_path / "r.csv"
    r.write_text("".join(f"u{k},i{k},3,{k}\n" for k in range(10)))
    assert len(ds.load_ratings(r, "csv", limit=3, progress=True)) == 3
    with pytest.raises(ValueError):
        ds.load_ratings(p, "events-csv")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    arr = ds.load_ratings(p, "csv")
    assert len(arr) == 0 and arr.ratings.dtype == np.float32 and arr.users.shape == (0,)


def test_item_names_generator_layout(tmp_path):
    p = tmp_path / "items.csv"
    p.write_text("i0,Blue cotton dress #0,dress\ni1,Red wool coat #1,coat\n")
    assert ds.load_item_names(p) == {"i0": "Blue cotton dress #0", "i1": "Red wool coat #1"}


# ------------------------------------------------------------------ whole real files
def test_rtr_counts():
    t0 = time.perf_counter()
    arr = ds.load_ratings(need(RTR), "renttherunway")
    elapsed = time.perf_counter() - t0
    print(f"\nload_ratings(renttherunway): {len(arr)} ratings in {elapsed:.2f}s")
    assert len(arr) == 192_462
    assert arr.skipped == {"missing_rating": 82}
    assert len(arr) + sum(arr.skipped.values()) == 192_544
    assert set(np.unique(arr.ratings).tolist()) == {2.0, 4.0, 6.0, 8.0, 10.0}
    assert arr.n_items == 5_850
    assert 105_000 <= arr.n_users <= 106_000
    assert (arr.ts > 0).all() and (arr.ts % 86400 == 0).all()


def test_ml100k_counts():
    arr = ds.load_ratings(need(ML100K), "movielens-100k")
    assert len(arr) == 100_000 and not arr.skipped
    assert arr.n_users == 943 and arr.n_items == 1_682
    assert (np.diff(arr.ts) < 0).any()  # file order kept: timestamps out of order
    assert (np.diff(arr.sorted_by_time().ts) >= 0).all()


def test_mlsmall_counts():
    arr = ds.load_ratings(need(MLSMALL), "movielens-csv")
    assert len(arr) == 100_836
    assert arr.skipped == {"header": 1}
    assert arr.n_users == 610 and arr.n_items == 9_724
    assert arr.ratings.min() == 0.5 and arr.ratings.max() == 5.0
    assert not any("\r" in i for i in arr.items[:1000])


def test_taobao_counts():
    skipped = collections.Counter()
    rows = list(ds.iter_rows(need(TAOBAO), "taobao", skipped=skipped))
    # The README says 96,167 events; the shared file holds 96,168 lines, all valid
    # (checked with zcat | wc -l and a regex over every line), so that is what we get.
    assert len(rows) == 96_168
    assert not skipped
    counts = collections.Counter(r.event for r in rows)
    assert set(counts) == {"view", "cart", "fav", "purchase"}
    assert counts["view"] > counts["cart"] > counts["purchase"]
    assert all(r.category for r in rows[:1000])


def test_item_names_movielens():
    names = ds.load_item_names(need(ML100K_ITEMS))
    assert len(names) == 1_682
    assert not any("\ufffd" in n for n in names.values())
    assert any("é" in n for n in names.values())  # latin-1 decoded properly
    movies = ds.load_item_names(need(MLSMALL_MOVIES))
    assert len(movies) == 9_742 and "movieId" not in movies
    assert any("," in n for n in movies.values())  # quoted titles with commas
    ratings = ds.load_ratings(need(MLSMALL), "movielens-csv")
    assert set(ratings.items.tolist()) <= set(movies)


def test_a_file_in_another_format_is_refused_from_its_first_lines(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{u + 1}\t3\t88125094{u % 10}\n" for u in range(1, 500)))
    with pytest.raises(BadRow, match="wrong_format: .*none of its first 100 lines is a taobao row"):
        ds.require_format(path, "taobao")
    ds.require_format(path, "movielens-100k")  # the right format passes
    skipped = collections.Counter()
    assert list(ds.iter_rows(path, "taobao", skipped=skipped, max_bad=7)) == [] and sum(skipped.values()) == 7
    assert len(list(ds.iter_rows(path, "movielens-100k", max_bad=5))) == 499  # no bad line: all of it
