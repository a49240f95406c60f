"""Validation of wire messages and raw log lines (no broker)."""
import json

import pytest

from app.records import InvalidInput, Rating, UserEvent, parse_event, parse_log_line, parse_rating, to_json_bytes

SCALE = {'rating_min': 1.0, 'rating_max': 5.0}


def reason(fn, *args, **kw):
    with pytest.raises(InvalidInput) as err:
        fn(*args, **kw)
    return err.value.reason


def test_good_rating_round_trips_through_json():
    rating = parse_rating(b'{"user": "u1", "item": 42, "rating": 4.5, "ts": 17}', **SCALE)
    assert rating == Rating(user="u1", item="42", rating=4.5, ts=17.0)  # ids become strings
    assert parse_rating(to_json_bytes(rating), **SCALE) == rating


@pytest.mark.parametrize("raw, why", [
    (b"{oops", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    (b"[]", "bad_json"),
    (b'{"user": "u", "item": "i", "rating": 4, "ts": 1, "extra": 1}', "unknown_fields"),
    (b'{"item": "i", "rating": 4, "ts": 1}', "missing_user"),
    (b'{"user": "", "item": "i", "rating": 4, "ts": 1}', "missing_user"),
    (b'{"user": "u", "rating": 4, "ts": 1}', "missing_item"),
    (b'{"user": {"a": 1}, "item": "i", "rating": 4, "ts": 1}', "bad_user"),
    (b'{"user": "u", "item": "i", "ts": 1}', "missing_rating"),
    (b'{"user": "u", "item": "i", "rating": "four", "ts": 1}', "bad_rating"),
    (b'{"user": "u", "item": "i", "rating": true, "ts": 1}', "bad_rating"),
    (b'{"user": "u", "item": "i", "rating": NaN, "ts": 1}', "bad_json"),  # NaN is not JSON
    (b'{"user": "u", "item": "i", "rating": 5.5, "ts": 1}', "rating_out_of_range"),
    (b'{"user": "u", "item": "i", "rating": 0, "ts": 1}', "rating_out_of_range"),
    (b'{"user": "u", "item": "i", "rating": 3}', "missing_ts"),
    (b'{"user": "u", "item": "i", "rating": 3, "ts": -5}', "bad_ts"),
    (b'{"user": "u", "item": "i", "rating": 3, "ts": 1' + b"0" * 400 + b"}", "bad_json"),  # overflows a double
    (b'{"user": 1' + b"0" * 100 + b', "item": "i", "rating": 3, "ts": 1}', "bad_user"),
    (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
])
def test_bad_ratings_are_rejected_with_a_reason(raw, why):
    assert reason(parse_rating, raw, **SCALE) == why


def test_events():
    ev = parse_event(b'{"user": "u", "item": "i", "event": "cart", "ts": 3, "category": "shoes"}')
    assert ev == UserEvent(user="u", item="i", event="cart", ts=3.0, category="shoes")
    assert parse_event(json.dumps({"user": "u", "item": "", "event": "search", "ts": 1, "query": "red"})).item == ""
    assert reason(parse_event, b'{"user": "u", "item": "", "event": "view", "ts": 1}') == "missing_item"
    assert reason(parse_event, b'{"user": "u", "item": "i", "event": "teleport", "ts": 1}') == "unknown_event"
    assert reason(parse_event, b'{"user": "u", "item": "i", "event": "view", "ts": 1, "category": 5}') == "bad_category"


def test_feedback_on_a_list_says_so_and_keeps_saying_it():
    """``from_list`` (the shopper took the item from their list) is read, kept on the wire
    and carried into the implicit rating an event becomes; anything but a boolean is bad input."""
    ev = parse_event(b'{"user": "u", "item": "i", "event": "click", "ts": 3, "from_list": true}')
    rating = parse_rating(b'{"user": "u", "item": "i", "rating": 4, "ts": 3, "from_list": true}', **SCALE)
    assert ev.from_list and rating.from_list
    assert parse_event(to_json_bytes(ev)) == ev and parse_rating(to_json_bytes(rating), **SCALE) == rating
    assert not parse_event(b'{"user": "u", "item": "i", "event": "click", "ts": 3}').from_list
    assert reason(parse_event, b'{"user": "u", "item": "i", "event": "view", "ts": 1, "from_list": 1}') == "bad_from_list"
    assert reason(parse_rating, b'{"user": "u", "item": "i", "rating": 4, "ts": 1, "from_list": "yes"}',
                  **SCALE) == "bad_from_list"


def test_log_lines():
    assert parse_log_line(b"RATING:u1|i1|4|100", **SCALE) == Rating(user="u1", item="i1", rating=4.0, ts=100.0)
    assert parse_log_line("EVENT:u1|i2|fav|5|bags\n", **SCALE) == UserEvent(user="u1", item="i2", event="fav",
                                                                            ts=5.0, category="bags")
    assert parse_log_line(b"GET /index.html 200", **SCALE) is None
    assert parse_log_line(b"\xff not ours", **SCALE) is None
    assert reason(parse_log_line, b"RATING:u1|i1|4", **SCALE) == "wrong_field_count"
    assert reason(parse_log_line, b"RATING:u1|i1|x|4", **SCALE) == "bad_rating"
    assert reason(parse_log_line, b"EVENT:u1|i1|view", **SCALE) == "wrong_field_count"
    assert reason(parse_log_line, b"RATING:\xff|i|1|1", **SCALE) == "bad_encoding"


def test_a_collected_body_without_ts_gets_the_receive_time():
    from app.records import parse_collected

    event = parse_collected(b'{"user": "u", "item": "i", "event": "view"}', rating_min=1, rating_max=5,
                            default_ts=1234.5)
    rating = parse_collected(b'{"user": "u", "item": "i", "rating": 4, "ts": 7}', rating_min=1, rating_max=5,
                             default_ts=1234.5)
    assert (event.ts, rating.ts) == (1234.5, 7.0)  # a ts that is there is kept
