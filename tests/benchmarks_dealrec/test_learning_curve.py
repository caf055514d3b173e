"""benchmarks/dealrec_learning_curve.py without fine-tuning anything: the points reused from the committed recipe
run become a curve (shares, seeds, mean and std), the plot is drawn, and a mismatched config is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import dealrec_learning_curve as curve


def test_reused_points_make_the_curve(tmp_path):
    out = tmp_path / "curve.json"
    assert curve.main(["--plan", "--jobs", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    committed = json.loads(curve.REUSE.read_text())["rows"]
    rows = {r["samples"]: r for r in result["curve"]}
    assert rows[0]["ndcg@10"]["values"] == [committed["LLM zero-shot (no fine-tuning)"][0]["metrics"]["ndcg@10"]]
    random2 = [e["metrics"]["ndcg@10"] for e in committed["random 2%"]]
    assert rows[100]["seeds"] == [0, 1, 2] and rows[100]["ndcg@10"]["values"] == random2
    assert rows[100]["ndcg@10"]["mean"] == pytest.approx(np.mean(random2))
    assert rows[500]["ndcg@10"]["values"] == [committed["random 10% (more-data reference)"][0]["metrics"]["ndcg@10"]]
    assert result["dealrec_budget"]["samples"] == 100 and len(result["dealrec_budget"]["ndcg@10"]) == 3
    assert out.with_suffix(".png").stat().st_size > 0


def test_config_mismatch_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="config differs"):
        curve.main(["--plan", "--jobs", "1", "--set", "pool=100", "--out", str(tmp_path / "c.json")])
