"""Reference baselines on MovieLens-100K: MostPopular, BPR-MF, LightGCN and SASRec, 3 seeds each.

    python recipes/baselines.py                      # full run (leave-one-out, seeds 2020 2021 2022)
    python recipes/baselines.py --split temporal     # global temporal split instead
    python recipes/baselines.py --quick              # a CPU-minutes smoke run (used by the tests)

Writes ``runs/baselines/<split>-<time>/``: ``results.json`` (per seed and mean +- std, timings, environment,
command), ``results.md`` (the table), ``curves.png`` (validation NDCG@10 per epoch). Early stopping and model
selection use the validation split only; test metrics are full ranking with the history masked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genir.data import load_dataset, make_split
from genir.eval import aggregate, markdown_table
from genir.methods import get_method
from genir.runs import RunSpec, environment, train_run
from genir.training import TrainerConfig

METHODS = ("pop", "bpr", "lightgcn", "sasrec")
COLUMNS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)] + ["mrr@10"]
# Settings chosen on the validation split by recipes/tune_baselines.py (benchmarks/results/tuning-baselines.json,
# one seed, early stopping on valid NDCG@10); everything else is the method's default.
TUNED = {
    "pop": {},
    "bpr": {"lr": 1e-2, "weight_decay": 1e-5},
    "lightgcn": {"lr": 1e-2, "n_layers": 2, "reg_weight": 1e-5},
    "sasrec": {"lr": 2e-3, "dropout": 0.5, "max_seq_length": 50},
}
QUICK = {"epochs": 2, "patience": 1}


def run(methods, seeds, split_name: str, quick: bool, out: Path, cpu: bool) -> dict:
    split = make_split(load_dataset("ml-100k"), split_name)
    per_method: dict[str, list[dict]] = {}
    curves: dict[str, list[list[float]]] = {}
    for name in methods:
        for seed in seeds:
            defaults = get_method(name)[1].trainer_defaults
            settings = {**defaults, **TUNED[name], "seed": seed, "progress": False, "cpu": cpu}
            if quick:
                settings.update(QUICK)
            method = {k: v for k, v in settings.items() if k in get_method(name)[0].__dataclass_fields__}
            trainer = TrainerConfig.from_dict({k: v for k, v in settings.items() if k not in method})
            t = time.perf_counter()
            _, result, res = train_run(RunSpec(model=name, split=split_name), method, trainer, split=split)
            per_method.setdefault(name, []).append(res)
            curves.setdefault(name, []).append([h.get("valid_ndcg@10", float("nan")) for h in result.history])
            print(f"{name:9s} seed {seed}: best epoch {result.best_epoch:3d}  test ndcg@10 "
                  f"{res['test']['ndcg@10']:.4f}  recall@10 {res['test']['recall@10']:.4f}  "
                  f"({time.perf_counter() - t:.0f}s, {res['seconds_per_epoch']:.2f}s/epoch)", flush=True)

    table_rows = {name: aggregate([r["test"] for r in runs]) for name, runs in per_method.items()}
    table = markdown_table(table_rows, COLUMNS)
    timing = {name: aggregate([{k: r[k] for k in ("seconds_per_epoch", "train_seconds", "total_seconds",
                                                   "time_to_best", "best_epoch")} for r in runs])
              for name, runs in per_method.items()}
    results = {
        "recipe": "baselines", "dataset": "ml-100k", "split": split.describe(), "seeds": list(seeds),
        "quick": quick, "command": " ".join([Path(sys.executable).name] + sys.argv),
        "environment": environment(), "test": table_rows, "timing": timing, "runs": per_method,
        "tuned_settings": TUNED,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    header = (f"MovieLens-100K, {split.protocol}, full ranking, test split, mean ± std over seeds "
              f"{list(seeds)}\n\n")
    (out / "results.md").write_text(header + table + "\n")

    fig, ax = plt.subplots(figsize=(7, 4))
    for color, (name, runs) in zip(plt.cm.tab10.colors, curves.items()):
        for i, c in enumerate(runs):
            ax.plot(range(1, len(c) + 1), c, color=color, alpha=0.8, label=name if i == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"ml-100k baselines ({split.protocol})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    plt.close(fig)
    print("\n" + header + table)
    print(f"\nwrote {out}/results.json, results.md, curves.png")
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", default="2020,2021,2022")
    p.add_argument("--split", default="loo", choices=["loo", "temporal"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cpu", action="store_true", help="force CPU even if a GPU is visible")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {METHODS}")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out or f"runs/baselines/{args.split}{'-quick' if args.quick else ''}-{time.strftime('%Y%m%d-%H%M%S')}")
    run(methods, seeds, args.split, args.quick, out, args.cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
