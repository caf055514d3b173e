"""DSI and PromptDSI on real documents: Debian package descriptions (or any BEIR folder) arriving in corpus steps.

    python recipes/promptdsi.py                    # default: a fixed 10,000-document subset, seeds 0 1 2 (CPU)
    python recipes/promptdsi.py --quick            # ~2,000 documents, one seed, one epoch (used by the tests)
    python recipes/promptdsi.py --jobs 1           # seeds one after the other in this process (default: the first
                                                   # here, the others in a worker process, one thread each)
    python recipes/promptdsi.py --full             # all 63,904 usable documents (meant for a GPU)
    python recipes/promptdsi.py --beir PATH        # a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) instead

The documents are long package descriptions; queries are package synopses (known-item search). D0 trains DSI on
its documents, two pseudo-queries per document and the synopses of D0's training share; D1..D3 are new Debian
sections that arrive later with pseudo-queries only (their synopses are test queries, never trained on).

Compared in one run: DSI with atomic docids and with semantic (hierarchical k-means) docids on D0; then, from the
same D0 model, sequential fine-tuning, L2P-style learned keys, PromptDSI (topic-aware fixed keys), PromptDSI with
weight-aligned new rows and with topic keys over D0's queries too (additions, not in the paper), IncDSI, and a
re-train on everything after the last step (upper bound); BM25 (bm25s) and dense retrieval (the same pretrained
encoder + FAISS) on every step. Writes ``runs/promptdsi/<time>/``: ``results.json``, ``results.md``,
``steps.png`` (Hits@10 on D0 and on the newest corpus per step) and ``prompt_usage.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write
from genir.data.beir import read_beir
from genir.data.debian_corpus import debian_to_beir, find_snapshot
from genir.data.pseudo_queries import with_pseudo_queries
from genir.eval.continual import continual_summary
from genir.eval.retrieval import RetrievalEvaluator
from genir.methods.dsi.baselines import BM25Index, DenseIndex
from genir.methods.dsi.procedures import (
    DSIConfig,
    QueryCache,
    atomic_dsi,
    document_texts,
    incdsi_step,
    make_encoder,
    pairs_of,
    prompt_model,
    prompt_step,
    retrain,
    sequential_step,
    train_dsi,
)
from genir.methods.dsi.prompts import PromptPool
from genir.methods.dsi.semantic import SemanticDSI

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tokenizers" / "hkmeans_docid.yaml"
METRICS = ("hits@1", "hits@10", "mrr@10")
CONTINUAL = ("seq-ft", "l2p", "promptdsi", "promptdsi+wa", "promptdsi+wa+qt", "incdsi")
# additions to PromptDSI, not in the paper (see the README): "+wa" weight aligning of the new rows after every step
# (``align_new_rows``); "+qt" topic keys clustered over D0's training texts (documents and their training queries)
PROMPTED = ("l2p", "promptdsi", "promptdsi+wa", "promptdsi+wa+qt")
# CPU-sized: one epoch on D0 (rows start at the documents' embeddings, so DSI is usable after one), 10 beams
CPU = {"epochs": 1, "beam_width": 10}
QUICK = {**CPU, "epochs": 2, "step_epochs": 2, "n_topics": 8, "incdsi_steps": 100, "max_length": 32, "trainable_layers": 1}


def evaluate(model, task, step: int, corpus_step: int, stage: str = "test", timing: dict | None = None
             ) -> dict[str, float]:
    """Hits@1/10 and MRR@10 of ``step``'s queries among the documents that exist after ``corpus_step``.
    ``timing``, if given, receives ``ms_per_query``: the time spent answering (query encoding included), per
    query, so the latency in the tables is that of the evaluated queries (batches of 256) and costs no second pass."""
    ev = RetrievalEvaluator(task, stage, ks=(1, 10), metrics=("hits", "mrr"), step=step, corpus_step=corpus_step)
    if hasattr(model, "eval"):
        model.eval()
    exists = task.items_at(corpus_step)
    clock = {"seconds": 0.0, "queries": 0}

    def answer(batch):
        t0 = time.perf_counter()
        lists = model.retrieve(batch, k=10)
        clock["seconds"] += time.perf_counter() - t0
        clock["queries"] += len(lists.items)
        found = lists.items[lists.items >= 0].numpy()
        if not exists[found].all():  # every answer must be a document that exists at this step
            raise AssertionError(f"{type(model).__name__} returned documents that do not exist after step "
                                 f"{corpus_step}: {sorted(set(found[~exists[found]].tolist()))[:5]}")
        return lists

    with torch.no_grad():
        out = ev.evaluate(answer)
    if timing is not None:
        timing["ms_per_query"] = 1000 * clock["seconds"] / max(1, clock["queries"])
    return {m: out[m] for m in METRICS}


def model_bytes(model) -> int:
    return int(sum(p.numel() * p.element_size() for p in model.parameters()))


def step_rows(model, task, t: int) -> dict[str, dict[str, float]]:
    """Metrics of every corpus' test queries after step ``t``."""
    return {str(j): evaluate(model, task, j, t) for j in range(t + 1)}


