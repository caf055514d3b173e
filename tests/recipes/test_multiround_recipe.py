"""Fast end-to-end run of recipes/multiround.py --quick on real clip art (skipped without the snapshot)."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "recipes"))

import multiround

from genir.data.clipart import find_clipart
from genir.errors import DatasetError


def test_multiround_quick_trains_measures_and_draws(tmp_path):
    try:
        find_clipart()
    except DatasetError as e:
        pytest.skip(str(e))
    torch.set_num_threads(1)
    out = tmp_path / "run"
    assert multiround.main(["--quick", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["runs"]) == set(multiround.VARIANTS)
    for name, runs in res["runs"].items():
        single = [h["l_single"] for h in runs[0]["history"]]
        assert single[-1] < single[0], (name, single)  # the one-round loss falls
        multi = [h["multi_batch"] for h in runs[0]["history"]]
        assert all(m == 0 for m in multi) if name == "without L_multi" else all(m == 0.5 for m in multi)
        m = runs[0]["metrics"]
        assert 0 < m["ssim_2"] <= 1 and m["psnr_1"] > 5 and 0 <= m["cir_two_round_recall@10"] <= 1
    lam = [h["lambda"] for h in res["runs"]["scheduled lambda"][0]["history"]]
    assert lam[0] > lam[-1]  # the schedule decays
    assert res["commute_filter"]["dropped"] > 0  # the filter removed non-commuting pairs
    for name in ("loss_curves.png", "grid-without-Lmulti.png", "grid-scheduled-lambda.png"):
        assert (out / name).stat().st_size > 5_000, name
    assert "scheduled lambda" in (out / "results.md").read_text()
