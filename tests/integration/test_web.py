"""``recsys web`` with real parts: a broker, a stream worker with a model, the web
service as its own process, and headless Chromium (Debian's ``chromium`` driven by
Python ``playwright``; never ``playwright install``).

- the shop page: a buy click changes the user's list on the page;
- the dashboard: its counters move after ratings are produced, and the online
  evaluation joins events with the lists before them;
- the SSE endpoint delivers every list that lands on the topic for the watched user.

Screenshots are saved in each test's tmp dir (the path is printed).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ranking import Blend
from tests.brokers import consume, json_values, produce
from tests.helpers import rating_message, start_worker_with_model

pytestmark = pytest.mark.broker
RANKER = "default"  # conftest.stream_env: the worker runs the shipped ranker

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
NAMES = {f"i{n}": (f"Item {word}", "red" if n < 6 else "blue") for n, word in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"])}


def run(coro):
    """``asyncio.run`` in a thread of its own: playwright's sync API keeps a loop running here."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def lists_for(conf, user, n, timeout=60):
    msgs = run(consume(conf, conf.topics.recommendations,
                       until=lambda m: sum(1 for x in m if x.key == user.encode()) >= n, timeout=timeout))
    return [rec for rec in json_values(msgs) if rec["user"] == user]


@pytest.fixture
def deployment(stream_env):
    """A worker with the test model, an ``items`` catalogue and ``recsys web`` on top."""
    worker = start_worker_with_model(stream_env)  # creates every topic, the catalogue too
    run(produce(stream_env.conf, stream_env.conf.topics.items, [
        (item.encode(), json.dumps({"item": item, "name": name, "category": cat}).encode())
        for item, (name, cat) in NAMES.items()]))
    web = stream_env.start_web(worker)
    web.wait_ready()
    yield stream_env, worker, web


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests need it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[web]' (never `playwright install`)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


