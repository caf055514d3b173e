"""Inference cost of generative retrieval vs embed-and-retrieve, measured side by side in one run.

    python benchmarks/generative_inference.py [--device cpu|cuda] [--scale 100] [--repeats 3]
    python benchmarks/generative_inference.py --quick --out /tmp/gi.json   # smoke test: 32 users, 1 repeat

For the 943 ml-100k test users (batches of 256), users per second of

* MMGRec: encoder over the history + constrained beam search (beams 20, top 20) over the index's prefix index,
  the user's history excluded inside the search;
* TIGER: the same with TIGER's switches (the encoder reads the L code tokens of each of the last 20 items,
  absolute positions, no user vectors);
* SASRec: encoder over the history + scores of every catalogue item (dot products), history masked, top-20.

at the real catalogue size (1,682 items) and at a ``--scale`` times larger one. The IDs are random unique tuples
over the three 32-code levels of ``tokenizers/graph_rqvae.yaml`` plus a collision level wide enough to hold them
(at 1,682 items this matches the real Graph RQ-VAE index's shape; TIGER decodes the same IDs), and SASRec gets a
random item table of the same size. All models have their
default sizes and random weights: the cost of a forward pass and of the search does not depend on the weights'
values (the beam's width and the index's branching do not change with training).

The generative models are timed twice in the same run: with the decoder's KV cache (``DecoderStep(net)``, the
library's default, one decoder position per level: ``mmgrec_users_per_s``, ``tiger_users_per_s``) and without it
(``kv_cache=False``, the decoder re-run over BOS + the codes so far at every level); the ``kv_cache`` section of
the JSON holds both and their ratio per model and catalogue, and ``same_items`` the share of users whose top-20
items the two paths agree on (random weights give near-uniform logits, so a rare near-tie may flip). Results go to
``benchmarks/results/generative_inference[-<device>].json`` with the machine and the command (``--quick``: the
system's temp dir unless ``--out`` is given; its timings are not meaningful).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genir.data import load_dataset, make_split
from genir.decoding import CodeTokenLayout, PrefixIndex, constrained_beam_search
from genir.eval.evaluator import pad_histories
from genir.methods.mmgrec import MMGRecConfig
from genir.methods.sasrec import SASRec, SASRecConfig
from genir.methods.tiger.config import TigerConfig
from genir.models.transformer import CODE_BASE, DecoderStep, GenerativeTransformer
from genir.runs import environment

OUT = Path(__file__).resolve().parent / "results"


def synthetic_codes(n: int, sizes: list[int], seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """``n`` unique code tuples: semantic levels drawn at random, a last level numbering the items that share
    them (as the collision handling does); returns (codes (n, L + 1), level sizes)."""
    rng = np.random.default_rng(seed)
    sem = np.stack([rng.integers(0, k, n) for k in sizes], axis=1)
    _, inverse = np.unique(sem, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
    counts = np.diff(np.r_[starts, n])
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    return np.concatenate([sem, rank[:, None]], axis=1), [*sizes, int(rank.max()) + 1]


def generative_timer(method: str, num_items: int, histories, device, seed: int = 0):
    """``method`` ("mmgrec" or "tiger") with its default sizes and switches over the synthetic IDs: the decoding
    of a batch of users with the KV cache and without (``{True: run, False: run}``, the same network), and the
    index's shape. MMGRec reads random 64-d item vectors and user vectors (its graph encoder's output size)."""
    cfg = MMGRecConfig() if method == "mmgrec" else TigerConfig()
    codes, sizes = synthetic_codes(num_items, [32, 32, 32], seed)
    layout = CodeTokenLayout(sizes, base=CODE_BASE)
    index = PrefixIndex.from_codes(codes, sizes).to(device)
    torch.manual_seed(seed)
    dim = 64 if method == "mmgrec" else 0
    net = GenerativeTransformer(layout.vocab_end, layout.num_levels, d_model=cfg.d_model, num_heads=cfg.num_heads,
                                d_ff=cfg.d_ff, num_encoder_layers=cfg.num_encoder_layers,
                                num_decoder_layers=cfg.num_decoder_layers, dropout=0.0, max_history=cfg.max_history,
                                position=cfg.position, encoder_input=cfg.encoder_input, item_dim=dim, user_dim=dim)
    net.to(device).eval()
    item_vectors = torch.randn(num_items + 1, 64, device=device) if dim else None
    item_tokens = layout.to_tokens(torch.as_tensor(codes, device=device))
    item_tokens = torch.cat([item_tokens, torch.zeros_like(item_tokens[:1])])
    users = torch.randn(len(histories), 64, device=device) if dim else None

    def timer(kv_cache: bool):
        @torch.no_grad()
        def run(rows):
            seen, _ = pad_histories([histories[r] for r in rows], num_items)
            seen = seen.to(device)
            hist = seen[:, -cfg.max_history:]
            memory = net.encode(item_tokens[hist], hist != num_items,
                                None if item_vectors is None else item_vectors[hist],
                                None if users is None else users[rows])
            res = constrained_beam_search(DecoderStep(net, kv_cache=kv_cache), DecoderStep.init_state(*memory),
                                          len(rows), index, cfg.beam_width, cfg.beam_width, layout=layout,
                                          exclude=seen)
            return res.items

        return run

    return {True: timer(True), False: timer(False)}, {"index_bytes": index.nbytes, "level_sizes": sizes}


def sasrec_timer(split, num_items: int, histories, device, seed: int = 0):
    torch.manual_seed(seed)
    model = SASRec(SASRecConfig(), split)
    model.item_emb = torch.nn.Embedding(num_items + 1, model.config.hidden_size, padding_idx=num_items)
    model.pad_id, model.num_items = num_items, num_items
    model.to(device).eval()
    L = model.config.max_seq_length

    @torch.no_grad()
    def run(rows):
        seen, _ = pad_histories([histories[r] for r in rows], num_items)
        seen = seen.to(device)
        seq = torch.nn.functional.pad(seen[:, -L:], (max(0, L - seen.shape[1]), 0), value=num_items)
        h = model.encode(seq)[:, -1]
        scores = torch.nn.functional.pad(h @ model.item_emb.weight[:num_items].T, (0, 1))  # column N: padding
        return scores.scatter_(1, seen, float("-inf"))[:, :num_items].topk(20, dim=1).indices

    return run, {}


def users_per_second(run, n_users: int, batch: int, repeats: int, device) -> float:
    rows = [np.arange(s, min(s + batch, n_users)) for s in range(0, n_users, batch)]
    run(rows[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for r in rows:
            run(r)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return n_users / best


def same_items(runs, n_users: int, batch: int) -> float:
    """Share of the users whose decoded top-k lists (items, in order) the cached and the uncached search agree
    on: a check that the two timed paths compute the same thing."""
    same = 0
    for s in range(0, n_users, batch):
        rows = np.arange(s, min(s + batch, n_users))
        same += int((runs[True](rows) == runs[False](rows)).all(1).sum())
    return same / n_users


QUICK_USERS = 32  # --quick: the first test users only, in batches of half that, one timed repeat


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--scale", type=int, default=100)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: the first {QUICK_USERS} test users, batches of {QUICK_USERS // 2}, one repeat; "
                   "timings not meaningful; written to the temp dir unless --out is given")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = min(args.batch, QUICK_USERS // 2), 1
    device = torch.device(args.device)
    split = make_split(load_dataset("ml-100k"), "loo")
    # the test histories, re-indexed into the synthetic catalogue (item ids < 1682 exist in every catalogue)
    histories = [np.asarray(h) for h in split.histories("test")]
    if args.quick:
        histories = histories[:QUICK_USERS]
    n_users = len(histories)
    rows, kv_rows = [], []
    for scale in (1, args.scale):
        n = split.num_items * scale
        ups = {}
        for method in ("mmgrec", "tiger"):
            runs, info = generative_timer(method, n, histories, device)
            before = users_per_second(runs[False], n_users, args.batch, args.repeats, device)
            after = users_per_second(runs[True], n_users, args.batch, args.repeats, device)
            ups[method] = after  # the library's default decoding
            kv_rows.append({"method": method, "catalogue": n, "scale": scale, "before_users_per_s": before,
                            "after_users_per_s": after, "speedup": after / before,
                            "same_items": same_items(runs, n_users, args.batch)})
            print(f"catalogue {n:>8d}: {method:<6s} KV cache off {before:8.1f} users/s, on {after:8.1f} users/s, "
                  f"x{after / before:.2f} (same top-20 for {kv_rows[-1]['same_items']:.1%} of users)", flush=True)
            if method == "mmgrec":
                mm_info = info
        sr, _ = sasrec_timer(split, n, histories, device)
        ups_mm, ups_tg = ups["mmgrec"], ups["tiger"]
        ups_sr = users_per_second(sr, n_users, args.batch, args.repeats, device)
        row = {"catalogue": n, "scale": scale, "mmgrec_users_per_s": ups_mm, "sasrec_users_per_s": ups_sr,
               "mmgrec_over_sasrec_time": ups_sr / ups_mm, "tiger_users_per_s": ups_tg,
               "tiger_over_sasrec_time": ups_sr / ups_tg, **mm_info}
        rows.append(row)
        print(f"catalogue {n:>8d}: MMGRec {ups_mm:8.1f} users/s, TIGER {ups_tg:8.1f} users/s, SASRec "
              f"{ups_sr:8.1f} users/s, MMGRec time / SASRec time = {ups_sr / ups_mm:.2f}, TIGER time / SASRec "
              f"time = {ups_sr / ups_tg:.2f}", flush=True)
    growth = {"mmgrec_slowdown": rows[0]["mmgrec_users_per_s"] / rows[1]["mmgrec_users_per_s"],
              "sasrec_slowdown": rows[0]["sasrec_users_per_s"] / rows[1]["sasrec_users_per_s"],
              "tiger_slowdown": rows[0]["tiger_users_per_s"] / rows[1]["tiger_users_per_s"]}
    print(f"x{args.scale} catalogue: MMGRec {growth['mmgrec_slowdown']:.2f}x slower, TIGER "
          f"{growth['tiger_slowdown']:.2f}x slower, SASRec {growth['sasrec_slowdown']:.2f}x slower")
    result = {"benchmark": "generative_inference", "device": str(device), "users": n_users, "batch": args.batch,
              "repeats": args.repeats, "beam_width": 20, "quick": args.quick, "rows": rows,
              "slowdown_at_scale": growth, "kv_cache": kv_rows,
              "command": " ".join([Path(sys.executable).name] + sys.argv), "environment": environment()}
    name = f"generative_inference{'' if device.type == 'cpu' else '-' + device.type}"
    if args.out:
        out = Path(args.out)
    elif args.quick:  # never next to the real results
        out = Path(tempfile.gettempdir()) / f"{name}-quick.json"
    else:
        out = OUT / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
