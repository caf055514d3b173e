"""The multi-round editor: lambda(t), the share of batches with L_multi, identity at initialisation, gradients
through both rounds, and config errors."""

import itertools

import numpy as np
import pytest
import torch

from genir.data.edit_tasks import EditBatch
from genir.errors import ConfigError
from genir.methods.multiround import MultiRoundConfig, MultiRoundEditor


class TinyTask:
    """Random 8x8 pictures; targets are the inputs darkened (enough to exercise the losses)."""

    size = 8
    vocabulary = ("", "darken", "lighten")
    identity_text = 0

    def train_batch(self, rng, n_single, n_recon, n_chains):
        def imgs(n):
            return rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)

        x, c = imgs(n_single), imgs(n_chains)
        return EditBatch(x, np.ones(n_single, np.int64), x // 2, imgs(n_recon), np.zeros(n_recon, np.int64),
                         c, np.ones(n_chains, np.int64), np.full(n_chains, 2, np.int64), c)


def editor(**kw):
    torch.manual_seed(0)
    cfg = MultiRoundConfig.from_dict({"channels": [4, 8], "cond_dim": 8, "n_single": 4, "n_recon": 2, "n_chains": 3,
                                      "batches_per_epoch": 8, **kw})
    return MultiRoundEditor(cfg, TinyTask(), np.random.default_rng(0).normal(size=(3, 6)))


def test_lambda_schedule_decays_and_variants():
    sched = MultiRoundConfig(lambda_mode="schedule", lambda_start=1.0, lambda_end=0.1)
    values = [sched.lam(t) for t in np.linspace(0, 1, 11)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in itertools.pairwise(values))
    assert np.mean([sched.lam(t) for t in np.linspace(0, 1, 1001)]) == pytest.approx(0.55, abs=1e-3)
    assert MultiRoundConfig(lambda_mode="constant").lam(0.9) == 0.55
    assert MultiRoundConfig(lambda_mode="none").lam(0.0) == 0.0


def test_share_of_batches_with_multi_round():
    assert sum(editor(multi_share=0.5).carries_multi(s) for s in range(100)) == 50
    assert sum(editor(multi_share=0.25).carries_multi(s) for s in range(100)) == 25
    assert not any(editor(lambda_mode="none").carries_multi(s) for s in range(10))
    batches = list(editor(multi_share=0.5).train_batches(0))
    assert sum("chain_x" in b for b in batches) == 4 and len(batches) == 8


def test_untrained_editor_is_the_identity_and_gradients_cross_both_rounds():
    ed = editor(multi_share=1.0)
    x = torch.rand(5, 3, 8, 8)
    assert torch.equal(ed.edit(x, torch.ones(5, dtype=torch.long)), x)
    ed.unet.out.weight.data.normal_(std=0.1)  # leave the identity so that every term has a gradient
    batch = next(ed.train_batches(0))
    out = ed(batch)
    assert set(out) >= {"loss", "l_single", "l_recon", "l_multi", "lambda"} and out["multi_batch"] == 1
    ed.zero_grad()
    (out["lambda"] * 0 + out["loss"]).backward()
    grads_multi_only = {n: p.grad.clone() for n, p in ed.named_parameters() if p.grad is not None}
    assert torch.isfinite(out["loss"]) and grads_multi_only["unet.down.0.conv1.weight"].abs().sum() > 0
    # the second round sees the first round's output: its loss changes when the first round changes
    y1 = ed.multi_round(x, torch.ones(5, dtype=torch.long), torch.full((5,), 2))
    y2 = ed.edit(ed.edit(x, torch.ones(5, dtype=torch.long)).clamp(0, 1), torch.full((5,), 2))
    assert torch.allclose(y1, y2)


def test_config_errors():
    with pytest.raises(ConfigError, match="n_chains"):
        MultiRoundConfig.from_dict({"lambda_mode": "schedule", "n_chains": 0})
    with pytest.raises(ConfigError, match="lambda_mode"):
        MultiRoundConfig.from_dict({"lambda_mode": "sometimes"})
    with pytest.raises(ValueError, match="text_embeddings"):
        MultiRoundEditor(MultiRoundConfig(), TinyTask(), np.zeros((2, 4)))


def test_edit_and_retrieval_metrics_on_exact_and_identity_outputs(tmp_path):
    from genir.data.clipart import read_clipart
    from genir.data.edit_tasks import ClipartEditTask
    from genir.methods.multiround import edit_metrics, identity_outputs, retrieval_metrics
    from tests.data.test_clipart import write_snapshot

    task = ClipartEditTask(read_clipart(write_snapshot(tmp_path, n=60)), size=32, split=(0.5, 0.0, 0.5))
    ex = task.eval_examples("test")
    exact = {"one_a": ex.target_a, "one_b": ex.target_b, "two_ab": ex.target_ab, "two_ba": ex.target_ab}
    m = edit_metrics(exact, ex)
    assert m["psnr_1"] == m["psnr_2"] == 60.0 and m["psnr_growth"] == 0.0 and m["ssim_2"] == pytest.approx(1.0, abs=1e-3)
    r = retrieval_metrics(exact, ex)
    assert r["two_round"]["recall@1"] == 1.0 and r["one_round"]["recall@1"] == 1.0
    ident = edit_metrics(identity_outputs(ex), ex)
    assert ident["psnr_1"] < 60 and ident["psnr_2"] <= ident["psnr_1"] and ident["order_gap_psnr"] == 60.0
    assert set(ident["per_family"]) <= {"fg", "bg", "pose", "scale", "border", "badge"}
    assert sum(f["one_round_examples"] for f in ident["per_family"].values()) == 2 * len(ex)
