"""How much the BIGRec-style LLM recommender of DEALRec gains from more fine-tuning data: random shares of the
recipe's sample pool, the recipe's fine-tuning (fresh LoRA, fixed epochs) and the recipe's test users, on the real
SmolLM2-135M-Instruct. This bounds what any pruning method can show at a small budget: if fine-tuning on many times
the budget barely moves the metrics, a selection of the budget cannot beat random beyond the seeds' spread.

    python benchmarks/dealrec_learning_curve.py                                # the default plan below
    python benchmarks/dealrec_learning_curve.py --plan 0.4:0 0.1:1          # share:seed pairs

Every point is one (share, seed) fine-tuning, run as a task in ``--jobs`` spawned workers of one torch thread
each (largest first). ``--reuse`` takes the points a committed ``recipes/dealrec.py`` run already measured with the
same pool, users, config and code path (the zero-shot row and the random arms); the JSON keeps where each point
came from; a point both reused and in the plan is measured again, and the committed value is kept beside it (the
default plan re-measures random 2% seed 0 this way). Writes ``benchmarks/results/dealrec/learning-curve.json``
and ``learning-curve.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

import numpy as np
import torch

from genir.atomic import write_json
from genir.data import leave_one_out, load_dataset
from genir.experiment import worker_pool
from genir.methods.dealrec.procedure import (
    DEALRecConfig,
    eval_users,
    evaluate,
    finetune,
    for_inference,
    item_titles,
    sample_pool,
    select,
)
from genir.runs import environment

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dealrec"
REUSE = RESULTS / "smollm2-3seeds" / "results.json"
_STATE: dict = {}


def point(config: dict, share: float, seed: int) -> dict:
    """Fine-tune on a random ``share`` of the pool with ``seed`` and rank the recipe's test users."""
    torch.set_num_threads(1)
    if not _STATE:
        from genir.llm import load_causal_lm

        cfg = DEALRecConfig.from_dict(config)
        split = leave_one_out(load_dataset("ml-100k"))
        llm, tok = load_causal_lm(None, dtype=cfg.torch_dtype)
        _STATE.update(cfg=cfg, split=split, titles=item_titles(split), pool=sample_pool(split, cfg, seed=0),
                      users=eval_users(split, cfg, seed=0), llm=llm.requires_grad_(False), tok=tok)
    s = _STATE
    n = max(1, round(share * len(s["pool"])))
    kept = select("random", {"influence": np.zeros(len(s["pool"]))}, n, s["cfg"], seed)
    rec, seconds, history = finetune(s["llm"], s["tok"], s["titles"], s["pool"], kept, s["cfg"], seed,
                                     progress=False)
    merged = for_inference(rec)
    metrics, per_user = evaluate(lambda b: merged.full_scores(b), s["split"], s["users"])
    print(f"random {share:.1%} seed {seed}: NDCG@10 {metrics['ndcg@10']:.4f} ({n} samples, fine-tune "
          f"{seconds:.0f} s)", flush=True)
    return {"share": share, "seed": seed, "samples": n, "metrics": metrics, "finetune_seconds": round(seconds, 1),
            "seconds_per_user": per_user, "loss": [h.get("loss") for h in history], "source": "this run"}


def reused_points(data: dict, path: Path) -> list[dict]:
    """The zero-shot and random-share rows of a committed recipe run (``data``, read from ``path``), as points of
    the curve."""
    out = []
    where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    for label, entries in data["rows"].items():
        if label.startswith("LLM zero-shot"):
            share = 0.0
        elif label.startswith("random "):
            share = float(label.split()[1].rstrip("%")) / 100
        else:
            continue
        for e in entries:
            out.append({"share": share, "seed": e["seed"], "samples": e["samples"], "metrics": e["metrics"],
                        "finetune_seconds": e["finetune_seconds"], "seconds_per_user": e["seconds_per_user"],
                        "source": f"{where} ({label})"})
    return out


def summary(points: list[dict]) -> list[dict]:
    """Mean, std and per-seed values of every metric, per share."""
    rows = []
    for share in sorted({p["share"] for p in points}):
        got = [p for p in points if p["share"] == share]
        row = {"share": share, "samples": got[0]["samples"], "seeds": [p["seed"] for p in got]}
        for m in ("ndcg@10", "recall@10", "ndcg@20", "recall@20"):
            values = [p["metrics"][m] for p in got]
            row[m] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
        rows.append(row)
    return rows


