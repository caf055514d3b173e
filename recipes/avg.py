"""AVG (token-to-voken generation, arXiv 2407.17274) on the 8k real clip-art images, against its baselines.

    python recipes/avg.py                 # default: all usable clip-art images, seeds 0 1 2 (CPU: measured 36 min on
                                          # 2 cores shared with other jobs, image features cached; computing them
                                          # the first time took another 11-33 min there, once)
    python recipes/avg.py --quick         # 300 images, pixels as the image encoder, tiny models, one seed (tests)
    python recipes/avg.py --images DIR --captions dataset_flickr30k.json   # a Karpathy-split set instead

Data: the Open Clip Art Library snapshot (genir.data.image_captions.read_openclipart): captions = title +
keywords (+ description) with boilerplate titles dropped; split by image (pixel-identical copies kept together and
all relevant); every image, test ones included, is indexed; test captions are never trained on.

Systems, all on the same frozen features of one run (which parts are pretrained is in every table):
* two-tower + FAISS: LiT-style, frozen ImageNet EfficientNet-Lite0 + trained head, frozen MiniLM + trained head;
  exact inner-product search (faiss IndexFlatIP) over every image;
* AVG: voken tokenizer (shared codebook, aligned with the training captions through the two-tower's space), T5
  generator built from a config (not pretrained: no T5 weights exist offline), generative then discriminative
  stage (beam-mined hard negatives, listwise loss on raw sequence scores); constrained beam search over every
  image's vokens;
* AVG without the discriminative stage (the same generator after its generative stage), and with negatives mined
  among every image (the paper's pool) from the same generative checkpoint (with ``ltr_over=prefixes``, also the
  paper's listwise loss over whole strings);
* AVG with per-level codebooks (both stages);
* the generator with random IDs (same length and vocabulary as the vokens, no content) and with atomic IDs (one
  token per image), generative stage.

Writes ``<out>/results.json`` (command, machine, wall time, per-seed and mean +- std), ``results.md`` and
``queries-avg.png`` / ``queries-two-tower.png`` (test captions with their top-5 images, relevant ones framed).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write
from genir.data.image_captions import read_openclipart
from genir.ids import IdScheme, SemanticIdTable
from genir.index import build_index, index_info, load_index
from genir.methods.avg import (
    AVGConfig,
    aligned_features,
    make_generator,
    negative_pool,
    prepare,
    read_image_task,
    save_grid,
    timed_evaluation,
    train_generator,
    train_two_tower,
)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tokenizers" / "voken.yaml"
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10")
SYSTEMS = {  # name -> (pretrained parts, all frozen; parts trained here)
    "two-tower + FAISS": ("image encoder, MiniLM", "a head on each tower"),
    "AVG": ("image encoder, MiniLM", "two-tower heads, voken tokenizer, projection + T5 decoder (2 stages)"),
    "AVG w/o discriminative stage": ("image encoder, MiniLM",
                                     "two-tower heads, voken tokenizer, projection + T5 decoder (generative stage)"),
    "AVG, negatives from every image": ("image encoder, MiniLM",
                                        "as AVG, but negatives mined among every indexed image (the paper's pool)"),
    "AVG, listwise over whole voken strings": ("image encoder, MiniLM",
                                               "as AVG, but the listwise loss ranks whole strings (the paper's)"),
    "AVG, per-level codebooks": ("image encoder, MiniLM",
                                 "two-tower heads, voken tokenizer (3 books), projection + T5 decoder (2 stages)"),
    "generator, random IDs": ("MiniLM", "projection + T5 decoder (generative stage)"),
    "generator, atomic IDs": ("MiniLM", "projection + T5 decoder (generative stage)"),
}
# disc_epochs 2 with negatives among trained images: on seed 0, valid Recall@10 0.066 after the generative stage,
# 0.066 after 1 discriminative epoch (the previous default), 0.072 after 2 (0.070 with negatives from every image);
# disc_lr 3e-4 and 1e-3 lowered valid Recall@10 by the second epoch (benchmarks/results/avg/README.md).
# ltr_over=prefixes (listwise loss over the semantic voken prefixes, not the paper's): over 3 seeds its paired gain
# over the generative checkpoint was +0.003/+0.003/+0.002 Recall@10, against +0.006/+0.011/-0.004 for the paper's
# whole strings, which the recipe runs beside it as an ablation row (benchmarks/results/avg/prefix-ltr/)
DEFAULT = {"epochs": 12, "eval_every": 3, "patience": 2, "disc_epochs": 2, "batch_size": 128, "lr": 2e-3,
           "negatives": 5, "ltr_over": "prefixes"}
QUICK = {"tower_epochs": 5, "epochs": 4, "eval_every": 2, "disc_epochs": 1, "d_model": 32, "layers": 1, "heads": 2,
         "d_ff": 64, "batch_size": 32, "tower_batch": 64, "tower_hidden": 64, "tower_dim": 32, "ltr_over": "prefixes"}
QUICK_SPEC = {"codebook_size": 16, "epochs": 20, "hidden_dims": [64]}


def _params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _random_codes(n: int, levels: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 7).integers(0, size, size=(n, levels))


def _check_beams(gen, task, table: SemanticIdTable, limit: int = 256) -> dict:
    """Decode test captions with the constrained beam search and map every returned voken string back to an
    image: the share that is an indexed image (1.0 by construction of the prefix index; checked, not assumed)."""
    texts = task.stage_queries("test")["text"].astype(str).tolist()[:limit]
    gen.eval()
    with torch.no_grad():
        found = gen._beam_search(gen._encode_texts(texts), min(gen.num_items, gen.beam_width))
    codes = found.codes[found.valid].cpu().numpy()
    items = table.items_of(codes)
    return {"sequences": len(codes), "indexed": int((items >= 0).sum()),
            "all_indexed": bool(len(codes) and (items >= 0).all() and (items == found.items[found.valid].cpu().numpy()).all())}


def _history(result) -> list[dict]:
    return [{k: round(v, 5) if isinstance(v, float) else v for k, v in h.items()} for h in result.history]


def disc_ablations(cfg: AVGConfig) -> dict[str, dict]:
    """Rows that change one setting of the discriminative stage against the configured one (none when the
    configuration already is that setting)."""
    rows = {}
    if cfg.negatives_from != "all":
        rows["AVG, negatives from every image"] = {"negatives_from": "all"}
    if cfg.ltr_over != "images":
        rows["AVG, listwise over whole voken strings"] = {"ltr_over": "images"}
    return rows


def apply_disc_setting(gen, task, table: SemanticIdTable, change: dict):
    """Set an ablation's discriminative setting on ``gen``; returns the function that undoes it."""
    pool, levels = gen.negative_pool, gen.ltr_levels
    if "negatives_from" in change:
        gen.set_negative_pool(negative_pool(task, change["negatives_from"]))
    if "ltr_over" in change:
        gen.ltr_levels = table.semantic_levels if change["ltr_over"] == "prefixes" else None

    def restore() -> None:
        gen.set_negative_pool(pool)
        gen.ltr_levels = levels

    return restore


