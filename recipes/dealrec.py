"""DEALRec on MovieLens-100K (leave-one-out): prune a pool of (history -> next movie) samples to a small budget,
few-shot LoRA fine-tune the BIGRec-style LLM recommender (real SmolLM2-135M-Instruct by default) on what is kept,
and rank the catalogue with the shared constrained decoder.

    python recipes/dealrec.py                  # default CPU-sized run (see DEALRecConfig and the README)
    python recipes/dealrec.py --quick          # tiny random Llama, tiny pool: the smoke run of the tests
    python recipes/dealrec.py --llm PATH       # any HF causal LM folder, .gguf file or local hub name

Same pool, same budget, same fine-tuning for every arm: DEALRec (influence + lambda * effort, coverage sampling),
random, influence only, effort only, GraNd (highest surrogate gradient norms) and CCS (coverage sampling on EL2N);
DEALRec and random over every seed, the others on the first seed; a budget sweep (1% / 4%) of DEALRec and random;
a large random share as the "more data" reference; the zero-shot LLM; the SASRec surrogate on the same test users;
and BIGRec's L2 grounding against the constrained decoder on the first seed's DEALRec model.

Writes ``results.json``, ``results.md`` and ``results.png`` into ``--out`` (default ``runs/dealrec/<time>``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write, write_json
from genir.data import leave_one_out, load_dataset
from genir.methods.dealrec.bigrec import BIGRec, l2_grounding_scores, title_states
from genir.methods.dealrec.procedure import (
    ARMS,
    DEALRecConfig,
    eval_users,
    evaluate,
    finetune,
    item_titles,
    sample_pool,
    score_pool,
    select,
    train_surrogate,
)
from genir.runs import environment

METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")
QUICK = {"pool": 120, "budget": 0.1, "depth": 20, "surrogate_epochs": 2, "epochs": 3, "lr": 5e-3, "beam_width": 5,
         "eval_users": 12, "batch_size": 8, "max_title_tokens": 8}


def load_llm(ref: str | None, quick: bool, titles: list[str]):
    """(model, tokenizer): a tiny random Llama over the titles' and prompts' words for --quick (not pretrained),
    else the real LLM (SmolLM2-135M-Instruct by default)."""
    from genir.llm import load_causal_lm, tiny_llama, tiny_tokenizer
    from genir.methods.dealrec.bigrec import PROMPT_HEAD, PROMPT_TAIL

    if quick and ref is None:
        tok = tiny_tokenizer(titles + [PROMPT_HEAD + PROMPT_TAIL] + [f"[{i}]" for i in range(2, 6)])
        return tiny_llama(tok), tok
    return load_causal_lm(ref)


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def machine_line(env: dict) -> str:
    return (f"{env.get('processor')} {env.get('cpu_count')} cores, torch {env.get('torch')} "
            f"({env.get('torch_threads')} threads), cuda {env.get('cuda')}, load {env.get('load_average_1_5_15min')}")


def markdown(results: dict) -> str:
    c = results["config"]
    lines = [f"# DEALRec on {results['dataset']} ({results['llm']})", "",
             f"Command: `{results['command']}`  ", f"Machine: {machine_line(results['machine'])}  ",
             (f"Pool: {c['pool']} samples; budget {c['budget']:.0%} = {results['budget_samples']} samples; "
              f"test users: {results['eval_users']}; seeds {results['seeds']}; total {results['seconds']:.0f} s"), "",
             "| system | samples | NDCG@10 | Recall@10 | NDCG@20 | Recall@20 | fine-tune s | s/user | seeds |",
             "|" + " --- |" * 9]
    for label, runs in results["rows"].items():
        cells = [mean_std([r["metrics"][m] for r in runs]) for m in METRICS]
        ft = np.mean([r.get("finetune_seconds", 0.0) for r in runs])
        lines.append(f"| {label} | {runs[0].get('samples', '-')} | " + " | ".join(cells) +
                     f" | {ft:.0f} | {np.mean([r['seconds_per_user'] for r in runs]):.2f} | {len(runs)} |")
    lines += ["", "Scoring cost (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["score_seconds"].items()), ""]
    t = results["time"]
    lines.append(f"DEALRec total (influence + effort + fine-tuning at {c['budget']:.0%}): {t['dealrec_total']:.0f} s; "
                 f"fine-tuning on the {results['reference_share']:.0%} reference share: {t['reference']:.0f} s "
                 f"({t['dealrec_total'] / max(t['reference'], 1e-9):.2f}x).")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    labels = list(results["rows"])
    means = [np.mean([r["metrics"]["ndcg@10"] for r in results["rows"][k]]) for k in labels]
    stds = [np.std([r["metrics"]["ndcg@10"] for r in results["rows"][k]]) for k in labels]
    a.barh(labels, means, xerr=stds, color="tab:blue")
    a.set_xlabel("test NDCG@10 (mean ± std over seeds)")
    a.invert_yaxis()
    for arm, style in (("dealrec", "o-"), ("random", "s--")):
        pts = sorted((s, np.mean(v)) for s, v in results["sweep"].get(arm, {}).items())
        if pts:
            b.plot([p[0] * 100 for p in pts], [p[1] for p in pts], style, label=arm)
    b.set_xlabel("budget (% of the pool)")
    b.set_ylabel("test NDCG@10")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> dict:
    t_start = time.perf_counter()
    cfg = DEALRecConfig.from_dict({**(QUICK if args.quick else {}), **dict(kv.split("=", 1) for kv in args.set)},
                                  source="--set", coerce=True)
    progress = not args.no_progress
    split = leave_one_out(load_dataset(args.dataset))
    titles = item_titles(split)
    pool = sample_pool(split, cfg, seed=0)
    budget = max(1, round(cfg.budget * len(pool)))
    users = eval_users(split, cfg, seed=0)
    llm, tok = load_llm(args.llm, args.quick, titles)
    llm.requires_grad_(False)
    seeds = args.seeds
    rows: dict[str, list] = {}
    sweep: dict[str, dict] = {"dealrec": {}, "random": {}}

    def record(label, rec, ft_seconds, samples, seed, history=()):
        metrics, per_user = evaluate(lambda b: rec.full_scores(b), split, users)
        entry = {"seed": seed, "samples": samples, "metrics": metrics, "finetune_seconds": round(ft_seconds, 1),
                 "seconds_per_user": per_user, "loss": [h.get("loss") for h in history]}
        rows.setdefault(label, []).append(entry)
        print(f"{label} seed {seed}: NDCG@10 {metrics['ndcg@10']:.4f} Recall@10 {metrics['recall@10']:.4f} "
              f"({samples} samples, fine-tune {ft_seconds:.0f} s)", flush=True)
        return entry

    surrogate, surrogate_seconds = train_surrogate(split, cfg, seed=seeds[0], progress=progress)
    metrics, per_user = evaluate(lambda b: surrogate.full_scores(b), split, users, batch_size=256)
    rows["SASRec (surrogate, all training data)"] = [{"seed": seeds[0], "samples": "all", "metrics": metrics,
                                                     "seconds_per_user": per_user}]
    zero = BIGRec(copy.deepcopy(llm), tok, titles, max_history=cfg.max_history, beam_width=cfg.beam_width,
                  max_title_tokens=cfg.max_title_tokens)
    record("LLM zero-shot (no fine-tuning)", zero, 0.0, 0, seeds[0])
    del zero

    scores, score_seconds = score_pool(pool, surrogate, llm, tok, titles, cfg, seed=seeds[0], progress=progress)
    first_dealrec = None
    for seed in seeds:
        for arm in ARMS if seed == seeds[0] else ("dealrec", "random"):
            kept = select(arm, scores, budget, cfg, seed)
            rec, seconds, history = finetune(llm, tok, titles, pool, kept, cfg, seed, progress)
            entry = record(f"{arm} {cfg.budget:.0%}", rec, seconds, len(kept), seed, history)
            if arm in sweep:
                sweep[arm].setdefault(cfg.budget, []).append(entry["metrics"]["ndcg@10"])
            if arm == "dealrec" and first_dealrec is None:
                first_dealrec, dealrec_ft = rec, seconds
            else:
                del rec
    for share in args.sweep:
        for arm, points in sweep.items():
            kept = select(arm, scores, max(1, round(share * len(pool))), cfg, seeds[0])
            rec, seconds, history = finetune(llm, tok, titles, pool, kept, cfg, seeds[0], progress)
            entry = record(f"{arm} {share:.0%}", rec, seconds, len(kept), seeds[0], history)
            points.setdefault(share, []).append(entry["metrics"]["ndcg@10"])
            del rec
    kept = select("random", scores, max(1, round(args.reference_share * len(pool))), cfg, seeds[0])
    rec, reference_seconds, history = finetune(llm, tok, titles, pool, kept, cfg, seeds[0], progress)
    record(f"random {args.reference_share:.0%} (more-data reference)", rec, reference_seconds, len(kept), seeds[0],
           history)
    del rec

    # BIGRec's own grounding (free generation + L2 to every title) on the same DEALRec model
    states = title_states(first_dealrec)
    metrics, per_user = evaluate(lambda b: l2_grounding_scores(first_dealrec, b, states), split, users)
    rows[f"dealrec {cfg.budget:.0%}, L2 grounding (BIGRec's)"] = [{"seed": seeds[0], "samples": budget,
                                                                   "metrics": metrics, "seconds_per_user": per_user}]
    return {
        "command": "python recipes/dealrec.py " + " ".join(args.argv), "machine": environment(),
        "dataset": args.dataset, "llm": args.llm or ("tiny random Llama (not pretrained)" if args.quick else
                                                     "SmolLM2-135M-Instruct (pretrained, GGUF Q4_1)"),
        "config": cfg.to_dict(), "seeds": seeds, "budget_samples": budget, "eval_users": len(users),
        "reference_share": args.reference_share, "rows": rows, "sweep": {a: {str(k): v for k, v in s.items()}
                                                                       for a, s in sweep.items()},
        "score_seconds": {"surrogate training": surrogate_seconds, **score_seconds},
        "time": {"dealrec_total": score_seconds["influence"] + score_seconds["effort"] + dealrec_ft,
                 "reference": reference_seconds},
        "duplicate_titles": first_dealrec.duplicate_titles,
        "seconds": time.perf_counter() - t_start,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--llm", default=None, help="HF causal LM folder, .gguf file or local hub name "
                   "(default: SmolLM2-135M-Instruct; --quick: a tiny random Llama)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--sweep", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.01, 0.04],
                   help="other budgets (shares of the pool) for DEALRec and random, first seed")
    p.add_argument("--reference-share", type=float, default=0.1, help="random share fine-tuned as the "
                   "more-data reference (the whole pool on a GPU)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="DEALRecConfig fields")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.quick:
        args.seeds, args.sweep = args.seeds[:2], args.sweep[:1]
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/dealrec/{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}")
    results = run(args)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    atomic_write(out / "results.md", lambda fh: fh.write(markdown(results).encode()))
    plot(results, out / "results.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
