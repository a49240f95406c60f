"""Who may use the query API: Faust's debug endpoints are off unless asked for, and with
RECSYS_API_TOKEN set every endpoint but /health/ needs the bearer token, also when
Faust routes a request to the worker that owns the user."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.brokers import consume, produce, run

pytestmark = pytest.mark.broker

TOKEN = "s3cret-token-for-tests"
#: Faust's built-in views (faust/web/base.py: router and tables always, stats and graph with debug).
DEBUG_PATHS = ["/router/", "/router/user_state/alice/", "/table/", "/table/user_state/", "/table/user_state/alice/",
               "/graph/", "/assignment/"]


def call(worker, path: str, *, method: str = "GET", body: bytes | None = None, auth: str | None = None):
    """(status, decoded JSON or text) of one request; ``auth`` is the Authorization header."""
    headers = {"Authorization": auth} if auth else {}
    req = urllib.request.Request(worker.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, raw, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    return status, (json.loads(raw) if "json" in ctype else raw.decode(errors="replace"))


def bearer(token: str = TOKEN) -> str:
    return f"Bearer {token}"


def rate(conf, users) -> dict:
    """Send one rating per user and wait until every user's list is out."""
    run(produce(conf, conf.topics.ratings, [
        (u.encode(), json.dumps({"user": u, "item": "i1", "rating": 4, "ts": 5}).encode()) for u in users]))
    wanted = {u.encode() for u in users}
    msgs = run(consume(conf, conf.topics.recommendations, until=lambda m: wanted <= {x.key for x in m}))
    assert wanted <= {m.key for m in msgs}
    return {m.key.decode(): m.partition for m in msgs}


COLLECT = json.dumps({"user": "bob", "item": "i2", "rating": 5, "ts": 6}).encode()


def test_debug_endpoints_are_off_by_default_and_without_a_token_the_api_is_open(stream_env):
    worker = stream_env.start_worker()
    rate(stream_env.conf, ["alice"])
    for path in DEBUG_PATHS:
        assert call(worker, path)[0] == 404, path
    status, answer = call(worker, "/recommendations/alice/")
    assert status == 200 and answer["source"] == "realtime"
    assert call(worker, "/collect/", method="POST", body=COLLECT)[0] == 202
    assert call(worker, "/metrics/")[0] == 200 and call(worker, "/items/hot/")[0] == 200
    status, answer = call(worker, "/collect/", method="POST", body=b" " * (2 << 20))  # over aiohttp's 1 MiB
    assert (status, answer["error"]) == (413, "too_large")


def test_with_a_token_every_endpoint_but_health_needs_it(stream_env):
    stream_env.set(RECSYS_API_TOKEN=TOKEN, RECSYS_DEBUG_ENDPOINTS="true")
    worker = stream_env.start_worker()  # wait_ready polls /health/ without a token
    rate(stream_env.conf, ["alice"])
    guarded = [("GET", p, None) for p in ["/recommendations/alice/", "/users/alice/behaviour/", "/items/hot/",
                                          "/metrics/", "/", "/no/such/page/", *DEBUG_PATHS]]
    guarded.append(("POST", "/collect/", COLLECT))
    for method, path, body in guarded:
        for auth, why in [(None, "missing_token"), (bearer("wrong"), "bad_token"), (f"Basic {TOKEN}", "bad_token"),
                          (TOKEN, "bad_token"), (bearer(TOKEN + "x"), "bad_token")]:
            status, answer = call(worker, path, method=method, body=body, auth=auth)
            assert (status, answer["error"]) == (401, why), (method, path, auth, answer)
    assert call(worker, "/health/")[0] == 200

    # With the token everything works, the debug endpoints too (RECSYS_DEBUG_ENDPOINTS=true).
    status, answer = call(worker, "/recommendations/alice/", auth=bearer())
    assert status == 200 and answer["source"] == "realtime"
    assert call(worker, "/collect/", method="POST", body=COLLECT, auth=bearer())[0] == 202
    assert call(worker, "/collect/", method="POST", body=b"{", auth="bearer " + TOKEN)[0] == 400  # scheme: any case
    status, state = call(worker, "/table/user_state/alice/", auth=bearer())
    assert status == 200 and "i1" in json.dumps(state)  # what the default-off setting hides (alice rated i1)
    assert call(worker, "/router/", auth=bearer())[0] == 200
    assert call(worker, "/no/such/page/", auth=bearer())[0] == 404
    assert worker.get("/health/")["status"] == "ok"
    status, metrics = call(worker, "/metrics/json/", auth=bearer())
    assert metrics["counters"]["api.unauthorized"] == len(guarded) * 5