def run_seed(data, cfg: AVGConfig, seed: int, out: Path, spec_overrides: dict, progress: bool) -> dict:
    task = data.task
    res: dict = {"systems": {}, "training": {}, "index": {}}
    t0 = time.perf_counter()
    tower, fit = train_two_tower(data, cfg, seed, progress)
    res["training"]["two-tower"] = {"seconds": round(time.perf_counter() - t0, 1), "best_epoch": fit.best_epoch,
                                    "history": _history(fit)}
    m = timed_evaluation(tower, task)
    res["systems"]["two-tower + FAISS"] = {**m, "index_bytes": tower.index_bytes(), "trained_params": _params(tower)}
    x, paired = aligned_features(tower, task)
    gens = {}
    for variant, shared in (("shared", True), ("per-level", False)):
        t0 = time.perf_counter()
        over = {"latent_dim": cfg.d_model, "seed": seed, "progress": False, "shared_codebook": shared,
                **spec_overrides}
        path = build_index(task.catalogue, SPEC, out / f"seed{seed}" / f"index-{variant}", over, progress=False,
                           features=x, paired=paired, overwrite=True)
        index = load_index(path)
        scheme = IdScheme.load(path / "scheme")
        info = index_info(path)
        res["index"][variant] = {"seconds": round(time.perf_counter() - t0, 1), "stats": info["stats"],
                                 "disk_bytes": info["total_bytes"], "tokenizer_history": scheme.history[-1:]}
        gens[variant] = (index, scheme)
    # AVG (shared codebook): generative stage, evaluated, then the discriminative stage
    for variant, name in (("shared", "AVG"), ("per-level", "AVG, per-level codebooks")):
        index, scheme = gens[variant]
        table = index.table
        gen = make_generator(task, table.codes, table.level_sizes, variant == "shared", cfg, seed, scheme.codebooks,
                             table.semantic_levels)
        t0 = time.perf_counter()
        g = train_generator(gen, task, cfg, "generative", seed, progress)
        stages = {"generative": {"seconds": round(time.perf_counter() - t0, 1), "best_epoch": g.best_epoch,
                                 "history": _history(g)}}
        size = {"index_bytes": int(gen.prefix.nbytes + table.codes.size * 4), "trained_params": _params(gen)}
        if variant == "shared":
            res["systems"]["AVG w/o discriminative stage"] = {**timed_evaluation(gen, task), **size}
        if cfg.disc_epochs and variant == "shared":
            # ablations of the discriminative stage, each from the same generative checkpoint and mining RNG
            start, rng = copy.deepcopy(gen.state_dict()), gen.mining_rng.get_state()
            for ablation, change in disc_ablations(cfg).items():
                restore = apply_disc_setting(gen, task, table, change)
                t0 = time.perf_counter()
                d = train_generator(gen, task, cfg, "discriminative", seed, progress)
                stages[f"discriminative ({ablation})"] = {"seconds": round(time.perf_counter() - t0, 1),
                                                         "best_epoch": d.best_epoch, "history": _history(d)}
                res["systems"][ablation] = {**timed_evaluation(gen, task), **size}
                restore()
                gen.load_state_dict(start)
                gen.mining_rng.set_state(rng)
        if cfg.disc_epochs:
            t0 = time.perf_counter()
            d = train_generator(gen, task, cfg, "discriminative", seed, progress)
            stages["discriminative"] = {"seconds": round(time.perf_counter() - t0, 1), "best_epoch": d.best_epoch,
                                        "history": _history(d)}
        res["systems"][name] = {**timed_evaluation(gen, task), **size}
        res["training"][name] = stages
        if variant == "shared":
            res["beam_check"] = _check_beams(gen, task, table)
            res["_avg_model"] = gen
    # baselines without content: random IDs shaped like the vokens, and atomic IDs
    shared_table = gens["shared"][0].table
    sem = shared_table.semantic_levels
    k = max(shared_table.level_sizes[:sem])
    for name, codes, sizes, shared in (
            ("generator, random IDs", _random_codes(data.num_items, sem, k, seed), [k] * sem, True),
            ("generator, atomic IDs", np.arange(data.num_items)[:, None], [data.num_items], False)):
        table = SemanticIdTable.from_semantic_codes(codes, sizes, "index" if name.endswith("random IDs") else "none")
        gen = make_generator(task, table.codes, table.level_sizes, shared, cfg, seed)
        t0 = time.perf_counter()
        g = train_generator(gen, task, cfg, "generative", seed, progress)
        res["training"][name] = {"generative": {"seconds": round(time.perf_counter() - t0, 1),
                                                "best_epoch": g.best_epoch, "history": _history(g)}}
        res["systems"][name] = {**timed_evaluation(gen, task), "index_bytes": int(gen.prefix.nbytes + table.codes.size * 4),
                                "trained_params": _params(gen)}
    res["_tower"] = tower
    return res


