import json

import pytest
import torch

from genir.data import Dataset, leave_one_out
from genir.errors import CheckpointError, ConfigError
from genir.methods import build_method
from genir.training import Trainer, TrainerConfig
from tests.conftest import make_inter


@pytest.fixture
def split():
    return leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=40, n_items=30, per_user=15)))


def fit(split, model="bpr", **kw):
    config = {"embedding_size": 16} if model != "sasrec" else {"hidden_size": 16, "max_seq_length": 8}
    m = build_method(model, split, config, seed=kw.get("seed", 2020))
    cfg = TrainerConfig.from_dict({"epochs": 4, "batch_size": 64, "lr": 0.01, "progress": False, "cpu": True,
                                   "patience": 100, **kw})
    t = Trainer(m, split, cfg)
    return t, t.fit()


@pytest.mark.parametrize("model", ["bpr", "lightgcn", "sasrec"])
def test_loss_falls_and_history_is_logged(split, model):
    _, r = fit(split, model, epochs=6)
    losses = [h["loss"] for h in r.history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert 1 <= r.best_epoch <= 6 and 0.0 <= r.best_valid["ndcg@10"] <= 1.0
    assert r.best_valid["ndcg@10"] == max(h["valid_ndcg@10"] for h in r.history)


def test_same_seed_same_metrics_twice(split):
    t1, r1 = fit(split, seed=7)
    t2, r2 = fit(split, seed=7)
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]
    assert t1.test() == t2.test()
    _, r3 = fit(split, seed=8)
    assert [h["loss"] for h in r3.history] != [h["loss"] for h in r1.history]


def test_best_weights_are_restored(split):
    t, r = fit(split, epochs=8, lr=0.05)
    assert t.evaluate(t.valid_evaluator)["ndcg@10"] == pytest.approx(r.best_valid["ndcg@10"])


def test_early_stopping(split):
    _, r = fit(split, epochs=200, patience=2, lr=0.05)
    assert r.stopped_early and len(r.history) == r.best_epoch + 2


def test_checkpoint_resume_matches_uninterrupted(split, tmp_path):
    _, full = fit(split, epochs=4, output_dir=str(tmp_path / "a"))
    fit(split, epochs=2, output_dir=str(tmp_path / "b"))
    _, resumed = fit(split, epochs=4, output_dir=str(tmp_path / "b"), resume=True)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-6)
    assert resumed.best_valid == pytest.approx(full.best_valid)
    log = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in log] == [1, 2, 3, 4]
    assert (tmp_path / "b" / "best_model.safetensors").is_file()
    assert not (tmp_path / "b" / "checkpoint.tmp").exists()


def test_resume_without_checkpoint_is_refused(split, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(split, output_dir=str(tmp_path / "none"), resume=True)


def test_gradient_accumulation_and_bf16_run(split):
    _, r = fit(split, epochs=2, grad_accum=2, mixed_precision="bf16")
    assert len(r.history) == 2 and torch.isfinite(torch.tensor(r.history[-1]["loss"]))


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="unknown field"):
        TrainerConfig.from_dict({"lrate": 1})
    with pytest.raises(ConfigError, match="epochs: expected int"):
        TrainerConfig.from_dict({"epochs": "many"})
    with pytest.raises(ConfigError, match="metric"):
        TrainerConfig.from_dict({"metric": "auc@10"})
