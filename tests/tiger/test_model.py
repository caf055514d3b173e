from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch, pad_histories
from genir.training import Trainer, TrainerConfig
from tests.conftest import make_inter
from tests.tiger.conftest import TINY


def eval_batch(split, stage="test") -> EvalBatch:
    hist = split.histories(stage)
    history, lens = pad_histories(hist, split.num_items)
    return EvalBatch(torch.arange(len(hist)), history, lens, split.num_items)


def test_training_windows_cover_every_target_once(tiger, split):
    data = tiger.train_dataset(split)
    hist = split.histories(None)
    targets = [0] * split.num_users
    for i in range(len(data)):
        user, inp, tgt = data[i]
        keep = tgt != split.num_items
        assert (inp[keep] != split.num_items).all()  # every target has its previous item as input
        targets[user] += int(keep.sum())
    assert targets == [max(0, len(h) - 1) for h in hist]


def test_window_training_equals_one_pass_per_prefix(split, index_dir):
    """Without positional embeddings a target's loss inside a window equals its loss with only its own prefix as
    input (right-aligned, as at inference): the all-positions objective is TIGER's per-prefix objective."""
    from genir.methods import build_method

    model = build_method("tiger", split, {"index": str(index_dir), **TINY, "position": "none"}, seed=0).eval()
    user, inp, tgt = (torch.as_tensor(x)[None] for x in model.train_dataset(split)[0])
    pad = split.num_items
    with torch.no_grad():
        for s in (tgt[0] != pad).nonzero().flatten().tolist():
            only = torch.full_like(tgt, pad)
            only[0, s] = tgt[0, s]
            prefix = torch.full_like(inp, pad)
            prefix[0, inp.shape[1] - (s + 1):] = inp[0, : s + 1]
            last = torch.full_like(tgt, pad)
            last[0, -1] = tgt[0, s]
            assert torch.isclose(model.loss((user, inp, only)), model.loss((user, prefix, last)), atol=1e-5)


def test_future_items_do_not_change_a_targets_loss(tiger, split):
    tiger.eval()
    data = tiger.train_dataset(split)
    user, inp, tgt = (torch.as_tensor(x)[None] for x in data[0])
    pad = split.num_items
    slots = (tgt[0] != pad).nonzero().flatten().tolist()
    s = slots[0]
    only = torch.full_like(tgt, pad)
    only[0, s] = tgt[0, s]
    changed = inp.clone()
    changed[0, s + 1:] = (changed[0, s + 1:] + 1) % pad  # different later items
    with torch.no_grad():
        assert torch.isclose(tiger.loss((user, inp, only)), tiger.loss((user, changed, only)), atol=1e-6)


def test_three_epochs_lower_the_loss(tiger, split):
    cfg = TrainerConfig(epochs=3, batch_size=32, lr=1e-2, progress=False, cpu=True, patience=10)
    result = Trainer(tiger, split, config=cfg).fit()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_full_scores_are_decoded_catalogue_items(tiger, split):
    tiger.eval()
    scores = tiger.full_scores(eval_batch(split))
    assert scores.shape == (split.num_users, split.num_items)
    finite = torch.isfinite(scores)
    assert (finite.sum(1) >= 1).all() and (finite.sum(1) <= tiger.config.beam_width).all()
    assert (scores[finite] <= 0).all()  # log-probabilities


def test_beam_equals_exact_when_the_beam_holds_every_item(tiger, split):
    tiger.config.beam_width = split.num_items
    tiger.eval()
    batch = eval_batch(split)
    beam = tiger.full_scores(batch)
    exact = tiger.exact_full_scores(batch)
    seen = torch.zeros_like(exact, dtype=torch.bool)
    for row, items in enumerate(batch.history):
        seen[row, items[items < split.num_items]] = True
    assert seen.any(1).all()
    assert torch.isfinite(beam[~seen]).all() and torch.isneginf(beam[seen]).all()  # unseen items all decoded
    torch.testing.assert_close(beam[~seen], exact[~seen], atol=1e-4, rtol=1e-4)
    unmasked = tiger.beam_search(batch.history, batch.users, exclude_history=False)
    assert unmasked.valid.all()  # without exclusion the beam holds every item, history included
    # the probabilities of all valid IDs sum to at most one (the constraint renormalizes nothing)
    assert (torch.logsumexp(exact, dim=1) <= 1e-4).all()


def test_recommend_excludes_history(tiger, split):
    tiger.eval()
    hist = [int(x) for x in split.histories("test")[0]][:3]
    out = tiger.recommend([hist], k=5)[0]
    assert len(out) == 5
    assert not {i for i, _ in out} & set(hist)
    scores = [s for _, s in out]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)


def test_index_of_another_dataset_is_refused(index_dir):
    from genir.data import Dataset, leave_one_out
    from genir.methods import build_method

    other = leave_one_out(Dataset.from_frames("other", make_inter(n_users=20, n_items=24, per_user=8, seed=1)))
    with pytest.raises(ConfigError, match="fingerprint"):
        build_method("tiger", other, {"index": str(index_dir), **TINY})


def test_index_is_required(split):
    from genir.methods import build_method

    with pytest.raises(ConfigError, match="index"):
        build_method("tiger", split, {})


def test_state_dict_round_trip_through_safetensors(tiger, split, index_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from genir.methods import build_method

    save_file(tiger.state_dict(), str(tmp_path / "w.safetensors"))
    other = build_method("tiger", split, {"index": str(index_dir), **TINY}, seed=1)
    other.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    for (name, a), (_, b) in zip(tiger.named_parameters(), other.named_parameters()):
        assert torch.equal(a, b), name
    assert np.isfinite(other.exact_full_scores(eval_batch(split)).numpy()).all()


def test_agreement_is_total_when_the_beam_holds_every_item(tiger, split):
    from genir.eval.agreement import ranking_agreement

    tiger.config.beam_width = split.num_items
    tiger.eval()
    res = ranking_agreement(split, tiger.full_scores, tiger.exact_full_scores, "test", k=5)
    assert res["same_top_k_set"] == 1.0 and res["mean_overlap"] == 1.0
    assert all(abs(v) < 1e-9 for v in res["metric_difference"].values())
    tiger.config.beam_width = 2  # a beam narrower than k can never hold the exact top-5
    res = ranking_agreement(split, tiger.full_scores, tiger.exact_full_scores, "test", k=5)
    assert res["same_top_k_set"] == 0.0 and res["mean_overlap"] <= 2 / 5 + 1e-9
