"""Interpretability and controllability of a trained AD-DRL model.

* :func:`explain_users`: for a few users, the top-k items with each attribute factor's share of the score (the
  score is a sum of per-factor terms, so the shares are exact) and the modality weights of each factor.
* :func:`controllability`: raise one factor's weight and measure how the top-k moves toward the user's
  favourite values of that attribute (favourite genres: the most frequent ones in the user's history).
* :func:`favourite_share`: the measurement itself, on plain arrays (tested on hand-made cases).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from genir.data.split import Split
from genir.errors import ConfigError
from genir.eval.evaluator import FullRankingEvaluator


@contextmanager
def factor_weights(model, weights: dict[str, float]):
    """Temporarily set inference weights of named factors (the others stay as they are)."""
    old = model.factor_weights.clone()
    try:
        for name, w in weights.items():
            model.factor_weights[factor_index(model, name)] = float(w)
        yield model
    finally:
        model.factor_weights.copy_(old)


def factor_index(model, name: str) -> int:
    if name not in model.factor_names:
        raise ConfigError(f"unknown factor {name!r}; this model's factors: {model.factor_names}")
    return model.factor_names.index(name)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def top_k(model, split: Split, users: np.ndarray, k: int = 10, stage: str = "test",
          batch_size: int = 256) -> np.ndarray:
    """(len(users), k) item ids ranked by the model, the items known before ``stage`` masked."""
    model.eval()
    model.prepare_eval()
    seen = split.seen_matrix(stage).tocsr()
    out = []
    for start in range(0, len(users), batch_size):
        chunk = np.asarray(users[start:start + batch_size])
        scores = model.factor_scores(torch.as_tensor(chunk, device=_device(model))).sum(-1).cpu()
        mask = torch.as_tensor(seen[chunk].toarray() > 0)
        scores[mask] = -torch.inf
        out.append(scores.topk(k, dim=1).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def user_profiles(split: Split, target: np.ndarray, stage: str = "test") -> np.ndarray:
    """(num_users, C): summed attribute distributions of each user's known items before ``stage``."""
    return (split.seen_matrix(stage).tocsr() > 0).astype(np.float32) @ target


def favourite_classes(profiles: np.ndarray, n: int) -> np.ndarray:
    """(U, C) bool: each user's ``n`` most frequent classes (those with mass only; ties by class order)."""
    order = np.argsort(-profiles, axis=1, kind="stable")[:, :n]
    fav = np.zeros(profiles.shape, dtype=bool)
    rows = np.arange(len(profiles))[:, None]
    fav[rows, order] = True
    return fav & (profiles > 0)


def favourite_share(top: np.ndarray, favourite: np.ndarray, item_classes: np.ndarray) -> float:
    """Mean over users of the fraction of their top-k items that have at least one favourite class.

    ``top`` (U, k) item ids; ``favourite`` (U, C) bool per user; ``item_classes`` (N, C) bool per item."""
    if top.size == 0:
        return float("nan")
    hits = (item_classes[top] & favourite[:, None, :]).any(-1)  # (U, k)
    return float(hits.mean())


def controllability(model, split: Split, factor: str, weights=(0.0, 0.5, 1.0, 2.0, 4.0, 8.0), *, k: int = 10,
                    stage: str = "test", favourites: int | None = None, with_metrics: bool = True) -> dict:
    """Share of top-k items matching the user's favourite values of ``factor``'s attribute, for each weight of
    that factor (the other factors at 1). ``favourites``: how many favourite classes per user (default 3 for
    multi-valued attributes such as genres, 1 for buckets). ``with_metrics`` adds NDCG@k / Recall@k of
    ``stage`` at each weight (the accuracy cost of steering; nothing is selected on it)."""
    attr = model.attributes[factor_index(model, factor)]
    n_fav = favourites or (3 if attr.multi_valued else 1)
    users = split.eval_users(stage)
    fav = favourite_classes(user_profiles(split, attr.target, stage), n_fav)[users]
    item_classes = attr.target > 0
    evaluator = FullRankingEvaluator(split, stage) if with_metrics else None
    dev = _device(model)
    curve = []
    for w in weights:
        with factor_weights(model, {factor: w}):
            share = favourite_share(top_k(model, split, users, k, stage), fav, item_classes)
            row = {"weight": float(w), "favourite_share": share}
            if evaluator is not None:
                m = evaluator.evaluate(lambda b: model.full_scores(b.to(dev)))
                row.update({f"ndcg@{k}": m[f"ndcg@{k}"], f"recall@{k}": m[f"recall@{k}"]})
            curve.append(row)
    # reference level: the share over the whole catalogue (a random top-k, history not excluded)
    base = float((item_classes[None, :, :] & fav[:, None, :]).any(-1).mean()) if len(users) else float("nan")
    return {"factor": factor, "favourites_per_user": n_fav, "k": k, "stage": stage, "users": len(users),
            "random_share": base, "curve": curve}


@torch.no_grad()
def explain_users(model, split: Split, users, k: int = 10, stage: str = "test") -> list[dict]:
    """Per user: top-k items with score, each factor's contribution and share, and each factor's modality
    weights; plus the user's favourite genres (when genre is a factor) for reading the list."""
    users = np.asarray(users, dtype=np.int64)
    top = top_k(model, split, users, k, stage)
    terms = model.factor_scores(torch.as_tensor(users, device=_device(model))).cpu().numpy()  # (B, N, F)
    fusion = model.fusion_weights().cpu().numpy()  # (N, F, M)
    items = split.dataset.items
    names = model.factor_names
    out = []
    for r, u in enumerate(users):
        recs = []
        for i in top[r]:
            t = terms[r, i]
            row = {"item": int(i), "title": split.dataset.title(int(i)), "score": float(t.sum()),
                   "contribution": {f: float(v) for f, v in zip(names, t)},
                   "share": {f: float(v / t.sum()) for f, v in zip(names, t)},
                   "modality_weights": {f: {m: float(fusion[i, j, q]) for q, m in enumerate(model.modality_names)}
                                        for j, f in enumerate(names)}}
            for col in ("year", "genres"):
                if col in items.columns:
                    v = items[col].iat[int(i)]
                    row[col] = list(v) if col == "genres" else (None if pd.isna(v) else int(v))
            recs.append(row)
        entry = {"user": int(u), "external_id": str(split.dataset.user_ids[u]), "top": recs}
        if "genre" in names:
            attr = model.attributes[names.index("genre")]
            prof = user_profiles(split, attr.target, stage)[u]
            entry["favourite_genres"] = [attr.classes[j] for j in np.argsort(-prof, kind="stable")[:3]
                                         if prof[j] > 0]
        out.append(entry)
    return out


def explanation_markdown(explained: list[dict], factor_names: list[str]) -> str:
    """A readable table per user: rank, title, year, genres, score and each factor's share."""
    lines = []
    for e in explained:
        fav = f" (favourite genres: {', '.join(e['favourite_genres'])})" if e.get("favourite_genres") else ""
        lines += [f"User {e['external_id']}{fav}", "",
                  "| # | title | year | genres | score | " + " | ".join(f"{f} share" for f in factor_names) + " |",
                  "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in factor_names) + " |"]
        for rank, r in enumerate(e["top"], 1):
            shares = " | ".join(f"{100 * r['share'][f]:.0f}%" for f in factor_names)
            lines.append(f"| {rank} | {r['title']} | {r.get('year', '')} | {', '.join(r.get('genres', []))} | "
                         f"{r['score']:.3f} | {shares} |")
        lines.append("")
    return "\n".join(lines)
