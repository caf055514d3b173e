"""DEALRec end to end on a recommendation split: surrogate, scores, selections, few-shot LoRA fine-tuning of the
BIGRec recommender, evaluation; shared by ``recipes/dealrec.py`` and its tests.

Deviations from the paper (also in the README):

* the samples are a fixed seeded pool drawn from all training samples (:mod:`~genir.methods.dealrec.samples`),
  because the effort score costs one LLM forward and partial backward per sample on a CPU;
* the LLM starts from fresh LoRA adapters (no Alpaca-LoRA initialisation exists here); with LoRA's zero-initialised
  ``B`` the effort score is the gradient norm of the last layer's adapters at that start (only ``B`` has a
  gradient there);
* fine-tuning runs a fixed number of epochs with no validation pass (the selection arms get identical training),
  and the test metrics are taken on a fixed seeded subset of the test users when ``eval_users`` is set (the beam
  search of a 135M LM costs seconds per user on a CPU); the same subset serves every arm and the SASRec row;
* the frozen LLM runs in bfloat16 by default (``dtype``; adapters, losses and log-probabilities in float32), 1.9-3x
  faster on a CPU with AVX512-BF16;
* recommendations come from the shared constrained decoder with the history excluded (the BIGRec L2 grounding is
  the ablation, :func:`~genir.methods.dealrec.bigrec.l2_grounding_scores`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from genir.config import Config, param
from genir.data.split import Split
from genir.eval import evaluator_for
from genir.methods.dealrec.bigrec import BIGRec
from genir.methods.dealrec.samples import SamplePool, draw_pool, training_samples
from genir.methods.dealrec.scores import el2n_scores, influence_scores, linear_grad_norms, minmax
from genir.methods.dealrec.selection import coverage_sample, random_sample, top_sample
from genir.methods.dealrec.surrogate import INFLUENCE_PARAMETER, SurrogateLosses
from genir.training import Trainer, TrainerConfig

# the pruning arms of the comparison, each a function of the scores -> selection
ARMS = ("dealrec", "random", "influence only", "effort only", "GraNd", "CCS (EL2N)")


@dataclass
class DEALRecConfig(Config):
    pool: int = param(5000, "training samples drawn (seeded, fixed) before pruning", min=1)
    max_history: int = param(5, "recent items in a sample's history and in the prompt", min=1)
    budget: float = param(0.02, "share of the pool kept (DEALRec's 2%: 1,024 of 49,156)", min=0.0, max=1.0)
    lam: float = param(0.3, "lambda of I + lambda * E (0.3 on Games in the paper, 1.0 on Book/MicroLens)", min=0.0)
    strata: int = param(50, "score strata of the coverage-enhanced sampling (the shipped commands' 50)", min=1)
    hard_prune: float = param(0.1, "share of the highest scores dropped before sampling", min=0.0, max=0.99)
    depth: int = param(500, "LiSSA recursion depth (paper's code: 5,000; the method brief's CPU plan: 500)",
                       min=1)
    damp: float = param(0.01, "LiSSA damping", min=0.0)
    scale: float = param(25.0, "LiSSA scale (above the Hessian's largest eigenvalue)", min=0.0)
    surrogate_epochs: int = param(50, "SASRec surrogate epochs (early stopping on validation NDCG@10)", min=1)
    epochs: int = param(5, "LoRA fine-tuning epochs on the kept samples", min=1)
    lr: float = param(1e-3, "LoRA learning rate", min=0.0)
    batch_size: int = param(8, "fine-tuning batch", min=1)
    beam_width: int = param(20, "beams of the constrained title search (= items ranked per user)", min=1)
    max_title_tokens: int = param(16, "title tokens kept before EOS", min=1)
    eval_users: int = param(400, "test users evaluated (seeded fixed subset; 0 = all)", min=0)
    score_batch: int = param(16, "samples per batch of the effort pass", min=1)
    dtype: str = param("bfloat16", "dtype of the frozen LLM's weights; the LoRA adapters and every loss, score and "
                       "log-probability stay float32 (bfloat16: 1.9-3x faster on a CPU with AVX512-BF16, as GPUs "
                       "fine-tune; float32: exact)", choices=("bfloat16", "float32"))

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def item_titles(split: Split) -> list[str]:
    """'Title (year)' of every item (title alone when the catalogue has no year)."""
    import pandas as pd

    items = split.dataset.items
    years = items["year"] if "year" in items.columns else [None] * len(items)
    return [str(t) if pd.isna(y) or str(y).strip() in ("", "0") else f"{t} ({int(y)})"
            for t, y in zip(items["title"], years)]


def sample_pool(split: Split, cfg: DEALRecConfig, seed: int = 0) -> SamplePool:
    return draw_pool(training_samples(split.histories(None), cfg.max_history), cfg.pool, seed)


def train_surrogate(split: Split, cfg: DEALRecConfig, seed: int, progress: bool = True):
    """The project's SASRec (RecBole-size defaults, as DEALRec's surrogate) trained on all training data."""
    from genir.methods import build_method

    model = build_method("sasrec", split, {}, seed=seed)
    defaults = dict(model.trainer_defaults)
    defaults.update(epochs=cfg.surrogate_epochs, patience=min(10, cfg.surrogate_epochs), seed=seed,
                    progress=progress)
    t0 = time.perf_counter()
    Trainer(model, split, config=TrainerConfig.from_dict(defaults)).fit()
    return model, time.perf_counter() - t0


def answer_losses(rec: BIGRec, pairs) -> callable:
    """Per-sample mean answer-token loss of the LLM recommender on ``pairs`` (rows -> (B,))."""

    def losses(rows: np.ndarray) -> torch.Tensor:
        return rec.example_losses(rec.collate([pairs[int(i)] for i in rows]))

    return losses


def last_lora_linears(model) -> list[torch.nn.Linear]:
    """The LoRA ``A`` and ``B`` layers of the last transformer block that has any (DEALRec's effort scope)."""
    blocks = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and (".lora_A." in name + "." or ".lora_B." in name + "."):
            block = next((p for p in name.split(".") if p.isdigit()), None)
            blocks.setdefault(int(block) if block is not None else -1, []).append(module)
    if not blocks:
        raise ValueError("no LoRA layers found: wrap the LLM with genir.llm.add_lora first")
    return blocks[max(blocks)]


def only_trainable(model: torch.nn.Module, modules: list[torch.nn.Linear]) -> list[torch.nn.Linear]:
    """Freeze every parameter of ``model`` outside ``modules`` (returned): backward then stops at the first of
    them instead of running through every block, and their gradients are unchanged (the effort pass's cost)."""
    keep = {id(p) for m in modules for p in m.parameters()}
    for p in model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)
    return modules


