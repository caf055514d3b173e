"""DEALRec on MovieLens-100K (leave-one-out): prune a pool of (history -> next movie) samples to a small budget,
few-shot LoRA fine-tune the BIGRec-style LLM recommender (real SmolLM2-135M-Instruct by default) on what is kept,
and rank the catalogue with the shared constrained decoder.

    python recipes/dealrec.py                  # default CPU-sized run: 80 min on 2 cores (see the README)
    python recipes/dealrec.py --quick          # tiny random Llama, tiny pool: the smoke run of the tests
    python recipes/dealrec.py --llm PATH       # any HF causal LM folder, .gguf file or local hub name
    python recipes/dealrec.py --jobs 1         # everything in this process (default: a worker per CPU core)
    python recipes/dealrec.py --arms dealrec,random --reference-share 0 --set eval_users=0
                                               # only the paired comparison, on all test users

Same pool, same budget, same fine-tuning for every arm: DEALRec (influence + lambda * effort, coverage sampling),
random, influence only, effort only, GraNd (highest surrogate gradient norms) and CCS (coverage sampling on EL2N);
DEALRec and random over every seed, the others on the first seed; a budget sweep (1% / 4%) of DEALRec and random;
a large random share as the "more data" reference; the zero-shot LLM; the SASRec surrogate on the same test users;
and BIGRec's L2 grounding against the constrained decoder on the first seed's DEALRec model. The committed
SASRec and TIGER of the MMGRec recipe (same protocol, all test users) close the table.

The LLM work (effort scores, fine-tuning, ranking) runs as tasks in ``--jobs`` spawned worker processes of one
torch thread each; each task seeds itself, so the numbers do not depend on ``--jobs``.

Writes ``results.json``, ``results.md`` and ``results.png`` into ``--out`` (default ``runs/dealrec/<time>``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from concurrent.futures import Future, as_completed
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write, write_json
from genir.data import leave_one_out, load_dataset
from genir.experiment import worker_pool
from genir.methods.dealrec.bigrec import BIGRec, l2_grounding_scores, title_states
from genir.methods.dealrec.procedure import (
    ARMS,
    DEALRecConfig,
    effort_scores,
    eval_users,
    evaluate,
    finetune,
    for_inference,
    item_titles,
    sample_pool,
    select,
    surrogate_scores,
    train_surrogate,
)
from genir.runs import environment

METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")
QUICK = {"pool": 120, "budget": 0.1, "depth": 20, "surrogate_epochs": 2, "epochs": 3, "lr": 5e-3, "beam_width": 5,
         "eval_users": 12, "batch_size": 8, "max_title_tokens": 8}


def load_llm(ref: str | None, quick: bool, titles: list[str], dtype: torch.dtype = torch.float32):
    """(model, tokenizer) with weights in ``dtype``: a tiny random Llama over the titles' and prompts' words for
    --quick (not pretrained), else the real LLM (SmolLM2-135M-Instruct by default)."""
    from genir.llm import load_causal_lm, tiny_llama, tiny_tokenizer
    from genir.methods.dealrec.bigrec import PROMPT_HEAD, PROMPT_TAIL

    if quick and ref is None:
        tok = tiny_tokenizer(titles + [PROMPT_HEAD + PROMPT_TAIL] + [f"[{i}]" for i in range(2, 6)])
        return tiny_llama(tok).to(dtype), tok
    return load_causal_lm(ref, dtype=dtype)


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
    for label, runs in {**results["rows"], **results.get("published", {})}.items():
        cells = [mean_std([r["metrics"][m] for r in runs]) for m in METRICS]
        ft = np.mean([r.get("finetune_seconds", 0.0) for r in runs])
        per_user = np.mean([r.get("seconds_per_user", np.nan) for r in runs])
        lines.append(f"| {label} | {runs[0].get('samples', '-')} | " + " | ".join(cells) +
                     f" | {ft:.0f} | {'-' if np.isnan(per_user) else f'{per_user:.2f}'} | {len(runs)} |")
    if results.get("published"):
        lines += ["", (f"The last rows are not from this run: the tuned SASRec and TIGER of `{PUBLISHED}` on the same "
                  "leave-one-out protocol over all test users (seeds 2020-2022), for where an LLM recommender stands.")]
    lines += ["", "Scoring cost (s): " + ", ".join(f"{k} {v:.1f}" for k, v in results["score_seconds"].items()), ""]
    t = results["time"]
    line = f"DEALRec total (influence + effort + fine-tuning at {c['budget']:.0%}): {t['dealrec_total']:.0f} s"
    if t["reference"] is not None:
        line += (f"; fine-tuning on the {results['reference_share']:.0%} reference share: {t['reference']:.0f} s "
                 f"({t['dealrec_total'] / max(t['reference'], 1e-9):.2f}x)")
    lines.append(line + ".")
    paired = results.get("paired_dealrec_minus_random", {})
    if paired.get("ndcg@10"):
        lines += ["", f"DEALRec minus random at {c['budget']:.0%}, per seed on the same users (paired): " + "; ".join(
            f"{m} " + " / ".join(f"{v:+.4f}" for v in paired[m]) + f" (mean {np.mean(paired[m]):+.4f})"
            for m in ("ndcg@10", "recall@10"))]
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
        pts = sorted((float(s), np.mean(v)) for s, v in results["sweep"].get(arm, {}).items())
        if pts:
            b.plot([p[0] * 100 for p in pts], [p[1] for p in pts], style, label=arm)
    b.set_xlabel("budget (% of the pool)")
    b.set_ylabel("test NDCG@10")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PUBLISHED = "benchmarks/results/mmgrec/fp32-d_ff256/results.json"


def published_rows(dataset: str) -> dict[str, list]:
    """SASRec and TIGER as committed by the MMGRec recipe (same protocol, all test users), when on MovieLens-100K."""
    path = Path(__file__).resolve().parents[1] / PUBLISHED
    if dataset != "ml-100k" or not path.is_file():
        return {}
    runs = json.loads(path.read_text())["runs"]
    names = {"sasrec": "SASRec (tuned, committed MMGRec run)", "tiger": "TIGER (committed MMGRec run)"}
    return {label: [{"seed": r["seed"], "samples": "all", "metrics": r["test"], "users": "all"} for r in runs[key]]
            for key, label in names.items() if key in runs}


# -- the work, as tasks a worker process (or this one) runs ----------------------------------------------------------
_CONTEXT: dict = {}  # per process: the data and the LLM every task of one run needs, built once


def context(spec: dict) -> dict:
    """The split, titles, sample pool, test users and config of a run ``spec``, built once per process."""
    key = json.dumps(spec, sort_keys=True)
    if key not in _CONTEXT:
        cfg = DEALRecConfig.from_dict(spec["config"])
        split = leave_one_out(load_dataset(spec["dataset"]))
        _CONTEXT.clear()
        _CONTEXT[key] = {"cfg": cfg, "split": split, "titles": item_titles(split),
                         "pool": sample_pool(split, cfg, seed=0), "users": eval_users(split, cfg, seed=0)}
    return _CONTEXT[key]


def llm_of(spec: dict):
    """The frozen base LLM and tokenizer of ``spec``, loaded once per process."""
    ctx = context(spec)
    if "llm" not in ctx:
        llm, tok = load_llm(spec["llm"], spec["quick"], ctx["titles"], ctx["cfg"].torch_dtype)
        ctx["llm"] = (llm.requires_grad_(False), tok)
    return ctx["llm"]


def task_effort(spec: dict, rows: np.ndarray, seed: int, threads: int | None) -> tuple[np.ndarray, float]:
    """Effort scores of the pool ``rows`` (any split of the pool gives the same scores) and their seconds."""
    if threads:
        torch.set_num_threads(threads)
    ctx = context(spec)
    llm, tok = llm_of(spec)
    return effort_scores(llm, tok, ctx["titles"], ctx["pool"], rows, ctx["cfg"], seed, progress=spec["progress"])


def _entry(ctx: dict, rec, seconds: float, samples, seed: int, history=()) -> dict:
    metrics, per_user = evaluate(lambda b: rec.full_scores(b), ctx["split"], ctx["users"])
    return {"seed": seed, "samples": samples, "metrics": metrics, "finetune_seconds": round(seconds, 1),
            "seconds_per_user": per_user, "loss": [h.get("loss") for h in history]}


def task_zero_shot(spec: dict, threads: int | None) -> list[tuple[str, dict]]:
    """The LLM as it ships, ranking through the constrained decoder."""
    if threads:
        torch.set_num_threads(threads)
    ctx = context(spec)
    llm, tok = llm_of(spec)
    cfg = ctx["cfg"]
    rec = BIGRec(copy.deepcopy(llm), tok, ctx["titles"], max_history=cfg.max_history, beam_width=cfg.beam_width,
                 max_title_tokens=cfg.max_title_tokens)
    entry = _entry(ctx, rec, 0.0, 0, spec["seeds"][0])
    entry["duplicate_titles"] = rec.duplicate_titles  # titles given a " [2]" suffix to stay apart
    return [("LLM zero-shot (no fine-tuning)", entry)]


def task_finetune(spec: dict, label: str, kept: np.ndarray, seed: int, l2_label: str | None,
                  threads: int | None) -> list[tuple[str, dict]]:
    """Fine-tune on the pool rows ``kept`` and rank the test users (with the adapter merged); with ``l2_label``
    the same model is also ranked by BIGRec's L2 grounding."""
    if threads:
        torch.set_num_threads(threads)
    ctx = context(spec)
    llm, tok = llm_of(spec)
    rec, seconds, history = finetune(llm, tok, ctx["titles"], ctx["pool"], kept, ctx["cfg"], seed, spec["progress"])
    entry = _entry(ctx, for_inference(rec), seconds, len(kept), seed, history)
    print(f"{label} seed {seed}: NDCG@10 {entry['metrics']['ndcg@10']:.4f} Recall@10 "
          f"{entry['metrics']['recall@10']:.4f} ({len(kept)} samples, fine-tune {seconds:.0f} s)", flush=True)
    out = [(label, entry)]
    if l2_label is not None:  # BIGRec's own grounding (free generation + L2 to every title), same model
        states = title_states(rec)
        metrics, per_user = evaluate(lambda b: l2_grounding_scores(rec, b, states), ctx["split"], ctx["users"])
        out.append((l2_label, {"seed": seed, "samples": len(kept), "metrics": metrics, "seconds_per_user": per_user,
                               "finetune_seconds": round(seconds, 1)}))
    return out


