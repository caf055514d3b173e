"""Reference baselines on MovieLens-100K: MostPopular, BPR-MF, LightGCN and SASRec, 3 seeds each.

    python recipes/baselines.py                      # full run (leave-one-out, seeds 2020 2021 2022)
    python recipes/baselines.py --split temporal     # global temporal split instead
    python recipes/baselines.py --quick              # a CPU-minutes smoke run (used by the tests)

Writes ``runs/baselines/<split>-<time>/``: ``results.json`` (per seed and mean +- std, timings, environment,
command), ``results.md`` (the table), ``curves.png`` (validation NDCG@10 and training loss per epoch). Early stopping and model
selection use the validation split only; test metrics are full ranking with the history masked.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from genir.data import SPLIT_PROTOCOLS, load_dataset, make_split
from genir.experiment import Arm, run_arms, write_report

METHODS = ("pop", "bpr", "lightgcn", "sasrec")
# Settings chosen on the validation split by recipes/tune_baselines.py (benchmarks/results/tuning-baselines.json,
# one seed, early stopping on valid NDCG@10); everything else is the method's default. Other recipes import
# these so that every table's baselines are tuned the same way.
TUNED = {
    "pop": {},
    "bpr": {"lr": 1e-2, "weight_decay": 1e-5},
    "lightgcn": {"lr": 1e-2, "n_layers": 2, "reg_weight": 1e-5},
    "sasrec": {"lr": 2e-3, "dropout": 0.5, "max_seq_length": 50},
}
QUICK = {"epochs": 2, "patience": 1}


def baseline_arms(methods=METHODS, quick: bool = False) -> list[Arm]:
    """The tuned baselines as experiment arms (``quick``: 2 epochs)."""
    return [Arm(name, name, {**TUNED[name], **(QUICK if quick else {})}) for name in methods]


def run(methods, seeds, split_name: str, quick: bool, out: Path, cpu: bool) -> dict:
    split = make_split(load_dataset("ml-100k"), split_name)
    exp = run_arms(baseline_arms(methods, quick), seeds, split, common={"progress": False, "cpu": cpu},
                   log=lambda s: print(s, flush=True))
    return write_report(exp, out, title="MovieLens-100K baselines", recipe="baselines", quick=quick,
                        extra={"tuned_settings": TUNED})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", default="2020,2021,2022")
    p.add_argument("--protocol", "--split", dest="split", default="loo", choices=SPLIT_PROTOCOLS, help="split protocol: leave-one-out by time (RecBole's; default), a global temporal cut, or random "
                   "80/10/10 per user (MMRec's, the multimodal papers' own)")
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
