"""Multi-round regularization for text-guided image editing (Zeng et al., arXiv 2401.08472) on real clip art with
exact programmatic edits, plus composed image retrieval with the generated images.

    python recipes/multiround.py                # default: 3 variants x 3 seeds, 32x32 clip art (36 min measured
                                                #   on 2 cores shared with other jobs)
    python recipes/multiround.py --quick        # a CPU-minute smoke run (used by the tests)
    python recipes/multiround.py --fashioniq DIR --category dress   # FashionIQ-format triplets instead
    python recipes/multiround.py --variants "without L_multi,scheduled lambda every batch" --set n_chains=16

Variants, same seeds and batches: the editor without L_multi, with L_multi at a constant lambda, and with the
decaying lambda(t). Measured on held-out source images (genir/methods/multiround/procedures.py): one- and
two-round PSNR / SSIM against the exact targets, their growth from round 1 to round 2, the fine-grained edits
(badge, border) apart, and Recall@1/10/50 of composed retrieval (generated image -> gallery of exact targets;
pixel features + FAISS inner product). Writes ``results.json``, ``results.md``, ``loss_curves.png`` and one
``grid-<variant>.png`` per variant (input, instructions, one-round, two-round in both orders, exact target).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write
from genir.data.catalogue import Catalogue
from genir.data.clipart import read_clipart
from genir.data.composed_retrieval import TripletEditTask, read_fashion200k, read_fashioniq
from genir.data.edit_tasks import ClipartEditTask
from genir.methods.multiround import (
    MultiRoundConfig,
    edit_metrics,
    identity_outputs,
    instruction_embeddings,
    retrieval_metrics,
    run_examples,
    train_editor,
)

VARIANTS = {"without L_multi": {"lambda_mode": "none"},
            "constant lambda": {"lambda_mode": "constant"},
            "scheduled lambda": {"lambda_mode": "schedule"}}
# run on request (--variants): L_multi on every step instead of half of them
EXTRA_VARIANTS = {"scheduled lambda every batch": {"lambda_mode": "schedule", "multi_share": 1.0}}
# default run: sized to stay under 1 hour on 2 CPU cores (one torch thread; 2,176 s measured on 2 shared cores)
DEFAULT = {"size": 32, "epochs": 14, "eval_sources": 300,
           "editor": {"channels": [8, 16, 32], "n_single": 24, "n_recon": 8, "n_chains": 8, "multi_share": 0.5,
                      "batches_per_epoch": 50}}
QUICK = {"size": 32, "epochs": 3, "eval_sources": 40, "images": 1500,
         "editor": {"channels": [8, 16, 32], "n_single": 16, "n_recon": 4, "n_chains": 4, "multi_share": 0.5,
                    "batches_per_epoch": 8}}
HEADLINE = ("psnr_1", "psnr_2", "psnr_growth", "ssim_1", "ssim_2", "ssim_growth", "order_gap_psnr",
            "psnr_2_from_exact", "amplification")


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def flat_metrics(edit: dict, cir: dict) -> dict:
    row = {k: edit[k] for k in HEADLINE if k in edit}
    row.update({f"fine_{k}": v for k, v in edit["fine_grained"].items()})
    for kind in ("one_round", "two_round"):
        for k, v in cir.get(kind, {}).items():
            row[f"cir_{kind}_{k}"] = v
    return row


def summarize(per_seed: list[dict]) -> dict:
    keys = per_seed[0].keys()
    return {k: {"mean": float(np.mean([r[k] for r in per_seed])), "std": float(np.std([r[k] for r in per_seed]))}
            for k in keys}


def markdown(summary: dict, identity: dict, seeds: list[int], costs: dict, dataset: str) -> str:
    cols = [("PSNR 1", "psnr_1"), ("PSNR 2", "psnr_2"), ("PSNR growth (dB)", "psnr_growth"), ("SSIM 1", "ssim_1"),
            ("SSIM 2", "ssim_2"), ("SSIM growth", "ssim_growth"), ("amplification (dB)", "amplification"),
            ("fine PSNR 1", "fine_psnr_1"),
            ("fine PSNR 2", "fine_psnr_2"), ("CIR-1 R@1", "cir_one_round_recall@1"),
            ("CIR-1 R@10", "cir_one_round_recall@10"), ("CIR-2 R@1", "cir_two_round_recall@1"),
            ("CIR-2 R@10", "cir_two_round_recall@10"), ("CIR-2 R@50", "cir_two_round_recall@50")]
    lines = ["| variant | " + " | ".join(c for c, _ in cols) + " | train s/step |",
             "|" + " --- |" * (len(cols) + 2)]
    lines.append("| identity (input returned) | " + " | ".join(
        f"{identity[k]:.3f}" if k in identity else "-" for _, k in cols) + " | - |")
    for name, s in summary.items():
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}" if k in s else "-" for _, k in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {costs[name]:.3f} |")
    return (f"Held-out {dataset}, mean ± std over seeds {seeds}. 1 = one round (each edit alone), 2 = two rounds "
            "(both orders) against the exact target; growth = round 1 minus round 2 (smaller is better); fine = "
            "examples and chains with a badge or border edit; amplification = two-round PSNR when round 2 starts from the "
            "exact round-1 picture minus the two-round PSNR; CIR = composed retrieval Recall@K, generated image "
            "-> gallery of exact targets (pixel features, FAISS inner product).\n\n" + "\n".join(lines) + "\n")


def plot_losses(histories: dict[str, list[list[dict]]], path: Path) -> None:
    """Per-epoch training losses of every variant, mean ± std over seeds (``python recipes/multiround.py
    --replot DIR`` redraws it from a results.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for colour, (name, runs) in zip(plt.cm.tab10.colors, histories.items()):  # one colour per variant in every panel
        epochs = [h["epoch"] for h in runs[0]]
        for ax, key in zip(axes, ("l_single", "l_recon", "l_multi")):
            if key == "l_multi":
                vals = np.array([[h["l_multi"] / h["multi_batch"] if h["multi_batch"] else np.nan for h in r]
                                 for r in runs])
            else:
                vals = np.array([[h[key] for h in r] for r in runs])
            if np.isnan(vals).all():
                continue
            m, s = np.nanmean(vals, 0), np.nanstd(vals, 0)
            ax.plot(epochs, m, label=name, color=colour)
            ax.fill_between(epochs, m - s, m + s, alpha=0.2, color=colour)
    for ax, title in zip(axes, ("L_single (one-round MSE)", "L_recon (identity instruction, MSE)",
                                "L_multi (two rounds, both orders; its batches only)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    axes[0].legend()
    fig.suptitle("multi-round editor: training losses, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_rows(examples, n: int = 8) -> list[int]:
    """Rows that show every family, the fine-grained ones first."""
    order, seen = [], set()
    for fam in ("badge", "border", "pose", "scale", "fg", "bg"):
        for i in range(len(examples)):
            if fam in (examples.family_a[i], examples.family_b[i]) and i not in seen:
                order.append(i)
                seen.add(i)
                break
    order += [i for i in range(len(examples)) if i not in seen]
    return order[:n]


def plot_grid(examples, outputs: dict, vocabulary: list[str], title: str, path: Path, rows: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("input", examples.inputs), (None, None), ("G(x,a)", outputs["one_a"]), ("exact T_a", examples.target_a),
            ("G(x,b)", outputs["one_b"]), ("exact T_b", examples.target_b), ("G(G(x,a),b)", outputs["two_ab"]), ("G(G(x,b),a)", outputs["two_ba"]),
            ("exact T_ab", examples.target_ab)]
    cols = [c for c in cols if c[0] is None or c[1] is not None]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.5 * len(cols) + 1.6, 1.6 * len(rows)),
                             gridspec_kw={"width_ratios": [1 if c[0] else 1.9 for c in cols]})
    axes = np.atleast_2d(axes)
    for r, i in enumerate(rows):
        for c, (name, images) in enumerate(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if name is None:
                ax.axis("off")
                ax.text(0.0, 0.5, f"a: {vocabulary[examples.text_a[i]]}\nb: {vocabulary[examples.text_b[i]]}",
                        fontsize=6.5, va="center", wrap=True)
                continue
            ax.imshow(images[i], interpolation="nearest")
            if r == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(summary: dict) -> str:
    if "without L_multi" not in summary or "scheduled lambda" not in summary:
        return "(the verdict compares 'scheduled lambda' with 'without L_multi'; not both were run)"
    base, reg = summary["without L_multi"], summary["scheduled lambda"]
    growth = reg["psnr_growth"]["mean"] < base["psnr_growth"]["mean"]
    r10 = reg["cir_two_round_recall@10"]["mean"] > base["cir_two_round_recall@10"]["mean"]
    return (f"Scheduled lambda vs without L_multi: PSNR growth round 1 -> 2 {reg['psnr_growth']['mean']:.3f} vs "
            f"{base['psnr_growth']['mean']:.3f} dB ({'smaller' if growth else 'NOT smaller'}); two-round composed "
            f"retrieval Recall@10 {reg['cir_two_round_recall@10']['mean']:.3f} vs "
            f"{base['cir_two_round_recall@10']['mean']:.3f} ({'higher' if r10 else 'NOT higher'}).")


def make_task(args, plan: dict):
    """The clip-art task, or FashionIQ / Fashion200k data through the same interface."""
    if args.fashioniq or args.fashion200k:
        if not args.category:
            raise SystemExit("--category is needed with --fashioniq / --fashion200k (e.g. dress)")
        data = (read_fashioniq(args.fashioniq, args.category) if args.fashioniq
                else read_fashion200k(args.fashion200k, args.category))
        return TripletEditTask(data, size=plan["size"], eval_sources=plan["eval_sources"])
    catalogue = read_clipart(args.data)
    if plan.get("images"):  # the quick run draws from the first images only (builds faster)
        n = plan["images"]
        catalogue = Catalogue(catalogue.name, catalogue.ids[:n], catalogue.columns.iloc[:n], catalogue.source)
    return ClipartEditTask(catalogue, size=plan["size"], eval_sources=plan["eval_sources"])


def run(args) -> dict:
    t0 = time.perf_counter()
    plan = QUICK if args.quick else DEFAULT
    epochs = args.epochs or plan["epochs"]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else [0, 1, 2])
    task = make_task(args, plan)
    embeddings = instruction_embeddings(task.vocabulary)
    examples = task.eval_examples("test")
    identity = flat_metrics(edit_metrics(identity_outputs(examples), examples),
                            retrieval_metrics(identity_outputs(examples), examples))
    print(f"task: {json.dumps(task.describe())}; {len(examples)} held-out chains", flush=True)
    results, histories, costs, grids = {}, {}, {}, {}
    rows = pick_rows(examples)
    chosen = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = sorted(set(chosen) - set(VARIANTS) - set(EXTRA_VARIANTS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {[*VARIANTS, *EXTRA_VARIANTS]}")
    variants = {k: {**VARIANTS, **EXTRA_VARIANTS}[k] for k in chosen}
    editor_plan = {**plan["editor"], **dict(kv.split("=", 1) for kv in args.set)}
    for name, variant in variants.items():
        results[name], histories[name] = [], []
        step_seconds = []
        for seed in seeds:
            config = MultiRoundConfig.from_dict({**editor_plan, **variant, "seed": seed}, source=name)
            t1 = time.perf_counter()
            editor, result = train_editor(task, embeddings, config,
                                          {"epochs": epochs, "seed": seed, "progress": args.progress,
                                           "cpu": args.cpu})
            outputs = run_examples(editor, examples)
            edit = edit_metrics(outputs, examples)
            cir = retrieval_metrics(outputs, examples)
            row = flat_metrics(edit, cir)
            steps = epochs * config.batches_per_epoch
            step_seconds.append(result.train_seconds / steps)
            results[name].append({"seed": seed, "metrics": row, "per_family": edit["per_family"],
                                  "train_seconds": result.train_seconds, "seconds_per_step": result.train_seconds / steps,
                                  "wall_seconds": time.perf_counter() - t1, "history": result.history})
            histories[name].append(result.history)
            if seed == seeds[0]:
                grids[name] = outputs
            print(f"{name} seed {seed}: PSNR {row['psnr_1']:.2f} -> {row['psnr_2']:.2f} dB, two-round R@10 "
                  f"{row['cir_two_round_recall@10']:.3f}, {result.train_seconds:.0f}s training", flush=True)
        costs[name] = float(np.mean(step_seconds))
    summary = {name: summarize([r["metrics"] for r in runs]) for name, runs in results.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_losses(histories, out / "loss_curves.png")
    for name, outputs in grids.items():
        slug = name.replace(" ", "-").replace("_", "")
        plot_grid(examples, outputs, task.vocabulary, f"{name} (seed {seeds[0]}): held-out {task.describe()['catalogue']}, {plan['size']}x{plan['size']}",
                  out / f"grid-{slug}.png", rows)
    table = markdown(summary, identity, seeds, costs, task.describe()["catalogue"])
    note = verdict(summary)
    cost_note = ""
    if "without L_multi" in costs and "scheduled lambda" in costs:
        base_cost = costs["without L_multi"]
        cost_note = (f"Cost of L_multi (share {editor_plan['multi_share']} of batches, {editor_plan['n_chains']} "
                     f"chains x 2 orders x 2 rounds): {costs['scheduled lambda']:.3f} vs {base_cost:.3f} s per step "
                     f"({costs['scheduled lambda'] / base_cost:.2f}x).")
    wall = time.perf_counter() - t0
    res = {"recipe": "multiround", "command": " ".join([sys.executable, *sys.argv]), "quick": args.quick,
           "seeds": seeds, "epochs": epochs, "plan": plan, "editor_overrides": args.set, "variants": variants, "machine": machine(),
           "task": task.describe(), "commute_filter": dict(task.filter_counts), "held_out_chains": len(examples),
           "identity": identity, "summary": summary, "seconds_per_step": costs, "runs": results,
           "verdict": note, "cost": cost_note, "wall_seconds": wall,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(out / "results.json", lambda fh: fh.write(json.dumps(res, indent=1, default=float).encode()))
    md = (f"# Multi-round regularization on {task.describe()['catalogue']}{' (quick)' if args.quick else ''}\n\n{table}\n{note}\n\n"
          f"{cost_note}\n\nCommute filter: {task.filter_counts['dropped']} of {task.filter_counts['proposed']} "
          f"proposed edit pairs dropped. Wall time {wall:.0f} s ({machine()['cpu_count']} CPUs, "
          f"{torch.get_num_threads()} torch thread(s)).\n")
    atomic_write(out / "results.md", lambda fh: fh.write(md.encode()))
    print(md)
    print(f"wrote {out}/results.json, results.md, loss_curves.png, grid-*.png")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one seed, a few steps, 40 held-out chains")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; quick: 0)")
    p.add_argument("--epochs", type=int, default=None, help="trainer epochs (of batches_per_epoch steps)")
    p.add_argument("--data", default=None, help="folder of the clip-art snapshot (default: ../shared/data)")
    p.add_argument("--fashioniq", default=None, help="a FashionIQ folder (captions/, images/) instead of clip art")
    p.add_argument("--fashion200k", default=None, help="a Fashion200k folder (labels/, images) instead of clip art")
    p.add_argument("--category", default=None, help="FashionIQ / Fashion200k category (dress, shirt, toptee ...)")
    p.add_argument("--variants", default=None,
                   help="comma-separated, from: " + ", ".join([*VARIANTS, *EXTRA_VARIANTS]) + " (default: the first 3)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an editor setting of the plan (MultiRoundConfig field), e.g. multi_share=1.0")
    p.add_argument("--out", default=None, help="output folder (default runs/multiround/<time>)")
    p.add_argument("--cpu", action="store_true", help="force CPU even if a GPU is visible")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--replot", default=None, metavar="DIR", help="only redraw DIR/loss_curves.png from its results.json")
    args = p.parse_args(argv)
    if args.replot:
        res = json.loads((Path(args.replot) / "results.json").read_text())
        plot_losses({k: [r["history"] for r in runs] for k, runs in res["runs"].items()},
                    Path(args.replot) / "loss_curves.png")
        return 0
    args.out = args.out or f"runs/multiround/{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}"
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        run(args)
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
