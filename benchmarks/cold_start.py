"""Cold-start benchmark: how well items that arrive *after* training are recommended.

    python benchmarks/cold_start.py                       # full run: ml-100k, seeds 2020,2021,2022
    python benchmarks/cold_start.py --quick               # smoke run (1 seed, 1 epoch, small models)
    python benchmarks/cold_start.py --dataset inter.csv --items items.csv   # interactions + titles

New items join a generative index through ``genir index add``: they get semantic IDs from the fitted scheme
(no refit, every existing ID kept) and the trained generator is kept as it is. This benchmark measures what
that buys: whether items added that way are recommended to the users who go on to consume them. None of the
generative retrieval papers genir reproduces measures it (TIGER argues cold-start ability from shared semantic
prefixes, but its tables rank warm items only).

Protocol
--------
1. **Data.** ``genir.data.load_dataset`` (default ``ml-100k``). Leave-one-out by time on the full dataset
   (``genir.data.leave_one_out``) fixes each user's test target: their last interaction (users with fewer than
   3 interactions have none and are never evaluated). A random ``--new-fraction`` (10 %) of the catalogue,
   drawn with ``numpy.random.default_rng(--seed)`` (2020), is the set S of "new" items. D' is the dataset with
   *every* interaction of an item of S removed (``Dataset.subset``, which re-assigns internal ids: everything
   is mapped through external ids), so D' holds nothing of S: neither the index's scheme, nor training, nor
   the validation that early stopping reads ever sees a new item. D' is split leave-one-out by time (D' train
   / valid / test) for training and early stopping.
2. **Evaluation users.** The users whose full-dataset test target is an item of S and who keep at least one
   interaction in D'. Their history is every D' interaction before the test interaction, in time order. The
   target is the user's last interaction overall, so that is *all* their D' interactions: D' train + valid and
   also the D' test item (the models never train on D' test rows; here it is only read as input, and it did
   happen before the target). Choices: the user's earlier interactions with *other* new items are neither in
   the history (D' has none) nor masked from the rankings, for every system alike; MovieLens has no repeated
   (user, item) pairs, so the target is never a history item. With ml-100k and seed 2020 only 78 users
   qualify: one hit moves Recall@10 by 0.0128, so each result also carries the binomial standard error over
   users (``recall_se``) and the target's rank per user (``ranks``, 0 = not in the top-10) for paired
   comparisons.
3. **Index.** ``genir.index.build_index(D', --scheme)`` (default ``tokenizers/rqvae.yaml``: RQ-VAE over MiniLM
   text features of title / year / genres, 3 x 64 codes + a collision level), leave-one-out split of D'. Then
   the items of S (columns item, title, year, genres as a ``|``-joined string, from the full dataset's items
   frame) are written to a CSV and added with ``genir.index.add_items``, which computes their text features
   itself, as ``genir index add`` does (checked while writing this: the same texts, hence the same codes, as
   computed from the full catalogue).
   Recorded: the add's wall time and collision statistics: how many new items share their whole semantic ID
   (every semantic level) with an old item, per level the share of new items whose code prefix exists among
   old items, whether a token table grew, and how many new items sit on a collision-level token that training
   never saw (its embedding row is untrained).
4. **Systems**, each ranking the grown catalogue (old + new items) with the history excluded, top-10. One
   target per user, so Recall@10 is the hit rate; NDCG@10 = 1 / log2(rank + 1) on a hit. Also reported: the
   share of the top-10 slots filled by new items (``new_share@10``), and how many distinct new items any
   top-10 holds.

   * ``tiger`` - TIGER (method ``tiger``) trained on D' with the index *before* the add, early stopping on D'
     valid NDCG@10; then, without retraining, rebuilt on the grown index with its best weights loaded by
     ``genir.runs.init_weights`` (the same as a strict load unless the add grew a token table, whose new rows
     then keep their random initialisation; see the library note below) and asked for ``recommend(history,
     k=10)``: constrained beam search over every ID of the grown index (20 beams), history excluded inside it.
   * ``tiger+ft`` - that run fine-tuned on the grown index for ``--resume-epochs`` (3) epochs from its best
     weights (``RunSpec.init_from``, as ``genir train --index DIR --resume``); best epoch by D' valid NDCG@10
     (the trainer does not validate before the first epoch, so at least one epoch is always applied). D' holds
     no interaction of a new item, so the fine-tune cannot teach them: it measures whether training on the
     grown index helps or hurts them (it only ever rewards old items' IDs; new items gain only through the
     code tokens they share with old items).
   * ``sasrec`` - SASRec trained on D' (the baselines recipe's tuned settings). It has no embedding for a new
     item, so its recall here is 0 by construction; it is scored through the same path anyway (its ranking
     over D' mapped to external ids: it can only return old items), the gap an ID-based model leaves.
   * ``knn-text`` - content kNN, no training: MiniLM text embeddings (``genir.features.text_embeddings``, the
     texts the index encodes) of every item, L2-normalised, in a FAISS ``IndexFlatIP``; the user profile is
     the normalised mean of the embeddings of the last 20 history items; top-10 by inner product, history
     excluded.
   * ``knn-text-new-only`` - the same kNN over the new items only: a reference for "if you knew the target is
     new" (an oracle-informed setting, not a deployable system).
   * ``random-new`` - a uniformly random list of 10 new items, analytically: Recall@10 = 10 / |S|, NDCG@10 =
     (1 / |S|) sum_{r=1..10} 1 / log2(r + 1). What knowing only "the target is new" gives (popularity gives
     nothing: new items have no interactions).

   The warm D' test metrics of the trained models (full ranking over D' 's catalogue, the library's evaluator)
   are reported beside them, to show that the models trained properly.
5. **Seeds.** TIGER and SASRec train with each of ``--seeds`` (2020, 2021, 2022); S is fixed by ``--seed``;
   the index (the spec's RQ-VAE seed 42) is built once and shared by the seeds; the kNN and the random
   reference are deterministic. Results are mean ± sample std (ddof 1) over seeds.
6. **Training.** ``genir.training.TrainerConfig.for_method`` (method defaults < these settings): TIGER takes
   ``recipes/mmgrec.py``'s validation-tuned generative settings (lr 1e-3, batch 64, at most 40 epochs,
   patience 4, history 20; bf16 autocast where native, ``genir.training.bf16_is_native``; decoding is fp32),
   SASRec the baselines recipe's tuned ones (lr 2e-3, dropout 0.5, max_seq_length 50; at most 200 epochs,
   patience 10). Both are copied here, not imported (a benchmark should not execute recipe modules), and
   recorded in the JSON. ``--epochs`` caps both. ``--quick``: one seed, 1 epoch, a 1-epoch fine-tune, TIGER
   with d_model 32, d_ff 64 and one encoder and one decoder layer, SASRec with hidden size 32 (the data are
   not reduced): a smoke test whose numbers mean nothing.

Seconds: training (``fit``, its validations included, the warm test not) + scoring the evaluation users for a
trained system (for ``tiger+ft`` its own fine-tune only); embedding + search for the kNN.

Output: a markdown table on stdout and a JSON (default ``benchmarks/results/cold_start.json``; with
``--quick`` the system temp dir unless ``--out`` is given) with this protocol, |S|, the evaluation users, the
index build and add (times, collision statistics), per-seed and aggregated results,
``genir.runs.environment()`` and the command.

Library note: ``genir.runs.load_run`` (so ``genir retrieve --index`` and ``genir eval --index``) reloads a
model with a strict ``load_state_dict``; when an add grows the collision level, the model built on the grown
index has a larger token table than the saved weights and the run is refused (CheckpointError, size mismatch
for ``net.token_emb.weight``). This benchmark therefore loads with ``init_weights``.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
K = 10
KNN_HISTORY = 20  # items of the history averaged into the kNN profile
DEFAULT_SEEDS = "2020,2021,2022"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "cold_start.json"
# TIGER: recipes/mmgrec.py's GENERATIVE + TIGER settings; SASRec: recipes/baselines.py's TUNED["sasrec"].
TIGER_TRAINER = {"lr": 1e-3, "batch_size": 64, "epochs": 40, "patience": 4}
TIGER_METHOD = {"max_history": 20}
SASREC_TRAINER = {"lr": 2e-3}
SASREC_METHOD = {"dropout": 0.5, "max_seq_length": 50}
QUICK_TIGER = {"d_model": 32, "d_ff": 64, "num_encoder_layers": 1, "num_decoder_layers": 1}
QUICK_SASREC = {"hidden_size": 32, "inner_size": 64}
SYSTEMS = ("tiger", "tiger+ft", "sasrec", "knn-text", "knn-text-new-only", "random-new")
TRAINED = ("tiger", "tiger+ft", "sasrec")


def log(msg: str) -> None:
    print(f"[cold_start {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- data ----------------------------------------------------------------------------------------------------
def pick_new_items(dataset, fraction: float, seed: int) -> np.ndarray:
    """Internal ids (in ``dataset``) of the new items: a seeded uniform draw of ``fraction`` of the items."""
    n = max(1, round(fraction * dataset.num_items))
    if n >= dataset.num_items:
        raise SystemExit(f"--new-fraction {fraction} leaves no old item ({dataset.num_items} items)")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(dataset.num_items, size=n, replace=False))


def evaluation_users(full, full_split, warm, new_mask: np.ndarray
                     ) -> tuple[list[str], list[str], list[np.ndarray]]:
    """(external user ids, external target ids, histories as D' internal item ids in time order) of the users
    whose full-dataset test target is new and who keep at least one D' interaction."""
    users = full.inter["user"].to_numpy()
    items = full.inter["item"].to_numpy()
    order = np.argsort(users, kind="stable")  # rows are time-sorted, so each user's block stays in time order
    bounds = np.searchsorted(users[order], np.arange(full.num_users + 1))
    warm_users = set(map(str, warm.user_ids))
    warm_pos = {str(x): i for i, x in enumerate(warm.item_ids)}
    out_users, out_targets, out_hist = [], [], []
    for row in np.asarray(full_split.test_rows):
        u, target = int(users[row]), int(items[row])
        if not new_mask[target] or str(full.user_ids[u]) not in warm_users:
            continue
        rows = order[bounds[u]:bounds[u + 1]]
        rows = rows[rows < row]  # before the test interaction (row positions are time order, ties stable)
        hist = [warm_pos[str(full.item_ids[i])] for i in items[rows] if not new_mask[i]]
        if hist:
            out_users.append(str(full.user_ids[u]))
            out_targets.append(str(full.item_ids[target]))
            out_hist.append(np.asarray(hist, dtype=np.int64))
    return out_users, out_targets, out_hist


def new_items_frame(full, new_internal: np.ndarray) -> pd.DataFrame:
    """The new items as ``genir index add`` reads them: item, title, year, genres ('|'-joined)."""
    side = full.items.iloc[new_internal].reset_index(drop=True)
    frame = pd.DataFrame({"item": [str(full.item_ids[i]) for i in new_internal]})
    for col in ("title", "year", "genres"):
        if col == "genres" and col in side.columns:
            frame[col] = ["|".join(map(str, g)) if isinstance(g, (list, tuple, np.ndarray)) else g
                          for g in side[col]]
        elif col in side.columns:
            frame[col] = side[col].to_numpy()
    return frame


# -- metrics -------------------------------------------------------------------------------------------------
def score_lists(ranked: list[list[str]], targets: list[str], new_ids: set[str], k: int = K) -> dict:
    """Recall@k (= hit rate: one target), its binomial standard error over users, NDCG@k, the share of top-k
    slots holding a new item, the distinct new items recommended, and each user's target rank (0 = miss)."""
    ranks, new_slots, distinct_new = [], 0.0, set()
    for lst, target in zip(ranked, targets):
        top = list(lst)[:k]
        ranks.append(top.index(target) + 1 if target in top else 0)
        news = [x for x in top if x in new_ids]
        new_slots += len(news) / k
        distinct_new.update(news)
    n = max(1, len(targets))
    recall = sum(r > 0 for r in ranks) / n
    return {f"recall@{k}": recall, "recall_se": math.sqrt(recall * (1 - recall) / n),
            f"ndcg@{k}": sum(1.0 / math.log2(r + 1) for r in ranks if r) / n, f"new_share@{k}": new_slots / n,
            "distinct_new_items_recommended": len(distinct_new), "ranks": ranks}


def random_new_reference(num_new: int, k: int = K) -> dict:
    """Expected metrics of k new items drawn uniformly (the target is one of the ``num_new``)."""
    kk = min(k, num_new)
    ndcg = sum(1.0 / math.log2(r + 1) for r in range(1, kk + 1)) / num_new
    return {f"recall@{k}": kk / num_new, f"ndcg@{k}": ndcg, f"new_share@{k}": kk / k,
            "distinct_new_items_recommended": num_new, "seconds": 0.0}


# -- systems -------------------------------------------------------------------------------------------------
def rank_generative(model, histories: list[np.ndarray], ext_ids: list[str], batch: int) -> list[list[str]]:
    """Top-K external ids of a generative model over its (grown) index, history excluded inside the search."""
    out = []
    for s in range(0, len(histories), batch):
        found = model.recommend([h.tolist() for h in histories[s:s + batch]], k=K)
        out.extend([[ext_ids[i] for i, _ in lst] for lst in found])
    return out


def rank_full_scores(model, histories: list[np.ndarray], warm, batch: int) -> list[list[str]]:
    """Top-K external ids of a full-scoring model over D' 's items (it knows no new item), history masked."""
    import torch

    from genir.eval.evaluator import EvalBatch, pad_histories

    device = next(model.parameters()).device
    model.eval()
    model.prepare_eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(histories), batch):
            chunk = histories[s:s + batch]
            hist, lens = pad_histories(chunk, warm.num_items)
            users = torch.full((len(chunk),), -1, dtype=torch.long)
            scores = model.full_scores(EvalBatch(users, hist, lens, warm.num_items).to(device)).float().cpu()
            for r, h in enumerate(chunk):
                scores[r, torch.as_tensor(h)] = float("-inf")
            top = torch.topk(scores, min(K, scores.shape[1]), dim=1).indices.numpy()
            out.extend([[str(warm.item_ids[i]) for i in row] for row in top])
    return out


