"""Cost of DEALRec's effort score on the real SmolLM2-135M (LoRA r 8 on q/v): per-sample gradient norms of the
last LoRA block's layers, with backward through every block (every LoRA parameter trainable, as before) against
backward cut at the last LoRA block (everything else frozen: `only_trainable`). Both give the same norms; this
measures the time, and checks the norms agree on the real model.

    python benchmarks/dealrec_effort_cost.py            # 48 pool samples of MovieLens-100K, batch 16, 1 thread

Writes ``benchmarks/results/dealrec/effort_cost.json``.
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


def main(argv=None) -> int:
    from genir.atomic import write_json
    from genir.data import leave_one_out, load_dataset
    from genir.llm import add_lora, load_causal_lm
    from genir.methods.dealrec.bigrec import BIGRec
    from genir.methods.dealrec.procedure import (
        DEALRecConfig,
        answer_losses,
        item_titles,
        last_lora_linears,
        only_trainable,
        sample_pool,
    )
    from genir.methods.dealrec.scores import linear_grad_norms
    from genir.runs import environment

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dealrec" / "effort_cost.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = DEALRecConfig(pool=args.samples)
    split = leave_one_out(load_dataset("ml-100k"))
    titles = item_titles(split)
    pool = sample_pool(split, cfg, seed=0)
    llm, tok = load_causal_lm(None)
    rows = {}
    for name, cut in (("backward through every block", False), ("backward cut at the last LoRA block", True)):
        torch.manual_seed(0)
        rec = BIGRec(add_lora(copy.deepcopy(llm)), tok, titles, max_history=cfg.max_history,
                     beam_width=cfg.beam_width, max_title_tokens=cfg.max_title_tokens)
        rec.eval()
        linears = last_lora_linears(rec.model)
        if cut:
            linears = only_trainable(rec.model, linears)
        pairs = rec.pairs(pool.histories, pool.targets)
        t0 = time.perf_counter()
        norms = linear_grad_norms(answer_losses(rec, pairs), linears, len(pool), batch_size=args.batch)
        seconds = time.perf_counter() - t0
        rows[name] = {"seconds": round(seconds, 2), "seconds_per_sample": round(seconds / len(pool), 4),
                      "norms": np.asarray(norms).round(6).tolist()}
        print(f"{name}: {seconds:.1f} s for {len(pool)} samples ({seconds / len(pool):.3f} s each)", flush=True)
    full, cut = rows.values()
    a, b = np.asarray(full["norms"]), np.asarray(cut["norms"])
    result = {"command": "python benchmarks/dealrec_effort_cost.py " + " ".join(argv or sys.argv[1:]),
              "machine": environment(), "samples": len(pool), "batch": args.batch, "runs": rows,
              "speedup": round(full["seconds"] / cut["seconds"], 2),
              "max_relative_difference": float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))}
    write_json(Path(args.out), result)
    print(f"speed-up {result['speedup']}x, max relative difference of the norms {result['max_relative_difference']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