def plot(result: dict, path: Path) -> None:
    """Test NDCG@10 and Recall@10 against the number of random fine-tuning samples (every seed a dot), with the
    recipe's DEALRec at its budget beside the random points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["curve"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = [max(r["samples"], 10) for r in rows]
    for m, colour in (("ndcg@10", "C0"), ("recall@10", "C1")):
        ax.errorbar(x, [r[m]["mean"] for r in rows], yerr=[r[m]["std"] for r in rows], marker="o", color=colour,
                    capsize=3, label=f"random share: {m} (mean ± std)")
        for r, xi in zip(rows, x):
            ax.scatter([xi] * len(r[m]["values"]), r[m]["values"], color=colour, s=8, alpha=0.4)
    if "dealrec_budget" in result:
        d = result["dealrec_budget"]
        for m, colour in (("ndcg@10", "C0"), ("recall@10", "C1")):
            ax.errorbar([d["samples"] * 1.08], [np.mean(d[m])], yerr=[np.std(d[m])], marker="D", color=colour,
                        mfc="white", capsize=3, ls="none", label=f"DEALRec at {d['samples']}: {m}")
    title = "DEALRec's LLM recommender (SmolLM2-135M): gain from more data"
    if "sasrec_same_users" in result:
        title += f"\nSASRec on the same users: NDCG@10 {result['sasrec_same_users']['ndcg@10']:.3f}, " \
                 f"Recall@10 {result['sasrec_same_users']['recall@10']:.3f}"
    ax.set_xscale("log")
    ax.set_xticks(x, [("0 (zero-shot)" if r["samples"] == 0 else str(r["samples"])) for r in rows], fontsize=8)
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"fine-tuning samples (random, of the {result['config']['pool']:,}-sample pool)")
    ax.set_ylabel(f"test metric ({result['test_users']} users, full ranking)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", nargs="*", default=["0.4:0", "0.2:0", "0.1:1", "0.1:2", "0.02:0"], metavar="SHARE:SEED")
    p.add_argument("--reuse", default=str(REUSE), help="committed recipe results.json ('' = none)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="DEALRecConfig fields")
    p.add_argument("--out", default=str(RESULTS / "learning-curve.json"))
    p.add_argument("--replot", action="store_true", help="only redraw the PNG of an existing --out JSON")
    args = p.parse_args(argv)
    if args.replot:
        plot(json.loads(Path(args.out).read_text()), Path(args.out).with_suffix(".png"))
        return 0
    t0 = time.perf_counter()
    cfg = DEALRecConfig.from_dict(dict(kv.split("=", 1) for kv in args.set), source="--set", coerce=True)
    plan = sorted(((float(s), int(seed)) for s, seed in (x.split(":") for x in args.plan)), key=lambda x: -x[0])
    points = []
    if args.reuse:
        data = json.loads(Path(args.reuse).read_text())
        if data["config"] != cfg.to_dict():
            raise SystemExit(f"{args.reuse}: its config differs from this run's; pass --reuse '' or the same --set")
        points = reused_points(data, Path(args.reuse).resolve())
        sasrec = data["rows"]["SASRec (surrogate, all training data; same test users)"][0]["metrics"]
        entries = data["rows"][f"dealrec {cfg.budget:.0%}"]
        dealrec = {"samples": entries[0]["samples"], "seeds": [e["seed"] for e in entries],
                   **{m: [e["metrics"][m] for e in entries] for m in ("ndcg@10", "recall@10")}}
    with worker_pool(args.jobs) as ex:
        futures = [ex.submit(point, cfg.to_dict(), share, seed) for share, seed in plan]
        for f in as_completed(futures):
            new = f.result()
            old = [q for q in points if (q["share"], q["seed"]) == (new["share"], new["seed"])]
            if old:  # measured again: this run's point stands, the committed one is kept as a reproduction check
                new["committed"] = {"source": old[0]["source"], "metrics": old[0]["metrics"]}
                points.remove(old[0])
            points.append(new)
    points.sort(key=lambda q: (q["share"], q["seed"]))
    rows = summary(points)
    out = Path(args.out)
    result = {"command": "python benchmarks/dealrec_learning_curve.py " + " ".join(argv or sys.argv[1:]),
              "machine": environment(), "llm": f"SmolLM2-135M-Instruct (pretrained, GGUF Q4_1), weights in "
              f"{cfg.dtype}", "config": cfg.to_dict(), "test_users": int(cfg.eval_users), "points": points,
              "curve": rows, "seconds": time.perf_counter() - t0}
    if args.reuse:
        result["dealrec_budget"] = dealrec
        result["sasrec_same_users"] = sasrec
    write_json(out, result)
    plot(result, out.with_suffix(".png"))
    for r in rows:
        print(f"{r['samples']:>5} samples: NDCG@10 {r['ndcg@10']['mean']:.4f} ± {r['ndcg@10']['std']:.4f}  "
              f"Recall@10 {r['recall@10']['mean']:.4f} ± {r['recall@10']['std']:.4f}  seeds {r['seeds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
