"""MIG-GT on MovieLens-100K: search each branch's receptive field K on validation, then 3 seeds of MIG-GT, its two
ablations (one shared K for every branch; no global transformer), MostPopular, BPR and LightGCN in one table.

    python recipes/miggt.py                 # full run (leave-one-out, seeds 2020 2021 2022)
    python recipes/miggt.py --quick         # a CPU-minute smoke run (used by the tests)
    python recipes/miggt.py --no-search     # skip the K search, use the config's default hops

1. K search (seed ``--search-seed`` only, a reduced budget of ``SEARCH_BUDGET`` epochs): one branch at a time
   (id, text, kg, cf) takes each K of ``K_GRID`` while the others stay at ``BASE_K``; K = -1 turns the branch
   off. Each branch keeps its best K by validation NDCG@10 (coordinate-wise choice, ties to the smaller K). The
   shared-K ablation gets the best K among all-branches-equal settings, searched the same way.
2. Final arms, every seed, full budget, early stopping on validation NDCG@10.

Writes ``runs/miggt/<time>/``: ``results.json`` (+ the search table and chosen Ks), ``results.md``,
``curves.png`` and ``k_search.png``. The test split is only read in step 2, for the reported table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import baseline_arms

from genir.data import SPLIT_PROTOCOLS, load_dataset, make_split
from genir.experiment import Arm, Experiment, run_arms, worker_pool, write_report
from genir.features.modalities import load_modalities

BRANCHES = ("id", "text", "kg", "cf")
K_GRID = (-1, 0, 1, 2, 3)  # -1: branch off
BASE_K = 2
SEARCH_BUDGET = {"epochs": 20, "patience": 5}  # the final runs: 80 epochs, patience 15 (trainer_defaults)
# settings over the method's defaults (which were tuned on ml-100k validation, README.md "Tuning"); the K
# search runs on top of these
MIGGT: dict = {}
BASELINES = ("pop", "bpr", "lightgcn")
QUICK = {"epochs": 5, "patience": 5}
QUICK_SEARCH = {"epochs": 2, "patience": 2}
QUICK_GRID = (1, 2)
QUICK_BRANCHES = ("text",)


_SPLIT = None  # (protocol, split) of this worker process


def _job(job: tuple[Arm, int, dict, str]) -> tuple[str, int, dict, list, list]:
    """One (arm, seed) run in a worker process (one torch thread; the split is loaded once per worker)."""
    global _SPLIT
    import torch

    torch.set_num_threads(1)
    arm, seed, common, protocol = job
    if _SPLIT is None or _SPLIT[0] != protocol:
        _SPLIT = (protocol, make_split(load_dataset("ml-100k"), protocol))
    exp = run_arms([arm], [seed], _SPLIT[1], common=common, log=lambda s: None)
    return arm.label, seed, exp.runs[arm.label][0], exp.curves[arm.label][0], exp.losses[arm.label][0]


def run_parallel(arms: list[Arm], seeds: list[int], split, common: dict, workers: int, log) -> Experiment:
    """``run_arms`` with the (arm, seed) runs spread over ``workers`` processes; the same Experiment, in the
    same order. On 2 cores two single-threaded runs side by side beat one run on two threads (the model's
    operations are small)."""
    if workers <= 1:
        return run_arms(arms, seeds, split, common=common, log=log)
    jobs = [(arm, seed, common, split.protocol) for arm in arms for seed in seeds]
    jobs.sort(key=lambda j: j[0].method in BASELINES)  # longest runs first: better packing on the workers
    done: dict[tuple[str, int], tuple] = {}
    with worker_pool(workers) as pool:
        for fut in as_completed([pool.submit(_job, j) for j in jobs]):
            label, seed, res, curve, loss = fut.result()
            done[(label, seed)] = (res, curve, loss)
            log(f"{label:24s} seed {seed}: best epoch {res['best_epoch']:3d}  valid ndcg@10 "
                f"{res['valid']['ndcg@10']:.4f}  ({res['total_seconds']:.0f}s, {res['seconds_per_epoch']:.2f}s/epoch)")
    exp = Experiment(split=split, seeds=list(seeds), arms=list(arms))
    for arm in arms:
        for seed in seeds:
            res, curve, loss = done[(arm.label, seed)]
            exp.runs.setdefault(arm.label, []).append(res)
            exp.curves.setdefault(arm.label, []).append(curve)
            exp.losses.setdefault(arm.label, []).append(loss)
    return exp


def hops_spec(hops: dict[str, int]) -> str:
    return ",".join(f"{b}={k}" for b, k in hops.items())


def k_search(split, branches, grid, seed, budget, common, workers, log) -> dict:
    """Validation NDCG@10 per (branch, K) with the other branches at BASE_K, and per shared K."""
    base = {b: BASE_K for b in branches}
    settings: dict[str, dict[str, int]] = {}  # hops spec -> hops, deduplicated
    for b in branches:
        for k in grid:
            h = {**base, b: k}
            settings[hops_spec(h)] = h
    for k in grid:
        if k >= 0:
            settings[hops_spec({b: k for b in branches})] = {b: k for b in branches}
    arms = [Arm(spec, "miggt", {**MIGGT, **budget, "hops": spec}) for spec in settings]
    exp = run_parallel(arms, [seed], split, common, workers, log)
    valid = {spec: exp.runs[spec][0]["valid"]["ndcg@10"] for spec in settings}
    best_epoch = {spec: exp.runs[spec][0]["best_epoch"] for spec in settings}
    table = {b: {k: valid[hops_spec({**base, b: k})] for k in grid} for b in branches}
    shared = {k: valid[hops_spec({b: k for b in branches})] for k in grid if k >= 0}
    chosen = {b: max(grid, key=lambda k: (table[b][k], -k)) for b in branches}
    shared_k = max(shared, key=lambda k: (shared[k], -k))
    return {"seed": seed, "budget": budget, "base_k": BASE_K, "grid": list(grid), "per_branch": table,
            "shared": shared, "chosen": chosen, "chosen_shared": shared_k, "best_epoch": best_epoch,
            "seconds": sum(exp.runs[s][0]["total_seconds"] for s in settings)}


def search_markdown(search: dict) -> str:
    grid = search["grid"]
    head = "| branch | " + " | ".join("off" if k < 0 else f"K={k}" for k in grid) + " | chosen |"
    lines = [head, "|---|" + "---|" * (len(grid) + 1)]
    for b, row in search["per_branch"].items():
        best = search["chosen"][b]
        cells = [f"**{row[k]:.4f}**" if k == best else f"{row[k]:.4f}" for k in grid]
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {'off' if best < 0 else best} |")
    cells = [(f"**{search['shared'][k]:.4f}**" if k == search["chosen_shared"] else f"{search['shared'][k]:.4f}")
             if k in search["shared"] else "–" for k in grid]
    lines.append("| all (shared K) | " + " | ".join(cells) + f" | {search['chosen_shared']} |")
    return "\n".join(lines)


def plot_search(search: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for b, row in search["per_branch"].items():
        ks = [k for k in search["grid"]]
        ax.plot(ks, [row[k] for k in ks], marker="o", label=f"{b} (others K={search['base_k']})")
    ks = sorted(search["shared"])
    ax.plot(ks, [search["shared"][k] for k in ks], marker="s", color="black", linestyle="--", label="shared K")
    ax.set_xticks(search["grid"], ["off" if k < 0 else str(k) for k in search["grid"]])
    ax.set_xlabel("receptive field K of the branch")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"MIG-GT K search (seed {search['seed']}, {search['budget']['epochs']} epochs max)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def verdict(test: dict, label: str = "miggt") -> str:
    best_base = max(("bpr", "lightgcn"), key=lambda m: test[m]["ndcg@10"]["mean"])
    ours, base = test[label]["ndcg@10"], test[best_base]["ndcg@10"]
    word = "beats" if ours["mean"] > base["mean"] else "does NOT beat"
    return (f"MIG-GT test NDCG@10 {ours['mean']:.4f} ± {ours['std']:.4f} {word} the stronger baseline "
            f"({best_base}: {base['mean']:.4f} ± {base['std']:.4f}); difference {ours['mean'] - base['mean']:+.4f}.")


def run(seeds, quick: bool, out: Path, cpu: bool, search_seed: int, search: bool, workers: int,
        protocol: str = "loo") -> dict:
    t0, load0 = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    log = lambda s: print(s, flush=True)
    split = make_split(load_dataset("ml-100k"), protocol)
    common = {"progress": False, "cpu": cpu}
    load_modalities(split, "text,kg,cf")  # build (or read the cache of) the features once, before the workers
    branches = QUICK_BRANCHES if quick else BRANCHES
    if search:
        res = k_search(split, branches, QUICK_GRID if quick else K_GRID, search_seed,
                       QUICK_SEARCH if quick else SEARCH_BUDGET, common, workers, log)
        chosen, shared_k = res["chosen"], res["chosen_shared"]
        log("\nK search (validation NDCG@10)\n" + search_markdown(res))
    else:
        res, chosen, shared_k = None, {}, BASE_K
    hops = hops_spec(chosen)
    budget = QUICK if quick else {}
    arms = baseline_arms(BASELINES, quick) + [
        Arm("miggt", "miggt", {**MIGGT, **budget, **({"hops": hops} if hops else {})}),
        Arm("miggt-shared-K", "miggt", {**MIGGT, **budget, "hops": "", "default_hops": shared_k}),
        Arm("miggt-no-SGT", "miggt", {**MIGGT, **budget, **({"hops": hops} if hops else {}),
                                      "use_transformer": False}),
    ]
    exp = run_parallel(arms, seeds, split, common, workers, log)
    wall = time.perf_counter() - t0
    notes = [verdict(exp.test_table()),
             f"MIG-GT hops: {hops or 'config default'}; shared-K ablation: K={shared_k} for every branch."]
    if res is not None:
        notes.append(f"K search on validation, seed {search_seed}, at most {res['budget']['epochs']} epochs "
                     f"(patience {res['budget']['patience']}), others at K={BASE_K}:\n\n" + search_markdown(res))
    notes.append(f"Recipe wall time {wall:.0f} s with {workers} worker(s) on {os.cpu_count()} CPU(s); load "
                 f"average at start {load0}, at the end {[round(x, 2) for x in os.getloadavg()]}.")
    out.mkdir(parents=True, exist_ok=True)
    if res is not None:
        plot_search(res, out / "k_search.png")
    return write_report(exp, out, title="MIG-GT on MovieLens-100K", recipe="miggt", quick=quick,
                        extra={"k_search": res, "chosen_hops": hops, "shared_k": shared_k, "wall_seconds": wall,
                               "load_average_at_start": load0, "workers": workers,
                               "miggt_settings": MIGGT, "verdict": notes[0],
                               "loss_curves": exp.losses, "valid_curves": exp.curves},
                        notes="\n\n".join(notes))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="2020,2021,2022")
    p.add_argument("--search-seed", type=int, default=2020)
    p.add_argument("--no-search", action="store_true", help="use the config's default hops, no K search")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cpu", action="store_true", help="force CPU even if a GPU is visible")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="runs in parallel, one torch thread each (1: in this process, torch's threads)")
    p.add_argument("--out", default=None)
    p.add_argument("--protocol", default="loo", choices=SPLIT_PROTOCOLS, help="split protocol: leave-one-out by time (RecBole's; default), a global temporal cut, or random "
                   "80/10/10 per user (MMRec's, the multimodal papers' own)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out or f"runs/miggt/{args.protocol}-{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}")
    run(seeds, args.quick, out, args.cpu, args.search_seed, not args.no_search, args.workers, args.protocol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
