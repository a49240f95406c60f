"""``recsys train-als`` (offline_als.train_cli) on small generated shops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from offline_als.als import ALS
from offline_als.train_cli import main
from tests.helpers import last_json as _last_json

KEYS = {"n_train", "n_test", "users", "items", "fit_s", "sim_s", "rmse"}


def test_random_split_json_line_and_model_file(shop, tmp_path, capsys):
    out = tmp_path / "m.npz"
    code = main(["--input", shop["ratings"], "--format", "csv", "--rank", "8", "--iters", "5", "--similar", "10",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    res = _last_json(capsys)
    assert KEYS <= set(res)
    assert res["n_train"] + res["n_test"] == 2000 and res["n_test"] == 400  # 20% by default
    assert 0 < res["users"] <= 120 and 0 < res["items"] <= 60
    assert res["fit_s"] >= 0 and res["sim_s"] >= 0
    lo, hi = res["scale"]
    assert (lo, hi) == (1.0, 5.0)  # csv: the data's min/max
    assert 0 < res["rmse"] < hi - lo
    assert res["train_rmse"] < res["rmse"] + 0.5
    model = ALS.load(out)
    assert model.rank == 8 and model.n_items == res["items"] and model.n_users == res["users"]
    assert model.item_ids.shape == (res["items"],) and model.user_ids.shape == (res["users"],)
    assert model.metrics["rmse"] == res["rmse"]
    # Same seed, same everything (except timings).
    main(["--input", shop["ratings"], "--format", "csv", "--rank", "8", "--iters", "5", "--similar", "10",
          "--out", "", "--no-progress"])
    again = _last_json(capsys)
    assert again["rmse"] == res["rmse"] and again["model"] is None


def test_explicit_test_file_with_unseen_users_and_items(shop, tmp_path, capsys):
    lines = Path(shop["ratings"]).read_text().splitlines()
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    train_file.write_text("\n".join(lines[:1500]) + "\n")
    # Cold users / items in the test set are predicted from biases / the global mean.
    test_file.write_text("\n".join(lines[1500:]) + "\nnewuser,i1,4,1\nu1,newitem,2,1\nnewuser,newitem,3,1\n")
    out = tmp_path / "m.npz"
    code = main(["--input", str(train_file), "--format", "csv", "--test", str(test_file), "--no-biases",
                 "--rank", "4", "--iters", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    res = _last_json(capsys)
    assert res["n_train"] == 1500 and res["n_test"] == 503
    assert res["cold_users"] >= 2 and res["cold_items"] >= 2
    assert np.isfinite(res["rmse"]) and res["rmse"] > 0
    assert ALS.load(out).biases is False


def test_bad_arguments_and_missing_broker(shop, tmp_path, capsys, monkeypatch):
    from broker.tansu import free_port

    assert main(["--input", str(tmp_path / "nope.csv"), "--format", "csv", "--no-progress"]) == 2
    monkeypatch.setenv("RECSYS_BROKER", "")
    monkeypatch.setenv("RECSYS_EMBEDDED_PORT", str(free_port()))  # nothing listens there
    code = main(["--input", shop["ratings"], "--format", "csv", "--publish", "--out", "", "--no-progress"])
    assert code == 2
    assert "no broker on 127.0.0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--input", shop["ratings"], "--format", "taobao"])  # an events format
