"""`make demo` / `genir demo`: train MostPopular, BPR-MF and SASRec on MovieLens-100K (leave-one-out) in a few CPU
minutes, show a few users' last movies and their top-10 recommendations with titles, then the test metrics."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from genir.data import Split, leave_one_out, load_dataset
from genir.eval import FullRankingEvaluator
from genir.methods import Recommender
from genir.runs import RunSpec, train_run
from genir.training import TrainerConfig

DEMO_EPOCHS = {"pop": 0, "bpr": 40, "sasrec": 30}
QUICK_EPOCHS = {"pop": 0, "bpr": 3, "sasrec": 2}


def show_recommendations(model: Recommender, split: Split, users: list[int], k: int = 10, stage: str = "test",
                         last: int = 5) -> None:
    """Print each user's last movies and top-k recommendations (history masked), marking the held-out item."""
    ds = split.dataset
    device = next(iter(model.buffers()), torch.empty(0)).device if not list(model.parameters()) \
        else next(model.parameters()).device
    model.eval()
    model.prepare_eval()
    ev = FullRankingEvaluator(split, stage)
    items, scores = ev.recommend(lambda b: model.full_scores(b.to(device)), np.asarray(users), k)
    targets = split.target_matrix(stage)
    for row, u in enumerate(users):
        hist = ev.histories[u]
        held_out = set(targets[u].indices.tolist())
        print(f"\nuser {ds.user_ids[u]}: last {min(last, len(hist))} of {len(hist)} movies")
        for i in hist[-last:]:
            print(f"    {ds.title(i)} ({_year(ds, i)})")
        print(f"  top-{k} recommendations:")
        for rank, (i, s) in enumerate(zip(items[row], scores[row]), start=1):
            mark = "  <- held-out next movie" if i in held_out else ""
            print(f"   {rank:2d}. {ds.title(i)} ({_year(ds, i)})  score {s:.3f}{mark}")


def _year(ds, i) -> str:
    y = ds.items["year"].iat[i] if "year" in ds.items.columns else None
    return "?" if y is None or pd.isna(y) else str(y)


def run_demo(quick: bool = False, seed: int = 2020) -> dict:
    from genir.cli import _print_metrics

    t0 = time.perf_counter()
    split = leave_one_out(load_dataset("ml-100k"))
    print(f"MovieLens-100K: {split.num_users} users, {split.num_items} movies, "
          f"{split.dataset.num_interactions} ratings; leave-one-out by time, full ranking over all movies")
    epochs = QUICK_EPOCHS if quick else DEMO_EPOCHS
    rows, models = {}, {}
    for name, n in epochs.items():
        from genir.methods import get_method

        defaults = get_method(name)[1].trainer_defaults
        cfg = TrainerConfig.from_dict({**defaults, "epochs": max(1, n), "seed": seed, "progress": False})
        t = time.perf_counter()
        model, result, res = train_run(RunSpec(model=name), {}, cfg, split=split)
        models[name] = model
        rows[name] = res["test"]
        print(f"trained {name:7s} in {time.perf_counter() - t:5.1f}s (best epoch {result.best_epoch}, "
              f"valid ndcg@10 {result.best_valid.get('ndcg@10', 0):.4f})")
    rng = np.random.default_rng(seed)
    users = sorted(rng.choice(split.num_users, size=3, replace=False).tolist())
    print("\n=== SASRec recommendations (next movie after each user's history; '<-' marks the real next one) ===")
    show_recommendations(models["sasrec"], split, users)
    print("\n=== test metrics (full ranking, leave-one-out, one seed; see recipes/baselines.py for 3 seeds) ===")
    _print_metrics(rows)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s")
    return rows
