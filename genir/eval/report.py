"""Aggregate per-seed results into mean +- std and render them as a markdown table."""

from __future__ import annotations

import numpy as np


def aggregate(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``[{"ndcg@10": .., ...} per seed]`` -> ``{"ndcg@10": {"mean": .., "std": .., "n": ..}}`` (sample std, ddof=1)."""
    keys = sorted({k for r in runs for k in r})
    out = {}
    for k in keys:
        v = np.array([r[k] for r in runs if k in r], dtype=float)
        out[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
    return out


def markdown_table(rows: dict[str, dict[str, dict[str, float]]], columns: list[str], digits: int = 4) -> str:
    """``rows``: method name -> aggregate(...) output. One row per method, one column per metric."""
    head = "| method | " + " | ".join(columns) + " |"
    sep = "|---|" + "---|" * len(columns)
    lines = [head, sep]
    for name, agg in rows.items():
        cells = []
        for c in columns:
            if c in agg:
                m = agg[c]
                cells.append(f"{m['mean']:.{digits}f} ± {m['std']:.{digits}f}" if m.get("n", 1) > 1
                             else f"{m['mean']:.{digits}f}")
            else:
                cells.append("–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_table(rows: dict[str, dict[str, float]], ks=(5, 10, 20),
                  metrics=("recall", "ndcg", "mrr", "hit")) -> str:
    """Markdown table of one run's metrics per row name (``{"sasrec (test)": {"ndcg@10": ...}}``); the columns
    present in no row are left out (a retrieval run reports hits@k and mrr@10)."""
    cols = [f"{m}@{k}" for m in metrics for k in ks]
    cols = [c for c in cols if any(c in v for v in rows.values())]
    if not cols:  # retrieval metrics
        cols = sorted({c for v in rows.values() for c in v}, key=lambda c: (c.split("@")[0], int(c.split("@")[1])))
    agg = {name: {c: {"mean": v[c], "std": 0.0, "n": 1} for c in cols if c in v} for name, v in rows.items()}
    return markdown_table(agg, cols)


def print_metrics(rows: dict[str, dict[str, float]], ks=(5, 10, 20)) -> None:
    print(metrics_table(rows, ks))
