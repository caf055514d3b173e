"""DEALRec's scores and samplers checked against brute force on a tiny SASRec: forward-mode inner products equal
per-sample autograd gradients, LiSSA with full-batch products reaches the exact damped inverse-Hessian product,
ghost norms equal per-sample gradient norms, and the coverage sampler keeps its budget and its promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.data import Dataset, leave_one_out
from genir.methods import build_method
from genir.methods.dealrec import (
    coverage_sample,
    draw_pool,
    el2n_scores,
    influence_scores,
    linear_grad_norms,
    minmax,
    random_sample,
    training_samples,
)
from genir.methods.dealrec.scores import directional_derivatives, lissa_inverse_hvp, mean_gradient
from genir.methods.dealrec.surrogate import INFLUENCE_PARAMETER, SurrogateLosses
from tests.conftest import make_inter, single_threaded

_one_thread = single_threaded()


@pytest.fixture(scope="module")
def surrogate():
    split = leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=12, n_items=20, per_user=9)))
    model = build_method("sasrec", split, {"hidden_size": 8, "inner_size": 16, "max_seq_length": 6}, seed=0)
    # a few steps of training so that the Hessian is not the one of a random model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    windows = model.train_dataset(split)
    inp = torch.stack([windows[i][0] for i in range(len(windows))])
    tgt = torch.stack([windows[i][1] for i in range(len(windows))])
    for _ in range(30):
        opt.zero_grad()
        model.loss((inp, tgt)).backward()
        opt.step()
    pool = training_samples(split.histories(None), max_history=5)
    return SurrogateLosses(model, pool), pool


def per_sample_grads(losses, param, n):
    return torch.stack([torch.autograd.grad(losses(np.array([i]))[0], param)[0].flatten() for i in range(n)])


def test_training_samples_and_pool():
    hist = [np.array([3, 1, 4, 1, 5]), np.array([9]), np.array([2, 6])]
    pool = training_samples(hist, max_history=2)
    assert len(pool) == 4 + 0 + 1
    assert pool.targets.tolist() == [1, 4, 1, 5, 6]
    assert [h.tolist() for h in pool.histories] == [[3], [3, 1], [1, 4], [4, 1], [2]]
    inputs, _ = pool.padded(3, pad_id=99)
    assert inputs[1].tolist() == [99, 3, 1]
    small = draw_pool(pool, 3, seed=0)
    assert len(small) == 3 and set(small.targets.tolist()) <= set(pool.targets.tolist())
    assert draw_pool(pool, 3, seed=0).targets.tolist() == small.targets.tolist()


def test_directional_derivatives_equal_per_sample_gradients(surrogate):
    losses, _ = surrogate
    param = losses.model.get_parameter(INFLUENCE_PARAMETER)
    n = 25
    direction = torch.randn_like(param, generator=torch.Generator().manual_seed(0))
    got = directional_derivatives(losses, losses.model, INFLUENCE_PARAMETER, direction, n, batch_size=7)
    want = (per_sample_grads(losses, param, n) @ direction.flatten()).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert losses.model.get_parameter(INFLUENCE_PARAMETER) is param  # the weight is put back


def test_lissa_reaches_the_exact_damped_inverse_hessian_product(surrogate):
    losses, pool = surrogate
    n = len(pool)
    param = losses.model.get_parameter(INFLUENCE_PARAMETER)

    def mean_loss(w):
        from genir.methods.dealrec.scores import _swapped
        with _swapped(losses.model, INFLUENCE_PARAMETER, w):
            return losses(np.arange(n)).mean()

    hessian = torch.autograd.functional.hessian(mean_loss, param.detach()).reshape(param.numel(), -1).double()
    top = torch.linalg.eigvalsh(hessian).abs().max().item()
    scale, damp = 2 * top + 1.0, 0.2  # contraction <= 1 - damp + |lambda_min| / scale: fast, exact to 1e-6
    v = mean_gradient(losses, param, n)
    got = lissa_inverse_hvp(losses, param, v, n, depth=120, damp=damp, scale=scale, hvp_samples=n)
    want = torch.linalg.solve(hessian + damp * scale * torch.eye(len(hessian), dtype=torch.float64),
                              v.flatten().double())
    torch.testing.assert_close(got.flatten().double(), want, rtol=1e-3, atol=1e-6)
    # and the influence scores are that vector against each sample's gradient
    scores = influence_scores(losses, losses.model, INFLUENCE_PARAMETER, n, depth=120, damp=damp, scale=scale,
                              hvp_samples=n)
    brute = (per_sample_grads(losses, param, n).double() @ want).numpy()
    np.testing.assert_allclose(scores, brute, rtol=1e-3, atol=1e-6)
    # one sampled product per step (DEALRec's setting) is seeded: the same seed gives the same scores
    a = influence_scores(losses, losses.model, INFLUENCE_PARAMETER, n, depth=50, scale=scale, seed=3)
    b = influence_scores(losses, losses.model, INFLUENCE_PARAMETER, n, depth=50, scale=scale, seed=3)
    np.testing.assert_array_equal(a, b)


def test_lissa_divergence_is_reported(surrogate):
    losses, pool = surrogate
    param = losses.model.get_parameter(INFLUENCE_PARAMETER)
    v = mean_gradient(losses, param, len(pool))
    with pytest.raises(FloatingPointError, match="scale"):
        lissa_inverse_hvp(losses, param, v, len(pool), depth=2000, scale=1e-4, hvp_samples=len(pool))


def test_ghost_norms_equal_per_sample_gradient_norms(surrogate):
    losses, _ = surrogate
    modules = losses.last_block_linears()
    n = 20
    got = linear_grad_norms(losses, modules, n, batch_size=6)
    params = [p for m in modules for p in (m.weight, m.bias)]
    want = [torch.cat([g.flatten() for g in torch.autograd.grad(losses(np.array([i]))[0], params)]).norm().item()
            for i in range(n)]
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_el2n_is_the_error_vector_norm(surrogate):
    losses, pool = surrogate
    rows = np.arange(10)
    got = el2n_scores(losses.logits, pool.targets[rows])
    p = torch.softmax(losses.logits(rows), -1).detach()
    onehot = torch.nn.functional.one_hot(torch.as_tensor(pool.targets[rows]), p.shape[1]).float()
    np.testing.assert_allclose(got, (p - onehot).norm(dim=1).numpy(), rtol=1e-5)


def test_coverage_sample_keeps_budget_drops_the_top_and_covers_the_range():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0, 1, 900), rng.normal(8, 0.3, 100)])  # a small far mode
    chosen = coverage_sample(scores, 100, strata=20, hard_prune=0.1, seed=0)
    assert len(chosen) == 100 and len(np.unique(chosen)) == 100
    top = np.argsort(-scores)[:100]
    assert not set(chosen) & set(top)  # the hard prune removes the highest 10%
    assert np.array_equal(chosen, coverage_sample(scores, 100, strata=20, hard_prune=0.1, seed=0))
    # coverage: the sparse low tail is over-represented relative to uniform sampling
    tail = scores < np.quantile(scores, 0.05)
    assert tail[chosen].mean() > tail[random_sample(len(scores), 100, seed=0)].mean()
    assert len(coverage_sample(scores, 5000, hard_prune=0.1)) == 900  # budget above what survives the prune
    with pytest.raises(ValueError, match="hard_prune"):
        coverage_sample(scores, 10, hard_prune=1.0)
    with pytest.raises(ValueError, match="NaN"):
        coverage_sample(np.array([0.0, np.nan]), 1)


def test_minmax():
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert minmax(np.ones(3)).tolist() == [0.0, 0.0, 0.0]
