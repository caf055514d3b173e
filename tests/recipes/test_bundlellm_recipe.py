"""End-to-end ``recipes/bundlellm.py --quick`` on 150 real Debian bundles with a tiny RANDOMLY INITIALISED Llama:
the losses fall, every answer of the stage-1 model parses as a valid letter, and the table, JSON and plot are
written: the recipe's one fast end-to-end test (about 80 s on one busy core)."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "recipes"))

import bundlellm

from genir.data.bundles import find_bundles_snapshot
from genir.data.debian_corpus import find_snapshot
from genir.errors import DatasetError


def test_bundlellm_quick(tmp_path):
    try:
        find_snapshot()
        find_bundles_snapshot()
    except DatasetError as e:
        pytest.skip(str(e))
    torch.set_num_threads(1)
    out = tmp_path / "run"
    # two seeds: every seed must start from a fresh LLM (LoRA wraps a model in place)
    assert bundlellm.main(["--quick", "--seeds", "0,1", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["seeds"] == [0, 1] and all(
        len(v) == (1 if "zero-shot" in arm else 2) for arm, v in res["per_seed"].items())
    for arm in ("stage1", "stage2", "CLHE-style transformer"):
        losses = [h["loss"] for h in res["histories"][arm][0]]
        assert min(losses[1:]) < losses[0], (arm, losses)
    settings = [bundlellm.setting_name(n, neg) for n, neg in bundlellm.SETTINGS]
    for arm in bundlellm.LLM_ARMS:
        for s in settings:
            m = res["per_seed"][arm][0][s]
            assert m["questions"] == res["questions"][s]["questions"] > 0
            assert 0.0 <= m["hitrate@1"] <= 1.0 and 0.0 <= m["valid_ratio"] <= 1.0
    # the trained stage-1 model answers every question with a valid letter (the zero-shot random LLM does not)
    assert all(res["per_seed"][bundlellm.LLM_ARMS[1]][0][s]["valid_ratio"] == 1.0 for s in settings)
    eff = res["efficiency"]["modes"]
    assert eff["title + 1 hybrid token (stage 2)"]["prompt_tokens_mean"] < \
        next(v for k, v in eff.items() if k.startswith("title + description"))["prompt_tokens_mean"]
    table = (out / "results.md").read_text()
    for row in (*bundlellm.BASELINES, *bundlellm.LLM_ARMS):
        assert row in table
    assert (out / "results.png").stat().st_size > 10_000
    assert (out / "model-seed0" / "adapter" / "adapter_model.safetensors").is_file()
