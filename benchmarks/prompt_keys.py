"""Which prompts the pool's keys select, without training anything: PromptDSI's fixed topic keys on raw vs centred
features, and L2P's keys at their random start, on the Debian corpus of recipes/promptdsi.py.

    python benchmarks/prompt_keys.py                  # the default 10,000-document subset
    python benchmarks/prompt_keys.py --docs 2000      # smaller

Selection depends only on the frozen encoder's query feature (mean of its cached lower layers) and the keys, so
the usage histograms of fixed keys are known before any prompt trains. Measured, for top-k selection (k = 2) over
a pool of ``--topics`` (32) keys: the entropy of the selections (nats; uniform = log(pool)) and the number of
keys never chosen, for the queries the pool is trained on (D1..D3's documents and pseudo-queries) and for the test
queries (every corpus' test synopses). A third kind of fixed key clusters D0's training texts (its documents and
their training queries, never a test synopsis) instead of its documents only. The committed default run of
recipes/promptdsi.py used raw document features; this isolates why its fixed keys send most test synopses to three
keys, and what centring the features or clustering queries too does. Writes
``benchmarks/results/promptdsi/prompt_keys.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def usage(features: np.ndarray, keys: np.ndarray, center: np.ndarray, top_k: int) -> dict:
    from genir.methods.dsi.prompts import PromptPool

    f = torch.nn.functional.normalize(torch.from_numpy(features).float() - torch.from_numpy(center), dim=-1)
    k = torch.nn.functional.normalize(torch.from_numpy(keys).float(), dim=-1)
    chosen = (f @ k.T).topk(top_k, dim=1).indices.flatten()
    counts = torch.bincount(chosen, minlength=len(keys))
    return {"entropy": round(PromptPool.entropy(counts), 4), "never_chosen": int((counts == 0).sum()),
            "top3_share": round(float(counts.sort(descending=True).values[:3].sum() / counts.sum()), 4),
            "counts": counts.tolist()}


def main(argv=None) -> int:
    from genir.atomic import write_json
    from genir.data.beir import read_beir
    from genir.data.debian_corpus import debian_to_beir, find_snapshot
    from genir.data.pseudo_queries import with_pseudo_queries
    from genir.methods.dsi.procedures import DSIConfig, document_texts, make_encoder, pairs_of
    from genir.methods.dsi.prompts import topic_keys

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=10000)
    p.add_argument("--topics", type=int, default=32)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--seeds", default="0,1,2", help="k-means / random-key seeds")
    p.add_argument("--key-texts", type=int, default=10000, help="D0 training texts sampled for the keys over "
                   "documents and queries")
    p.add_argument("--work", default="runs/prompt_keys")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "promptdsi" / "prompt_keys.json"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    folder = Path(args.work) / f"debian-{args.docs}"
    if not (folder / "corpus.jsonl").is_file():
        debian_to_beir(find_snapshot(), folder, docs=args.docs, seed=0, overwrite=True)
    task = with_pseudo_queries(read_beir(folder, name=f"debian-{args.docs}"), 2, seed=0)  # as the recipe
    enc = make_encoder(DSIConfig())
    d0 = task.steps[0]
    new = np.concatenate(task.steps[1:])
    train_texts = pairs_of(task, new, ("indexing", "pseudo"))["text"].tolist()
    test_texts = task.queries[task.queries["stage"] == "test"]["text"].tolist()
    doc = enc.features(document_texts(task, d0)).numpy()
    d0_train = pairs_of(task, d0)["text"].tolist()  # D0's documents and every training query of them
    pick = np.random.default_rng(0).choice(len(d0_train), size=min(args.key_texts, len(d0_train)), replace=False)
    d0_mix = enc.features([d0_train[i] for i in np.sort(pick)]).numpy()
    train = enc.features(train_texts).numpy()
    test = enc.features(test_texts).numpy()
    mean = doc.mean(0)
    cos_to_mean = {name: float(np.mean(x @ mean / np.linalg.norm(x, axis=1) / np.linalg.norm(mean)))
                   for name, x in (("D0 documents", doc), ("training texts", train), ("test synopses", test))}
    rows = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, center in (("topic keys, raw features (recipe default)", np.zeros_like(mean)),
                             ("topic keys, centred features (center_keys=true)", mean)):
            keys = topic_keys(doc - center, args.topics, seed)
            rows.setdefault(name, []).append({"seed": seed, "train": usage(train, keys, center, args.top_k),
                                              "test": usage(test, keys, center, args.top_k)})
        name = "topic keys over D0's training texts (documents + training queries; topic_texts=training)"
        keys = topic_keys(d0_mix, args.topics, seed)
        rows.setdefault(name, []).append({"seed": seed, "train": usage(train, keys, np.zeros_like(mean), args.top_k),
                                          "test": usage(test, keys, np.zeros_like(mean), args.top_k)})
        g = torch.Generator().manual_seed(seed)
        keys = torch.randn(args.topics, enc.hidden_size, generator=g).numpy()
        rows.setdefault("L2P keys at their random start (before the pull)", []).append(
            {"seed": seed, "train": usage(train, keys, np.zeros_like(mean), args.top_k),
             "test": usage(test, keys, np.zeros_like(mean), args.top_k)})
    summary = {name: {part: {m: round(float(np.mean([r[part][m] for r in runs])), 4)
                             for m in ("entropy", "never_chosen", "top3_share")} for part in ("train", "test")}
               for name, runs in rows.items()}
    result = {"command": "python benchmarks/prompt_keys.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}",
              "corpus": {"documents": len(task.catalogue), "steps": [len(s) for s in task.steps],
                         "training_texts": len(train_texts), "test_queries": len(test_texts)},
              "pool": args.topics, "top_k": args.top_k, "max_entropy": round(float(np.log(args.topics)), 4),
              "mean_cosine_to_the_D0_mean_feature": cos_to_mean, "summary": summary, "runs": rows,
              "seconds": round(time.perf_counter() - t0, 1)}
    write_json(Path(args.out), result)
    print(f"cosine of features to the D0 mean feature: {cos_to_mean}")
    for name, s in summary.items():
        print(f"{name}: train entropy {s['train']['entropy']:.3f} (never {s['train']['never_chosen']:.1f}), "
              f"test entropy {s['test']['entropy']:.3f} (never {s['test']['never_chosen']:.1f}, top-3 share "
              f"{s['test']['top3_share']:.2f}) of max {result['max_entropy']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