class InProcess:
    """The executor of ``--jobs 1``: every task runs here, when submitted."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args) -> Future:
        future = Future()
        future.set_result(fn(*args))
        return future


def run(args) -> dict:
    t_start = time.perf_counter()
    cfg = DEALRecConfig.from_dict({**(QUICK if args.quick else {}), **dict(kv.split("=", 1) for kv in args.set)},
                                  source="--set", coerce=True)
    seeds = args.seeds
    jobs = max(1, args.jobs or (1 if torch.cuda.is_available() else os.cpu_count() or 1))
    spec = {"config": cfg.to_dict(), "dataset": args.dataset, "llm": args.llm, "quick": args.quick,
            "progress": not args.no_progress and jobs == 1, "seeds": seeds}
    ctx = context(spec)
    split, pool, users = ctx["split"], ctx["pool"], ctx["users"]
    budget = max(1, round(cfg.budget * len(pool)))
    threads = 1 if jobs > 1 else None  # workers of one torch thread each; this process keeps one for the surrogate
    if jobs > 1:
        torch.set_num_threads(1)
    ft_seconds = {"effort": 0.0}
    # the plan: (label, arm, share, seed, with L2 grounding); the table keeps this order
    plan = [(f"{arm} {cfg.budget:.0%}", arm, cfg.budget, seed, arm == "dealrec" and seed == seeds[0])
            for seed in seeds for arm in (args.arms if seed == seeds[0] else ("dealrec", "random"))]
    plan += [(f"{arm} {share:.0%}", arm, share, seeds[0], False) for share in args.sweep
             for arm in ("dealrec", "random")]
    reference_label = f"random {args.reference_share:.0%} (more-data reference)" if args.reference_share else None
    if reference_label:
        plan.append((reference_label, "random", args.reference_share, seeds[0], False))
    l2_label = f"dealrec {cfg.budget:.0%}, L2 grounding (BIGRec's)"

    def size(share: float) -> int:
        return max(1, round(share * len(pool)))

    with worker_pool(jobs) if jobs > 1 else InProcess() as ex:
        chunks = [c for c in np.array_split(np.arange(len(pool)), jobs) if len(c)]
        effort_futures = [ex.submit(task_effort, spec, rows, seeds[0], threads) for rows in chunks]
        futures = [ex.submit(task_zero_shot, spec, threads)]
        # the arms that need no score start now, the largest first, while this process scores with the surrogate
        free = sorted((p for p in plan if p[1] == "random"), key=lambda p: -p[2])
        for label, arm, share, seed, l2 in free:
            kept = select(arm, {"influence": np.zeros(len(pool))}, size(share), cfg, seed)
            futures.append(ex.submit(task_finetune, spec, label, kept, seed, l2_label if l2 else None, threads))
        surrogate, surrogate_seconds = train_surrogate(split, cfg, seed=seeds[0], progress=spec["progress"])
        surrogate_rows = {}
        for name, who in (("same test users", users), ("all test users", split.eval_users("test"))):
            metrics, per_user = evaluate(lambda b: surrogate.full_scores(b), split, who, batch_size=256)
            surrogate_rows[f"SASRec (surrogate, all training data; {name})"] = [
                {"seed": seeds[0], "samples": "all", "metrics": metrics, "seconds_per_user": per_user,
                 "users": len(who)}]
        scores, score_seconds = surrogate_scores(pool, surrogate, cfg, seed=seeds[0], progress=spec["progress"])
        effort = np.empty(len(pool))
        for rows, future in zip(chunks, effort_futures):
            effort[rows], seconds = future.result()
            ft_seconds["effort"] += seconds
        scores["effort"] = effort
        score_seconds["effort"] = ft_seconds["effort"]
        scored = sorted((p for p in plan if p[1] != "random"), key=lambda p: -p[2])
        for label, arm, share, seed, l2 in scored:
            kept = select(arm, scores, size(share), cfg, seed)
            futures.append(ex.submit(task_finetune, spec, label, kept, seed, l2_label if l2 else None, threads))
        done = []
        for future in as_completed(futures):  # a run cut short keeps what finished (partial.json)
            done.extend(future.result())
            write_json(args.out / "partial.json", {"command": "python recipes/dealrec.py " + " ".join(args.argv),
                                                   "rows": surrogate_rows,
                                                   "finished": [{"label": lab, **e} for lab, e in done],
                                                   "score_seconds": score_seconds,
                                                   "seconds": time.perf_counter() - t_start})
    order = ["LLM zero-shot (no fine-tuning)"] + [p[0] for p in plan] + [l2_label]
    rows: dict[str, list] = dict(surrogate_rows)
    for label in dict.fromkeys(order):
        rows[label] = sorted((e for lab, e in done if lab == label), key=lambda e: seeds.index(e["seed"]))
    sweep = {arm: {str(share): [e["metrics"]["ndcg@10"] for e in rows[f"{arm} {share:.0%}"]]
                   for share in sorted({p[2] for p in plan if p[1] == arm and "reference" not in p[0]})}
             for arm in ("dealrec", "random")}  # test NDCG@10 per budget share, for the plot

    def first(label: str) -> dict:
        return next(e for e in rows[label] if e["seed"] == seeds[0])

    # DEALRec minus random at the budget, per seed: the same test users, so a paired difference
    by_seed = {arm: {e["seed"]: e["metrics"] for e in rows[f"{arm} {cfg.budget:.0%}"]} for arm in ("dealrec", "random")}
    paired = {m: [by_seed["dealrec"][s][m] - by_seed["random"][s][m] for s in seeds
                  if s in by_seed["dealrec"] and s in by_seed["random"]] for m in METRICS}
    return {
        "command": "python recipes/dealrec.py " + " ".join(args.argv), "machine": environment(),
        "dataset": args.dataset, "llm": (args.llm or ("tiny random Llama (not pretrained)" if args.quick else
                                                      "SmolLM2-135M-Instruct (pretrained, GGUF Q4_1)"))
        + f", weights in {cfg.dtype}",
        "duplicate_titles": rows["LLM zero-shot (no fine-tuning)"][0]["duplicate_titles"],
        "config": cfg.to_dict(), "seeds": seeds, "jobs": jobs, "budget_samples": budget, "eval_users": len(users),
        "reference_share": args.reference_share, "rows": rows, "sweep": sweep, "paired_dealrec_minus_random": paired,
        "published": published_rows(args.dataset),
        "score_seconds": {"surrogate training": surrogate_seconds, **score_seconds},
        "time": {"dealrec_total": score_seconds["influence"] + score_seconds["effort"]
                 + first(f"dealrec {cfg.budget:.0%}")["finetune_seconds"],
                 "reference": first(reference_label)["finetune_seconds"] if reference_label else None},
        "seconds": time.perf_counter() - t_start,
    }


def arm_list(text: str) -> list[str]:
    """``--arms``: known arms, in :data:`ARMS` order, always with dealrec and random (the comparison itself)."""
    names = {a.strip() for a in text.split(",") if a.strip()}
    unknown = names - set(ARMS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown arm(s) {sorted(unknown)}; known: {', '.join(ARMS)}")
    return [a for a in ARMS if a in names | {"dealrec", "random"}]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--llm", default=None, help="HF causal LM folder, .gguf file or local hub name "
                   "(default: SmolLM2-135M-Instruct; --quick: a tiny random Llama)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--sweep", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.01, 0.04],
                   help="other budgets (shares of the pool) for DEALRec and random, first seed")
    p.add_argument("--reference-share", type=float, default=0.1, help="random share fine-tuned as the "
                   "more-data reference (the whole pool on a GPU; 0 = none)")
    p.add_argument("--arms", type=arm_list, default=list(ARMS), help="pruning arms on the first seed, comma-"
                   f"separated (default: all of {', '.join(ARMS)}); dealrec and random run on every seed anyway")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="DEALRecConfig fields")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--jobs", type=int, default=None, help="worker processes of one torch thread each for the "
                   "LLM work (default: the CPU count, 1 with a GPU; 1 = everything in this process)")
    p.add_argument("--threads", type=int, default=None, help="torch threads with --jobs 1")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.quick:
        args.seeds, args.sweep = args.seeds[:2], args.sweep[:1]
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/dealrec/{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    args.out = out
    results = run(args)
    write_json(out / "results.json", results)
    atomic_write(out / "results.md", lambda fh: fh.write(markdown(results).encode()))
    plot(results, out / "results.png")
    (out / "partial.json").unlink(missing_ok=True)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
