"""recipes/doublemix.py --quick: a tiny random Whisper on a tiny benchmark (espeak-ng/sox clips when they are
installed, numpy tones otherwise); the training loss falls and every decoded output carries an <event>."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "recipes"))

import doublemix

from genir.errors import ConfigError


def test_doublemix_quick_trains_every_method_and_outputs_parse(tmp_path, monkeypatch):
    from genir.llm.whisper import packaged_tokenizer

    try:
        packaged_tokenizer("base")
    except ConfigError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    out = tmp_path / "run"
    assert doublemix.main(["--quick", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["runs"]) == set(doublemix.METHODS)
    for name, runs in res["runs"].items():
        run = runs[0]
        for losses in run["losses"]:
            assert losses[-1] < losses[0], (name, losses)  # the training loss falls within every task
        assert all(p == 1.0 for p in run["parsed"][-1]), (name, run["samples"])  # every output has <event>
        k = len(run["order"])
        assert len(run["accuracy"]) == (1 if name == "joint" else k)
        assert all(0.0 <= a <= 1.0 for row in run["accuracy"] for a in row)
        assert run["mixed"]["n"] > 0
    assert res["runs"]["doublemix"][0]["expert_usage"] and len(res["runs"]["doublemix"][0]["expert_usage"]) == 3
    assert "wer_truncated" in res["wer_truncated_vs_full"]
    for name in ("accuracy_matrices.png", "summary.png"):
        assert (out / name).stat().st_size > 5_000, name
    assert "rehearsal" in (out / "results.md").read_text()


def test_doublemix_quick_runs_on_synthetic_clips_without_espeak_or_sox(tmp_path, monkeypatch):
    from genir.llm.whisper import packaged_tokenizer

    try:
        packaged_tokenizer("base")
    except ConfigError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(doublemix.shutil, "which", lambda name: None)
    out = tmp_path / "run"
    assert doublemix.main(["--quick", "--out", str(out), "--no-progress", "--threads", "1", "--tasks", "2",
                           "--methods", "doublemix,finetune"]) == 0
    res = json.loads((out / "results.json").read_text())
    manifest = (out / "data" / "manifest.tsv").read_text()
    assert "conflict+nature" in manifest and "join" in manifest
    assert all(p == 1.0 for p in res["runs"]["doublemix"][0]["parsed"][-1])
