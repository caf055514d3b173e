"""MetaMMF: the generated weights (full, true CP, static), the model on a tiny dataset, user feature files
validated with the file named, and the --quick recipe end to end on MovieLens-100K."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genir.errors import ConfigError
from genir.methods import build_method
from genir.methods.metammf.model import (
    CPMetaLayer,
    FullMetaLayer,
    MetaFusionNetwork,
    StaticLayer,
    fusion_input,
)
from tests.methods.feature_files import assert_feature_file_errors

ROOT = Path(__file__).resolve().parents[2]


def test_full_layer_applies_its_generated_per_item_matrix():
    torch.manual_seed(0)
    layer = FullMetaLayer(6, 4, meta_dim=3)
    h, s = torch.randn(5, 6), torch.randn(5, 3)
    w = layer.weights(s)  # (5, 6, 4)
    expected = layer.M + torch.einsum("bk,kio->bio", s, layer.T)
    assert torch.allclose(w, expected, atol=1e-6)
    out = layer(h, s)
    assert torch.allclose(out, torch.stack([h[b] @ w[b] for b in range(5)]), atol=1e-5)
    assert not torch.allclose(w[0], w[1])  # item-specific


def test_cp_layer_is_a_true_cp_decomposition_of_the_meta_tensor():
    torch.manual_seed(0)
    d_in, d_out, s_dim, rank = 7, 5, 3, 2
    cp = CPMetaLayer(d_in, d_out, s_dim, rank)
    # the tensor the factors stand for: T[k] = sum_r C[k, r] a_r b_r^T
    T = torch.einsum("kr,ir,ro->kio", cp.C, cp.A, cp.B)
    full = FullMetaLayer(d_in, d_out, s_dim)
    with torch.no_grad():
        full.M.copy_(cp.M)
        full.T.copy_(T)
    h, s = torch.randn(9, d_in), torch.randn(9, s_dim)
    assert torch.allclose(cp(h, s), full(h, s), atol=1e-5)  # contraction == materialized weights
    assert torch.allclose(cp.weights(s), full.weights(s), atol=1e-5)
    # every mode-1 unfolding of T has rank <= R, and items do NOT share one dynamic matrix up to a scale (the
    # released cpd_layer.py's generated weight is a scalar times a fixed matrix)
    assert torch.linalg.matrix_rank(T.reshape(s_dim, -1)) <= rank
    dyn = (cp.weights(s) - cp.M).reshape(9, -1)
    assert torch.linalg.matrix_rank(dyn) == rank


def test_cp_layer_never_forms_per_item_matrices():
    """d_in = d_out = 2048 and 256 items: materialized weights would need 4 GiB; the CP contraction does not."""
    torch.manual_seed(0)
    cp = CPMetaLayer(2048, 2048, meta_dim=4, rank=4)
    h, s = torch.randn(256, 2048), torch.randn(256, 4)
    with torch.no_grad():
        out = cp(h, s)
        ref = torch.stack([h[b] @ cp.weights(s[b:b + 1])[0] for b in range(3)])
    assert out.shape == (256, 2048) and torch.allclose(out[:3], ref, atol=1e-3)


def test_static_fusion_ignores_the_meta_vector():
    torch.manual_seed(0)
    net = MetaFusionNetwork(6, (5, 3), "static", meta_dim=2, rank=2)
    assert all(type(layer) is StaticLayer for layer in net.layers)
    x = torch.randn(4, 6)
    assert torch.allclose(net(x, torch.randn(4, 2)), net(x, torch.randn(4, 2)))


def test_fusion_input_pca_and_scale():
    rng = np.random.default_rng(0)
    mods = {"a": rng.normal(size=(50, 30)) * 100.0, "b": rng.normal(size=(50, 4))}
    x = fusion_input(mods, pca_dim=8)
    assert x.shape == (50, 12) and x.dtype == torch.float32
    # each modality scaled to unit mean row norm: the x100 one does not dominate
    assert abs(x[:, :8].norm(dim=1).mean().item() - 1) < 1e-4 and abs(x[:, 8:].norm(dim=1).mean().item() - 1) < 1e-4


# -- the model on a tiny split with user-supplied features ----------------------------------------------------------
@pytest.fixture
def tiny_split(tiny_dataset):
    from genir.data import leave_one_out

    return leave_one_out(tiny_dataset)


def _feature_files(tmp_path, n):
    rng = np.random.default_rng(0)
    paths = {}
    for name, d in (("img", 10), ("aud", 6)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], rng.normal(size=(n, d)).astype(np.float32))
    return paths


@pytest.mark.parametrize("fusion,backbone", [("full", "mf"), ("cp", "mf"), ("static", "mf"), ("cp", "gcn")])
def test_model_trains_on_user_feature_files(tiny_split, tmp_path, fusion, backbone):
    from genir.training import Trainer, TrainerConfig

    p = _feature_files(tmp_path, tiny_split.num_items)
    model = build_method("metammf", tiny_split, {
        "modalities": f"img={p['img']},aud={p['aud']}", "fusion": fusion, "backbone": backbone, "pca_dim": 4,
        "fusion_dims": "8,4", "id_dim": 4, "meta_dim": 3, "cp_rank": 2, "meta_hidden": 8, "num_negatives": 2,
        "dropout": 0.0,
    }, seed=0)
    assert model.features.shape == (tiny_split.num_items, 8)
    assert model.config.modality_dims == "img=10,aud=6"  # recorded for a later reload
    result = Trainer(model, tiny_split, config=TrainerConfig(epochs=30, batch_size=64, lr=1e-2, patience=100, cpu=True,
                                                      progress=False)).fit()
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3])
    scores = model.full_scores(_eval_batch(tiny_split))
    assert scores.shape[1] == tiny_split.num_items and torch.isfinite(scores).all()


def _eval_batch(split):
    from genir.eval.evaluator import EvalBatch

    users = torch.arange(min(5, split.num_users))
    return EvalBatch(users, torch.zeros(len(users), 1, dtype=torch.long), torch.ones(len(users), dtype=torch.long),
                     split.num_items)


def test_parameter_counts_full_vs_cp_vs_static(tiny_split, tmp_path):
    p = _feature_files(tmp_path, tiny_split.num_items)
    kw = {"modalities": f"img={p['img']}", "pca_dim": 0, "fusion_dims": "8,4", "meta_dim": 3, "cp_rank": 2,
          "meta_hidden": 5}
    n = {f: sum(q.numel() for q in build_method("metammf", tiny_split, {**kw, "fusion": f}).fusion.parameters())
         for f in ("full", "cp", "static")}
    static = 10 * 8 + 8 * 4
    assert n["static"] == static
    assert n["full"] == static * (1 + 3)  # + T: s_dim x d_in x d_out per layer
    assert n["cp"] == static + 2 * (10 + 8 + 3) + 2 * (8 + 4 + 3)  # + R (d_in + d_out + s_dim) per layer


def test_user_feature_errors_name_the_file(tiny_split, tmp_path):
    assert_feature_file_errors(
        tmp_path, tiny_split.num_items,
        lambda mods, dims: build_method("metammf", tiny_split,
                                        {"modalities": mods, **({"modality_dims": dims} if dims else {})}))


def test_config_errors():
    with pytest.raises(ConfigError, match="fusion must be one of"):
        build_method("metammf", None, {"fusion": "tucker"})
    with pytest.raises(ConfigError, match="cp_rank"):
        build_method("metammf", None, {"cp_rank": 0})


# -- the recipe, --quick, on MovieLens-100K ------------------------------------------------------------------------
def test_quick_recipe_loss_falls_and_beats_most_popular(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes"))
    import metammf as recipe

    out = tmp_path / "run"
    assert recipe.main(["--quick", "--out", str(out), "--cpu", "--protocol", "random"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["split"]["protocol"] == "random(0.1,0.1,seed=0)"  # the paper's protocol (issue 21)
    pop = res["test"]["pop"]["ndcg@10"]["mean"]
    for label in ("metammf-full", "metammf-cp", "metammf-static"):
        run = res["runs"][label][0]
        assert run["test"]["ndcg@10"] > pop, label
    for label, losses in res["train_loss_curves"].items():
        if label.startswith("metammf"):
            assert losses[0][-1] < losses[0][0], label
    assert res["speed"]["full_over_cp"] > 0 and len(res["rank_sweep"]) >= 2
    for name in ("results.md", "curves.png", "rank_sweep.png", "rank_sweep.md"):
        assert (out / name).stat().st_size > 100, name