def test_requests_routed_to_the_owning_worker_keep_working_with_a_token(stream_env):
    stream_env.set(RECSYS_API_TOKEN=TOKEN)
    conf = stream_env.conf
    w1 = stream_env.start_worker("w1")
    w2 = stream_env.start_worker("w2", ready=False)
    _, p2 = stream_env.wait_for_split([w1, w2], timeout=90)
    w2.wait_ready()
    partition_of = rate(conf, [f"user{n}" for n in range(12)])
    theirs = sorted(u for u, p in partition_of.items() if p in p2)
    assert theirs, partition_of  # 12 users over 2 partitions: some belong to w2

    for user in theirs:  # asked on w1, answered by w2 (Faust forwards the request with its headers)
        status, answer = call(w1, f"/recommendations/{user}/", auth=bearer())
        assert status == 200 and (answer["user"], answer["source"]) == (user, "realtime"), answer
        status, answer = call(w1, f"/recommendations/{user}/")
        assert (status, answer["error"]) == (401, "missing_token")  # w1 checks before routing
    served = {name: call(w, "/metrics/json/", auth=bearer())[1]["counters"].get("api.recommendations.served", 0)
              for name, w in (("w1", w1), ("w2", w2))}
    assert served == {"w1": 0, "w2": len(theirs)}


def test_metrics_scrape_as_prometheus_text_and_as_json(stream_env):
    """``/metrics`` is the Prometheus text format (parsed here by the library's own parser),
    unless ``Accept`` prefers JSON; ``/metrics/json`` is always JSON."""
    from prometheus_client.parser import text_string_to_metric_families

    worker = stream_env.start_worker()
    rate(stream_env.conf, ["alice", "bob"])
    assert call(worker, "/collect/", method="POST", body=b'{"user": "x", "item": "i", "rating": 99}')[0] == 400
    for path in ("/metrics", "/metrics/"):
        status, text = call(worker, path)
        assert status == 200 and isinstance(text, str)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        assert samples[("recsys_ratings_accepted_total", ())] >= 2
        assert samples[("recsys_collect_rejected_total", (("reason", "rating_out_of_range"),))] == 1
        assert families["recsys_inside_worker_seconds"].type == "histogram"
        assert samples[("recsys_inside_worker_seconds_count", ())] >= 2
        assert samples[("recsys_model_info", (("version", worker.get("/health/")["model_version"]),))] == 1
        assert families["recsys_consumer_lag"].type == "gauge"
        assert sum(s.value for s in families["recsys_user_state_keys"].samples) >= 2  # alice and bob
    req = urllib.request.Request(worker.url + "/metrics", headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["counters"]["ratings.accepted"] >= 2
    assert call(worker, "/metrics/json")[1]["counters"]["collect.rejected.rating_out_of_range"] == 1


def test_every_metric_the_grafana_dashboard_reads_is_scraped(stream_env):
    """``docs/grafana-dashboard.json`` names only metrics a worker exports (after a rating,
    a behaviour event, a dead letter and a rerank; rerouted and redelivered ratings need
    two workers or a restart, the model's age a model that says when it was trained)."""
    import re
    import time

    from prometheus_client.parser import text_string_to_metric_families

    from tests.conftest import ROOT

    dashboard = (ROOT / "docs" / "grafana-dashboard.json").read_text()
    wanted = set(re.findall(r"recsys_[a-z_]+", dashboard))
    worker = stream_env.start_worker()
    rate(stream_env.conf, ["alice"])
    assert call(worker, "/collect/", method="POST", body=b'{"user": "x", "item": "i", "rating": 99}')[0] == 400
    assert call(worker, "/collect/", method="POST", body=b'{"user": "alice", "item": "i2", "event": "view"}')[0] == 202
    run(produce(stream_env.conf, stream_env.conf.topics.ratings, [(b"alice", b"not json")]))
    assert call(worker, "/rerank/", method="POST", body=b'{"user": "alice", "items": ["i1", "i2"]}')[0] == 200
    deadline, seen = time.monotonic() + 30, set()
    while not {"recsys_rejected_total", "recsys_events_accepted_total"} <= seen:
        assert time.monotonic() < deadline, sorted(wanted - seen)
        time.sleep(0.3)
        seen = {s.name for f in text_string_to_metric_families(call(worker, "/metrics")[1]) for s in f.samples}
    counted_later = {"recsys_ratings_rerouted_total", "recsys_ratings_redelivered_total",
                     "recsys_model_age_seconds"}  # the model worker's models say when they were trained
    assert wanted - counted_later <= seen, sorted(wanted - counted_later - seen)