def rank_knn(emb: np.ndarray, ext_ids: list[str], histories: list[np.ndarray], candidates: np.ndarray
             ) -> list[list[str]]:
    """Content kNN in a FAISS IndexFlatIP over ``candidates`` (rows of ``emb``); profile = normalised mean of
    the last KNN_HISTORY history items' embeddings; history excluded."""
    import faiss

    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x[candidates], dtype=np.float32))
    prof = np.stack([x[h[-KNN_HISTORY:]].mean(0) for h in histories]).astype(np.float32)
    prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
    depth = int(min(len(candidates), K + max(len(h) for h in histories)))  # room for the excluded history
    _, found = index.search(np.ascontiguousarray(prof), depth)
    out = []
    for h, row in zip(histories, found):
        seen = set(h.tolist())
        out.append([ext_ids[i] for i in (int(candidates[j]) for j in row if j >= 0) if i not in seen][:K])
    return out


# -- collisions ----------------------------------------------------------------------------------------------
def collision_stats(table_before, table_after, n_old: int) -> dict:
    """How the new items' IDs relate to the old ones' (rows ``n_old..`` of the grown table are new)."""
    codes = np.asarray(table_after.codes)
    sem = table_after.semantic_levels
    old, new = codes[:n_old], codes[n_old:]
    per_level = []
    for level in range(1, sem + 1):
        old_prefixes = {tuple(r) for r in old[:, :level].tolist()}
        per_level.append(float(np.mean([tuple(r) in old_prefixes for r in new[:, :level].tolist()])))
    old_sem = {tuple(r) for r in old[:, :sem].tolist()}
    with_old = [tuple(r) in old_sem for r in new[:, :sem].tolist()]
    keys, counts = np.unique(new[:, :sem], axis=0, return_counts=True)
    shared_new = {tuple(k) for k, c in zip(keys.tolist(), counts) if c > 1}
    only_new = sum(1 for r, w in zip(new[:, :sem].tolist(), with_old) if not w and tuple(r) in shared_new)
    before, after = list(table_before.level_sizes), list(table_after.level_sizes)
    untrained = int((new[:, -1] >= before[-1]).sum()) if codes.shape[1] > sem else 0  # a new collision token
    return {
        "new_items": len(new),
        "semantic_levels": int(sem),
        "new_sharing_semantic_id_with_old": int(sum(with_old)),
        "new_sharing_semantic_id_with_old_share": float(np.mean(with_old)) if len(new) else 0.0,
        "new_sharing_semantic_id_only_with_new": int(only_new),
        "new_prefix_exists_among_old_by_level": per_level,
        "level_sizes_before": before,
        "level_sizes_after": after,
        "token_table_grew": after != before,
        "new_items_on_untrained_collision_token": untrained,
    }