def surrogate_scores(pool: SamplePool, surrogate, cfg: DEALRecConfig, seed: int,
                     progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The scores of the pool's samples that come from the surrogate (influence, EL2N, GraNd) and the seconds
    each took."""
    seconds = {}
    losses = SurrogateLosses(surrogate, pool)
    t0 = time.perf_counter()
    influence = influence_scores(losses, surrogate, INFLUENCE_PARAMETER, len(pool), depth=cfg.depth, damp=cfg.damp,
                                 scale=cfg.scale, seed=seed, progress=progress)
    seconds["influence"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    el2n = el2n_scores(losses.logits, pool.targets)
    seconds["el2n"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    grand = linear_grad_norms(losses, losses.last_block_linears(), len(pool), batch_size=256)
    seconds["grand"] = time.perf_counter() - t0
    return {"influence": influence, "el2n": el2n, "grand": grand}, seconds


def effort_scores(llm, tokenizer, titles: list[str], pool: SamplePool, rows: np.ndarray, cfg: DEALRecConfig,
                  seed: int, progress: bool = True) -> tuple[np.ndarray, float]:
    """DEALRec's effort of the pool ``rows``: the gradient norm of the LLM's answer loss in the last LoRA block,
    at fresh adapters seeded by ``seed`` (so any split of the rows gives the same scores); and the seconds."""
    from genir.llm import add_lora

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rec = BIGRec(add_lora(copy.deepcopy(llm)), tokenizer, titles, max_history=cfg.max_history,
                 beam_width=cfg.beam_width, max_title_tokens=cfg.max_title_tokens)
    part = pool.subset(np.asarray(rows))
    pairs = rec.pairs(part.histories, part.targets)
    rec.eval()  # no LoRA dropout: the score of a sample does not depend on the draw
    effort = linear_grad_norms(answer_losses(rec, pairs), only_trainable(rec.model, last_lora_linears(rec.model)),
                               len(part), batch_size=cfg.score_batch, progress=progress, desc="effort")
    return effort, time.perf_counter() - t0


def select(arm: str, scores: dict[str, np.ndarray], budget: int, cfg: DEALRecConfig, seed: int) -> np.ndarray:
    """The kept pool rows of one pruning ``arm`` (see :data:`ARMS`)."""
    cover = {"strata": cfg.strata, "hard_prune": cfg.hard_prune, "seed": seed}
    n = len(scores["influence"])
    if arm == "dealrec":
        return coverage_sample(minmax(scores["influence"]) + cfg.lam * minmax(scores["effort"]), budget, **cover)
    if arm == "random":
        return random_sample(n, budget, seed)
    if arm == "influence only":
        return coverage_sample(minmax(scores["influence"]), budget, **cover)
    if arm == "effort only":
        return coverage_sample(minmax(scores["effort"]), budget, **cover)
    if arm == "GraNd":
        return top_sample(scores["grand"], budget)
    if arm == "CCS (EL2N)":
        return coverage_sample(scores["el2n"], budget, **cover)
    raise ValueError(f"unknown pruning arm {arm!r}; known: {ARMS}")


def finetune(llm, tokenizer, titles: list[str], pool: SamplePool, rows: np.ndarray, cfg: DEALRecConfig, seed: int,
             progress: bool = True) -> tuple[BIGRec, float, list]:
    """A BIGRec with fresh LoRA on a copy of ``llm``, trained on the pool ``rows`` by the one Trainer (fixed
    epochs, no validation); (recommender, seconds, per-epoch history)."""
    from genir.llm import add_lora

    torch.manual_seed(seed)
    rec = BIGRec(add_lora(copy.deepcopy(llm)), tokenizer, titles, max_history=cfg.max_history,
                 beam_width=cfg.beam_width, max_title_tokens=cfg.max_title_tokens)
    if len(rows) == 0:
        return rec, 0.0, []
    part = pool.subset(rows)
    config = TrainerConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.epochs, seed=seed,
                           progress=progress, eval_batch_size=cfg.batch_size)
    t0 = time.perf_counter()
    result = Trainer(rec, rec.pairs(part.histories, part.targets), None, config=config).fit()
    return rec, time.perf_counter() - t0, result.history


def for_inference(rec: BIGRec) -> BIGRec:
    """A copy of ``rec`` with its LoRA adapter merged into the weights: the same ranking (up to float rounding)
    at a lower cost per decoding step than peft's extra adapter modules."""
    merged = copy.deepcopy(rec.model)
    if hasattr(merged, "merge_and_unload"):
        merged = merged.merge_and_unload()
    return BIGRec(merged, rec.tokenizer, rec.titles, max_history=rec.max_history, beam_width=rec.beam_width,
                  max_title_tokens=rec.max_title_tokens, max_prompt_tokens=rec.max_source_length)


def eval_users(split: Split, cfg: DEALRecConfig, seed: int = 0) -> np.ndarray:
    """The test users every arm is measured on: all, or a seeded fixed subset of ``cfg.eval_users``."""
    users = split.eval_users("test")
    if cfg.eval_users and cfg.eval_users < len(users):
        users = np.sort(np.random.default_rng(seed).choice(users, size=cfg.eval_users, replace=False))
    return users


def evaluate(score_fn, split: Split, users: np.ndarray, batch_size: int = 8) -> tuple[dict[str, float], float]:
    """Full-ranking test metrics of ``score_fn`` (EvalBatch -> (B, N)) on ``users``, and seconds per user."""
    evaluator = evaluator_for(split, "test", batch_size=batch_size)
    t0 = time.perf_counter()
    metrics = evaluator.evaluate(score_fn, users)
    return metrics, (time.perf_counter() - t0) / max(1, len(users))
