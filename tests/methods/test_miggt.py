"""MIG-GT: MGDCF propagation per branch, the sampled global transformer, user feature files, a tiny training run
and the --quick recipe on MovieLens-100K."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genir.data import Dataset, leave_one_out
from genir.errors import ConfigError
from genir.eval import EvalBatch, pad_histories
from genir.methods import build_method
from genir.methods.miggt.model import (
    SampledGlobalTransformer,
    mgdcf_gamma,
    mgdcf_propagate,
    self_loop_adjacency,
)
from tests.conftest import make_inter
from tests.methods.feature_files import assert_feature_file_errors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def split():
    return leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=20, n_items=25, per_user=12)))


@pytest.fixture
def feats(tmp_path, split):
    rng = np.random.default_rng(0)
    paths = {}
    for name, d in (("a", 6), ("b", 3)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], rng.normal(size=(split.num_items, d)).astype(np.float32))
    return paths


def spec(feats):
    return ",".join(f"{n}={p}" for n, p in feats.items())


def batch_for(split, users):
    hist, lens = pad_histories([split.histories("valid")[u] for u in users], split.num_items)
    return EvalBatch(torch.as_tensor(users), hist, lens, split.num_items)


def test_self_loop_adjacency_matches_dense_formula(split):
    r = torch.as_tensor(split.train_matrix().toarray(), dtype=torch.float32)
    n_u, n_i = r.shape
    a = torch.zeros(n_u + n_i, n_u + n_i)
    a[:n_u, n_u:], a[n_u:, :n_u] = r, r.T
    a = a + torch.eye(n_u + n_i)
    d = a.sum(1) ** -0.5
    expected = d[:, None] * a * d[None, :]
    assert torch.allclose(self_loop_adjacency(split).to_dense(), expected, atol=1e-6)


def test_joint_propagation_equals_one_propagation_per_branch():
    torch.manual_seed(0)
    n = 7
    dense = torch.rand(n, n)
    adj = ((dense + dense.T) / n).to_sparse()
    h0 = torch.randn(n, 6)
    alpha, beta = 0.1, 0.9

    def single(h, k):
        out = h
        for _ in range(k):
            out = beta * (adj.to_dense() @ out) + alpha * h
        return out / mgdcf_gamma(k, alpha, beta)

    got = mgdcf_propagate(adj, h0, [3, 0, 1], [2, 2, 2], alpha, beta)
    expected = single(h0[:, :2], 3) + single(h0[:, 2:4], 0) + single(h0[:, 4:], 1)
    assert torch.allclose(got, expected, atol=1e-5)
    # gamma_K keeps a fixed point of a row-stochastic operator unchanged, for every K
    stochastic = (dense / dense.sum(1, keepdim=True)).to_sparse()
    ones = torch.ones(n, 1)
    for k in range(5):
        assert torch.allclose(mgdcf_propagate(stochastic, ones, [k], [1], alpha, beta), ones, atol=1e-5)
    assert mgdcf_gamma(0, alpha, beta) == 1.0 and mgdcf_gamma(2, alpha, beta) == pytest.approx(0.81 + 0.1 * 1.9)


def test_global_transformer_tokens_and_residual():
    torch.manual_seed(0)
    nodes, items = torch.randn(5, 8), torch.randn(9, 8)
    samples = torch.randint(0, 9, (5, 3))
    sgt = SampledGlobalTransformer(8, 4, weight=0.1)
    out = sgt(nodes, items, samples)
    assert out.shape == (5, 4, 8)
    assert torch.allclose(sgt(nodes, items, samples, all_tokens=False), out[:, :1], atol=1e-6)
    tokens = torch.cat([nodes[:, None], items[samples]], 1)
    assert torch.allclose(SampledGlobalTransformer(8, 4, weight=0.0)(nodes, items, samples), tokens)
    # the attention part is a convex combination of the tokens: output within 0.1 * (token spread) of the input
    assert (out - tokens).abs().max() > 0
    assert ((out - 0.9 * tokens) / 0.1).max() <= tokens.max() + 1e-5


def test_branches_follow_hops_and_bad_hops_are_refused(split, feats):
    m = build_method("miggt", split, {"modalities": spec(feats), "hops": "id=3,a=1,b=-1"}, seed=0)
    assert m.hops == {"id": 3, "a": 1, "b": -1} and list(m.encoders) == ["a"]
    m = build_method("miggt", split, {"modalities": spec(feats), "hops": "id=-1", "default_hops": 0}, seed=0)
    assert m.user_emb is None and list(m.encoders) == ["a", "b"]
    with pytest.raises(ConfigError, match=r"hops: no branch named \['c'\]"):
        build_method("miggt", split, {"modalities": spec(feats), "hops": "c=2"})
    with pytest.raises(ConfigError, match="hops: expected entries name=int"):
        build_method("miggt", split, {"modalities": spec(feats), "hops": "a=two"})
    with pytest.raises(ConfigError, match="every branch is turned off"):
        build_method("miggt", split, {"modalities": spec(feats), "default_hops": -1, "hops": ""})


def test_user_feature_errors_name_the_file(split, tmp_path):
    assert_feature_file_errors(
        tmp_path, split.num_items,
        lambda mods, dims: build_method("miggt", split,
                                        {"modalities": mods, "hops": "", **({"feature_dims": dims} if dims else {})}))


def test_training_lowers_the_loss_and_scoring_is_deterministic(split, feats):
    m = build_method("miggt", split, {"modalities": spec(feats), "hops": "id=2,a=1,b=0", "embedding_size": 16,
                                      "hidden_size": 16}, seed=0)
    users = torch.tensor(split.train["user"].to_numpy())
    pos = torch.tensor(split.train["item"].to_numpy())
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m.train()
    losses = []
    for _ in range(40):
        loss = m.loss((users, pos))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    assert all(p.grad is not None for p in m.transformer.parameters())  # TUR and BPR reach the SGT
    m.eval()
    b = batch_for(split, [0, 3, 5])
    s1 = m.full_scores(b)
    m.prepare_eval()
    assert s1.shape == (3, split.num_items) and torch.equal(s1, m.full_scores(b))
    # the transformer changes the scores; without it the model still trains and scores
    m2 = build_method("miggt", split, {"modalities": spec(feats), "hops": "id=2,a=1,b=0", "embedding_size": 16,
                                       "hidden_size": 16, "use_transformer": False}, seed=0).eval()
    assert m2.transformer is None and m2.full_scores(b).shape == (3, split.num_items)


def test_quick_recipe_beats_most_popular(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes"))
    import miggt as recipe

    out = tmp_path / "run"
    assert recipe.main(["--quick", "--seeds", "2020", "--out", str(out), "--cpu", "--protocol", "random"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["split"]["protocol"] == "random(0.1,0.1,seed=0)"  # the paper's protocol (issue 21)
    assert set(res["test"]) == {"pop", "bpr", "lightgcn", "miggt", "miggt-shared-K", "miggt-no-SGT"}
    search = res["k_search"]
    assert set(search["per_branch"]) == {"text"} and set(search["chosen"]) == {"text"}
    assert all(0 < v < 1 for row in search["per_branch"].values() for v in row.values())
    pop = res["test"]["pop"]["ndcg@10"]["mean"]
    for label in ("miggt", "miggt-shared-K", "miggt-no-SGT"):
        run = res["runs"][label][0]
        assert run["test"]["ndcg@10"] > pop, (label, run["test"]["ndcg@10"], pop)
    for label in ("miggt", "miggt-no-SGT"):
        loss = res["loss_curves"][label][0]
        assert len(loss) >= 2 and loss[-1] < loss[0], (label, loss)
    table = (out / "results.md").read_text()
    assert "| miggt |" in table and "K search" in table and "stronger baseline" in table
    assert (out / "k_search.png").stat().st_size > 10_000 and (out / "curves.png").stat().st_size > 10_000
