"""`make demo` / `genir demo`: what the toolkit is for, on MovieLens-100K in a few CPU minutes.

1. Build a semantic-ID index dir (residual k-means over MiniLM embeddings of the titles: every movie becomes a
   short tuple of codes), and show its statistics (`genir index info`).
2. Train a small TIGER-style generator on it, SASRec and MostPopular (leave-one-out, full ranking).
3. For a few users, print the generator's constrained-beam-search recommendations (titles with each movie's code
   tuple: only IDs that exist can come out, the history is excluded inside the search) beside SASRec's.
4. Print the test metrics table and the demo's own wall time.

Everything is written under ``runs/demo/`` (``--out``), so the CLI can be pointed at it afterwards
(``genir retrieve --index runs/demo/index --user 196``). Small settings, one seed: the recipes
(``recipes/mmgrec.py``, ``recipes/baselines.py``) hold the tuned three-seed tables."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genir.data import Split, leave_one_out, load_dataset
from genir.eval import FullRankingEvaluator
from genir.eval.report import print_metrics
from genir.methods import Recommender
from genir.runs import RunSpec, train_run
from genir.training import TrainerConfig

DEMO_EPOCHS = {"pop": 0, "sasrec": 10, "tiger": 10}
QUICK_EPOCHS = {"pop": 0, "sasrec": 1, "tiger": 1}
TIGER_DEMO = {"d_model": 64, "num_heads": 2, "d_ff": 128, "num_encoder_layers": 2, "num_decoder_layers": 2,
              "max_history": 20, "beam_width": 20}


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


def run_demo(quick: bool = False, seed: int = 2020, out: str | Path = "runs/demo") -> dict:
    from genir.cli_index import format_info
    from genir.index import build_index, index_info, load_index
    from genir.methods import get_method

    t0 = time.perf_counter()
    out = Path(out)
    split = leave_one_out(load_dataset("ml-100k"))
    ds = split.dataset
    print(f"MovieLens-100K: {split.num_users} users, {split.num_items} movies, {ds.num_interactions} ratings; "
          "leave-one-out by time, full ranking over all movies\n")

    print("=== 1. semantic IDs: every movie becomes a tuple of codes (genir index build) ===")
    spec = Path(__file__).resolve().parents[1] / "tokenizers" / "rq_kmeans.yaml"
    index_dir = build_index(ds, spec, out / "index", progress=not quick, overwrite=True)
    print(format_info(index_info(index_dir)))
    table = load_index(index_dir).table

    epochs = QUICK_EPOCHS if quick else DEMO_EPOCHS
    rows, models = {}, {}
    print("\n=== 2. training (one seed, small settings) ===")
    for name, n in epochs.items():
        method = {"index": str(index_dir), **TIGER_DEMO} if name == "tiger" else {}
        settings = {"epochs": max(1, n), "seed": seed, "progress": False,
                    "output_dir": str(index_dir / "model" if name == "tiger" else out / name)}
        if name == "tiger":
            settings["eval_every"] = 5
        cfg = TrainerConfig.for_method(get_method(name)[1], settings)
        t = time.perf_counter()
        model, result, res = train_run(RunSpec(model=name), method, cfg, split=split)
        models[name] = model
        rows[name] = res["test"]
        print(f"trained {name:7s} in {time.perf_counter() - t:5.1f}s (best epoch {result.best_epoch}, "
              f"valid ndcg@10 {result.best_valid.get('ndcg@10', 0):.4f})")

    rng = np.random.default_rng(seed)
    users = sorted(rng.choice(split.num_users, size=2 if quick else 3, replace=False).tolist())
    print("\n=== 3. recommendations for the next movie ('<-' marks the real one) ===")
    print("TIGER decodes code tuples with a constrained beam search: every tuple is a real movie, the user's "
          "history is excluded inside the search. SASRec scores every movie.")
    show_side_by_side(models["tiger"], models["sasrec"], split, users, table.codes)
    print("\n=== 4. test metrics (full ranking, leave-one-out, one seed; recipes/ hold three-seed tables) ===")
    print_metrics(rows)
    print(f"\ntry: genir retrieve --index {index_dir} --user {ds.user_ids[users[0]]} -k 10")
    print(f"     genir index info {index_dir}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f}s")
    return rows


def show_side_by_side(generator: Recommender, other: Recommender, split: Split, users: list[int], codes,
                      k: int = 10, last: int = 5) -> None:
    """Each user's last movies, then the generator's top-k (with code tuples) beside ``other``'s top-k."""
    ds = split.dataset
    histories = split.histories("test")
    targets = split.target_matrix("test")
    gen = generator.recommend([histories[u].tolist() for u in users], k=k, users=users)
    ref = other.recommend([histories[u].tolist() for u in users], k=k, users=users)
    width = 44
    for row, u in enumerate(users):
        hist = histories[u]
        held_out = set(targets[u].indices.tolist())
        print(f"\nuser {ds.user_ids[u]}: last {min(last, len(hist))} of {len(hist)} movies: "
              + "; ".join(f"{ds.title(i)}" for i in hist[-last:]))
        print(f"  {'TIGER (code tuple)':<{width + 16}}  SASRec")
        for rank in range(k):
            left = right = ""
            if rank < len(gen[row]):
                i = gen[row][rank][0]
                mark = " <-" if i in held_out else ""
                left = f"{ds.title(i)[:width]}{mark}"
                left = f"{left:<{width + 3}} {tuple(int(c) for c in codes[i])!s:<12}"
            if rank < len(ref[row]):
                i = ref[row][rank][0]
                right = f"{ds.title(i)[:width]}" + (" <-" if i in held_out else "")
            print(f"  {rank + 1:2d}. {left:<{width + 16}} {right}")
