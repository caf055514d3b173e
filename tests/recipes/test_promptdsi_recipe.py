"""Fast end-to-end run of recipes/promptdsi.py (--quick on a 300-document slice of the real Debian snapshot)."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "recipes"))

import promptdsi

from genir.data.debian_corpus import find_snapshot
from genir.errors import DatasetError


def _snapshot_or_skip():
    try:
        return find_snapshot()
    except DatasetError as e:
        pytest.skip(str(e))


def test_promptdsi_quick_writes_tables_json_and_plots(tmp_path):
    _snapshot_or_skip()
    torch.set_num_threads(1)
    out = tmp_path / "run"
    assert promptdsi.main(["--quick", "--docs", "300", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    seed = res["seeds"][0]
    # D0 training's loss falls (every retrieved docid was checked to exist inside the recipe's evaluation)
    for key in ("atomic_train", "semantic_train"):
        losses = [h["loss"] for h in seed[key]["history"]]
        assert len(losses) == 2 and losses[1] < losses[0], (key, losses)
    steps = res["corpus"]["steps"]
    assert len(steps) == 4 and sum(steps) == 300
    for name in promptdsi.CONTINUAL:
        perf = seed["continual"][name]["perf"]
        assert [sorted(p) for p in perf] == [[str(j) for j in range(t + 1)] for t in range(4)]
    # PromptDSI and IncDSI never change D0's rows: the D0 scores move only through the prompts (PromptDSI) and
    # new rows competing (both); sequential fine-tuning trains everything
    assert seed["continual"]["promptdsi"]["steps"][0]["trained_parameters"] < \
        seed["continual"]["seq-ft"]["steps"][0]["trained_parameters"]
    for name in ("promptdsi", "l2p"):
        usage = seed[f"{name}_usage"]
        assert sum(usage["test"]) > 0 and 0.0 <= usage["test_entropy"] <= usage["max_entropy"] + 1e-9
    table = (out / "results.md").read_text()
    for row in ("DSI atomic docids", "BM25", "promptdsi", "incdsi", "re-train on all"):
        assert row in table
    assert (out / "steps.png").stat().st_size > 10_000 and (out / "prompt_usage.png").stat().st_size > 10_000
    # a second seed without the side runs (semantic DSI, re-train: --side-seeds 1) is summarised beside the first
    other = {k: v for k, v in seed.items() if k not in ("semantic_d0", "semantic_train", "semantic_latency_ms",
                                                         "semantic_bytes", "semantic_ids", "retrain")}
    _, two = promptdsi.summarise({**res, "seeds": [seed, {**other, "seed": 1}]})
    assert "DSI semantic docids (hk-means) (seed 0) |" in two and "upper bound, final step only; seed 0)" in two
    assert "| DSI atomic docids |" in two and " ± " in two  # the atomic row is over both seeds


def test_promptdsi_quick_runs_later_seeds_in_a_worker_process(tmp_path):
    _snapshot_or_skip()
    torch.set_num_threads(1)
    out = tmp_path / "run"
    assert promptdsi.main(["--quick", "--docs", "200", "--seeds", "0,1", "--jobs", "2", "--out", str(out),
                           "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["jobs"] == 2 and [s["seed"] for s in res["seeds"]] == [0, 1]
    first, second = res["seeds"]
    assert "semantic_d0" in first and "retrain" in first  # the side runs: first seed only (--side-seeds 1)
    assert "semantic_d0" not in second and second["worker_cache_seconds"] > 0
    for name in promptdsi.CONTINUAL:
        assert len(second["continual"][name]["perf"]) == 4
    assert "| seq-ft | " in (out / "results.md").read_text()
