"""Fast end-to-end run of recipes/avg.py (--quick: 150 real clip-art images, the pixels encoder, tiny models built
in-process, one seed)."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "recipes"))

import avg

from genir.data.image_captions import find_openclipart
from genir.errors import DatasetError


def test_avg_quick_writes_tables_json_and_pictures(tmp_path, monkeypatch):
    try:
        find_openclipart()
    except DatasetError as e:
        pytest.skip(str(e))
    torch.set_num_threads(1)
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    # the default listwise loss over voken prefixes: every row runs (the paper's whole strings as an ablation)
    assert avg.main(["--quick", "--limit", "150", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["ltr_over"] == "prefixes"
    seed = res["seeds_detail"]["0"]
    assert set(seed["systems"]) == set(avg.SYSTEMS)
    # the generative loss falls, and every voken string the constrained beams return is an indexed image
    for name in ("AVG", "AVG, per-level codebooks", "generator, random IDs"):
        losses = [h["loss"] for h in seed["training"][name]["generative"]["history"]]
        assert losses[-1] < losses[0], (name, losses)
    check = seed["beam_check"]
    assert check["all_indexed"] and check["sequences"] == check["indexed"] > 0
    assert "ltr" in seed["training"]["AVG"]["discriminative"]["history"][0]
    for row in seed["systems"].values():
        assert 0.0 <= row["recall@1"] <= row["recall@5"] <= row["recall@10"] <= 1.0 and row["ms_per_query"] > 0
    assert seed["index"]["shared"]["stats"]["collision_rate"] >= 0 and res["data"]["images"] == 150
    table = (out / "results.md").read_text()
    for name in avg.SYSTEMS:
        assert f"| {name} |" in table
    assert "pretrained" in table and res["command"].startswith("python recipes/avg.py --quick")
    for png in ("queries-avg.png", "queries-two-tower.png"):
        assert (out / png).stat().st_size > 20_000
