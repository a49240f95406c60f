"""Which ranker serves a user (ranking/ab.py), and the settings that choose it."""
from __future__ import annotations

import pytest

from app.settings import SettingError, Settings
from ranking import RANKERS, DefaultRanker, History, Interaction, Model, PaperRanker, SimilarityIndex, make_ranker
from ranking.ab import Assignment


def test_the_assignment_picks_the_users_variant_and_the_paper_stays_the_paper():
    model = Model(SimilarityIndex({"a": {"x": 0.9, "y": 0.7}}, related={"a": {"z": 0.5}}), hot_items=["h"])
    interaction = Interaction("anyone", "a", 5.0, 1.0)
    conf = Settings().replace(ranking={"ranker": "paper", "ab": ""})
    assignment = Assignment.from_settings(conf)
    variant, ranker = assignment.ranker_for("anyone")
    assert variant == "paper" and ranker == PaperRanker.from_settings(conf)
    assert list(assignment.rankers) == ["paper"]
    assert [q for q, _ in ranker.step(History(), interaction, model).items] == ["x", "y", "h"]
    ab = Assignment.from_settings(Settings().replace(ranking={"ab": "default:1,paper:1"}))
    assert [q for q, _ in ab.rankers["default"].step(History(), interaction, model).items] == ["z"]
    variants = {ab.variant(f"u{n}") for n in range(50)}
    assert variants == {"default", "paper"} and ab.variant("u7") == ab.variant("u7")
    assert {name: ab.ranker_for(f"u{n}")[1] for n in range(50) for name in [ab.variant(f"u{n}")]} == ab.rankers


def test_every_ranker_is_made_from_the_settings_by_its_name():
    conf = Settings().replace(ranking={"k": 7})
    assert make_ranker("default", conf) == DefaultRanker.from_settings(conf)
    assert all(make_ranker(name, conf).k == 7 for name in RANKERS)
    with pytest.raises(ValueError, match="no ranker 'papr': one of default, paper"):
        make_ranker("papr", conf)


@pytest.mark.parametrize("env, message", [
    ({"RECSYS_RANKER": "papr"}, "RECSYS_RANKER='papr': use one of default, paper"),
    ({"RECSYS_AB": "default:50,foo:50"}, "RECSYS_AB: variant 'foo' is not a ranker (default, paper, learned)"),
    ({"RECSYS_EVENT_WEIGHTS": "view:1,clik:2"}, "RECSYS_EVENT_WEIGHTS: 'clik:2' is not event:weight"),
    ({"RECSYS_EVENT_WEIGHTS": "purchase:9"}, "the weight must be on the rating scale [1, 5]"),
])
def test_bad_ranker_settings_are_one_clear_error(env, message):
    with pytest.raises(SettingError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_the_old_implicit_ratings_name_still_works():
    assert Settings.from_env({"RECSYS_IMPLICIT_RATINGS": "purchase:5, cart:4"}).event_weight_map() == {
        "purchase": 5.0, "cart": 4.0}
