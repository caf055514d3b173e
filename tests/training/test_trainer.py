import json

import pytest
import torch

from genir.data import Dataset, leave_one_out
from genir.errors import CheckpointError, ConfigError
from genir.methods import build_method
from genir.training import Callback, Trainer, TrainerConfig
from tests.conftest import make_inter


@pytest.fixture
def split():
    return leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=40, n_items=30, per_user=15)))


def fit(split, model="bpr", **kw):
    config = {"embedding_size": 16} if model != "sasrec" else {"hidden_size": 16, "max_seq_length": 8}
    m = build_method(model, split, config, seed=kw.get("seed", 2020))
    cfg = TrainerConfig.from_dict({"epochs": 4, "batch_size": 64, "lr": 0.01, "progress": False, "cpu": True,
                                   "patience": 100, **kw})
    t = Trainer(m, split, config=cfg)
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
    with pytest.raises(ConfigError, match="metric: expected a metric name like ndcg@10"):
        TrainerConfig.from_dict({"metric": "ndcg"})
    with pytest.raises(ConfigError, match="optimizer: expected one of"):
        TrainerConfig.from_dict({"optimizer": "sgd"})


def test_unknown_metric_is_refused_with_what_the_evaluator_reports(split):
    with pytest.raises(ConfigError, match=r"metric 'auc@10' is not reported by the evaluator; it reports \[.*'ndcg@10'"):
        fit(split, metric="auc@10", epochs=1)


# -- the generic trainer: any model, any data, optimizer groups, schedules, callbacks, dict losses -----------------
class _Regression(torch.nn.Module):
    """y = 3x + 1 learned from a bare tensor dataset: no task, no evaluator."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.norm = torch.nn.LayerNorm(1)

    def forward(self, batch):
        x, y = batch
        mse = (self.lin(x) - y).pow(2).mean()
        return {"loss": mse, "mse": mse, "bias": self.lin.bias.detach().abs().sum()}


def test_trains_a_bare_dataset_without_evaluator_and_logs_dict_losses():
    from torch.utils.data import TensorDataset

    x = torch.linspace(-1, 1, 64)[:, None]
    data = TensorDataset(x, 3 * x + 1)
    seen = []

    class Record(Callback):
        def on_epoch_end(self, trainer, record):
            seen.append(record)

    model = _Regression()
    t = Trainer(model, data, config=TrainerConfig(epochs=40, batch_size=16, lr=0.1, progress=False, cpu=True),
                callbacks=(Record(),))
    r = t.fit()
    assert len(seen) == 40 and {"loss", "mse", "bias"} <= set(seen[0])
    assert seen[-1]["mse"] < 1e-2 < seen[0]["mse"]
    assert r.best_epoch == 40 and abs(model.lin.weight.item() - 3) < 0.1
    with pytest.raises(ConfigError, match="no task to take a test evaluator from"):
        t.test()


def test_adamw_groups_and_warmup_schedule():
    from torch.utils.data import TensorDataset

    model = _Regression()
    t = Trainer(model, TensorDataset(torch.zeros(2, 1)), config=TrainerConfig(weight_decay=0.1, warmup_steps=4, scheduler="linear",
                                                progress=False, cpu=True))
    opt = t._optimizer(model)
    assert isinstance(opt, torch.optim.AdamW)
    decayed, free = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and free["weight_decay"] == 0.0
    assert [p.ndim for p in decayed["params"]] == [2] and all(p.ndim == 1 for p in free["params"])
    sched = t._scheduler(opt, steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[4] == pytest.approx(1e-3) and lrs[-1] < lrs[4]  # warm-up, then linear decay
    adam = Trainer(model, TensorDataset(torch.zeros(2, 1)), config=TrainerConfig(optimizer="adam", weight_decay=0.1, cpu=True))._optimizer(model)
    assert type(adam) is torch.optim.Adam and len(adam.param_groups) == 1  # classic L2 (BPR-family tuning)


def test_method_defaults_are_applied_in_one_place():
    from genir.methods import get_method

    bpr = get_method("bpr")[1]
    cfg = TrainerConfig.for_method(bpr, {"lr": 0.5})
    assert cfg.lr == 0.5 and cfg.weight_decay == bpr.trainer_defaults["weight_decay"] and cfg.optimizer == "adam"


def test_best_state_does_not_copy_frozen_parameters():
    model = _Regression()
    model.norm.requires_grad_(False)
    state = Trainer._trainable_state(model)
    assert set(state) == {"lin.weight", "lin.bias"}


def test_gradient_checkpointing_needs_a_model_that_supports_it():
    from torch.utils.data import TensorDataset

    data = TensorDataset(torch.zeros(4, 1), torch.zeros(4, 1))
    t = Trainer(_Regression(), data, config=TrainerConfig(epochs=1, gradient_checkpointing=True, progress=False,
                                                          cpu=True))
    with pytest.raises(ConfigError, match="has no gradient_checkpointing_enable"):
        t.fit()