def wait_on_page(page, condition: str, web, worker, timeout_ms: int = 60_000) -> None:
    """``page.wait_for_function``, failing with what the page, the web service and the worker say."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(condition, timeout=timeout_ms)
    except PlaywrightTimeout:
        raise AssertionError(f"{condition}: not in {timeout_ms / 1000:.0f}s; page status "
                             f"{page.inner_text('#status')!r}, stream {page.inner_text('#stream-state')!r}, updates "
                             f"{page.inner_text('#update-count')}, reconnects "
                             f"{page.evaluate('document.body.dataset.reconnects || 0')}\n"
                             f"web log:\n{web.log_tail()}\nworker log:\n{worker.log_tail(30)}") from None


def event_message(user, item, event):
    return user.encode(), json.dumps({"user": user, "item": item, "event": event, "ts": time.time()}).encode()


def page_list(page) -> list[str]:
    return page.eval_on_selector_all("#rec-list .rec-card .card", "cards => cards.map(c => c.dataset.item)")


# ------------------------------------------------------------------ the tests
def test_a_buy_click_on_the_shop_page_changes_the_users_list(deployment, browser):
    stream_env, worker, web = deployment
    conf = stream_env.conf
    run(produce(conf, conf.topics.ratings, [rating_message("alice", "i0", 5, time.time())]))
    assert len(lists_for(conf, "alice", 1)) == 1

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{web.url}/?user=alice")
    page.wait_for_function("document.querySelectorAll('#rec-list .rec-card').length > 0", timeout=30_000)
    page.wait_for_function("document.getElementById('stream-state').textContent === 'live'", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#catalogue-grid .card').length === 12", timeout=30_000)
    before = page_list(page)
    assert before and "i0" not in before  # the rated item is never recommended
    first = page.locator("#rec-list .rec-card .card").first
    assert first.locator(".name").inner_text() == NAMES[before[0]][0]  # names from the items topic
    page.screenshot(path=str(stream_env.root / "shop-before.png"), full_page=True)

    bought = before[0]
    first.locator("button.buy").click()
    changed = ("Array.from(document.querySelectorAll('#rec-list .rec-card .card'), c => c.dataset.item).join() "
               f"!== {','.join(before)!r}")
    wait_on_page(page, changed, web, worker)
    after = page_list(page)
    assert page.inner_text("#update-count") == "1"  # the new list came by SSE, not by a reconnect
    page.wait_for_timeout(2100)  # let the "new" highlight fade for the screenshot only
    page.screenshot(path=str(stream_env.root / "shop-after.png"), full_page=True)
    print(f"screenshots: {stream_env.root / 'shop-before.png'} {stream_env.root / 'shop-after.png'}")
    assert after != before
    assert bought not in after  # bought = an implicit 5-star rating: never recommended again
    assert "sent (202)" in page.inner_text("#status")
    # The list on the page is the list on the topic.
    last = lists_for(conf, "alice", 2)[-1]
    assert last["reason"] == "implicit:purchase" and [i for i, _ in last["items"]] == after
    # The page says the purchase was taken from the list (the learned ranker's gate reads it).
    events = json_values(run(consume(conf, conf.topics.events, until=lambda ms: len(ms) >= 1, timeout=30)))
    assert [(e["item"], e["event"], e["from_list"]) for e in events] == [(bought, "purchase", True)]

    # Search: the catalogue's "blue" items in alice's order (the worker's POST /rerank/), or plain.
    page.fill("#search-input", "blue")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#search-grid .card').length === 6", timeout=30_000)
    shown = page.eval_on_selector_all("#search-grid .card", "cs => cs.map(c => c.dataset.item)")
    blue = [f"i{n}" for n in range(6, 12)]
    status, ranked = worker.post("/rerank/", json.dumps({"user": "alice", "items": blue}).encode())
    assert status == 200 and shown == [q for q, _s in ranked["items"]]
    assert page.get_attribute("#search-grid", "data-order") == "personalised"
    page.check("#search-plain")
    plain = page.eval_on_selector_all("#search-grid .card", "cs => cs.map(c => c.dataset.item)")
    assert plain == blue and page.get_attribute("#search-grid", "data-order") == "plain"


def test_the_dashboard_counters_move_and_events_are_joined_with_the_lists_before_them(deployment, browser, broker):
    stream_env, _worker, web = deployment
    conf = stream_env.conf
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(f"{web.url}/dashboard")
    page.wait_for_function("document.getElementById('worker-state').textContent === 'worker ok'", timeout=30_000)
    assert page.inner_text("#ratings-total") == "0" and page.inner_text("#lists-live") == "0"
    page.evaluate("document.getElementById('model-version').textContent = 'als-' + 'f'.repeat(64)")  # a long version
    for width in (1400, 700, 420):
        page.set_viewport_size({"width": width, "height": 1000})
        inside = page.evaluate("(() => { const v = document.getElementById('model-version');"
                               " const t = v.closest('.tile'); return v.getBoundingClientRect().right"
                               " <= t.getBoundingClientRect().right + 0.5 && t.scrollWidth <= t.clientWidth; })()")
        assert inside, f"the model version overflows its tile at {width} px"
    page.set_viewport_size({"width": 1400, "height": 1000})
    assert not missing, missing  # no favicon.ico (or anything else) missing

    users = [f"shopper{n}" for n in range(6)]
    run(produce(conf, conf.topics.ratings, [rating_message(u, "i0", 5, time.time()) for u in users]))
    page.wait_for_function("Number(document.getElementById('ratings-total').textContent) >= 6 && "
                           "Number(document.getElementById('lists-live').textContent) >= 6", timeout=60_000)
    assert page.inner_text("#users") == "6"

    # Online evaluation: a click on an item of the list shown is a hit, any other a miss.
    shown = {u: [i for i, _ in web_list(web, u)] for u in users}
    assert all(shown.values())
    events = [event_message(u, shown[u][0], "click") for u in users[:4]]          # 4 hits
    events += [event_message(u, "i0", "view") for u in users[4:]]                  # 2 misses (i0 was rated)
    events += [event_message("nobody", "i1", "view")]                              # no list before it
    run(produce(conf, conf.topics.events, events))
    data = web.wait_for("the 6 joined events", lambda d: sum(r["n"] for r in d["evaluation"]["by_variant"]) >= 6
                        and d["evaluation"]["unjoined"].get("view", 0) >= 1)
    [row] = data["evaluation"]["by_variant"]
    assert (row["variant"], row["n"], row["hits"]) == ("default", 6, 4)
    assert row["ci_low"] < 4 / 6 < row["ci_high"]
    assert data["evaluation"]["by_version"][0]["model_version"] == "v-test"
    page.wait_for_function("document.querySelectorAll('#eval-variant tbody tr').length === 1", timeout=30_000)
    assert page.inner_text("#eval-variant tbody tr").split("\t")[:3] == ["default", "6", "4"]
    page.wait_for_function("Number(document.getElementById('events-total').textContent) >= 7", timeout=30_000)
    assert page.inner_text("#model-version") == "v-test"
    # which blend of the model's sources serves (a model published without one: the co-occurrence-only default)
    assert page.inner_text("#model-blend") == Blend().name and page.inner_text("#model-validation") == "not validated"

    # The workers' consumer group: its one member holds both ratings partitions (Tansu
    # describes members without assignments); lag per partition.
    data = web.wait_for("the workers' group", lambda d: d["group"]["members"] and d["group"]["lag"]
                        and d["worker"]["model_age_s"] is not None)
    [member] = data["group"]["members"]
    if broker.engine == "kafka":
        assert member["partitions"][conf.topics.ratings] == [0, 1]
    assert set(data["group"]["lag"]) == {conf.topics.ratings, conf.topics.events}
    assert all(n >= 0 for parts in data["group"]["lag"].values() for n in parts.values())
    page.wait_for_function("document.querySelectorAll('#workers tbody tr').length === 1", timeout=30_000)

    # A bad rating becomes a dead letter; the dashboard counts it by reason.
    run(produce(conf, conf.topics.ratings, [rating_message("shopper0", "i1", 9, time.time())]))
    web.wait_for("the dead letter", lambda d: d["dead_letters"] == {"rating_out_of_range": 1})
    page.wait_for_function("document.getElementById('dead-total').textContent === '1'", timeout=30_000)
    assert page.inner_text("#dead-letters tbody tr").split("\t") == ["rating_out_of_range", "1"]
    page.wait_for_timeout(1500)
    page.screenshot(path=str(stream_env.root / "dashboard.png"), full_page=True)
    print(f"screenshot: {stream_env.root / 'dashboard.png'}")

    # recsys web's own /metrics, as Prometheus scrapes it (parsed by the library's parser).
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{web.url}/metrics", timeout=10) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("recsys_web_lists_received_total", ())] >= 6
    assert samples[("recsys_web_events_seen_total", (("event", "click"),))] == 4
    assert samples[("recsys_web_dead_letters_seen_total", (("reason", "rating_out_of_range"),))] == 1
    assert families["recsys_web_produce_to_list_seconds"].type == "histogram"
    assert samples[("recsys_web_produce_to_list_seconds_count", ())] >= 6
    assert web.get("/metrics/json")["counters"]["lists.received"] >= 6


def web_list(web, user) -> list:
    data = web.get(f"/api/lists/{user}")
    assert data["source"] == "realtime", data
    return [[e["item"], e["score"]] for e in data["items"]]


def test_the_sse_endpoint_delivers_every_list_of_the_watched_user(deployment):
    stream_env, _worker, web = deployment
    conf = stream_env.conf
    received: list[dict] = []
    stream = SseReader(f"{web.url}/api/stream/bob", received)
    stream.wait_for_current()

    bob = [("i0", 5), ("i6", 2), ("i3", 4), ("i8", 1), ("i10", 5), ("i11", 3), ("i7", 5), ("i2", 4)]
    other = [rating_message("carol", "i1", 4, time.time())]  # another user's list must not arrive
    now = time.time()
    run(produce(conf, conf.topics.ratings, other + [rating_message("bob", i, r, now + n * 0.001)
                                                   for n, (i, r) in enumerate(bob)]))
    on_topic = lists_for(conf, "bob", len(bob))
    assert len(on_topic) == len(bob)
    deadline = time.monotonic() + 60
    while stream.count("list") < len(bob) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a list too many would arrive now
    stream.close()
    lists = [m for m in received if m["event"] == "list"]
    assert len(lists) == len(on_topic), f"{len(lists)} lists by SSE, {len(on_topic)} on the topic"
    assert [[e["item"] for e in m["data"]["items"]] for m in lists] == [[i for i, _ in r["items"]] for r in on_topic]
    assert {m["data"]["user"] for m in lists} == {"bob"}
    assert len({m["id"] for m in lists}) == len(lists)  # every message its own topic offset


class SseReader:
    """Reads one Server-Sent Events stream in a thread (the standard library is enough)."""

    def __init__(self, url: str, into: list) -> None:
        self.messages = into
        self.response = urllib.request.urlopen(url, timeout=90)
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self) -> None:
        fields: dict = {}
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in fields:
                        self.messages.append({"event": fields.get("event", "message"), "id": fields.get("id"),
                                              "data": json.loads(fields["data"])})
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.lstrip(" ")
        except (OSError, ValueError, AttributeError):  # AttributeError: closed under http.client's feet
            pass

    def count(self, event: str) -> int:
        return sum(1 for m in self.messages if m["event"] == event)

    def wait_for_current(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.count("current"):
            assert time.monotonic() < deadline, "no `current` message on the stream"
            time.sleep(0.05)

    def close(self) -> None:
        self.response.close()
