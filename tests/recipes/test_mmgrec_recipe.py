"""recipes/mmgrec.py --quick under the papers' protocol (MMRec's random split; leave-one-out is the default path the
other recipe and index tests run): every arm trains (loss falls for the generative ones), every decoded ID is a
catalogue ID, every index is built on that split's training interactions, and the table, JSON and plots are
written."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "recipes"))

import mmgrec


def test_mmgrec_quick(tmp_path):
    out = tmp_path / "run"
    assert mmgrec.main(["--quick", "--cpu", "--out", str(out), "--protocol", "random"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["split"]["protocol"] == "random(0.1,0.1,seed=0)"
    for index in (p for p in (out / "indexes").iterdir() if p.is_dir()):  # the IDs saw the same training interactions as the models
        assert json.loads((index / "manifest.json").read_text())["split"]["protocol"] == "random(0.1,0.1,seed=0)"
    labels = ["sasrec", "tiger", "mmgrec", "mmgrec-no-graph-ids", "mmgrec-absolute", "mmgrec-rq-kmeans"]
    assert list(res["test"]) == labels and res["seeds"] == [2020]
    for label in labels[1:]:
        (run,) = res["runs"][label]
        assert run["epochs_run"] == 2
        (check,) = res["decoded_validity"][label]
        assert check["decoded"] > 0 and check["invalid"] == 0 and check["item_code_mismatch"] == 0
        assert 0.0 <= run["test"]["ndcg@10"] <= 1.0
    for label in labels:
        (losses,) = res["train_loss_curves"][label]
        assert len(losses) == 2 and losses[1] < losses[0], (label, losses)
    stats = res["index_stats"]
    assert set(stats) == {"rqvae-text", "graph-rqvae", "rqvae-text-kg", "rq-kmeans-text"}
    assert stats["graph-rqvae"]["scheme"] == "graph_rqvae" and stats["graph-rqvae"]["id_length"] == 4
    for name in ("curves.png", "codebooks.png", "collisions.png"):
        assert (out / name).stat().st_size > 10_000
    assert "| mmgrec |" in (out / "results.md").read_text()
