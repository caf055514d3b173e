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


def test_dealrec_arms_subset_paired(tmp_path):
    """``--arms dealrec,random --reference-share 0``: only the comparison itself, on every seed, with the paired
    per-seed difference in the report; an unknown arm is a usage error."""
    import dealrec
    import pytest

    out = tmp_path / "run"
    assert dealrec.main(["--quick", "--seeds", "0,1", "--sweep", "", "--arms", "random", "--reference-share", "0",
                         "--no-progress", "--out", str(out), "--jobs", "1", "--set", "surrogate_epochs=1"]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    fine_tuned = {label for label in rows if label.endswith("10%")}
    assert fine_tuned == {"dealrec 10%", "random 10%"}
    assert not any("reference" in label for label in rows) and results["time"]["reference"] is None
    paired = results["paired_dealrec_minus_random"]["ndcg@10"]
    expected = [d["metrics"]["ndcg@10"] - r["metrics"]["ndcg@10"]
                for d, r in zip(rows["dealrec 10%"], rows["random 10%"])]
    assert len(paired) == 2 and paired == expected
    assert "(paired)" in (out / "results.md").read_text()
    with pytest.raises(SystemExit) as exc:
        dealrec.main(["--quick", "--arms", "dealrec,bogus", "--out", str(tmp_path / "bad")])
    assert exc.value.code == 2
