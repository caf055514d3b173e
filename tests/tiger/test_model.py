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


def test_training_examples_and_tokens(tiger, split, index_dir):
    from genir.index import load_index

    data = tiger.train_dataset(split)
    assert len(data) == sum(max(0, len(h) - 1) for h in split.histories(None))
    batch = tiger.collate([data[i] for i in range(4)])
    L = tiger.num_levels
    assert batch["labels"].shape == (4, L)
    assert (batch["input_ids"][:, -1] == tiger.config.eos_id).all()
    assert ((batch["input_ids"].shape[1] - 1) % L) == 0
    assert torch.equal(batch["attention_mask"], (batch["input_ids"] != 0).long())
    # the label of example 0 is the code tokens of its target item: base 2 + per-level offsets
    table = load_index(index_dir).table
    target = data[0][1]
    assert batch["labels"][0].tolist() == (table.to_tokens(table.codes_of([target]))[0] + 2).tolist()


def test_three_epochs_lower_the_loss(tiger, split):
    cfg = TrainerConfig(epochs=3, batch_size=32, lr=1e-2, progress=False, cpu=True, patience=10)
    result = Trainer(tiger, split, cfg).fit()
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
    assert torch.isfinite(beam).all()  # every item decoded
    torch.testing.assert_close(beam, exact, atol=1e-4, rtol=1e-4)
    # probabilities of all IDs sum to one (the constraint renormalizes nothing; T5 has no other L-token outputs
    # here, so the sum is <= 1)
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
