"""What each part of DEALRec costs on the real SmolLM2-135M (LoRA r 8 on q/v), one thread: the numbers that size
``recipes/dealrec.py``'s default plan.

* effort: per-sample gradient norms of the last LoRA block's layers, backward through every block against
  backward cut at that block (``only_trainable``); the norms must agree;
* fine-tuning: seconds per sample and epoch of the one Trainer on pool samples;
* ranking: seconds per test user of the constrained title beam search, for several beam widths, with the LoRA
  adapter as peft modules and merged into the weights, and once with the EOS padding scored as title tokens (no
  end code: the search runs every level); and the longest decoded title of a batch against the padded width.

    python benchmarks/dealrec_cost.py                   # every part
    python benchmarks/dealrec_cost.py --parts beam      # only the ranking part

    python benchmarks/dealrec_cost.py --dtype float32   # the LLM's weights in float32 (default: bfloat16)

Writes ``benchmarks/results/dealrec/cost-<dtype>.json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def effort_part(llm, tok, titles, pool, cfg, batch: int) -> dict:
    from genir.llm import add_lora
    from genir.methods.dealrec.bigrec import BIGRec
    from genir.methods.dealrec.procedure import answer_losses, last_lora_linears, only_trainable
    from genir.methods.dealrec.scores import linear_grad_norms

    rows = {}
    for name, cut in (("backward through every block", False), ("backward cut at the last LoRA block", True)):
        torch.manual_seed(0)
        rec = BIGRec(add_lora(copy.deepcopy(llm)), tok, titles, max_history=cfg.max_history,
                     beam_width=cfg.beam_width, max_title_tokens=cfg.max_title_tokens)
        rec.eval()
        linears = last_lora_linears(rec.model)
        if cut:
            linears = only_trainable(rec.model, linears)
        t0 = time.perf_counter()
        norms = linear_grad_norms(answer_losses(rec, rec.pairs(pool.histories, pool.targets)), linears, len(pool),
                                  batch_size=batch)
        seconds = time.perf_counter() - t0
        rows[name] = {"seconds": round(seconds, 2), "seconds_per_sample": round(seconds / len(pool), 4),
                      "norms": np.asarray(norms).round(6).tolist()}
        print(f"effort, {name}: {seconds / len(pool):.3f} s per sample", flush=True)
    a, b = (np.asarray(r["norms"]) for r in rows.values())
    full, cut = rows.values()
    return {"samples": len(pool), "batch": batch, "runs": rows, "speedup": round(full["seconds"] / cut["seconds"], 2),
            "max_relative_difference": float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))}


def finetune_part(llm, tok, titles, pool, cfg) -> dict:
    from genir.methods.dealrec.procedure import finetune

    one_epoch = type(cfg).from_dict({**cfg.to_dict(), "epochs": 1})
    _, seconds, _ = finetune(llm, tok, titles, pool, np.arange(len(pool)), one_epoch, seed=0, progress=False)
    print(f"fine-tuning: {seconds / len(pool):.3f} s per sample and epoch", flush=True)
    return {"samples": len(pool), "batch_size": cfg.batch_size, "seconds": round(seconds, 2),
            "seconds_per_sample_epoch": round(seconds / len(pool), 4)}


def beam_part(llm, tok, titles, split, cfg, users: int, widths: list[int]) -> dict:
    from genir.eval.evaluator import EvalBatch, pad_histories
    from genir.llm import add_lora
    from genir.methods.dealrec.bigrec import BIGRec
    from genir.methods.dealrec.procedure import eval_users

    chosen = eval_users(split, type(cfg).from_dict({**cfg.to_dict(), "eval_users": users}), seed=0)
    histories = split.histories("test")
    torch.manual_seed(0)
    lora = add_lora(copy.deepcopy(llm))
    variants = {"LoRA as peft modules": lora, "LoRA merged into the weights": copy.deepcopy(lora).merge_and_unload()}
    out = {"users": len(chosen), "eval_batch": 8, "runs": {}}
    plan = [(w, name, True) for w in widths for name in variants]
    plan.append((max(widths), "LoRA merged into the weights", False))
    for width, name, end in plan:
        model = variants[name]
        rec = BIGRec(model, tok, titles, max_history=cfg.max_history, beam_width=width,
                     max_title_tokens=cfg.max_title_tokens)
        if not end:  # the EOS padding scored like title tokens, the search runs every level
            rec.end_code = None
        needed = []
        t0 = time.perf_counter()
        for start in range(0, len(chosen), 8):
            rows = chosen[start:start + 8]
            history, length = pad_histories([histories[u] for u in rows], split.num_items)
            batch = EvalBatch(torch.as_tensor(rows), history, length, split.num_items)
            scores = rec.full_scores(batch)
            top = scores.topk(width, dim=1).indices  # the decoded items
            codes = rec.item_codes[top]
            eos = codes == tok.eos_token_id
            needed.append(int(eos.float().argmax(-1).max()) + 1)
        seconds = time.perf_counter() - t0
        key = f"{width} beams, {name}" + ("" if end else ", EOS padding scored (no end code)")
        out["runs"][key] = {"seconds_per_user": round(seconds / len(chosen), 3),
                            "longest_title_per_batch": needed, "padded_width": int(rec.item_codes.shape[1])}
        print(f"ranking, {key}: {seconds / len(chosen):.2f} s per user; longest decoded title (tokens + EOS, "
              f"mean over batches) {np.mean(needed):.1f} of {rec.item_codes.shape[1]}", flush=True)
    return out


def main(argv=None) -> int:
    from genir.atomic import write_json
    from genir.data import leave_one_out, load_dataset
    from genir.llm import load_causal_lm
    from genir.methods.dealrec.procedure import DEALRecConfig, item_titles, sample_pool
    from genir.runs import environment

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="effort,finetune,beam")
    p.add_argument("--samples", type=int, default=48, help="pool samples for the effort and fine-tuning parts")
    p.add_argument("--batch", type=int, default=16, help="samples per batch of the effort pass")
    p.add_argument("--users", type=int, default=16, help="test users of the ranking part")
    p.add_argument("--widths", default="10,20", help="beam widths of the ranking part")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default=DEALRecConfig().dtype, choices=("bfloat16", "float32"),
                   help="dtype of the LLM's frozen weights (the recipe's default: bfloat16)")
    p.add_argument("--out", default=None, help="default: benchmarks/results/dealrec/cost-<dtype>.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = [x for x in args.parts.split(",") if x]
    cfg = DEALRecConfig(pool=args.samples, dtype=args.dtype)
    split = leave_one_out(load_dataset("ml-100k"))
    titles = item_titles(split)
    pool = sample_pool(split, cfg, seed=0)
    llm, tok = load_causal_lm(None, dtype=cfg.torch_dtype)
    llm.requires_grad_(False)
    result = {"command": "python benchmarks/dealrec_cost.py " + " ".join(argv or sys.argv[1:]),
              "machine": environment(), "config": cfg.to_dict()}
    if "effort" in parts:
        result["effort"] = effort_part(llm, tok, titles, pool, cfg, args.batch)
    if "finetune" in parts:
        result["finetune"] = finetune_part(llm, tok, titles, pool, cfg)
    if "beam" in parts:
        result["ranking"] = beam_part(llm, tok, titles, split, cfg, args.users,
                                      [int(w) for w in args.widths.split(",")])
    write_json(Path(args.out or ROOT / "benchmarks" / "results" / "dealrec" / f"cost-{args.dtype}.json"), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
