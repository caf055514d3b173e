"""AD-DRL: attributes, losses, per-factor scores, user feature files, controllability, and the --quick recipe."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genir.data import Dataset, leave_one_out
from genir.errors import ConfigError, FeatureError
from genir.methods import build_method
from genir.methods.addrl.attributes import item_attributes
from genir.methods.addrl.explain import (
    controllability,
    explain_users,
    factor_weights,
    favourite_classes,
    favourite_share,
    top_k,
)
from tests.methods.feature_files import assert_feature_file_errors

ROOT = Path(__file__).resolve().parents[2]
GENRES = ["Action", "Comedy", "Drama"]


def _split(n_users=24, n_items=30, per_user=10, seed=0):
    """Users who each like one genre (80 % of their items), items with a genre and a year."""
    rng = np.random.default_rng(seed)
    genre_of = np.arange(n_items) % 3
    rows, t = [], 0
    for u in range(n_users):
        g = u % 3
        liked = rng.choice(np.flatnonzero(genre_of == g), size=8, replace=False)
        other = rng.choice(np.flatnonzero(genre_of != g), size=per_user - 8, replace=False)
        for i in rng.permutation(np.concatenate([liked, other])):
            t += 1
            rows.append((f"u{u}", f"i{i}", t, float(rng.integers(1, 6))))
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    items = pd.DataFrame({"item": [f"i{i}" for i in range(n_items)], "title": [f"movie {i}" for i in range(n_items)],
                          "year": [1950 + 2 * i for i in range(n_items)],
                          "genres": [[GENRES[g]] + (["Drama"] if i % 7 == 0 else []) for i, g in enumerate(genre_of)]})
    return leave_one_out(Dataset.from_frames("tiny", inter, items=items))


def _model(split, tmp_path, **cfg):
    feats = tmp_path / "feat.npy"
    np.save(feats, np.random.default_rng(1).normal(size=(split.num_items, 6)).astype(np.float32))
    config = {"modalities": f"img={feats}", "factor_dim": 4, **cfg}
    return build_method("addrl", split, config, seed=0)


def test_attributes_from_side_information_and_training_counts():
    split = _split()
    genre, year, pop, rating = item_attributes(split, "genre,year,popularity,rating", year_buckets=3,
                                               popularity_buckets=4)
    assert genre.classes == GENRES and genre.multi_valued
    assert np.allclose(genre.target.sum(1), 1.0)
    i0 = split.dataset.item_index("i0")
    assert genre.target[i0].tolist() == [0.5, 0.0, 0.5]  # item i0: Action + Drama, uniform over its genres
    assert year.num_classes == 3 and np.allclose(year.target.sum(1), 1.0)
    years = split.dataset.items["year"].to_numpy(dtype=float)
    assert year.target[years.argmin()].argmax() == 0 and year.target[years.argmax()].argmax() == 2
    counts = np.bincount(split.train["item"], minlength=split.num_items)
    most, least = counts.argmax(), counts.argmin()
    assert pop.target[most].argmax() > pop.target[least].argmax()  # from training counts
    assert rating.target.shape[0] == split.num_items
    with pytest.raises(ConfigError, match="unknown attribute 'brand'"):
        item_attributes(split, "genre,brand")


def test_scores_are_sums_of_factor_terms_and_weights_steer(tmp_path):
    split = _split()
    model = _model(split, tmp_path)
    assert model.modality_names == ["id", "img"] and model.factor_names == ["genre", "year", "popularity"]
    model.eval()
    users = torch.arange(4)
    terms = model.factor_scores(users)
    assert terms.shape == (4, split.num_items, 3) and bool((terms > 0).all())
    from genir.eval.evaluator import EvalBatch

    batch = EvalBatch(users, torch.zeros(4, 1, dtype=torch.long), torch.ones(4, dtype=torch.long), split.num_items)
    assert torch.allclose(model.full_scores(batch), terms.sum(-1))
    with factor_weights(model, {"genre": 0.0, "popularity": 0.0}):
        assert torch.allclose(model.full_scores(batch), terms[..., 1])
    assert model.factor_weights.tolist() == [1.0, 1.0, 1.0]  # restored
    fw = model.fusion_weights()
    assert fw.shape == (split.num_items, 3, 2) and torch.allclose(fw.sum(-1), torch.ones(split.num_items, 3))


def test_losses_fall_when_training_auxiliary_terms(tmp_path):
    split = _split()
    model = _model(split, tmp_path, decay_f=1.0, decay_n=1.0, decay_a=1.0, dropout=0.0)
    users = torch.tensor(split.train["user"].to_numpy())
    items = torch.tensor(split.train["item"].to_numpy())
    ids = torch.arange(split.num_items)

    def parts():
        chunks, fused, _ = model.item_factors()
        w = torch.full((len(ids),), 1.0 / len(ids))
        return (model.intra_loss(chunks).mean().item(), model.inter_loss(chunks).mean().item(),
                model.attribute_loss(fused, ids, w).item())

    before = parts()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(150):
        loss = model.loss((users, items))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = parts()
    intra, inter, attr = zip(before, after)
    assert intra[1] < 0.5 * intra[0] and attr[1] < 0.5 * attr[0] and inter[1] < 0.85 * inter[0], (before, after)
    # the genre factor now predicts the genres: the head's top class is a true genre for most items
    with torch.no_grad():
        _, fused, _ = model.item_factors()
        pred = model.attribute_heads[0](fused[:, 0]).argmax(1).numpy()
    assert (model.attributes[0].target[np.arange(split.num_items), pred] > 0).mean() > 0.9


def test_user_feature_files_are_validated_with_the_file_named(tmp_path):
    split = _split()
    model = assert_feature_file_errors(
        tmp_path, split.num_items,
        lambda mods, dims: build_method("addrl", split, {"modalities": mods, **({"modality_dims": dims} if dims else {})}))
    assert model.config.modality_dims == "img=4"  # recorded, so a reload checks the width
    good = tmp_path / "good.npy"
    with pytest.raises(FeatureError, match="reserved"):
        build_method("addrl", split, {"modalities": f"id={good}"})


def test_favourite_share_on_a_hand_made_case():
    item_classes = np.array([[1, 0], [0, 1], [1, 1], [0, 1]], dtype=bool)  # 4 items, 2 genres
    favourite = np.array([[True, False], [False, True]])
    top = np.array([[0, 1], [3, 0]])
    # user 0: item 0 has genre 0 (hit), item 1 not; user 1: item 3 has genre 1 (hit), item 0 not
    assert favourite_share(top, favourite, item_classes) == 0.5
    assert favourite_share(np.array([[0, 2], [1, 2]]), favourite, item_classes) == 1.0
    fav = favourite_classes(np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]), 2)
    assert fav.tolist() == [[True, True, False], [False, False, True]]  # a class with no mass is no favourite


def test_controllability_on_a_trained_tiny_model_and_explanations(tmp_path):
    split = _split()
    model = _model(split, tmp_path, decay_a=1.0)
    users = torch.tensor(split.train["user"].to_numpy())
    items = torch.tensor(split.train["item"].to_numpy())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(100):
        loss = model.loss((users, items))
        opt.zero_grad()
        loss.backward()
        opt.step()
    res = controllability(model, split, "genre", weights=(0.0, 1.0, 8.0), k=5)
    share = [r["favourite_share"] for r in res["curve"]]
    assert share[2] > share[0] and share[2] >= share[1], share
    top = top_k(model, split, np.arange(3), k=5)
    seen = split.seen_matrix("test").tocsr()
    assert not any(seen[u, i] for u in range(3) for i in top[u])  # history masked
    ex = explain_users(model, split, [0, 1], k=5)
    assert [r["item"] for r in ex[0]["top"]] == top[0].tolist()
    for r in ex[0]["top"]:
        assert abs(sum(r["share"].values()) - 1.0) < 1e-5 and abs(sum(r["contribution"].values()) - r["score"]) < 1e-4
    assert ex[0]["favourite_genres"][0] == GENRES[0]  # user u0 likes genre 0


def test_quick_recipe_loss_falls_beats_most_popular_writes_control_and_explanations(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes"))
    import addrl as recipe

    out = tmp_path / "run"
    assert recipe.main(["--quick", "--seeds", "2020", "--out", str(out), "--cpu", "--protocol", "random"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["split"]["protocol"] == "random(0.1,0.1,seed=0)"  # the paper's protocol (issue 21)
    assert {"addrl", "pop", "bpr", "lightgcn"} <= set(res["test"])
    for run, losses in zip(res["runs"]["addrl"], res["train_loss_curves"]["addrl"]):
        assert len(losses) >= 2 and losses[-1] < losses[0]
        assert run["test"]["ndcg@10"] > res["test"]["pop"]["ndcg@10"]["mean"]
    # the quick epochs are too few for a steerable model (the factors disentangle later), so the direction of the curve
    # is checked on the tiny trained model above; here: a curve per arm and factor, with shares in [0, 1]
    control = json.loads((out / "controllability.json").read_text())
    assert set(control) == {"addrl", "addrl w/o disentangling losses"}
    for report in control.values():
        assert {"genre", "year", "popularity", "genre (top-1 favourite)"} == set(report)
        for r in report.values():
            assert len(r["share_mean"]) == len(r["weights"]) == len(r["ndcg@10_mean"]) == len(recipe.QUICK_WEIGHTS)
            assert all(0.0 <= v <= 1.0 for v in r["share_mean"]) and 0.0 < r["random_share"] < 1.0
    for name in ("curves.png", "controllability.png"):
        assert (out / name).stat().st_size > 10_000
    assert "share" in (out / "explanations.md").read_text()
    assert "shift 1->2" in (out / "controllability.md").read_text() and "shift 1->2" in (out / "results.md").read_text()
