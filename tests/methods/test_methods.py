import numpy as np
import pytest
import torch

from genir.data import Dataset, leave_one_out
from genir.errors import ConfigError
from genir.eval import EvalBatch, pad_histories
from genir.methods import METHODS, build_method, get_method, split_overrides
from genir.models.graph import normalized_adjacency
from genir.models.sampling import NegativeSampler
from genir.models.windows import SequenceWindows
from tests.conftest import make_inter


@pytest.fixture
def split():
    return leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=20, n_items=25, per_user=12)))


def batch_for(split, users, stage="valid"):
    hist, lens = pad_histories([split.histories(stage)[u] for u in users], split.num_items)
    return EvalBatch(torch.as_tensor(users), hist, lens, split.num_items)


def test_registry_and_unknown_names(split):
    assert set(METHODS) >= {"pop", "bpr", "lightgcn", "sasrec"}
    with pytest.raises(ConfigError, match="unknown method"):
        get_method("nope")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['embedding'\]"):
        build_method("bpr", split, {"embedding": 3})
    assert split_overrides("bpr", {"embedding_size": 8, "lr": 1}) == ({"embedding_size": 8}, {"lr": 1})


def test_same_seed_same_initial_weights(split):
    a = build_method("sasrec", split, seed=3).state_dict()
    b = build_method("sasrec", split, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_most_popular_scores_are_training_counts(split):
    m = build_method("pop", split)
    counts = np.bincount(split.train["item"], minlength=split.num_items)
    scores = m.full_scores(batch_for(split, [0, 1]))
    assert scores.shape == (2, split.num_items) and (scores[1].numpy() == counts).all()


def test_negative_sampler_never_returns_a_training_positive(split):
    sampler = NegativeSampler(split, tries=50)
    users = torch.arange(split.num_users).repeat(200)
    neg = sampler(users)
    train = split.train_matrix().toarray()
    assert train[users.numpy(), neg.numpy()].sum() == 0
    assert len(torch.unique(neg)) > split.num_items // 2


def test_lightgcn_adjacency_is_symmetric_normalized(split):
    a = normalized_adjacency(split).to_dense()
    assert torch.allclose(a, a.T)
    r = torch.as_tensor(split.train_matrix().toarray())
    du, di = r.sum(1), r.sum(0)
    u, i = torch.nonzero(r)[0]
    assert a[u, split.num_users + i] == pytest.approx(float(1 / torch.sqrt(du[u] * di[i])))


def test_sasrec_windows_make_every_training_item_after_the_first_a_target_once():
    seqs = [np.arange(0, 12), np.arange(20, 23), np.array([5])]
    ds = SequenceWindows(seqs, max_len=4, pad_id=99)
    targets = sorted(int(t) for k in range(len(ds)) for t in ds[k][1] if t != 99)
    assert targets == sorted(list(range(1, 12)) + [21, 22])
    inp, tgt = ds[0]
    assert inp.tolist()[-1] + 1 == tgt.tolist()[-1]  # next-item shift


def test_sasrec_score_depends_on_history_order_not_padding(split):
    m = build_method("sasrec", split, {"hidden_size": 16, "max_seq_length": 8}, seed=0).eval()
    b = batch_for(split, [0, 1])
    s = m.full_scores(b)
    wide = EvalBatch(b.users, torch.nn.functional.pad(b.history, (5, 0), value=split.num_items), b.history_len,
                     b.pad_id)
    assert torch.allclose(m.full_scores(wide), s, atol=1e-5)
    rev = EvalBatch(b.users, b.history.flip(1), b.history_len, b.pad_id)
    assert not torch.allclose(m.full_scores(rev), s)
    assert torch.isfinite(s).all()