# -- main ----------------------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k", help="ml-100k or a path (see genir.data.load_dataset)")
    p.add_argument("--items", default=None, help="items file of an interactions file (with titles)")
    p.add_argument("--scheme", default="tokenizers/rqvae.yaml", help="identifier-scheme spec of the index")
    p.add_argument("--index-override", action="append", default=[], metavar="KEY=VALUE",
                   help="spec override for the index build (repeatable), e.g. codebook_size=8")
    p.add_argument("--seed", type=int, default=2020, help="seed of the draw of the new items")
    p.add_argument("--new-fraction", type=float, default=0.1, help="share of the catalogue that is new")
    p.add_argument("--seeds", default=DEFAULT_SEEDS, help="training seeds of TIGER and SASRec")
    p.add_argument("--epochs", type=int, default=None, help="cap on training epochs (default: the settings')")
    p.add_argument("--resume-epochs", type=int, default=3, help="epochs of the fine-tune on the grown index")
    p.add_argument("--tiger", action="append", default=[], metavar="KEY=VALUE",
                   help="extra TIGER method or trainer setting (repeatable)")
    p.add_argument("--sasrec", action="append", default=[], metavar="KEY=VALUE",
                   help="extra SASRec method or trainer setting (repeatable)")
    p.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, small models: a smoke run")
    p.add_argument("--cpu", action="store_true", help="force the CPU even when a GPU is visible")
    p.add_argument("--threads", type=int, default=None, help="torch and faiss threads (default: theirs)")
    p.add_argument("--batch", type=int, default=256, help="users per scoring batch")
    p.add_argument("--work", default=None, help="working folder, kept (default: a temp dir, removed after)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", default=None, help=f"results JSON (default {DEFAULT_OUT.relative_to(ROOT)}; with "
                                               "--quick: cold_start-quick.json in the system temp dir)")
    return p.parse_args(argv)


