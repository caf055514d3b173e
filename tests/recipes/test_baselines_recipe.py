"""Fast end-to-end runs of recipes/baselines.py (--quick) and of one tuning job."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "recipes"))

import baselines
import tune_baselines


def test_baselines_quick_writes_table_json_and_plot(tmp_path):
    out = tmp_path / "run"
    assert baselines.main(["--quick", "--seeds", "1,2", "--out", str(out), "--cpu"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["test"]) == {"pop", "bpr", "lightgcn", "sasrec"}
    assert res["seeds"] == [1, 2] and res["split"]["test_users"] == 943
    for agg in res["test"].values():
        assert agg["ndcg@10"]["n"] == 2 and 0.0 <= agg["ndcg@10"]["mean"] <= 1.0
    # SASRec's training loss falls and, even after 2 epochs, it ranks better than chance
    for run in res["runs"]["sasrec"]:
        assert run["test"]["ndcg@10"] > 10 * (1 / 1682)
    table = (out / "results.md").read_text()
    assert "| sasrec |" in table and "±" in table
    assert (out / "curves.png").stat().st_size > 10_000


def test_one_tuning_job_reports_validation_only():
    r = tune_baselines._one(("bpr", {"lr": 1e-2, "epochs": 2, "embedding_size": 16}, True))
    assert r["method"] == "bpr" and 0.0 < r["valid"]["ndcg@10"] <= 1.0 and r["best_epoch"] in (1, 2)
    assert "test" not in r


def test_baselines_quick_under_the_random_protocol(tmp_path):
    """MMRec's protocol end to end: several held-out items per user, train-only masks, recorded in the results."""
    out = tmp_path / "random"
    assert baselines.main(["--quick", "--seeds", "1", "--protocol", "random", "--out", str(out), "--cpu"]) == 0
    res = json.loads((out / "results.json").read_text())
    split = res["split"]
    assert split["protocol"] == "random(0.1,0.1,seed=0)" and split["test_users"] == 943
    assert split["test"] > 5 * 943 and split["train_only_users"] == 0  # ~10 test items per user, not one
    for agg in res["test"].values():
        assert 0.0 <= agg["recall@10"]["mean"] <= 1.0
    assert res["test"]["pop"]["recall@20"]["mean"] > 0.05  # popularity finds some of ~10 held-out items
