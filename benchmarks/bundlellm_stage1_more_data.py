"""Bundle-LLM stage 1 with three times the training questions (the check quoted in genir/methods/bundlellm/README.md).

Trains stage 1 (LoRA on text prompts) of :class:`genir.methods.bundlellm.BundleLLM` on SmolLM2-135M-Instruct for one
epoch of ``--tq`` questions (titles cut to ``--tw`` words) and prints the zero-shot and trained HitRate@1 on 98
validation questions (N=10, half random and half same-section negatives) of the seed-0 split; ``--stage2`` continues
with stage 2. Measured: ``python benchmarks/bundlellm_stage1_more_data.py --tq 192 --tw 5 --threads 2`` -> zero-shot
0.102, stage 1 0.092 (676 s on the shared 2-core machine).
"""

import argparse
import time

import numpy as np
import torch

from genir.data.bundles import make_questions, read_debian_bundles, split_bundles
from genir.llm import load_causal_lm
from genir.methods.bundlellm import BundleLLM, BundleLLMConfig
from genir.methods.bundlellm.features import item_features
from genir.methods.bundlellm.training import (
    QuestionPool,
    default_trainer_config,
    evaluate_choices,
    train_stage,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tq", type=int, default=256, help="training questions (one epoch = this many)")
    p.add_argument("--tw", type=int, default=5, help="words of a title kept in prompts")
    p.add_argument("--stage2", action="store_true", help="continue with stage 2 (hybrid tokens)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n2", type=int, default=10, help="candidates per stage-2 training question")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bs", type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = read_debian_bundles(None, None)
    split = split_bundles(data, seed=0)
    rng = np.random.default_rng(1)
    valid = []
    for neg in ("random", "hard"):
        valid += make_questions(data, split.bundles("valid"), num_candidates=10, negatives=neg,
                                seed=int(rng.integers(2**31)))[0]
    feats = item_features(data, split.bundles("train"))
    llm, tok = load_causal_lm(None)
    model = BundleLLM(llm, tok, data.titles(), feats, BundleLLMConfig(title_words=a.tw), None)
    model.set_stage("zero-shot")
    t = time.time()
    print("zero-shot", evaluate_choices(model, valid, batch_size=8), f"{time.time() - t:.0f}s", flush=True)
    stages = [("stage1", 10, 0)] + ([("stage2", a.n2, 1000)] if a.stage2 else [])
    for stage, n, seed in stages:
        t = time.time()
        pool = QuestionPool(data, split.bundles("train"), size=a.tq, num_candidates=n, seed=seed)
        res = train_stage(model, stage, pool, valid, default_trainer_config(
            epochs=a.epochs, lr=a.lr, batch_size=a.bs, patience=2, warmup_steps=4, seed=0), eval_batch_size=8)
        print(stage, res.history, f"{time.time() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
