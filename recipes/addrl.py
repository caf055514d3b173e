"""AD-DRL on MovieLens-100K: the tuned model, an ablation, MostPopular, BPR and LightGCN over 3 seeds, then
interpretability (per-factor score shares of a few users' top-10) and controllability (boosting one attribute
factor moves the top-10 toward the user's favourite values of that attribute).

    python recipes/addrl.py                 # full run (leave-one-out, seeds 2020 2021 2022)
    python recipes/addrl.py --quick         # a CPU-minutes smoke run (used by the tests)

Writes ``runs/addrl/<split>-<time>/``: ``results.json``, ``results.md``, ``curves.png`` (genir.experiment), and
``controllability.json`` / ``controllability.md`` / ``controllability.png`` (favourite-attribute share of the
top-10 and NDCG@10 vs the factor's weight, mean +- std over the seeds' models; the table is also appended to
results.md), ``explanations.json`` / ``explanations.md`` (top-10 of a few test users with each factor's share of
the score). Model selection uses the validation split only; the
controllability curve is measured on the test-stage top-10 after training and selects nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import baseline_arms

from genir.atomic import atomic_write
from genir.data import SPLIT_PROTOCOLS, load_dataset, make_split
from genir.experiment import Arm, run_arms, write_report
from genir.methods.addrl.explain import controllability, explain_users, explanation_markdown

# chosen on the validation split (the sweep is in genir/methods/addrl/README.md); also the method's defaults
TUNED = {"lr": 1e-3, "batch_size": 2048, "score_scale": 5.0, "decay_f": 0.1, "decay_n": 0.1, "decay_a": 0.1}
ABLATION = "addrl w/o disentangling losses"
ARMS = {
    "addrl": {},
    ABLATION: {"decay_f": 0.0, "decay_n": 0.0, "decay_a": 0.0},
}
QUICK = {"epochs": 8, "patience": 3}  # enough for AD-DRL to pass MostPopular (3 epochs are not)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
QUICK_WEIGHTS = (0.0, 1.0, 2.0, 8.0)
EXPLAIN_USERS = 3


def addrl_arms(quick: bool = False, modalities: str | None = None) -> list[Arm]:
    extra = {"modalities": modalities} if modalities is not None else {}
    return [Arm(label, "addrl", {**TUNED, **s, **extra, **(QUICK if quick else {})}) for label, s in ARMS.items()]


def control_report(models: list, split, weights=WEIGHTS) -> dict:
    """Controllability curve of every factor (and of genre with the single favourite genre) for every model
    (seed), with mean and std over the models."""
    out = {}
    cases = [(f, f, None) for f in models[0].factor_names]
    if "genre" in models[0].factor_names:
        cases.append(("genre (top-1 favourite)", "genre", 1))
    for label, factor, n_fav in cases:
        same = next((e for e in out.values() if e["factor"] == factor), None)  # NDCG does not depend on n_fav
        runs = [controllability(m, split, factor, weights, favourites=n_fav, with_metrics=same is None)
                for m in models]
        entry = {"factor": factor, "weights": list(weights), "random_share": runs[0]["random_share"],
                 "favourites_per_user": runs[0]["favourites_per_user"]}
        values = np.asarray([[row["favourite_share"] for row in r["curve"]] for r in runs])
        entry["share_mean"], entry["share_std"] = values.mean(0).tolist(), values.std(0).tolist()
        entry["share_per_seed"] = values.tolist()
        if same is None:
            ndcg = np.asarray([[row["ndcg@10"] for row in r["curve"]] for r in runs])
            entry["ndcg@10_mean"], entry["ndcg@10_std"] = ndcg.mean(0).tolist(), ndcg.std(0).tolist()
        else:
            entry["ndcg@10_mean"], entry["ndcg@10_std"] = same["ndcg@10_mean"], same["ndcg@10_std"]
        entry["per_seed"] = runs
        out[label] = entry
    return out


def control_markdown(control: dict[str, dict]) -> str:
    """The controllability table: per arm and factor, the favourite share at weight 0, 1 (as trained) and 2, the
    largest share over the weights above 1 and where it is, and the shifts from weight 1, each mean +- std over
    the seeds (the std of a shift is over the per-seed differences); NDCG@10 at weight 1 and at that weight.
    The weights are a fixed grid; reading the largest share off the test-stage curve selects no model."""
    lines = [("| arm | factor | random | w=0 | w=1 | w=2 | shift 1->2 | best w>1 | share there | shift 1->best "
              "| NDCG@10 w=1 | NDCG@10 at best w |"),
             "|" + " --- |" * 12]

    def ms(v):
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    for arm, report in control.items():
        for label, r in report.items():
            w = list(r["weights"])
            seeds = np.asarray(r["share_per_seed"])  # (S, W)
            i0, i1, i2 = w.index(0.0), w.index(1.0), w.index(2.0)
            above = [j for j, x in enumerate(w) if x > 1]
            best = max(above, key=lambda j: r["share_mean"][j])
            nd = r["ndcg@10_mean"]
            lines.append(f"| {arm} | {label} | {r['random_share']:.3f} | {ms(seeds[:, i0])} | {ms(seeds[:, i1])} | "
                         f"{ms(seeds[:, i2])} | {ms(seeds[:, i2] - seeds[:, i1])} | {w[best]:g} | "
                         f"{ms(seeds[:, best])} | {ms(seeds[:, best] - seeds[:, i1])} | {nd[i1]:.4f} | "
                         f"{nd[best]:.4f} |")
    return "\n".join(lines) + "\n"


def plot_control(reports: dict[str, dict], path: Path) -> None:
    """Share of favourite-attribute items in the top-10 (dotted: a random top-10) and NDCG@10 vs the factor's
    weight; one line style per arm (solid: AD-DRL, dashed: without the disentangling losses), one colour per
    factor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 7))
    for n, (style, (arm, report)) in enumerate(zip(("-", "--", ":"), reports.items())):
        drawn = set()
        for color, (label, r) in zip(plt.cm.tab10.colors, report.items()):
            w = np.asarray(r["weights"])
            x = np.where(w > 0, w, w[w > 0].min() / 2)  # log axis: weight 0 drawn at half the smallest weight
            for ax, key in ((axes[0], "share"), (axes[1], "ndcg@10")):
                if key == "ndcg@10" and r["factor"] in drawn:
                    continue  # the same factor's NDCG curve is already drawn
                m, s = np.asarray(r[f"{key}_mean"]), np.asarray(r[f"{key}_std"])
                ax.plot(x, m, "o" + style, color=color, ms=3, label=f"{label} ({arm})" if key == "share" else None)
                ax.fill_between(x, m - s, m + s, color=color, alpha=0.12)
            drawn.add(r["factor"])
            if n == 0:
                axes[0].axhline(r["random_share"], color=color, lw=0.8, ls=":")
    axes[0].set_ylabel("share of top-10 with the user's favourite value")
    axes[0].set_title("controllability (dotted: random top-10)")
    axes[1].set_ylabel("test NDCG@10 (reported, not selected on)")
    axes[1].set_title("accuracy while steering")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("weight of the factor (others 1; leftmost point = 0)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=len(reports), loc="lower center", bbox_to_anchor=(0.5, 0.01))
    fig.suptitle("AD-DRL on MovieLens-100K: boosting one attribute factor (mean ± std over seeds)")
    rows = -(-len(labels) // len(reports))
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, wspace=0.22, bottom=0.1 + 0.03 * rows)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(seeds, split_name: str, quick: bool, out: Path, cpu: bool, modalities: str | None = None) -> dict:
    t0 = time.perf_counter()
    split = make_split(load_dataset("ml-100k"), split_name)
    arms = addrl_arms(quick, modalities) + baseline_arms(["pop", "bpr", "lightgcn"], quick)
    exp = run_arms(arms, seeds, split, common={"progress": False, "cpu": cpu}, keep_models=True,
                   log=lambda s: print(s, flush=True))
    models = exp.models["addrl"]
    control = {arm: control_report(exp.models[arm], split, QUICK_WEIGHTS if quick else WEIGHTS) for arm in ARMS}
    users = split.eval_users("test")[:EXPLAIN_USERS]
    explained = explain_users(models[0], split, users)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "controllability.json",
                 lambda fh: fh.write(json.dumps(control, indent=2).encode()))
    atomic_write(out / "explanations.json", lambda fh: fh.write(json.dumps(explained, indent=2).encode()))
    md = (f"Top-10 of the first test users (model of seed {seeds[0]}), each attribute factor's share of the "
          "score.\n\n" + explanation_markdown(explained, models[0].factor_names))
    atomic_write(out / "explanations.md", lambda fh: fh.write(md.encode()))
    plot_control(control, out / "controllability.png")
    control_md = ("Controllability: share of the test-stage top-10 (history masked) whose value of the attribute is "
                  "among the user's favourites (top-3 genres or the top bucket of the history), while one factor's "
                  "weight varies and the others stay 1; mean ± std over the seeds' models.\n\n"
                  + control_markdown(control))
    atomic_write(out / "controllability.md", lambda fh: fh.write(control_md.encode()))
    summary = {arm: {f: {"weight": r["weights"], "share": [round(v, 4) for v in r["share_mean"]],
                         "random_share": round(r["random_share"], 4)} for f, r in report.items()}
               for arm, report in control.items()}
    best = max(("bpr", "lightgcn"), key=lambda a: exp.test_table()[a]["ndcg@10"]["mean"])
    ours, bar = exp.test_table()["addrl"]["ndcg@10"], exp.test_table()[best]["ndcg@10"]
    verdict = (f"AD-DRL test NDCG@10 {ours['mean']:.4f} ± {ours['std']:.4f} vs the stronger baseline ({best}) "
               f"{bar['mean']:.4f} ± {bar['std']:.4f}: {'above' if ours['mean'] > bar['mean'] else 'NOT above'}.")
    res = write_report(exp, out, title="AD-DRL on MovieLens-100K", recipe="addrl", quick=quick,
                       extra={"tuned_settings": TUNED, "controllability": summary,
                              "wall_seconds": time.perf_counter() - t0}, notes=verdict + "\n\n" + control_md)
    print(md)
    print(json.dumps(summary, indent=1))
    print(f"wall time {time.perf_counter() - t0:.0f}s; wrote controllability.*, explanations.* in {out}")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="2020,2021,2022")
    p.add_argument("--protocol", "--split", dest="split", default="loo", choices=SPLIT_PROTOCOLS, help="split protocol: leave-one-out by time (RecBole's; default), a global temporal cut, or random "
                   "80/10/10 per user (MMRec's, the multimodal papers' own)")
    p.add_argument("--modalities", default=None, help="override the modality spec, e.g. text,kg,img=/p/img.npy")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cpu", action="store_true", help="force CPU even if a GPU is visible")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: on a shared machine more threads spin-wait on each other)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out or f"runs/addrl/{args.split}{'-quick' if args.quick else ''}-"
                           f"{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        run(seeds, args.split, args.quick, out, args.cpu, args.modalities)
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