def _split_settings(model_name: str, settings: dict) -> tuple[dict, dict]:
    """(method dict, trainer dict) of flat settings; every key must be a method or a trainer field."""
    from genir.errors import ConfigError
    from genir.methods import get_method
    from genir.training import TrainerConfig

    config_cls, _ = get_method(model_name)
    method_fields = set(config_cls.__dataclass_fields__)
    trainer_fields = set(TrainerConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - method_fields - trainer_fields)
    if unknown:
        raise ConfigError(f"{model_name}: unknown setting(s) {unknown}")
    return ({k: v for k, v in settings.items() if k in method_fields},
            {k: v for k, v in settings.items() if k in trainer_fields})


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw_argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.threads:
        import faiss

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="genir-cold-start-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, raw_argv, work)
    finally:
        if args.work:
            log(f"working folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args, raw_argv: list[str], work: Path) -> int:
    import torch

    from genir.atomic import write_json
    from genir.data import leave_one_out, load_dataset
    from genir.data.catalogue import Catalogue
    from genir.eval.report import aggregate, markdown_table
    from genir.features import text_embeddings
    from genir.features.text import STANDARD_FIELDS
    from genir.index import add_items, build_index, load_index
    from genir.methods import build_method, get_method
    from genir.runs import RunSpec, environment, init_weights, parse_overrides, train_run
    from genir.training import TrainerConfig, bf16_is_native

    t_total = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.quick:
        seeds = seeds[:1]
    epochs_cap = 1 if args.quick and args.epochs is None else args.epochs
    resume_epochs = 1 if args.quick else args.resume_epochs
    progress = not args.quiet
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    if args.out:
        out_path = Path(args.out)
    else:
        out_path = Path(tempfile.gettempdir()) / "cold_start-quick.json" if args.quick else DEFAULT_OUT
    scheme = Path(args.scheme)
    if not scheme.is_absolute() and not scheme.exists():
        scheme = ROOT / scheme

    # -- 1. data: the new items S, the warm dataset D', the evaluation users ---------------------------------
    log(f"loading {args.dataset}")
    full = load_dataset(args.dataset, items=args.items)
    full_split = leave_one_out(full)
    new_internal = pick_new_items(full, args.new_fraction, args.seed)
    new_mask = np.zeros(full.num_items, dtype=bool)
    new_mask[new_internal] = True
    new_ids = [str(full.item_ids[i]) for i in new_internal]
    new_set = set(new_ids)
    warm = full.subset(~new_mask[full.inter["item"].to_numpy()], name=f"{full.name}-warm")
    warm_split = leave_one_out(warm)
    if new_set & set(map(str, warm.item_ids)):
        raise AssertionError("D' still holds a new item")
    users, targets, histories = evaluation_users(full, full_split, warm, new_mask)
    if not users:
        raise SystemExit("no evaluation user: no user's test target is a new item (raise --new-fraction)")
    hist_len = np.array([len(h) for h in histories])
    log(f"{full.num_items} items, {len(new_ids)} new (seed {args.seed}); D': {warm.num_items} items, "
        f"{warm.num_interactions} of {full.num_interactions} interactions; {len(users)} evaluation users "
        f"(history length median {int(np.median(hist_len))})")

    # -- 2. the index on D', built once, before the add ------------------------------------------------------
    index_dir = work / "index"
    overrides = parse_overrides(args.index_override)
    log(f"building the index on D' ({scheme.name}{' ' + str(overrides) if overrides else ''})")
    t = time.perf_counter()
    build_index(warm, scheme, index_dir, overrides or None, progress=progress, overwrite=True)
    build_seconds = time.perf_counter() - t
    table_before = load_index(index_dir).table
    log(f"index built in {build_seconds:.1f}s: {table_before.num_items} items, level sizes "
        f"{table_before.level_sizes}")

    # -- settings --------------------------------------------------------------------------------------------
    _, tiger_cls = get_method("tiger")
    _, sasrec_cls = get_method("sasrec")
    precision = "bf16" if bf16_is_native(device == "cpu") else "no"
    tiger_settings = {**TIGER_TRAINER, **TIGER_METHOD, "mixed_precision": precision,
                      **(QUICK_TIGER if args.quick else {}), **parse_overrides(args.tiger)}
    sasrec_settings = {**SASREC_TRAINER, **SASREC_METHOD, **(QUICK_SASREC if args.quick else {}),
                       **parse_overrides(args.sasrec)}
    if epochs_cap is not None:  # a cap on the settings' epochs (the method's default where they name none)
        for settings, cls in ((tiger_settings, tiger_cls), (sasrec_settings, sasrec_cls)):
            default = TrainerConfig.for_method(cls).epochs
            settings["epochs"] = min(int(settings.get("epochs", default)), epochs_cap)
    tiger_method, tiger_trainer = _split_settings("tiger", tiger_settings)
    sasrec_method, sasrec_trainer = _split_settings("sasrec", sasrec_settings)
    tiger_on_index = {**tiger_method, "index": str(index_dir)}

    def trainer_config(model_cls, trainer: dict, seed: int, out_dir: Path | None, **extra) -> TrainerConfig:
        return TrainerConfig.for_method(model_cls, {**trainer, "progress": progress, "cpu": device == "cpu",
                                                    "seed": seed, "output_dir": str(out_dir or ""), **extra})

    per_seed: dict[str, dict[str, dict]] = {s: {} for s in SYSTEMS}
    warm_test: dict[str, dict[str, dict]] = {s: {} for s in TRAINED}
    training: dict[str, dict[str, dict]] = {s: {} for s in TRAINED}

    def record_run(name: str, seed: int, results: dict) -> None:
        warm_test[name][str(seed)] = results["test"]
        keep = ("best_epoch", "epochs_run", "total_seconds", "train_seconds", "seconds_per_epoch", "device")
        training[name][str(seed)] = {**{k: results[k] for k in keep},
                                     "valid_ndcg@10": results["valid"].get("ndcg@10")}

    def record_scores(name: str, seed, ranked: list[list[str]], train_s: float, score_s: float) -> None:
        per_seed[name][str(seed)] = {**score_lists(ranked, targets, new_set), "train_seconds": train_s,
                                     "score_seconds": score_s, "seconds": train_s + score_s}
        r = per_seed[name][str(seed)]
        label = name if seed == "-" else f"{name} (seed {seed})"
        log(f"{label}: recall@{K} {r[f'recall@{K}']:.4f} ndcg@{K} {r[f'ndcg@{K}']:.4f} "
            f"new share {r[f'new_share@{K}']:.3f}, {r['distinct_new_items_recommended']} distinct new items")

    # -- 3a. TIGER on D' with the index before the add, one run dir per seed ---------------------------------
    tiger_runs = {}
    for seed in seeds:
        tiger_runs[seed] = work / f"tiger-{seed}"
        log(f"training TIGER on D' (seed {seed})")
        cfg = trainer_config(tiger_cls, tiger_trainer, seed, tiger_runs[seed])
        spec = RunSpec(model="tiger", dataset=warm.name)
        _, _, results = train_run(spec, tiger_on_index, cfg, split=warm_split)
        record_run("tiger", seed, results)
        log(f"TIGER (seed {seed}): best epoch {results['best_epoch']}, D' test ndcg@10 "
            f"{results['test']['ndcg@10']:.4f}, {results['total_seconds']:.0f}s")

    # -- 3c. SASRec on D' ------------------------------------------------------------------------------------
    for seed in seeds:
        log(f"training SASRec on D' (seed {seed})")
        cfg = trainer_config(sasrec_cls, sasrec_trainer, seed, None)
        model, _, results = train_run(RunSpec(model="sasrec", dataset=warm.name), sasrec_method, cfg,
                                      split=warm_split)
        record_run("sasrec", seed, results)
        t = time.perf_counter()
        ranked = rank_full_scores(model, histories, warm, args.batch)
        record_scores("sasrec", seed, ranked, results["total_seconds"], time.perf_counter() - t)
        del model

    # -- 2'. add the new items to the index ------------------------------------------------------------------
    items_csv = work / "new_items.csv"
    new_items_frame(full, new_internal).to_csv(items_csv, index=False)
    log(f"adding {len(new_ids)} new items to the index")
    t = time.perf_counter()
    add_summary = add_items(index_dir, items_csv, progress=progress)
    add_seconds = time.perf_counter() - t
    grown = load_index(index_dir)
    grown_ids = grown.items["item"].astype(str).tolist()
    if grown_ids[:warm.num_items] != [str(x) for x in warm.item_ids] or grown_ids[warm.num_items:] != new_ids:
        raise AssertionError("the grown index is not D' 's catalogue followed by the new items in add order")
    collisions = collision_stats(table_before, grown.table, warm.num_items)
    log(f"added in {add_seconds:.1f}s; {collisions['new_sharing_semantic_id_with_old']} of {len(new_ids)} "
        f"new items share their semantic ID with an old item; level sizes {collisions['level_sizes_before']} "
        f"-> {collisions['level_sizes_after']}")

    # -- 3a/3b. TIGER on the grown index: as trained, then fine-tuned ----------------------------------------
    for seed in seeds:
        model = build_method("tiger", warm_split, tiger_on_index, seed=seed)
        init_weights(model, tiger_runs[seed])  # a strict load unless the add grew a token table
        model.to(device).eval()
        t = time.perf_counter()
        ranked = rank_generative(model, histories, grown_ids, args.batch)
        score_s = time.perf_counter() - t
        record_scores("tiger", seed, ranked, training["tiger"][str(seed)]["total_seconds"], score_s)
        del model

        log(f"fine-tuning TIGER on the grown index for {resume_epochs} epoch(s) (seed {seed})")
        spec = RunSpec(model="tiger", dataset=warm.name, init_from=str(tiger_runs[seed]))
        cfg = trainer_config(tiger_cls, tiger_trainer, seed, work / f"tiger-ft-{seed}", epochs=resume_epochs,
                             patience=resume_epochs)
        model, _, results = train_run(spec, tiger_on_index, cfg, split=warm_split)
        record_run("tiger+ft", seed, results)
        model.eval()
        t = time.perf_counter()
        ranked = rank_generative(model, histories, grown_ids, args.batch)
        record_scores("tiger+ft", seed, ranked, results["total_seconds"], time.perf_counter() - t)
        del model

    # -- 3d. content kNN over the grown catalogue (index order: D' items, then the new ones) -----------------
    log("content kNN (MiniLM text)")
    t = time.perf_counter()
    new_catalogue = Catalogue(f"{full.name}-new", np.array(new_ids, dtype=object),
                              full.items.iloc[new_internal].reset_index(drop=True), full.source)
    emb = np.concatenate([text_embeddings(warm, progress=progress),
                          text_embeddings(new_catalogue, progress=progress, fields=STANDARD_FIELDS)])
    embed_s = time.perf_counter() - t
    for name, candidates in (("knn-text", np.arange(len(grown_ids))),
                             ("knn-text-new-only", np.arange(warm.num_items, len(grown_ids)))):
        t = time.perf_counter()
        ranked = rank_knn(emb.astype(np.float32), grown_ids, histories, candidates)
        record_scores(name, "-", ranked, 0.0, embed_s + time.perf_counter() - t)
    per_seed["random-new"]["-"] = random_new_reference(len(new_ids))

    # -- 5. report -------------------------------------------------------------------------------------------
    def summary(runs: dict) -> dict:
        return aggregate([{k: v for k, v in r.items() if not isinstance(v, list)} for r in runs.values()])

    rows = {name: summary(per_seed[name]) for name in SYSTEMS}
    table = markdown_table(rows, [f"recall@{K}", f"ndcg@{K}", f"new_share@{K}", "seconds"])
    table = table.replace("| method |", "| system |")
    table = table.replace(f"new_share@{K}", f"share of new items in top-{K}")
    header = (f"Cold start on {full.name}: {len(new_ids)} new items ({args.new_fraction:.0%}, seed "
              f"{args.seed}) added after training; {len(users)} users whose test target is new; top-{K} of "
              f"{len(grown_ids)} items, history excluded; mean ± std over seeds {seeds}"
              f"{' (QUICK: the numbers mean nothing)' if args.quick else ''}")
    warm_rows = {name: summary(v) for name, v in warm_test.items()}
    warm_table = markdown_table(warm_rows, [f"recall@{K}", f"ndcg@{K}"])
    print(f"\n{header}\n\n{table}\n\nWarm check, D' test (full ranking over its {warm.num_items} items):\n\n"
          f"{warm_table}\n", flush=True)

    report = {
        "benchmark": "cold_start",
        "quick": bool(args.quick),
        "protocol": __doc__,
        "command": shlex.join(["python", "benchmarks/cold_start.py", *raw_argv]),
        "argv": raw_argv,
        "settings": {
            "dataset": args.dataset, "items": args.items, "scheme": str(args.scheme),
            "index_overrides": overrides, "new_item_seed": args.seed, "new_fraction": args.new_fraction,
            "seeds": seeds, "k": K, "knn_history": KNN_HISTORY, "epochs_cap": epochs_cap,
            "resume_epochs": resume_epochs, "device": device,
            "tiger": {"method": tiger_method, "trainer": tiger_trainer},
            "sasrec": {"method": sasrec_method, "trainer": sasrec_trainer},
        },
        "dataset": full.describe(),
        "warm_dataset": warm.describe(),
        "warm_split": warm_split.describe(),
        "num_new_items": len(new_ids),
        "new_items": new_ids,
        "evaluation_users": len(users),
        "evaluation_user_ids": users,
        "evaluation_targets": targets,
        "history_length": {"mean": float(hist_len.mean()), "median": float(np.median(hist_len)),
                           "min": int(hist_len.min()), "max": int(hist_len.max())},
        "index": {"scheme": str(args.scheme), "build_seconds": build_seconds,
                  "n_items_before": table_before.num_items, "n_items_after": grown.num_items,
                  "stats_before": table_before.stats(), "stats_after": grown.table.stats()},
        "add_items": {"seconds": add_seconds, "added": add_summary["added"],
                      "n_items": add_summary["n_items"], "level_sizes": add_summary["level_sizes"]},
        "collisions": collisions,
        "systems": {name: {"per_seed": per_seed[name], **rows[name]} for name in SYSTEMS},
        "warm_test": {name: {"per_seed": v, **summary(v)} for name, v in warm_test.items()},
        "training": training,
        "table": table,
        "environment": environment(),
        "total_seconds": time.perf_counter() - t_total,
    }
    write_json(out_path, report)
    log(f"results written to {out_path} ({report['total_seconds']:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
