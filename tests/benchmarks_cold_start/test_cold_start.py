"""benchmarks/cold_start.py end to end with --quick: on a tiny synthetic dataset with titles (fast), and on
MovieLens-100K (slow: about 75 s on one idle core). Checks the JSON's structure and the invariants that hold
whatever the (meaningless) quick numbers are."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import faiss
import pandas as pd
import pytest
import torch

from tests.conftest import make_inter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cold_start

SYSTEMS = {"tiger", "tiger+ft", "sasrec", "knn-text", "knn-text-new-only", "random-new"}
WORDS = ["space", "love", "war", "detective", "ghost", "river", "king", "robot", "summer", "island"]
GENRES = ["Drama", "Comedy", "Sci-Fi", "Horror", "Romance", "Thriller"]


@pytest.fixture(autouse=True)
def _restore_threads():
    """main(--threads 1) sets process-wide thread counts: put them back for the other tests."""
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)


def _check(res: dict, quick_epochs: int = 1) -> None:
    assert res["benchmark"] == "cold_start" and res["quick"] is True
    assert set(res["systems"]) == SYSTEMS and list(res["settings"]["seeds"]) == [2020]
    n_new = res["num_new_items"]
    assert n_new == len(res["new_items"]) > 0
    assert res["evaluation_users"] > 0
    assert res["warm_dataset"]["items"] + n_new == res["dataset"]["items"]
    assert res["index"]["n_items_after"] == res["dataset"]["items"]
    assert res["add_items"]["added"] == n_new and res["add_items"]["seconds"] > 0
    col = res["collisions"]
    assert 0 <= col["new_sharing_semantic_id_with_old"] <= n_new
    assert all(0.0 <= s <= 1.0 for s in col["new_prefix_exists_among_old_by_level"])
    for name, system in res["systems"].items():
        for metric in ("recall@10", "ndcg@10", "new_share@10"):
            assert 0.0 <= system[metric]["mean"] <= 1.0, (name, metric)
            for run in system["per_seed"].values():
                assert 0.0 <= run[metric] <= 1.0, (name, metric)
        assert system["ndcg@10"]["mean"] <= system["recall@10"]["mean"] + 1e-12
    sasrec = res["systems"]["sasrec"]
    # SASRec has no embedding of a new item: it never recommends one, so it never hits a target
    assert sasrec["recall@10"]["mean"] == 0.0 and sasrec["new_share@10"]["mean"] == 0.0
    full_lists = min(10, n_new) / 10  # a list of new items only holds at most |S| of them
    assert res["systems"]["knn-text-new-only"]["new_share@10"]["mean"] == pytest.approx(full_lists)
    random_new = res["systems"]["random-new"]["per_seed"]["-"]
    assert random_new["recall@10"] == pytest.approx(min(10, n_new) / n_new)
    for name in ("tiger", "tiger+ft", "sasrec"):
        (run,) = res["training"][name].values()
        assert run["epochs_run"] == quick_epochs
        assert 0.0 <= res["warm_test"][name]["ndcg@10"]["mean"] <= 1.0
    assert res["environment"]["genir"] and "--quick" in res["command"]


def test_quick_on_a_synthetic_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    inter = tmp_path / "inter.csv"
    frame = make_inter(n_users=60, n_items=40, per_user=12, seed=1)
    frame[["user", "item", "timestamp"]].to_csv(inter, index=False)
    items = tmp_path / "items.csv"
    pd.DataFrame({
        "item": [f"i{k}" for k in range(40)],
        "title": [f"The {WORDS[k % 10]} of the {WORDS[(3 * k + 1) % 10]} {k}" for k in range(40)],
        "year": [1980 + k for k in range(40)],
        "genres": ["|".join(sorted({GENRES[k % 6], GENRES[(k // 6) % 6]})) for k in range(40)],
    }).to_csv(items, index=False)
    out = tmp_path / "cold_start.json"
    argv = ["--quick", "--dataset", str(inter), "--items", str(items), "--new-fraction", "0.2",
            "--index-override", "codebook_size=4", "--index-override", "epochs=5", "--index-override",
            "batch_size=64", "--threads", "1", "--quiet", "--cpu", "--out", str(out)]
    assert cold_start.main(argv) == 0
    res = json.loads(out.read_text())
    _check(res)
    assert res["num_new_items"] == 8 and res["index"]["stats_before"]["num_items"] == 32


@pytest.mark.slow
def test_quick_on_ml100k(tmp_path):
    out = tmp_path / "cold_start.json"
    assert cold_start.main(["--quick", "--threads", "1", "--quiet", "--cpu", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    _check(res)
    assert res["num_new_items"] == 168 and res["dataset"]["items"] == 1682
