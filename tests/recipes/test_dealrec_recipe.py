"""recipes/dealrec.py --quick end to end on MovieLens-100K with a tiny random Llama (not pretrained): every arm is
fine-tuned and ranked through the constrained title decoder, the loss falls, and the report files are written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import single_threaded

_one_thread = single_threaded()
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))


def test_dealrec_quick(tmp_path):
    import dealrec

    from genir.methods.dealrec.procedure import ARMS

    out = tmp_path / "run"
    # two worker processes, as the default run on two cores: the effort pool is split between them
    assert dealrec.main(["--quick", "--seeds", "0", "--sweep", "", "--no-progress", "--out", str(out), "--jobs", "2",
                         "--set", "surrogate_epochs=1"]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    for arm in ARMS:
        run = rows[f"{arm} 10%"][0]
        assert run["samples"] == results["budget_samples"] == 12
        assert run["loss"][-1] < run["loss"][0], (arm, run["loss"])
        assert 0.0 <= run["metrics"]["ndcg@10"] <= 1.0
    assert "dealrec 10%, L2 grounding (BIGRec's)" in rows and "LLM zero-shot (no fine-tuning)" in rows
    assert set(results["score_seconds"]) >= {"influence", "effort", "el2n", "grand"}
    assert results["jobs"] == 2 and len(rows["LLM zero-shot (no fine-tuning)"]) == 1
    assert {"SASRec (surrogate, all training data; same test users)",
            "SASRec (surrogate, all training data; all test users)"} <= set(rows)
    assert (out / "results.md").read_text().startswith("# DEALRec")
    assert (out / "results.png").stat().st_size > 0