def semantic_codes(task, d0: np.ndarray, embeddings: torch.Tensor, out: Path, overrides: dict) -> tuple:
    """Hierarchical k-means docids of D0's documents (on their pretrained embeddings), via the index builder."""
    import pandas as pd

    from genir.data.catalogue import Catalogue
    from genir.index import build_index, load_index

    frame = pd.DataFrame({"id": [task.catalogue.ids[i] for i in d0]})
    cat = Catalogue.from_frame(f"{task.name}-D0", frame)
    path = build_index(cat, SPEC, out, overrides=overrides, progress=False, features=embeddings[d0].numpy(),
                       overwrite=True)
    index = load_index(path)
    return index.table.codes, list(index.table.level_sizes), index.manifest.get("stats", {})


def run_seed(seed: int, task, base, embeddings, cfg: DSIConfig, out: Path, hk: dict, progress: bool,
             side: bool = True) -> dict:
    """One seed: atomic DSI on D0, the four continual methods over the steps; with ``side`` also the semantic-docid
    DSI and the re-train upper bound (the recipe runs these two on its first ``--side-seeds`` seeds only)."""
    steps = task.steps
    last = len(steps) - 1
    d0 = steps[0]
    res: dict = {"seed": seed}
    torch.manual_seed(seed)
    # -- DSI on D0: atomic and semantic docids ------------------------------------------------------------------------
    valid = RetrievalEvaluator(task, "valid", ks=(10,), metrics=("hits",), step=0, corpus_step=0)
    atomic = atomic_dsi(copy.deepcopy(base), task, d0, cfg, embeddings)
    res["atomic_train"] = train_dsi(atomic, task, d0, valid, cfg, seed, progress)
    timing: dict = {}
    res["atomic_d0"] = evaluate(atomic, task, 0, 0, timing=timing)
    res["atomic_latency_ms"] = timing["ms_per_query"]
    res["atomic_bytes"] = model_bytes(atomic)
    if side:
        codes, sizes, stats = semantic_codes(task, d0, embeddings, out / f"hkmeans-seed{seed}", hk)
        torch.manual_seed(seed)
        semantic = SemanticDSI(copy.deepcopy(base), codes, sizes, items=d0, layers=cfg.decoder_layers,
                               beam_width=cfg.beam_width, encoder_lr=cfg.encoder_lr)
        res["semantic_train"] = train_dsi(semantic, task, d0, valid, cfg, seed, progress)
        res["semantic_d0"] = evaluate(semantic, task, 0, 0, timing=timing)
        res["semantic_latency_ms"] = timing["ms_per_query"]
        res["semantic_bytes"] = model_bytes(semantic)
        res["semantic_ids"] = {"level_sizes": sizes, "stats": stats}
        del semantic
    # -- incremental steps from the same D0 model ------------------------------------------------------------------
    atomic.eval()
    d0_pairs = pairs_of(task, d0)
    d0_texts = document_texts(task, d0)
    models = {"seq-ft": copy.deepcopy(atomic), "incdsi": copy.deepcopy(atomic),
              "l2p": prompt_model(copy.deepcopy(atomic), d0_texts, cfg, learn_keys=True, seed=seed),
              "promptdsi": prompt_model(copy.deepcopy(atomic), d0_texts, cfg, learn_keys=False, seed=seed),
              "promptdsi+wa+qt": prompt_model(copy.deepcopy(atomic), d0_texts, cfg, learn_keys=False, seed=seed,
                                              key_texts=d0_pairs["text"].tolist())}
    models["promptdsi+wa"] = copy.deepcopy(models["promptdsi"])  # the same pool; only its steps differ
    aligned = dataclasses.replace(cfg, align_new_rows=True)
    step_cfg = {"l2p": cfg, "promptdsi": cfg, "promptdsi+wa": aligned, "promptdsi+wa+qt": aligned}
    cache = QueryCache(models["incdsi"], d0_pairs, cfg.incdsi_cache, seed)
    perf = {name: [step_rows(atomic, task, 0)] for name in models}
    info = {name: [] for name in models}
    for t in range(1, last + 1):
        new = steps[t]
        info["seq-ft"].append(sequential_step(models["seq-ft"], task, new, cfg, seed + t, progress))
        info["incdsi"].append(incdsi_step(models["incdsi"], task, new, cache, cfg, seed + t))
        for name in PROMPTED:
            info[name].append(prompt_step(models[name], task, new, step_cfg[name], seed + t, progress))
        for name, m in models.items():
            perf[name].append(step_rows(m, task, t))
        print(f"  seed {seed} step {t}: " + "  ".join(
            f"{n} D0 {perf[n][t]['0']['hits@10']:.3f} new {perf[n][t][str(t)]['hits@10']:.3f}" for n in models),
            flush=True)
    for name in PROMPTED:
        pool: PromptPool = models[name].pool
        pool.eval_usage.zero_()
        evaluate(models[name], task, 0, last)  # fill the usage histogram with every test query
        for j in range(1, last + 1):
            evaluate(models[name], task, j, last)
        res[f"{name}_usage"] = {"train": pool.train_usage.tolist(), "test": pool.eval_usage.tolist(),
                                "train_entropy": PromptPool.entropy(pool.train_usage),
                                "test_entropy": PromptPool.entropy(pool.eval_usage),
                                "max_entropy": float(np.log(len(pool.train_usage)))}
    # -- upper bound: a fresh DSI on every document ------------------------------------------------------------------
    if side:
        upper, upper_info = retrain(copy.deepcopy(base), task, task.items_at(last).nonzero()[0], cfg, seed,
                                    progress, embeddings)
        res["retrain"] = {"info": upper_info, "final": step_rows(upper, task, last)}
    res["continual"] = {name: {"perf": perf[name], "steps": [{k: v for k, v in i.items() if k != "history"}
                                                                for i in info[name]]} for name in models}
    return res


