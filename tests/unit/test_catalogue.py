"""Item catalogues (names, categories) read from the files beside an input and from its rows."""
from __future__ import annotations

from pathlib import Path

import pytest

from datatools.catalogue import catalogue_for
from datatools.datasets import load_item_catalogue
from datatools.generator import generate_shop

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def test_the_generators_items_file_gives_names_and_categories(tmp_path):
    shop = generate_shop(tmp_path, n_users=20, n_items=15, n_ratings=100, seed=3)
    items = catalogue_for(shop["ratings"], "csv")
    lines = [ln.split(",") for ln in Path(shop["items"]).read_text().splitlines()]
    assert len(items) == 15 and {i: (e["name"], e["category"]) for i, e in items.items()} == {
        f[0]: (f[1], f[2]) for f in lines}


def test_behaviour_rows_carry_their_category(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("u1,i1,view,10,shoes\nu2,i2,cart,11\nu1,i1,purchase,12,shoes\n")
    assert catalogue_for(path, "events-csv") == {"i1": {"item": "i1", "name": "i1", "category": "shoes"}}


@pytest.mark.skipif(not (DATASETS / "ml-100k" / "u.item").is_file(), reason="needs ../shared/datasets")
def test_movielens_genres_become_categories():
    items = load_item_catalogue(DATASETS / "ml-100k" / "u.item")
    assert items["1"] == ("Toy Story (1995)", "Animation")  # flags: Animation, Children's, Comedy
    assert len(items) == 1682 and sum(1 for _, c in items.values() if c) == 1682  # every movie has a flag
