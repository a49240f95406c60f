"""The frontend's pure parts (web/live.py): the online-evaluation join, hit rates with
their Wilson intervals, and the A/B assignment."""
from __future__ import annotations

import collections
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ranking.ab import assign_variant, parse_ab
from web.live import LiveState, list_before, percentile, wilson_interval

ROOT = str(Path(__file__).resolve().parents[2])


def rec(user, items, emitted_at, version="v1", **extra):
    return {"user": user, "items": [[i, 1.0] for i in items], "model_version": version, "trigger_ts": 0.0,
            "produced_at": emitted_at - 0.01, "emitted_at": emitted_at, "worker_ms": 1.0, **extra}


# ------------------------------------------------------------------ the join
def test_an_event_is_joined_with_the_list_its_user_had_just_before_it():
    state = LiveState(grace_s=0.0)
    state.add_list(rec("u", ["a", "b"], 10.0), arrival=10.0)
    state.add_list(rec("u", ["c", "d"], 20.0), arrival=20.0)
    state.add_list(rec("u", ["e"], 30.0), arrival=30.0)
    for item, at in [("a", 15.0), ("c", 15.0), ("c", 25.0), ("e", 25.0), ("e", 30.0), ("a", 5.0)]:
        state.add_event("u", item, "click", at)
    joined = state.settle(now=100.0)
    assert [(j.item, j.at, j.hit) for j in joined] == [
        ("a", 15.0, True), ("c", 15.0, False),   # the list of t=10 was shown, not the one of t=20
        ("c", 25.0, True), ("e", 25.0, False),   # the list its own event triggered is not "before"
        ("e", 30.0, True),                       # emitted at the same instant counts as before
        ("a", 5.0, False)]                       # no list yet
    assert joined[-1].rec is None and joined[0].position == 0
    rows = state.evaluation()
    assert rows["by_variant"] == [{"variant": "default", "n": 5, "hits": 3, "hit_rate": 0.6,
                                   **dict(zip(("ci_low", "ci_high"), wilson_interval(3, 5), strict=False))}]
    assert rows["unjoined"] == {"click": 1}


def test_a_list_read_after_the_event_still_joins_when_it_was_emitted_before_it():
    """Lists and events come from different topics: the join goes by time, not by arrival."""
    state = LiveState(grace_s=1.0)
    state.add_event("u", "x", "purchase", at=50.0)  # read first ...
    state.add_list(rec("u", ["x"], 49.5), arrival=50.2)  # ... though the list was emitted before it
    assert state.settle(now=50.5) == []  # still within the grace
    [joined] = state.settle(now=51.0)
    assert joined.hit and joined.rec["emitted_at"] == 49.5


def test_lists_of_other_users_and_events_without_an_item_do_not_count():
    state = LiveState(grace_s=0.0)
    state.add_list(rec("v", ["a"], 1.0), arrival=1.0)
    state.add_event("u", "a", "view", 2.0)   # u has no list: v's list is not u's
    state.add_event("u", "", "search", 2.0)  # nothing to hit
    joined = state.settle(now=10.0)
    assert [(j.user, j.hit) for j in joined] == [("u", False)]
    assert state.evaluation()["by_variant"] == []
    assert state.events_total == {"view": 1, "search": 1}


def test_hit_rates_are_split_by_variant_model_version_and_event():
    state = LiveState(grace_s=0.0)
    state.add_list(rec("u1", ["a"], 1.0, version="v1", variant="paper"), arrival=1.0)
    state.add_list(rec("u2", ["a"], 1.0, version="v2"), arrival=1.0)  # no variant field: the default
    for user, item, event in [("u1", "a", "click"), ("u1", "b", "click"), ("u1", "a", "purchase"),
                              ("u2", "a", "click"), ("u2", "z", "purchase")]:
        state.add_event(user, item, event, 2.0)
    state.settle(now=10.0)
    ev = state.evaluation()
    assert [(r["variant"], r["n"], r["hits"]) for r in ev["by_variant"]] == [("default", 2, 1), ("paper", 3, 2)]
    assert [(r["variant"], r["model_version"], r["n"]) for r in ev["by_version"]] == [("default", "v2", 2),
                                                                                       ("paper", "v1", 3)]
    assert {(r["variant"], r["event"]): (r["n"], r["hits"]) for r in ev["by_event"]} == {
        ("default", "click"): (1, 1), ("default", "purchase"): (1, 0),
        ("paper", "click"): (2, 1), ("paper", "purchase"): (1, 1)}


def test_without_a_variant_field_the_variant_is_the_users_ab_arm():
    arms = parse_ab("default:50,paper:50")
    state = LiveState(arms=arms, grace_s=0.0)
    users = [f"user{n}" for n in range(40)]
    for u in users:
        state.add_list(rec(u, ["a"], 1.0), arrival=1.0)
        state.add_event(u, "a", "click", 2.0)
    state.settle(now=10.0)
    by = {r["variant"]: r["n"] for r in state.evaluation()["by_variant"]}
    want = collections.Counter(assign_variant(u, arms) for u in users)
    assert by == dict(want) and set(by) == {"default", "paper"}