def _seed_in_worker(data, cfg: AVGConfig, seed: int, out: Path, spec_overrides: dict) -> dict:
    """One seed in a worker process (one torch thread, no progress bars); models are not sent back."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = run_seed(data, cfg, seed, out, spec_overrides, progress=False)
    return {**{k: v for k, v in res.items() if not k.startswith("_")}, "seconds": round(time.perf_counter() - t0, 1)}


def summarize(seeds: dict) -> dict:
    out = {}
    for name in SYSTEMS:
        rows = [s["systems"][name] for s in seeds.values() if name in s["systems"]]
        if not rows:
            continue
        out[name] = {}
        for key in (*METRICS, "ms_per_query", "index_bytes", "trained_params"):
            vals = [float(r[key]) for r in rows]
            out[name][key] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return out


def _fmt(v: dict, pct: bool = True) -> str:
    return f"{v['mean']:.3f} ± {v['std']:.3f}"


def _bytes(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def markdown(summary: dict, meta: dict) -> str:
    n = len(meta["seeds"])
    intro = (f"{meta['data']['test_captions']} test captions (their images never trained on, every image indexed), "
             f"Recall@k = a relevant image (the caption's image or a pixel-identical copy) in the top k; mean ± std "
             f"over {n} seed(s) {meta['seeds']}. Latency: ms per query, batches of 256, on "
             f"{meta['machine']['threads']} thread(s) of {meta['machine']['cpu']} (measured while other jobs shared "
             f"the cores); the frozen MiniLM pass over a query is precomputed for every caption and left out for every "
             f"system alike. Image encoder: {meta['encoder']}. Generator: T5 built from a config (d_model "
             f"{meta['config']['d_model']}, {meta['config']['layers']}+{meta['config']['layers']} layers), not "
             "pretrained.")
    header = ("| system | pretrained (frozen) | trained here | Recall@1 | Recall@5 | Recall@10 | MRR@10 | ms/query | "
              "index | trained params |")
    lines = [f"# AVG on {meta['data']['name']}: text-to-image retrieval over {meta['data']['images']} images", "",
             intro, "", header, "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in summary.items():
        pre, trained = SYSTEMS[name]
        lines.append(f"| {name} | {pre} | {trained} | " + " | ".join(_fmt(row[m]) for m in METRICS)
                     + f" | {row['ms_per_query']['mean']:.2f} | {_bytes(row['index_bytes']['mean'])} | "
                     f"{row['trained_params']['mean'] / 1e6:.2f} M |")
    lines += ["", f"Wall time {meta['wall_seconds'] / 60:.1f} min (`{meta['command']}`).", ""]
    return "\n".join(lines)


def draw(res: dict, task, out: Path, n: int = 4, k: int = 5) -> list[str]:
    """Top-``k`` images of the first ``n`` test captions (with at least 3 words) for AVG and the two-tower."""
    from genir.features.image import open_image

    q = task.stage_queries("test")
    q = q[q["text"].str.split().str.len() >= 3].head(n)
    root = Path(task.catalogue.source).parent
    images = task.catalogue.columns["image"].tolist()
    titles = task.catalogue.columns["title"].astype(str).tolist()
    written = []
    for key, model in (("avg", res["_avg_model"]), ("two-tower", res["_tower"])):
        answer = model.retrieve(q["text"].tolist(), k=k)
        rows = []
        for r, (qid, text) in enumerate(zip(q["qid"], q["text"])):
            rel = set(task.relevant(qid).tolist())
            found = [(open_image(images[i], root), titles[i][:40], float(s), i in rel)
                     for i, s in zip(answer.items[r].tolist(), answer.scores[r].tolist()) if i >= 0]
            rows.append((text, found))
        path = save_grid(rows, out / f"queries-{key}.png", title=f"{'AVG' if key == 'avg' else 'two-tower + FAISS'}: "
                         f"top-{k} images of test captions (green: relevant)")
        written.append(str(path))
    return written


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="300 images, pixels encoder, tiny models, one seed")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (quick: 0)")
    p.add_argument("--limit", type=int, default=None, help="first N usable images (quick: 300)")
    p.add_argument("--encoder", default=None, help="image encoder (default efficientnet-lite; quick: pixels)")
    p.add_argument("--images", default=None, help="an .npz archive or a folder of images (default: the clip art)")
    p.add_argument("--captions", default=None, help="captions of --images (.jsonl.gz or Karpathy .json)")
    p.add_argument("--out", default=None, help="output folder (default runs/avg/<time>)")
    p.add_argument("--jobs", type=int, default=None, help="seeds run side by side in this many processes of one "
                   "torch thread each (default: min(seeds, CPU cores)); the first seed runs in this process")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("settings", nargs="*", help="AVGConfig overrides key=value (epochs=30 disc_epochs=2 ...)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    commit = _git_commit()  # the code that runs: HEAD may move while a long run goes on
    seeds = args.seeds or [0] if args.quick else (args.seeds or [0, 1, 2])
    limit = args.limit or (300 if args.quick else None)
    encoder = args.encoder or ("pixels" if args.quick else "efficientnet-lite")
    out = Path(args.out or ROOT / "runs" / "avg" / time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    settings = {**(QUICK if args.quick else DEFAULT)}
    for pair in args.settings:
        key, _, value = pair.partition("=")
        settings[key] = value
    cfg = AVGConfig.from_dict(settings, source="recipes/avg.py", coerce=True)
    spec_overrides = dict(QUICK_SPEC) if args.quick else {}
    progress = not args.no_progress
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.images:
            task = read_image_task(args.images, args.captions, limit=limit)
        else:
            task = read_openclipart(limit=limit)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    t0 = time.perf_counter()
    data = prepare(task, encoder, progress=progress, **({"size": 16} if encoder == "pixels" else {}))
    features_s = time.perf_counter() - t0
    print(f"{task.name}: {data.num_items} images, captions {task.describe()['queries']}; features "
          f"{data.image_features.shape} ({encoder}) in {features_s:.0f} s", flush=True)
    jobs = max(1, min(len(seeds), args.jobs or os.cpu_count() or 1))
    if jobs > 1:
        torch.set_num_threads(1)
    per_seed, keep = {}, None
    with ProcessPoolExecutor(jobs - 1, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else \
            contextlib.nullcontext() as pool:
        # seeds after the first go to the worker processes; the first one runs here (its models draw the pictures)
        others = {seed: pool.submit(_seed_in_worker, data, cfg, seed, out, spec_overrides) for seed in seeds[1:]} \
            if pool is not None else {}
        for seed in seeds:
            if seed in others:
                res = others[seed].result()
            else:
                t0 = time.perf_counter()
                res = run_seed(data, cfg, seed, out, spec_overrides, progress)
                res["seconds"] = round(time.perf_counter() - t0, 1)
            if keep is None:
                keep = res
            per_seed[str(seed)] = {k: v for k, v in res.items() if not k.startswith("_")}
            print(f"seed {seed} done in {res['seconds']:.0f} s: " + "; ".join(
                f"{n} R@10 {r['recall@10']:.3f}" for n, r in res["systems"].items()), flush=True)
    pictures = draw(keep, task, out)
    summary = summarize(per_seed)
    meta = {
        "command": "python recipes/avg.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average_at_end": os.getloadavg()},
        "git_commit": commit,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - (time.perf_counter() - t_start))),
        "wall_seconds": round(time.perf_counter() - t_start, 1), "features_seconds": round(features_s, 1),
        "encoder": encoder, "seeds": seeds, "jobs": jobs, "config": cfg.to_dict(), "spec_overrides": spec_overrides,
        "data": {"name": task.name, "images": data.num_items, "test_captions": len(task.stage_queries("test")),
                 "queries": task.describe()["queries"], "read_report": getattr(task, "read_report", {})},
        "pretrained_vs_trained": {k: {"pretrained": v[0], "trained_here": v[1]} for k, v in SYSTEMS.items()},
    }
    results = {**meta, "summary": summary, "seeds_detail": per_seed, "pictures": pictures}
    atomic_write(out / "results.json", lambda fh: fh.write(json.dumps(results, indent=1, default=str).encode()))
    table = markdown(summary, meta)
    atomic_write(out / "results.md", lambda fh: fh.write(table.encode()))
    print(table)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
