"""Constrained decoding of semantic IDs: four decoders side by side in one run, on the same model and IDs.

(a) HF ``generate`` + ``prefix_allowed_tokens_fn`` over a Python dict trie (GENRE-style; the common baseline),
(b) HF ``generate`` + genir's ``PrefixIndexLogitsProcessor`` (array prefix index, vectorized),
(c) genir's ``constrained_beam_search`` with ``constrained=False`` (the same search without the mask),
(d) genir's ``constrained_beam_search`` constrained by the prefix index.

Model: a small **randomly initialized** T5 (d_model 128, 2 encoder + 2 decoder layers, 4 heads, FFN 512); its
outputs mean nothing, the run measures time only. Input: a random sequence of 20 tokens per query. IDs: random
unique tuples of 4 levels x 256 codes, with per-level token offsets after 2 special tokens (pad = decoder start,
eos); vocabulary 1026. Every decoder returns the top ``beams`` IDs per query (``num_return_sequences = beams``)
and ``generate`` runs with ``length_penalty=0, do_sample=False, max_new_tokens=4`` so that (a), (b) and (d)
rank by the same sum of log-probabilities; the run checks that they agree.

Reported per (catalogue, batch, beams): the median wall time of ``--repeats`` rounds after one warm-up (each round
calls the four decoders in turn, so load changes on a shared machine hit them alike), the ratios
(d)/(c) (target <= 1.05: the mask costs little), (a)/(d) (target >= 2 at batch 64 / 50 beams) and (a)/(b), and
the agreement of (b) and (d) with (a). (a)/(b) isolates the cost of the constraint inside the same ``generate``
loop; (b)/(d) adds what genir's decoder saves besides the mask: its first step runs one row per query instead of
one per beam, it reads only the current level's token columns, and it leaves the cross-attention cache alone when
beams are reordered within a query (``generate`` re-gathers it every step). Also the prefix-index build time and size (targets for 1M IDs: < 10 s,
< 64 MB) and the dict-trie build time.

Results: ``benchmarks/results/constrained_decoding.json`` (``constrained_decoding-quick.json`` for ``--quick``),
written atomically, plus a table on stdout.

    python benchmarks/constrained_decoding.py              # 20k and 1M IDs, batch 16/64, beams 20/50
    python benchmarks/constrained_decoding.py --quick      # smoke test, small sizes
    python benchmarks/constrained_decoding.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import transformers
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from genir.decoding import (
    CodeTokenLayout,
    PrefixIndex,
    PrefixIndexLogitsProcessor,
    Seq2SeqStep,
    constrained_beam_search,
    trie_prefix_allowed_tokens_fn,
)
from genir.runs import environment

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LEVELS, CODEBOOK, BASE, INPUT_LEN = 4, 256, 2, 20
TARGETS = {
    "d_over_c_max": 1.05,
    "a_over_d_min_at_batch64_beams50": 2.0,
    "build_seconds_1m_max": 10.0,
    "index_mb_1m_max": 64.0,
}


def random_ids(n: int, seed: int) -> np.ndarray:
    """``n`` unique random IDs (rows) of LEVELS x CODEBOOK codes, in random order."""
    rng = np.random.default_rng(seed)
    space = CODEBOOK**LEVELS
    keys = np.unique(rng.integers(0, space, size=int(n * 1.05) + 16, dtype=np.int64))
    while keys.size < n:
        keys = np.unique(np.concatenate([keys, rng.integers(0, space, size=n, dtype=np.int64)]))
    keys = rng.permutation(keys)[:n]
    shifts = [CODEBOOK ** (LEVELS - 1 - level) for level in range(LEVELS)]
    return np.stack([(keys // s) % CODEBOOK for s in shifts], axis=1)


def build_model(device: torch.device, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=BASE + LEVELS * CODEBOOK,
        d_model=128,
        d_kv=32,
        num_heads=4,
        d_ff=512,
        num_layers=2,
        num_decoder_layers=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(config).to(device).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_round_robin(runs: dict, device: torch.device, repeats: int) -> tuple[dict, dict, dict]:
    """One warm-up call of every decoder, then ``repeats`` rounds that call each decoder once in turn, so that
    a change of machine load during the run hits all decoders alike. Returns the median and all seconds per
    decoder and the warm-up outputs."""
    outputs = {}
    for name, fn in runs.items():
        outputs[name] = fn()
        sync(device)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times, outputs


def generate_fn(model, input_ids, beams: int, **constraint):
    def run():
        with torch.no_grad():
            return model.generate(
                input_ids=input_ids,
                num_beams=beams,
                num_return_sequences=beams,
                length_penalty=0.0,
                do_sample=False,
                early_stopping=True,
                max_new_tokens=LEVELS,
                output_scores=True,
                return_dict_in_generate=True,
                **constraint,
            )

    return run


def ours_fn(model, input_ids, index, layout, beams: int, constrained: bool, device):
    step = Seq2SeqStep(model)

    def run():
        state = step.init_state(input_ids)
        return constrained_beam_search(
            step,
            state,
            input_ids.shape[0],
            index,
            beams,
            beams,
            device,
            layout=layout,
            constrained=constrained,
        )

    return run


def generate_ranking(out, batch: int, beams: int, layout: CodeTokenLayout) -> list[dict]:
    sequences = out.sequences.view(batch, beams, -1)[:, :, 1:].cpu()
    scores = out.sequences_scores.view(batch, beams).cpu()
    ranking = []
    for q in range(batch):
        live = scores[q] > -1e8
        codes = layout.to_codes(sequences[q][live]).tolist()
        ranking.append(dict(zip(map(tuple, codes), scores[q][live].tolist())))
    return ranking


def agreement(reference: list[dict], other: list[dict]) -> dict:
    """Mean fraction of the reference's IDs that ``other`` also returns, and the largest score difference on
    the IDs both return."""
    overlap, diff = [], 0.0
    for ref, got in zip(reference, other):
        common = ref.keys() & got.keys()
        overlap.append(len(common) / max(len(ref), 1))
        diff = max([diff] + [abs(ref[c] - got[c]) for c in common])
    return {"id_overlap": float(np.mean(overlap)), "max_score_abs_diff": diff}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def machine_info(device: torch.device) -> dict:
    return {**environment(), "transformers": transformers.__version__, "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3)


def print_table(report: dict) -> None:
    print("\nprefix index build (PrefixIndex.from_codes) and dict trie build:")
    for b in report["index_build"]:
        print(
            f"  {b['num_ids']:>9,} IDs: index {b['build_seconds']:.2f} s, {b['nbytes'] / 2**20:.1f} MB "
            f"(dense levels {b['dense_levels']}, max branch {b['max_branch']}); "
            f"dict trie {b['trie_build_seconds']:.2f} s, ~{b['trie_rss_delta_mb']:.0f} MB RSS"
        )
    head = (
        f"{'IDs':>9} {'batch':>5} {'beams':>5} | {'(a) trie':>9} {'(b) proc':>9} {'(c) free':>9} "
        f"{'(d) ours':>9} | {'d/c':>5} {'a/d':>6} {'a/b':>6} | {'b=a':>5} {'d~a':>5}"
    )
    print("\nmedian seconds per batch (top-`beams` IDs per query):")
    print(head)
    print("-" * len(head))
    for r in report["results"]:
        t, q = r["median_seconds"], r["ratios"]
        print(
            f"{r['num_ids']:>9,} {r['batch']:>5} {r['beams']:>5} | {t['a_generate_trie_fn']:>9.4f} "
            f"{t['b_generate_processor']:>9.4f} {t['c_ours_unconstrained']:>9.4f} {t['d_ours_constrained']:>9.4f} | "
            f"{q['d_over_c']:>5.2f} {q['a_over_d']:>6.2f} {q['a_over_b']:>6.2f} | "
            f"{r['agreement']['b_vs_a']['id_overlap']:>5.2f} {r['agreement']['d_vs_a']['id_overlap']:>5.2f}"
        )
    print("\n(a) generate + dict-trie prefix_allowed_tokens_fn, (b) generate + PrefixIndexLogitsProcessor,")
    print(
        "(c) genir beam search unconstrained, (d) genir beam search constrained; b=a, d~a: ID overlap with (a)"
    )
    for key, value in report["checks"].items():
        print(f"{key}: {value}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: small catalogues, batches and beams"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument(
        "--catalogues", default=None, help="comma-separated numbers of IDs (default 20000,1000000)"
    )
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 16,64)")
    parser.add_argument("--beams", default=None, help="comma-separated beam widths (default 20,50)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per setting (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args(argv)

    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")

    def ints(text, default):
        return [int(x) for x in text.split(",")] if text else default

    catalogues = ints(args.catalogues, [2_000, 20_000] if args.quick else [20_000, 1_000_000])
    batches = ints(args.batches, [4] if args.quick else [16, 64])
    beam_widths = ints(args.beams, [5, 10] if args.quick else [20, 50])
    repeats = args.repeats or (1 if args.quick else 3)
    out_path = args.out or RESULTS_DIR / (
        "constrained_decoding-quick.json" if args.quick else "constrained_decoding.json"
    )

    layout = CodeTokenLayout([CODEBOOK] * LEVELS, base=BASE)
    model = build_model(device, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    max_batch = max(batches)
    all_inputs = torch.randint(BASE, layout.vocab_end, (max_batch, INPUT_LEN), generator=gen).to(device)

    report = {
        "benchmark": "constrained_decoding",
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "settings": {
            "quick": args.quick,
            "catalogues": catalogues,
            "batches": batches,
            "beams": beam_widths,
            "repeats": repeats,
            "seed": args.seed,
            "levels": LEVELS,
            "codebook": CODEBOOK,
            "token_base": BASE,
            "input_len": INPUT_LEN,
            "k": "= beams (num_return_sequences = num_beams)",
            "generate": "num_beams=W, num_return_sequences=W, length_penalty=0, do_sample=False, max_new_tokens=4",
        },
        "model": {
            "note": "T5ForConditionalGeneration, RANDOM INIT: timings only, its rankings mean nothing",
            "config": {
                k: model.config.to_dict()[k]
                for k in (
                    "vocab_size",
                    "d_model",
                    "d_kv",
                    "num_heads",
                    "d_ff",
                    "num_layers",
                    "num_decoder_layers",
                )
            },
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "targets": TARGETS,
        "index_build": [],
        "results": [],
    }

    for n in catalogues:
        codes = random_ids(n, args.seed + n)
        start = time.perf_counter()
        index = PrefixIndex.from_codes(codes, layout.level_sizes)
        build_s = time.perf_counter() - start
        rss0 = rss_mb()
        start = time.perf_counter()
        trie_fn = trie_prefix_allowed_tokens_fn(codes, layout)
        trie_s = time.perf_counter() - start
        build = {
            "num_ids": n,
            "build_seconds": round(build_s, 4),
            "nbytes": index.nbytes,
            "dense_levels": index.dense_levels,
            "max_branch": list(index.max_branch),
            "num_states": list(index.num_states),
            "trie_build_seconds": round(trie_s, 3),
            "trie_rss_delta_mb": round(rss_mb() - rss0, 1),
        }
        report["index_build"].append(build)
        print(
            f"[{n:,} IDs] index {build_s:.2f} s {index.nbytes / 2**20:.1f} MB; dict trie {trie_s:.2f} s",
            flush=True,
        )
        index = index.to(device)
        processor = PrefixIndexLogitsProcessor(index, layout, prompt_length=1)

        for batch in batches:
            input_ids = all_inputs[:batch]
            for beams in beam_widths:
                runs = {
                    "a_generate_trie_fn": generate_fn(
                        model, input_ids, beams, prefix_allowed_tokens_fn=trie_fn
                    ),
                    "b_generate_processor": generate_fn(
                        model, input_ids, beams, logits_processor=LogitsProcessorList([processor])
                    ),
                    "c_ours_unconstrained": ours_fn(model, input_ids, index, layout, beams, False, device),
                    "d_ours_constrained": ours_fn(model, input_ids, index, layout, beams, True, device),
                }
                medians, all_times, outputs = timed_round_robin(runs, device, repeats)
                ref = generate_ranking(outputs["a_generate_trie_fn"], batch, beams, layout)
                proc = generate_ranking(outputs["b_generate_processor"], batch, beams, layout)
                ours = [
                    {tuple(c): s for _, c, s in hits} for hits in outputs["d_ours_constrained"].to_lists()
                ]
                free = outputs["c_ours_unconstrained"]
                row = {
                    "num_ids": n,
                    "batch": batch,
                    "beams": beams,
                    "median_seconds": {k: round(v, 5) for k, v in medians.items()},
                    "all_seconds": {k: [round(x, 5) for x in v] for k, v in all_times.items()},
                    "ratios": {
                        "d_over_c": ratio(medians["d_ours_constrained"], medians["c_ours_unconstrained"]),
                        "a_over_d": ratio(medians["a_generate_trie_fn"], medians["d_ours_constrained"]),
                        "b_over_d": ratio(medians["b_generate_processor"], medians["d_ours_constrained"]),
                        "a_over_b": ratio(medians["a_generate_trie_fn"], medians["b_generate_processor"]),
                    },
                    "agreement": {"b_vs_a": agreement(ref, proc), "d_vs_a": agreement(ref, ours)},
                    "unconstrained_invalid_fraction": round(float((free.items < 0).float().mean()), 4),
                    "load_average_1min": round(os.getloadavg()[0], 2),
                }
                report["results"].append(row)
                t = row["median_seconds"]
                print(
                    f"  batch {batch:>3} beams {beams:>3}: a {t['a_generate_trie_fn']:.4f} "
                    f"b {t['b_generate_processor']:.4f} c {t['c_ours_unconstrained']:.4f} "
                    f"d {t['d_ours_constrained']:.4f} s | d/c {row['ratios']['d_over_c']:.2f} "
                    f"a/d {row['ratios']['a_over_d']:.2f}",
                    flush=True,
                )
                write_json_atomic(out_path, report)  # keep what finished if the run dies
        del trie_fn, processor, index

    report["checks"] = checks(report)
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(out_path, report)
    print_table(report)
    print(f"\nwrote {out_path}")
    return report


def checks(report: dict) -> dict:
    """The targets, evaluated on what this run measured (None when the run did not cover the setting)."""
    results = report["results"]
    big = [b for b in report["index_build"] if b["num_ids"] >= 1_000_000]
    headline = [r for r in results if r["batch"] == 64 and r["beams"] == 50]
    return {
        "max_d_over_c": max((r["ratios"]["d_over_c"] for r in results), default=None),
        "d_over_c_target_met": all(r["ratios"]["d_over_c"] <= TARGETS["d_over_c_max"] for r in results),
        "min_a_over_d_at_batch64_beams50": min((r["ratios"]["a_over_d"] for r in headline), default=None),
        "a_over_d_target_met": (
            all(r["ratios"]["a_over_d"] >= TARGETS["a_over_d_min_at_batch64_beams50"] for r in headline)
            if headline
            else None
        ),
        "build_1m_seconds": big[0]["build_seconds"] if big else None,
        "index_1m_mb": round(big[0]["nbytes"] / 2**20, 2) if big else None,
        "build_targets_met": (
            big[0]["build_seconds"] < TARGETS["build_seconds_1m_max"]
            and big[0]["nbytes"] / 2**20 < TARGETS["index_mb_1m_max"]
            if big
            else None
        ),
        "min_id_overlap_b_vs_a": min((r["agreement"]["b_vs_a"]["id_overlap"] for r in results), default=None),
        "min_id_overlap_d_vs_a": min((r["agreement"]["d_vs_a"]["id_overlap"] for r in results), default=None),
    }


if __name__ == "__main__":
    main()