def test_list_before_picks_the_newest_list_not_after_the_event():
    history = [rec("u", ["a"], 3.0), rec("u", ["b"], 1.0), rec("u", ["c"], 2.0)]  # out of order
    assert list_before(history, 2.5)["emitted_at"] == 2.0
    assert list_before(history, 0.5) is None


# ------------------------------------------------------------------ statistics
def test_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(8, 10)  # textbook value: 0.4902 .. 0.9433
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.15 < hi < 0.17  # never below 0, unlike the normal approximation
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and 0.83 < lo < 0.85
    a, b = wilson_interval(500, 1000)
    assert a == pytest.approx(0.5 - b + 0.5) and b - a == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 1000), rel=0.01)


def test_wilson_interval_covers_the_true_rate_about_95_percent_of_the_time():
    import random

    rng = random.Random(7)
    p, n, trials = 0.3, 200, 2000
    covered = 0
    for _ in range(trials):
        hits = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson_interval(hits, n)
        covered += lo <= p <= hi
    assert 0.93 < covered / trials < 0.97


def test_percentile_and_latency_window():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)
    state = LiveState(started_at=100.0, latency_window_s=60.0)
    state.add_list(rec("old", ["a"], 50.0), arrival=101.0)  # read back from the topic: cache only
    for n in range(10):
        state.add_list({**rec("u", ["a"], 110.0 + n), "produced_at": 110.0 + n - 0.01 * (n + 1)},
                       arrival=110.0 + n + 0.1)
    lat = state.latency(now=120.0)
    assert lat["samples"] == 10 and state.lists_live == 10 and state.lists_total == 11
    assert lat["list_p50_ms"] == pytest.approx(55.0) and lat["list_p99_ms"] == pytest.approx(99.1)
    assert state.latency(now=500.0)["samples"] == 0
    assert state.lists_per_second(now=120.0) == pytest.approx(1.0)


# ------------------------------------------------------------------ A/B
def test_parse_ab():
    assert parse_ab("default:50,paper:50") == [("default", 50), ("paper", 50)]
    assert parse_ab(" a:1 , b:3 ,") == [("a", 1), ("b", 3)]
    assert parse_ab("") == []
    for bad in ("default", "a:x", "a:-1", ":5", "a:1,a:2", "a:0,b:0"):
        with pytest.raises(ValueError):
            parse_ab(bad)


def test_assignment_is_stable_across_processes_and_ignores_the_hash_seed():
    arms = parse_ab("default:50,paper:50")
    users = [f"user{n}" for n in range(50)] + ["alice", "ß-ü", "42"]
    here = [assign_variant(u, arms) for u in users]
    assert here == [assign_variant(u, arms) for u in users]
    code = ("import sys; from ranking.ab import assign_variant, parse_ab; "
            f"print(','.join(assign_variant(u, parse_ab('default:50,paper:50')) for u in {users!r}))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PATH": ""}, cwd=ROOT)
        assert out.stdout.strip().split(",") == here
    # pinned: a change of the hash would move every user to another arm mid-test
    assert [assign_variant(u, arms) for u in ("alice", "bob", "carol", "dave")] == PINNED


PINNED = ["paper", "default", "default", "default"]


def test_assignment_is_balanced_and_follows_the_weights():
    users = [f"u{n}" for n in range(20_000)]
    even = collections.Counter(assign_variant(u, parse_ab("default:50,paper:50")) for u in users)
    assert set(even) == {"default", "paper"}
    # a fair coin over 20,000 users: 4 standard deviations is +-283
    assert abs(even["default"] - 10_000) < 283
    skewed = collections.Counter(assign_variant(u, parse_ab("a:10,b:30,c:60")) for u in users)
    for name, share in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        sd = math.sqrt(20_000 * share * (1 - share))
        assert abs(skewed[name] - 20_000 * share) < 4 * sd, (name, skewed)
    assert collections.Counter(assign_variant(u, parse_ab("only:1,never:0")) for u in users) == {"only": 20_000}
    assert assign_variant("anyone", []) == "default" and assign_variant("anyone", [], default="paper") == "paper"


def test_ramping_an_arm_up_only_moves_users_into_it():
    """50/50 -> 60/40: every user of ``default`` stays there; only some of ``paper`` move."""
    users = [f"u{n}" for n in range(5000)]
    before = {u: assign_variant(u, [("default", 50), ("paper", 50)]) for u in users}
    after = {u: assign_variant(u, [("default", 60), ("paper", 40)]) for u in users}
    moved = [u for u in users if before[u] != after[u]]
    assert moved and all(before[u] == "paper" and after[u] == "default" for u in moved)


