"""Double Mixture (Kang, Wu et al., arXiv 2404.13289): continual event detection from speech and sounds on the real
Whisper-base, against fine-tuning, EWC, replay, L2P prompts, an adapter without router and joint training.

    python recipes/doublemix.py                      # default plan on Whisper-base (see PLAN; it prints its own
                                                     #   time estimate after measuring one step and one decode)
    python recipes/doublemix.py --quick              # tiny random Whisper, tiny benchmark (the tests run this)
    python recipes/doublemix.py --whisper DIR        # any Hugging Face Whisper folder (or tiny.en)
    python recipes/doublemix.py --methods doublemix,replay --orders 1 --tasks 2 --train-per-task 8

The benchmark (genir.data.speech_events) is built into ``--data`` when that folder has no manifest. Every clip
is encoded once by the frozen encoder on a truncated context (``--frames``, 400 = 8 s; cached in the feature
cache); the WER of zero-shot transcripts with the truncated and the full 30-s context is measured on
``--wer-clips`` speech clips so that deviation is quantified. Each method runs over ``--orders`` task orders (the
default stream, then seeded permutations); joint training (order-free) runs once. After each task every task seen
is evaluated (greedy decoding): the accuracy matrix gives average accuracy, forgetting and BWT
(genir.eval.continual); then WER and the mixed join/overlay test rows (generalisation).

Writes ``results.json`` (command, machine, timings, plan, every matrix), ``results.md`` (the table) and
``accuracy_matrices.png`` / ``summary.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genir.atomic import atomic_write
from genir.data.audio import load_wav, write_wav
from genir.data.speech_events import (
    DEFAULT_STREAM,
    HYBRID_PAIRS,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    build_speech_events,
    read_speech_events,
)
from genir.features.audio import encode_log_mel, encoder_states, log_mel
from genir.methods.doublemix import LABELS, VARIANTS, DoubleMixConfig, rehearsal_based, run_stream
from genir.methods.doublemix.model import EventDecoder
from genir.methods.doublemix.procedures import frozen_cross_states, word_error_rate

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("doublemix", "adapter", "replay", "finetune", "ewc", "l2p", "joint")
# Default plan: sized for 2 CPU cores in 90 minutes (see the README's timing table).
# Measured on Whisper-base, 1 thread: 2.5 s per step of 16, 0.17 s per decoded clip, 0.3 s per encoded clip. lr:
# 1e-4 (the paper's) learned nothing in 6 steps per task, 1e-3 diverged, 5e-4 learned (2-task smoke run). Batch 8
# (the paper uses 16 or 8): twice the updates for the same compute. Projected: ~62 min of training and decoding
# plus ~7 min of building, encoding and the WER check on 2 cores (the recipe prints its own estimate).
# Method settings of this plan over DoubleMixConfig's (the paper's) defaults: 256-wide experts instead of 32 and the
# paper script's load-balance weight 0.01 (its yaml says 0). On a 3-task development run, 32-wide experts without
# the balance loss under-fitted (accuracy 0.08, WER 1.4, one expert took 85% of the tokens); this gave 0.42, WER 0.45.
METHOD_SETTINGS = {"adapter_dim": 256, "balance_loss": 0.01}
PLAN = {"per_task": 120, "train_per_task": 32, "test_per_task": 10, "mixed_test_per_kind": 4, "epochs": 3,
        "lr": 5e-4, "batch_size": 8, "orders": 3, "tasks": len(DEFAULT_STREAM), "frames": 400, "wer_clips": 20}
QUICK = {"per_task": 3, "train_per_task": 3, "test_per_task": 2, "mixed_test_per_kind": 1, "epochs": 30,
         "lr": 1e-2, "batch_size": 16, "orders": 1, "tasks": 3, "frames": 50, "wer_clips": 2}


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_when_written": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def synthetic_benchmark(out: Path, tasks: list[str], per_task: int, seed: int = 0) -> Path:
    """A manifest of numpy-synthesized clips (tones per event type) when espeak-ng / sox are missing: only for the
    quick run's plumbing, not a benchmark."""
    from genir.data.speech_events import SOUND_TASKS, SPEECH_TASKS

    rng = np.random.default_rng(seed)
    rows, sr = [], 16000
    (out / "clips").mkdir(parents=True, exist_ok=True)

    def tone(i: int, seconds: float = 0.6) -> np.ndarray:
        t = np.arange(int(sr * seconds)) / sr
        return (0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t) + rng.normal(0, 0.01, t.size)).astype(np.float32)

    clips: dict[tuple[str, str], list] = {}
    for t_i, task in enumerate(tasks):
        types = {**SPEECH_TASKS, **SOUND_TASKS}[task]
        speech = task in SPEECH_TASKS
        for split, n in (("train", per_task), ("dev", 1), ("test", max(1, per_task // 2))):
            for k in range(n):
                e = k % len(types)
                wav = f"clips/{task}-{split}-{k}.wav"
                audio = tone(3 * t_i + e)
                write_wav(out / wav, audio)
                text = f"word{t_i} word{e}" if speech else "none"
                rows.append((wav, text, task, types[e], split, "speech" if speech else "sound"))
                clips.setdefault((task, split), []).append((audio, text, types[e]))
    for a, b in HYBRID_PAIRS:
        if a in tasks and b in tasks:
            for split in ("train", "test"):
                for kind in ("join", "overlay"):
                    (sa, text, ta), (sb, _, tb) = clips[(a, split)][0], clips[(b, split)][0]
                    audio = np.concatenate([sa, sb]) if kind == "join" else 0.5 * (sa + sb)
                    wav = f"clips/{a}+{b}-{kind}-{split}.wav"
                    write_wav(out / wav, audio)
                    rows.append((wav, text, f"{a}+{b}", f"{ta}|{tb}", split, kind))
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(out / MANIFEST_NAME, sep="\t", index=False)
    return out


def prepare_data(args, plan: dict):
    root = Path(args.data)
    stream = list(DEFAULT_STREAM[:plan["tasks"]])
    if not (root / MANIFEST_NAME).is_file():
        if shutil.which("espeak-ng") and shutil.which("sox"):
            print(f"building the benchmark into {root} (per task {plan['per_task']}) ...", flush=True)
            build_speech_events(root, seed=args.seed, per_task=plan["per_task"], force=root.exists())
        else:
            print(f"espeak-ng/sox missing: synthetic tone clips in {root} (quick plumbing only)", flush=True)
            root.mkdir(parents=True, exist_ok=True)
            synthetic_benchmark(root, stream, plan["per_task"], args.seed)
    return read_speech_events(root), stream


def orders_of(stream: list[str], n: int, seed: int) -> list[list[str]]:
    """The stream itself, then seeded permutations of it."""
    rng = np.random.default_rng(seed)
    out = [list(stream)]
    while len(out) < n:
        perm = [stream[i] for i in rng.permutation(len(stream))]
        if perm not in out or len(stream) < 3:
            out.append(perm)
    return out


def select_rows(data, stream: list[str], plan: dict, seed: int):
    """Per task: the first ``train_per_task`` train and ``test_per_task`` test rows (a seeded shuffle); per
    hybrid pair of the stream: its mixed train rows and ``mixed_test_per_kind`` test rows per kind."""
    tasks = {}
    for t in stream:
        tr = data.by_task(t, "train").sample(frac=1.0, random_state=seed)
        te = data.by_task(t, "test").sample(frac=1.0, random_state=seed)
        tasks[t] = {"train": tr.head(plan["train_per_task"]).reset_index(drop=True),
                    "test": te.head(plan["test_per_task"]).reset_index(drop=True)}
    mixed = {}
    for a, b in HYBRID_PAIRS:
        if a in stream and b in stream:
            rows = data.by_task(f"{a}+{b}")
            test = pd.concat([g.head(plan["mixed_test_per_kind"]) for _, g in
                              rows[rows["split"] == "test"].groupby("kind")], ignore_index=True)
            mixed[(a, b)] = {"train": rows[rows["split"] == "train"].reset_index(drop=True), "test": test}
    return tasks, mixed


def load_backbone(args):
    from genir.llm.whisper import load_whisper, packaged_tokenizer, tiny_whisper, wrap_whisper

    if args.quick and not args.whisper:
        tok = packaged_tokenizer("base")
        return wrap_whisper(tiny_whisper(tok, d_model=64, layers=2, heads=4, ffn=128, source_positions=1500),
                            tok, "tiny-random-seed0", "tiny random Whisper (quick)")
    return load_whisper(args.whisper or "base")


def transcript_wer(whisper, rows: pd.DataFrame, frames: int, progress: bool) -> dict:
    """Zero-shot greedy transcripts with the truncated context and with the full 30 s: WER of each."""
    from transformers.modeling_outputs import BaseModelOutput

    model = whisper.model
    hyps: dict[str, list[str]] = {"truncated": [], "full": []}
    timing = {"truncated": 0.0, "full": 0.0}
    full = model.config.max_source_positions
    for r in rows.itertuples(index=False):
        audio = load_wav(r.path)
        for name, n in (("truncated", frames), ("full", full)):
            t0 = time.perf_counter()
            with torch.no_grad():
                enc = encode_log_mel(model.model.encoder, log_mel([audio], n))
                out = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                                     decoder_input_ids=torch.tensor([whisper.prompt_ids]), max_new_tokens=60,
                                     do_sample=False)
            timing[name] += time.perf_counter() - t0
            hyps[name].append(whisper.tokenizer.decode(out[0], skip_special_tokens=True))
    refs = list(rows["transcript"])
    return {"clips": len(rows), "frames": frames, "wer_truncated": word_error_rate(refs, hyps["truncated"]),
            "wer_full_30s": word_error_rate(refs, hyps["full"]),
            "seconds_per_clip": {k: v / max(1, len(rows)) for k, v in timing.items()},
            "examples": [{"reference": r, "truncated": a, "full": b}
                         for r, a, b in list(zip(refs, hyps["truncated"], hyps["full"]))[:5]]}


def measure_costs(whisper, tasks, states, frozen, plan: dict) -> dict:
    """Seconds of one training step (batch of ``batch_size``) and of decoding one clip, on this machine."""
    t = next(iter(tasks))
    model = EventDecoder(whisper, DoubleMixConfig(), plan["tasks"])
    from genir.methods.doublemix.procedures import decode_rows, examples_of

    items = examples_of(model, tasks[t]["train"], states, frozen)
    batch = model.collate([items[i % len(items)] for i in range(plan["batch_size"])])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    t0 = time.perf_counter()
    for _ in range(2):
        model(batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
    step = (time.perf_counter() - t0) / 2
    rows = tasks[t]["test"].head(min(8, len(tasks[t]["test"])))
    t0 = time.perf_counter()
    decode_rows(model.eval(), rows, states, frozen=frozen)
    return {"train_step_s": step, "decode_clip_s": (time.perf_counter() - t0) / max(1, len(rows))}


def projection(plan: dict, n_methods: int, costs: dict, n_mixed_train: int, n_mixed_test: int,
               n_pairs: int = len(HYBRID_PAIRS)) -> dict:
    """Training steps and decoded clips of the whole run (all methods, every order), and the seconds they should
    take at the measured costs. Hybrid pairs are counted as seen from the middle of the stream on (an estimate)."""
    k, n, bs, ep = plan["tasks"], plan["train_per_task"], plan["batch_size"], plan["epochs"]
    replay = [n + round(0.1 * n) * i for i in range(k)]  # current task + 10% of each earlier one
    hybrid = [round(0.1 * n) * min(n_pairs, max(0, i - k // 3)) for i in range(k)]
    per_task = {"doublemix": [r + h for r, h in zip(replay, hybrid)], "adapter": [r + h for r, h in zip(replay, hybrid)],
                "replay": replay, "finetune": [n] * k, "ewc": [n] * k, "l2p": [n] * k}
    steps = sum(int(np.ceil(c / bs)) * ep for sizes in per_task.values() for c in sizes) * plan["orders"]
    steps += int(np.ceil((k * n + n_mixed_train) / bs)) * ep  # joint, once
    decodes = (k * (k + 1) // 2 * plan["test_per_task"] + n_mixed_test) * len(per_task) * plan["orders"]
    decodes += k * plan["test_per_task"] + n_mixed_test
    scale = n_methods / len(METHODS)
    return {"train_steps": steps, "decoded_clips": decodes,
            "seconds": scale * (steps * costs["train_step_s"] + decodes * costs["decode_clip_s"])}


def mean_std(values: list[float]) -> dict:
    v = np.array(values, dtype=float)
    if np.isnan(v).all():
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v))}


def summarize(runs: list[dict]) -> dict:
    return {"average": mean_std([r["summary"]["average"] for r in runs]),
            "forgetting": mean_std([r["summary"]["forgetting"] for r in runs]),
            "bwt": mean_std([r["summary"]["bwt"] for r in runs]),
            "learning": mean_std([r["summary"]["learning"] for r in runs]),
            "wer": mean_std([r["final_wer"] for r in runs]),
            "mixed_both": mean_std([r["mixed"].get("both", float("nan")) for r in runs]),
            "mixed_speech": mean_std([r["mixed"].get("speech", float("nan")) for r in runs]),
            "mixed_sound": mean_std([r["mixed"].get("sound", float("nan")) for r in runs]),
            "train_seconds": mean_std([r["train_seconds"] for r in runs]),
            "eval_seconds": mean_std([r["eval_seconds"] for r in runs])}


def markdown(summary: dict, orders: list[list[str]]) -> str:
    def cell(s):
        return "-" if np.isnan(s["mean"]) else f"{s['mean']:.3f} ± {s['std']:.3f}"

    lines = [("| method | rehearsal | final avg accuracy ↑ | forgetting ↓ | BWT ↑ | learned ↑ | WER ↓ | "
              "mixed: both ↑ | mixed: speech | mixed: sound | train s |"), "|" + " --- |" * 11]
    for name, s in summary.items():
        lines.append(f"| {LABELS[name]} | {'yes' if rehearsal_based(name) else 'no'} | {cell(s['average'])} | "
                     f"{cell(s['forgetting'])} | {cell(s['bwt'])} | {cell(s['learning'])} | {cell(s['wer'])} | "
                     f"{cell(s['mixed_both'])} | "
                     f"{cell(s['mixed_speech'])} | {cell(s['mixed_sound'])} | {s['train_seconds']['mean']:.0f} |")
    return ("Mean ± std over task orders " + "; ".join(" > ".join(o) for o in orders) + " (joint training: once, "
            "order-free). Accuracy = exact event type after the last task, averaged over tasks; forgetting and BWT "
            "from the accuracy matrix (genir.eval.continual); learned = accuracy on each task right after training "
            "on it, averaged; WER of the transcripts of the speech test rows after "
            "the last task; mixed = join/overlay test rows (both types right / each one among the predicted).\n\n"
            + "\n".join(lines) + "\n")


def verdict(summary: dict) -> str:
    if "doublemix" not in summary:
        return "(Double Mixture was not run.)"
    others = {k: v for k, v in summary.items() if k not in ("doublemix", "joint")}
    if not others:
        return "(no baselines were run.)"
    dm = summary["doublemix"]
    best_acc = max(others, key=lambda k: others[k]["average"]["mean"])
    # a method that learned nothing forgets nothing: forgetting is compared among those that learned
    learned = {k: v for k, v in others.items() if v["learning"]["mean"] >= 0.1} or others
    least_fgt = min(learned, key=lambda k: learned[k]["forgetting"]["mean"])
    idle = sorted(set(others) - set(learned))
    acc_ok = dm["average"]["mean"] >= others[best_acc]["average"]["mean"]
    fgt_ok = dm["forgetting"]["mean"] <= learned[least_fgt]["forgetting"]["mean"]
    return (f"Double Mixture: final average accuracy {dm['average']['mean']:.3f} vs the best baseline "
            f"({LABELS[best_acc]}) {others[best_acc]['average']['mean']:.3f}: {'highest' if acc_ok else 'NOT highest'}; "
            f"forgetting {dm['forgetting']['mean']:.3f} vs the lowest baseline ({LABELS[least_fgt]}) "
            f"{others[least_fgt]['forgetting']['mean']:.3f}: {'lowest' if fgt_ok else 'NOT lowest'}"
            + (f" (left out of the forgetting comparison, as they learned < 0.1 accuracy on their own tasks: "
               f"{', '.join(LABELS[k] for k in idle)})" if idle else "") + ".")


def plot(results: dict, path_mat: Path, path_sum: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        run = results[name][0]
        k = len(run["order"])
        m = np.full((len(run["accuracy"]), k), np.nan)
        for t, row in enumerate(run["accuracy"]):
            m[t, :len(row)] = row
        ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(LABELS[name], fontsize=8)
        ax.set_xticks(range(k), run["order"], rotation=90, fontsize=6)
        ax.set_yticks(range(len(run["accuracy"])), [f"after {i + 1}" for i in range(len(run["accuracy"]))]
                      if len(run["accuracy"]) > 1 else ["joint"], fontsize=6)
        for t in range(m.shape[0]):
            for j in range(k):
                if not np.isnan(m[t, j]):
                    ax.text(j, t, f"{m[t, j]:.2f}", ha="center", va="center", fontsize=5, color="w")
    fig.suptitle("event accuracy after each task (first order)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path_mat, dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, title in zip(axes, ("average", "forgetting", "mixed_both"),
                              ("final average accuracy", "forgetting", "mixed rows: both events right")):
        stats = [mean_std([r["summary"][key] if key != "mixed_both" else r["mixed"].get("both", np.nan)
                           for r in results[n]]) for n in names]
        means, stds = [s["mean"] for s in stats], [s["std"] for s in stats]
        ax.bar(range(len(names)), np.nan_to_num(means), yerr=np.nan_to_num(stds), color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=45, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path_sum, dpi=120)
    plt.close(fig)


def write_results(args, results: dict[str, list[dict]], *, done: bool, t_start: float, plan: dict, methods: list[str],
                  orders: list[list[str]], overrides: dict, whisper, data, stream: list[str], tasks: dict,
                  n_mixed: tuple[int, int], clips: int, encode_seconds: float, frozen_seconds: float, wer_check: dict,
                  costs: dict, proj: dict) -> dict:
    """results.json, results.md and the plots of the methods finished so far (``done``: all of them)."""
    n_mixed_train, n_mixed_test = n_mixed
    summary = {name: summarize(runs) for name, runs in results.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "accuracy_matrices.png", out / "summary.png")
    table = markdown(summary, orders)
    note = verdict(summary)
    wall = time.perf_counter() - t_start
    res = {"recipe": "doublemix", "command": " ".join([sys.executable, *sys.argv]), "quick": args.quick,
           "plan": plan, "methods": methods, "finished_methods": list(results), "complete": done, "orders": orders,
           "overrides": overrides, "machine": machine(),
           "whisper": {"source": whisper.source, "signature": whisper.signature},
           "data": {"root": str(data.root), "report": data.report, "stream": stream,
                    "train_rows": {t: len(v["train"]) for t, v in tasks.items()},
                    "test_rows": {t: len(v["test"]) for t, v in tasks.items()},
                    "mixed_train_rows": n_mixed_train, "mixed_test_rows": n_mixed_test},
           "encoder": {"clips": clips, "frames": plan["frames"], "seconds": encode_seconds,
                       "frozen_cross_kv_seconds": frozen_seconds},
           "wer_truncated_vs_full": wer_check, "measured_costs": costs, "projection": proj,
           "summary": summary, "runs": results, "verdict": note, "wall_seconds": wall,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(out / "results.json", lambda fh: fh.write(json.dumps(res, indent=1, default=float).encode()))
    partial = "" if done else f" (PARTIAL: {', '.join(results)} done)"
    md = (f"# Double Mixture{' (quick)' if args.quick else ''}{partial}: continual speech/sound event detection\n\n"
          f"Backbone {whisper.source}; {plan['tasks']} tasks, {plan['train_per_task']} train / "
          f"{plan['test_per_task']} test clips per task, {plan['epochs']} epochs per task, lr {plan['lr']}, "
          f"batch {plan['batch_size']}, encoder context {plan['frames']} frames.\n\n{table}\n{note}\n\n"
          + (f"Zero-shot WER on {wer_check['clips']} speech clips: truncated context {wer_check['wer_truncated']:.3f}, "
             f"full 30 s {wer_check['wer_full_30s']:.3f}.\n\n" if wer_check else "")
          + f"Wall time {wall:.0f} s ({machine()['cpu_count']} CPUs, {torch.get_num_threads()} torch thread(s)); "
          f"encoder caching {encode_seconds:.0f} s.\n")
    atomic_write(out / "results.md", lambda fh: fh.write(md.encode()))
    if done:
        print(md)
    print(f"wrote {out}/results.json ({len(results)}/{len(methods)} methods), results.md, accuracy_matrices.png, "
          "summary.png")
    return res


def run(args) -> dict:
    t_start = time.perf_counter()
    plan = dict(QUICK if args.quick else PLAN)
    for key in ("per_task", "train_per_task", "test_per_task", "epochs", "lr", "batch_size", "orders", "tasks",
                "frames", "wer_clips"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    unknown = sorted(set(methods) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; known: {list(VARIANTS)}")
    data, stream = prepare_data(args, plan)
    tasks, mixed = select_rows(data, stream, plan, args.seed)
    whisper = load_backbone(args)
    print(f"Whisper: {whisper.source} ({sum(p.numel() for p in whisper.model.parameters()) / 1e6:.1f}M params); "
          f"stream {stream}; hybrid pairs {list(mixed)}", flush=True)
    clips = pd.concat([*(v for t in tasks.values() for v in t.values()),
                       *(v for m in mixed.values() for v in m.values())], ignore_index=True).drop_duplicates("clip_id")
    t0 = time.perf_counter()
    encoded = encoder_states(whisper.model.model.encoder, whisper.signature, list(clips["path"]), load_wav,
                             frames=plan["frames"], progress=args.progress)
    states = dict(zip(clips["clip_id"], encoded))
    encode_seconds = time.perf_counter() - t0
    print(f"encoder states of {len(clips)} clips: {encode_seconds:.0f} s (cached afterwards)", flush=True)
    speech = pd.concat([t["test"] for t in tasks.values()], ignore_index=True)
    speech = speech[speech["kind"] == "speech"].head(plan["wer_clips"])
    wer_check = transcript_wer(whisper, speech, plan["frames"], args.progress) if len(speech) else {}
    if wer_check:
        print(f"zero-shot WER on {wer_check['clips']} clips: truncated {plan['frames']} frames "
              f"{wer_check['wer_truncated']:.3f}, full 30 s {wer_check['wer_full_30s']:.3f}", flush=True)
    t0 = time.perf_counter()
    frozen = frozen_cross_states(EventDecoder(whisper, DoubleMixConfig(), plan["tasks"]), list(clips["clip_id"]),
                                 states)
    frozen_seconds = time.perf_counter() - t0
    print(f"frozen decoder layers' cross-attention keys/values of {len(clips)} clips: {frozen_seconds:.0f} s, "
          f"{sum(v.numel() * v.element_size() for v in frozen.values()) / 2**30:.2f} GiB", flush=True)
    costs = measure_costs(whisper, tasks, states, frozen, plan)
    n_mixed_train = sum(len(m["train"]) for m in mixed.values())
    n_mixed_test = sum(len(m["test"]) for m in mixed.values())
    proj = projection(plan, len(methods), costs, n_mixed_train, n_mixed_test)
    print(f"measured: {costs['train_step_s']:.2f} s per training step of {plan['batch_size']}, "
          f"{costs['decode_clip_s']:.2f} s per decoded clip; projected: {proj['train_steps']} steps + "
          f"{proj['decoded_clips']} decodes = {proj['seconds'] / 60:.0f} min for the methods", flush=True)
    orders = orders_of(stream, plan["orders"], args.seed)
    trainer = {"epochs": plan["epochs"], "lr": plan["lr"], "batch_size": plan["batch_size"],
               "progress": args.progress, "cpu": args.cpu}
    results: dict[str, list[dict]] = {}
    overrides = {**METHOD_SETTINGS, **dict(kv.split("=", 1) for kv in args.set)}
    context = {"t_start": t_start, "plan": plan, "methods": methods, "orders": orders, "overrides": overrides,
               "whisper": whisper, "data": data, "stream": stream, "tasks": tasks,
               "n_mixed": (n_mixed_train, n_mixed_test), "clips": len(clips), "encode_seconds": encode_seconds,
               "frozen_seconds": frozen_seconds, "wer_check": wer_check, "costs": costs, "proj": proj}
    for name in methods:
        results[name] = []
        for o, order in enumerate(orders):
            if VARIANTS[name]["joint"] and o > 0:
                break
            config = DoubleMixConfig.from_dict({**overrides, "variant": name}, source=name, coerce=True)
            print(f"{name}, order {o}: {' > '.join(order)}", flush=True)
            r = run_stream(whisper, tasks, order, mixed, states, config, trainer, seed=args.seed + o, frozen=frozen)
            results[name].append({**r.__dict__, "order_index": o})
        # after every method: a run cut short keeps what it finished (results.json says which methods are done)
        res = write_results(args, results, done=name == methods[-1], **context)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny random Whisper, tiny benchmark, 3 tasks, 1 order")
    p.add_argument("--data", default=None, help="benchmark folder (built there when it has no manifest; default "
                   "runs/doublemix/speech-events, quick: <out>/data)")
    p.add_argument("--whisper", default=None, help="base (default), tiny.en, or a HF / CTranslate2 Whisper folder")
    p.add_argument("--methods", default=None, help="comma-separated, from " + ",".join(METHODS))
    p.add_argument("--per-task", type=int, default=None, help="train clips per task when building the benchmark")
    p.add_argument("--train-per-task", type=int, default=None, help="train clips used per task")
    p.add_argument("--test-per-task", type=int, default=None, help="test clips evaluated per task")
    p.add_argument("--epochs", type=int, default=None, help="epochs per task")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--orders", type=int, default=None, help="task orders (the stream, then permutations)")
    p.add_argument("--tasks", type=int, default=None, help="first N tasks of the stream")
    p.add_argument("--frames", type=int, default=None, help="encoder context in frames (400 = 8 s, 1500 = 30 s)")
    p.add_argument("--wer-clips", type=int, default=None, help="speech clips for the truncated-vs-30-s WER check")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a DoubleMixConfig field for every method (over METHOD_SETTINGS), e.g. adapter_dim=32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default runs/doublemix/<time>)")
    p.add_argument("--cpu", action="store_true", help="force CPU even if a GPU is visible")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (on 2 cores shared with other jobs, 2 threads "
                   "measured 3x slower per step and 14x per decoded clip than 1)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    args.out = args.out or f"runs/doublemix/{'quick-' if args.quick else ''}{time.strftime('%Y%m%d-%H%M%S')}"
    args.data = args.data or (str(Path(args.out) / "data") if args.quick else
                              str(ROOT / "runs" / "doublemix" / "speech-events"))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        run(args)
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