def frozen_encoder(task, cfg: DSIConfig, progress: bool):
    """The pretrained encoder with its frozen lower layers cached over every training and query text, the
    documents' embeddings, and the seconds that took."""
    base = make_encoder(cfg)
    t0 = time.perf_counter()
    base.precompute(task.train_pairs["text"].tolist() + task.queries["text"].tolist(), progress=progress)
    embeddings = base.embed(document_texts(task, np.arange(len(task.catalogue))), progress=progress)
    return base, embeddings, time.perf_counter() - t0


def _seeds_in_worker(task, cfg: DSIConfig, seeds: list[int], side: list[int], out: Path, hk: dict) -> list[dict]:
    """Seeds in a worker process (one torch thread, no progress bars), with its own frozen-encoder cache (rebuilt
    here: cheaper than sending gigabytes of cached states between processes)."""
    torch.set_num_threads(1)
    base, embeddings, seconds = frozen_encoder(task, cfg, progress=False)
    results = []
    for seed in seeds:
        t0 = time.perf_counter()
        res = run_seed(seed, task, base, embeddings, cfg, out, hk, False, side=seed in side)
        results.append({**res, "seconds": round(time.perf_counter() - t0, 1),
                        "worker_cache_seconds": round(seconds, 1)})
    return results


def baselines(task, base, embeddings) -> dict:
    """BM25 and dense+FAISS after every step (seed-independent), with latency and index size."""
    steps = task.steps
    texts_all = document_texts(task, np.arange(len(task.catalogue)))
    out = {}
    dense = DenseIndex(lambda q: base.embed(list(q), progress=False).numpy(), base.hidden_size)
    perf_bm25, perf_dense, seconds = [], [], {"bm25": [], "dense": []}
    for t, new in enumerate(steps):
        t0 = time.perf_counter()
        items = task.items_at(t).nonzero()[0]
        bm25 = BM25Index([texts_all[i] for i in items], items)
        seconds["bm25"].append(round(time.perf_counter() - t0, 3))
        t0 = time.perf_counter()
        dense.add(embeddings[new].numpy(), new)
        seconds["dense"].append(round(time.perf_counter() - t0, 3))
        perf_bm25.append(step_rows(bm25, task, t))
        perf_dense.append(step_rows(dense, task, t))
        if t == 0:
            out["bm25_d0"], out["dense_d0"] = perf_bm25[0]["0"], perf_dense[0]["0"]
            for key, system in (("bm25", bm25), ("dense", dense)):
                timing: dict = {}
                evaluate(system, task, 0, 0, timing=timing)
                out[f"{key}_latency_ms"] = timing["ms_per_query"]
            out["bm25_bytes"], out["dense_bytes"] = bm25.nbytes(), dense.nbytes()
    out["perf"] = {"bm25": perf_bm25, "dense": perf_dense}
    out["update_seconds"] = seconds
    return out


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def summarise(results: dict) -> tuple[dict, str]:
    seeds = results["seeds"]
    base = results["baselines"]
    lines = [f"# DSI and PromptDSI on {results['corpus']['name']}", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
             (f"Seeds: {[s['seed'] for s in seeds]}; documents per step: {results['corpus']['steps']}; "
              f"total {results['seconds']:.0f} s"), "",
             "## D0: held-out synopses of D0 documents, ranked among D0", "",
             "| system | Hits@1 | Hits@10 | MRR@10 | ms/query | index MB |", "| --- | --- | --- | --- | --- | --- |"]
    for name, key in (("DSI atomic docids", "atomic"), ("DSI semantic docids (hk-means)", "semantic")):
        runs = [s for s in seeds if f"{key}_d0" in s]
        row = [mean_std([s[f"{key}_d0"][m] for s in runs]) for m in METRICS]
        ms = statistics.mean(s[f"{key}_latency_ms"] for s in runs)
        note = "" if len(runs) == len(seeds) else f" (seed {', '.join(str(s['seed']) for s in runs)})"
        lines.append(f"| {name}{note} | {' | '.join(row)} | {ms:.2f} | {runs[0][f'{key}_bytes'] / 2**20:.1f} |")
    for name, key in (("BM25 (bm25s)", "bm25"), ("dense: same encoder + FAISS", "dense")):
        row = [f"{base[f'{key}_d0'][m]:.4f}" for m in METRICS]
        lines.append(f"| {name} | {' | '.join(row)} | {base[f'{key}_latency_ms']:.2f} | "
                     f"{base[f'{key}_bytes'] / 2**20:.1f} |")
    summary: dict = {}
    last = len(results["corpus"]["steps"]) - 1
    lines += ["", f"## After D{last}: Hits@10 (test synopses; each corpus' queries ranked among every document)", "",
              ("| method | D0 | new corpora (mean D1..) | average A | forgetting F | D0 forgetting | BWT | "
               "trained params / step | s / step |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def row_of(name: str, perfs: list[list[dict]], steps_info: list[list[dict]] | None):
        per_seed = []
        for perf in perfs:
            mat = [[perf[t][str(j)]["hits@10"] for j in range(t + 1)] for t in range(len(perf))]
            s = continual_summary(mat)
            s["d0"] = mat[-1][0]
            s["new"] = float(np.mean(mat[-1][1:])) if len(mat) > 1 else float("nan")
            per_seed.append(s)
        keys = ("d0", "new", "average", "forgetting", "d0_forgetting", "bwt")
        summary[name] = {k: [p[k] for p in per_seed] for k in keys}
        cells = [mean_std(summary[name][k]) for k in keys]
        if steps_info:
            params = statistics.mean(i["trained_parameters"] for s in steps_info for i in s)
            secs = statistics.mean(i["seconds"] for s in steps_info for i in s)
            cells += [f"{params:,.0f}", f"{secs:.1f}"]
        else:
            cells += ["0", "-"]
        lines.append(f"| {name} | {' | '.join(cells)} |")

    for name in CONTINUAL:
        row_of(name, [s["continual"][name]["perf"] for s in seeds], [s["continual"][name]["steps"] for s in seeds])
    row_of("bm25 (re-indexed)", [base["perf"]["bm25"]], None)
    row_of("dense + FAISS (add)", [base["perf"]["dense"]], None)
    up = [s["retrain"]["final"] for s in seeds if "retrain" in s]
    up_seeds = ", ".join(str(s["seed"]) for s in seeds if "retrain" in s)
    lines.append(f"| re-train on all (upper bound, final step only; seed {up_seeds}) | "
                 f"{mean_std([u['0']['hits@10'] for u in up])} | "
                 f"{mean_std([float(np.mean([u[str(j)]['hits@10'] for j in range(1, last + 1)])) for u in up])} | "
                 f"{mean_std([float(np.mean([u[str(j)]['hits@10'] for j in range(last + 1)])) for u in up])} | - | - "
                 f"| - | all | {statistics.mean(s['retrain']['info']['seconds'] for s in seeds if 'retrain' in s):.0f} |")
    lines += ["", "## Against the paper's claims (D0 forgetting and new-corpus Hits@10, means over seeds)", ""]
    mean = {name: {k: float(np.mean(v)) for k, v in summary[name].items()} for name in CONTINUAL}
    for name in ("promptdsi", "promptdsi+wa", "promptdsi+wa+qt"):
        m, ft, inc = mean[name], mean["seq-ft"], mean["incdsi"]
        lines.append(
            f"- {name}: D0 forgetting {m['d0_forgetting']:.3f} = {m['d0_forgetting'] / max(ft['d0_forgetting'], 1e-9):.2f}x "
            f"sequential fine-tuning's {ft['d0_forgetting']:.3f} (claim: at most 1/3), new Hits@10 {m['new']:.3f} vs "
            f"{ft['new']:.3f}; against IncDSI: forgetting {100 * (m['d0_forgetting'] - inc['d0_forgetting']):+.1f} "
            f"points (claim: within 1), new Hits@10 {100 * (m['new'] - inc['new']):+.1f} points (claim: higher)")
    lines += ["", "## Prompt usage (entropy in nats of the selection histogram; uniform = log(pool))", "",
              "| pool | train entropy | test entropy | max | prompts never used at test |", "| --- | --- | --- | --- | --- |"]
    for name in ("promptdsi", "promptdsi+wa+qt", "l2p"):
        u = [s[f"{name}_usage"] for s in seeds]
        unused = [sum(1 for c in x["test"] if c == 0) for x in u]
        lines.append(f"| {name} | {mean_std([x['train_entropy'] for x in u])} | "
                     f"{mean_std([x['test_entropy'] for x in u])} | {u[0]['max_entropy']:.3f} | "
                     f"{statistics.mean(unused):.1f} of {len(u[0]['test'])} |")
    return summary, "\n".join(lines) + "\n"


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = results["seeds"]
    last = len(results["corpus"]["steps"]) - 1
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    curves = {name: [s["continual"][name]["perf"] for s in seeds] for name in CONTINUAL}
    curves["bm25"] = [results["baselines"]["perf"]["bm25"]]
    curves["dense"] = [results["baselines"]["perf"]["dense"]]
    for name, perfs in curves.items():
        d0 = np.mean([[p[t]["0"]["hits@10"] for t in range(last + 1)] for p in perfs], axis=0)
        newest = np.mean([[p[t][str(t)]["hits@10"] for t in range(last + 1)] for p in perfs], axis=0)
        axes[0].plot(range(last + 1), d0, marker="o", label=name)
        axes[1].plot(range(last + 1), newest, marker="o", label=name)
    axes[0].set_title("Hits@10 on D0's test queries")
    axes[1].set_title("Hits@10 on the newest corpus D_t")
    for ax in axes:
        ax.set_xlabel("corpus step t")
        ax.set_xticks(range(last + 1))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "steps.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.5))
    for ax, name, title in ((axes[0], "promptdsi", "PromptDSI: topic keys (documents)"),
                            (axes[1], "promptdsi+wa+qt", "topic keys (documents + queries)"),
                            (axes[2], "l2p", "L2P: learned keys")):
        u = seeds[0][f"{name}_usage"]
        ax.bar(range(len(u["test"])), u["test"], color="tab:blue")
        ax.set_title(f"{title} (test entropy {u['test_entropy']:.2f} / {u['max_entropy']:.2f})")
        ax.set_xlabel("pool entry")
        ax.set_ylabel("selections by test queries")
    fig.tight_layout()
    fig.savefig(out / "prompt_usage.png", dpi=120)
    plt.close(fig)


def load_corpus(args, out: Path):
    if args.beir:
        task = read_beir(args.beir)
        if len(task.steps) == 1:
            raise SystemExit(f"{args.beir}: no steps.tsv, so there are no corpus steps to add; write one "
                             "(corpus-id, step) or use the Debian corpus")
        return task, {"source": str(args.beir)}
    docs = None if args.full else args.docs or (2000 if args.quick else 10000)
    folder = out / "corpus"
    summary = debian_to_beir(find_snapshot(), folder, docs=docs, seed=0, overwrite=True)
    return read_beir(folder, name=f"debian-{docs or 'all'}"), summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="~2,000 documents, one seed, one epoch")
    p.add_argument("--full", action="store_true", help="every document of the snapshot (GPU-sized)")
    p.add_argument("--docs", type=int, default=None, help="size of the fixed document subset (default 10,000; "
                   "2,000 with --quick)")
    p.add_argument("--beir", default=None, help="a BEIR folder with steps.tsv instead of the Debian snapshot")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick: 0)")
    p.add_argument("--side-seeds", type=int, default=1, help="run the semantic-docid DSI and the re-train upper "
                   "bound on the first N seeds only (default 1: they are the costliest parts and no headline "
                   "comparison needs their spread; 0 = every seed)")
    p.add_argument("--jobs", type=int, default=None, help="processes of one torch thread each (default: min(seeds, "
                   "CPU cores)); with 2, the first seed runs here and the others one after the other in a worker")
    p.add_argument("--pseudo", type=int, default=2, help="pseudo-queries per document")
    p.add_argument("--set", nargs="*", default=[], help="DSIConfig overrides key=value (e.g. epochs=4)")
    p.add_argument("--out", default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    settings = {**(QUICK if args.quick else {} if args.full else CPU), **dict(kv.split("=", 1) for kv in args.set)}
    cfg = DSIConfig.from_dict(settings, source="promptdsi", coerce=True)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    out = Path(args.out or ROOT / "runs" / "promptdsi" / time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    task, corpus_summary = load_corpus(args, out)
    task = with_pseudo_queries(task, args.pseudo, seed=0)
    print(f"corpus {task.name}: {len(task.catalogue)} documents, steps {[len(s) for s in task.steps]}, "
          f"{len(task.train_pairs)} training pairs", flush=True)
    jobs = max(1, min(len(seeds), args.jobs or os.cpu_count() or 1))
    if jobs > 1:
        torch.set_num_threads(1)
    base, embeddings, cache_seconds = frozen_encoder(task, cfg, progress)
    hk = {"k": 4, "c": 8} if args.quick else {}
    results = {"command": "python recipes/promptdsi.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                          f"threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}",
               "config": cfg.to_dict(), "pseudo_queries": args.pseudo,
               "corpus": {"name": task.name, "steps": [len(s) for s in task.steps], "summary": corpus_summary,
                          "queries": {f"{stage}/D{step}": int(n) for (stage, step), n
                                      in task.queries.groupby(["stage", "step"]).size().items()}},
               "encoder": {"path": base.path, "frozen_cache_seconds": round(cache_seconds, 1)}}
    results["baselines"] = baselines(task, base, embeddings)
    results["seeds"] = []
    results["side_seeds"] = seeds[:args.side_seeds or None]
    results["jobs"] = jobs

    def record(res: dict) -> str:  # results are rewritten after every seed: a run cut short keeps its seeds
        results["seeds"] = sorted([*results["seeds"], res], key=lambda r: seeds.index(r["seed"]))
        results["seconds"] = time.perf_counter() - t_start
        summary, table = summarise(results)
        results["summary"] = summary
        atomic_write(out / "results.json", lambda f: f.write(json.dumps(results, indent=1).encode()))
        atomic_write(out / "results.md", lambda f: f.write(table.encode()))
        plot(results, out)
        return table

    # seeds are split between this process (the first, with the semantic DSI and the upper bound) and one worker
    # process (the rest, one after the other), each on one torch thread
    here, there = (seeds[:1], seeds[1:]) if jobs > 1 else (seeds, [])
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) if there else \
            contextlib.nullcontext() as pool:
        worker = pool.submit(_seeds_in_worker, task, cfg, there, results["side_seeds"], out, hk) if there else None
        for seed in here:
            t0 = time.perf_counter()
            res = run_seed(seed, task, base, embeddings, cfg, out, hk, progress, side=seed in results["side_seeds"])
            table = record({**res, "seconds": round(time.perf_counter() - t0, 1)})
        for res in worker.result() if worker is not None else []:
            table = record(res)
    print(table)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