# ------------------------------------------------------------------ the click path
def test_a_click_is_forwarded_to_the_worker_with_the_receive_time_and_the_token():
    """``POST /api/collect`` -> the worker's ``POST /collect/``: ``ts`` stamped here, the
    token added here (the browser never has it), the worker's answer relayed."""
    import asyncio
    import time

    from aiohttp import ClientSession, web

    from app.settings import Settings
    from web.server import create_app

    got = []

    async def fake_collect(request):
        got.append((request.headers.get("Authorization"), await request.json()))
        body = got[-1][1]
        if body.get("event") == "dislike":
            return web.json_response({"error": "unknown_event", "detail": "'dislike'"}, status=400)
        return web.json_response({"accepted": True}, status=202)

    async def scenario():
        worker = web.Application()
        worker.router.add_post("/collect/", fake_collect)
        worker_runner = web.AppRunner(worker)
        await worker_runner.setup()
        site = web.TCPSite(worker_runner, "127.0.0.1", 0)
        await site.start()
        worker_port = site._server.sockets[0].getsockname()[1]
        conf = Settings.from_env({"RECSYS_API_TOKEN": "s3cret", "RECSYS_AB": ""})
        runner = web.AppRunner(create_app(conf, f"http://127.0.0.1:{worker_port}", consume=False))
        await runner.setup()
        front = web.TCPSite(runner, "127.0.0.1", 0)
        await front.start()
        url = f"http://127.0.0.1:{front._server.sockets[0].getsockname()[1]}"
        try:
            async with ClientSession() as http:
                before = time.time()
                async with http.post(url + "/api/collect", json={"user": "u", "item": "i1", "event": "purchase",
                                                                 "ts": 1.0}) as resp:
                    ok = (resp.status, await resp.json())
                async with http.post(url + "/api/collect/", json={"user": "u", "item": "i1", "event": "dislike"}) as resp:
                    refused = (resp.status, await resp.json())
                async with http.post(url + "/api/collect", data=b"[1]") as resp:
                    bad = resp.status
                async with http.get(url + "/") as resp:
                    page = await resp.text()
                async with http.get(url + "/dashboard/") as resp:
                    dashboard = await resp.text()
                after = time.time()
        finally:
            await runner.cleanup()
            await worker_runner.cleanup()
        return ok, refused, bad, page, dashboard, before, after

    ok, refused, bad, page, dashboard, before, after = asyncio.run(scenario())
    assert ok == (202, {"accepted": True})
    assert refused == (400, {"error": "unknown_event", "detail": "'dislike'"})
    assert bad == 400 and len(got) == 2  # not a JSON object: not forwarded
    (auth, body), _ = got
    assert auth == "Bearer s3cret"
    assert before <= body.pop("ts") <= after  # the browser's ts=1.0 is replaced by the receive time
    assert body == {"user": "u", "item": "i1", "event": "purchase"}
    assert "shop.js" in page and "dashboard.js" in dashboard


def test_a_list_on_the_page_says_why_with_the_recent_items_name():
    state = LiveState()
    state.add_item("i1", "Red shoes", "shoes")
    state.add_item("i2", "Blue hat", "hats")
    page = state.enrich({"user": "u", "items": [["i2", 0.9], ["i3", None]], "because": {"i2": "i1"},
                         "variant": "paper"})
    assert [(e["item"], e["name"], e["why"]) for e in page["items"]] == [
        ("i2", "Blue hat", "because you had Red shoes"), ("i3", "i3", None)]
    assert page["variant"] == "paper"


def test_the_catalogue_size_is_the_catalogue_not_the_page():
    state = LiveState()
    for n in range(5):
        state.catalogue[f"i{n}"] = {"item": f"i{n}", "name": f"n{n}", "category": "c"}
    assert len(state.catalogue_items(limit=3)) == 3 and state.catalogue_size() == 5


def test_search_matches_every_word_in_names_and_categories():
    state = LiveState()
    for item, name, category in (("i2", "Red shoe", "shoes"), ("i10", "Blue shoe", "shoes"), ("i1", "Red hat", "hats")):
        state.catalogue[item] = {"item": item, "name": name, "category": category}
    assert state.search("shoe") == ["i2", "i10"]  # catalogue order: category, then natural id order
    assert state.search("RED") == ["i1", "i2"] and state.search("red shoes") == ["i2"]
    assert state.search("  ") == [] and state.search("green") == []


def test_a_tombstone_forgets_the_users_list():
    state = LiveState(grace_s=0.0)
    state.add_list({"user": "u1", "items": [["i1", 1.0]], "emitted_at": 10.0}, arrival=10.0)
    assert state.latest("u1") is not None
    state.forget("u1")
    assert state.latest("u1") is None and "u1" not in state.users(10)
    state.forget("nobody")  # a tombstone for a user never seen changes nothing
