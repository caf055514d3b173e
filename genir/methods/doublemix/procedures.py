"""The continual protocol of Double Mixture: train task by task with the one Trainer, evaluate every task seen
after each one (accuracy matrix -> :func:`genir.eval.continual.continual_summary`), then the mixed samples.

* **Event accuracy** of a clip: the decoded output parsed by
  :func:`~genir.data.speech_events.parse_event_output` has exactly the gold event type (one ``<event>``).
* **WER**: word error rate (jiwer) of the decoded transcripts of the speech rows, both sides normalised by
  :func:`~genir.data.speech_events.normalize_transcript`.
* **Mixed (generalisation)**: on the join/overlay test rows of the stream's hybrid pairs, ``both`` (the two types,
  speech first, and nothing else), ``speech`` and ``sound`` (that type among the predicted ones).
* **Joint** (upper bound): one training run on every task's data (and the pairs' mixed training rows), evaluated
  once; forgetting and BWT do not apply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from genir.data.speech_events import normalize_transcript, parse_event_output, target_text
from genir.eval.continual import continual_summary
from genir.methods.doublemix.config import VARIANTS, DoubleMixConfig
from genir.methods.doublemix.memory import hybrid_indices, replay_indices
from genir.methods.doublemix.model import EventDecoder
from genir.training.trainer import Trainer, TrainerConfig


class Examples(torch.utils.data.Dataset):
    """Training examples ``{"enc": (T, d) states, "target": token ids}`` (collated by the model)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def examples_of(model: EventDecoder, rows: pd.DataFrame, states: dict[str, torch.Tensor],
                frozen: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """Training examples of ``rows``; ``frozen``: clip_id -> :meth:`EventDecoder.frozen_cross` of the clip."""
    return [{"enc": states[r.clip_id], "target": model.encode_target(target_text(r._asdict())),
             "frozen_kv": None if frozen is None else frozen.get(r.clip_id)}
            for r in rows.itertuples(index=False)]


@torch.no_grad()
def frozen_cross_states(model: EventDecoder, clip_ids: list[str], states: dict[str, torch.Tensor],
                        batch_size: int = 16) -> dict[str, torch.Tensor]:
    """clip_id -> the frozen decoder layers' cross-attention keys/values (float16), computed once per run and
    shared by every method (the frozen layers are the same for all)."""
    device = next(model.parameters()).device
    out = {}
    for start in range(0, len(clip_ids), batch_size):
        ids = clip_ids[start:start + batch_size]
        kv = model.frozen_cross(torch.stack([states[c] for c in ids]).to(device)).cpu()
        out.update(zip(ids, kv))
    return out


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    refs = [normalize_transcript(t) for t in references]
    hyps = [normalize_transcript(t) for t in hypotheses]
    keep = [i for i, r in enumerate(refs) if r]
    if not keep:
        return float("nan")
    return float(jiwer.wer([refs[i] for i in keep], [hyps[i] or "<empty>" for i in keep]))


def decode_rows(model: EventDecoder, rows: pd.DataFrame, states: dict[str, torch.Tensor],
                batch_size: int = 16, frozen: dict[str, torch.Tensor] | None = None) -> list[str]:
    device = next(model.parameters()).device
    texts = []
    for start in range(0, len(rows), batch_size):
        ids = list(rows["clip_id"].iloc[start:start + batch_size])
        enc = torch.stack([states[c] for c in ids]).to(device)
        kv = torch.stack([frozen[c] for c in ids]).to(device) if frozen and all(c in frozen for c in ids) else None
        texts += [model.decode_ids(g) for g in model.generate(enc, frozen_kv=kv)]
    return texts


def score_rows(rows: pd.DataFrame, outputs: list[str]) -> dict[str, float]:
    """Event accuracy, parse rate and (speech rows) WER of decoded ``outputs`` for ``rows``."""
    parsed = [parse_event_output(o) for o in outputs]
    gold = [str(t).split("|") for t in rows["event_type"]]
    res = {"accuracy": float(np.mean([p[1] == g for p, g in zip(parsed, gold)])),
           "parsed": float(np.mean(["<event>" in o for o in outputs])), "n": len(rows)}
    speech = [i for i, k in enumerate(rows["kind"]) if k != "sound"]
    res["wer"] = (word_error_rate([rows["transcript"].iloc[i] for i in speech], [parsed[i][0] for i in speech])
                  if speech else float("nan"))
    if len(rows) and all(len(g) == 2 for g in gold):
        res["speech_accuracy"] = float(np.mean([g[0] in p[1] for p, g in zip(parsed, gold)]))
        res["sound_accuracy"] = float(np.mean([g[1] in p[1] for p, g in zip(parsed, gold)]))
    return res


@dataclass
class StreamResult:
    variant: str
    order: list[str]
    accuracy: list[list[float]] = field(default_factory=list)  # accuracy[t][j]: task j after task t
    wer: list[list[float]] = field(default_factory=list)
    parsed: list[list[float]] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    final_wer: float = float("nan")
    mixed: dict = field(default_factory=dict)
    losses: list[list[float]] = field(default_factory=list)  # per task: epoch losses
    history: list[list[dict]] = field(default_factory=list)  # per task: the Trainer's epoch records (ce, ewc ...)
    train_examples: list[int] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    samples: list[dict] = field(default_factory=list)  # a few decoded outputs of the last evaluation
    expert_usage: list[int] = field(default_factory=list)


def _fit(model: EventDecoder, items: list[dict], trainer: dict, seed: int) -> list[dict]:
    tc = TrainerConfig.from_dict({"batch_size": 16, "lr": 1e-4, "max_grad_norm": 5.0, "epochs": 2,
                                  "progress": False, **trainer, "seed": seed}, source="doublemix trainer")
    return Trainer(model, Examples(items), config=tc).fit().history


def run_stream(whisper, tasks: dict[str, dict[str, pd.DataFrame]], order: list[str],
               mixed: dict[tuple[str, str], dict[str, pd.DataFrame]], states: dict[str, torch.Tensor],
               config: DoubleMixConfig, trainer: dict | None = None, *, seed: int = 0,
               eval_batch_size: int = 16, frozen: dict[str, torch.Tensor] | None = None,
               log=print) -> StreamResult:
    """One method over one task order.

    Args:
        tasks: task -> {"train": rows, "test": rows} (frames of :class:`~genir.data.speech_events.SpeechEvents`).
        mixed: hybrid pair -> {"train": mixed rows, "test": mixed rows}.
        states: clip_id -> cached encoder states (T, d).
        frozen: clip_id -> :func:`frozen_cross_states` (optional: recomputed in every step without it).
        trainer: :class:`TrainerConfig` fields (epochs, lr, batch_size ...).
    """
    trainer = dict(trainer or {})
    variant = VARIANTS[config.variant]
    torch.manual_seed(seed)
    model = EventDecoder(whisper, config, len(order))
    res = StreamResult(config.variant, list(order))
    rng = np.random.default_rng(seed)
    train_sets = {t: examples_of(model, tasks[t]["train"], states, frozen) for t in order}
    mixed_sets = {p: examples_of(model, m["train"], states, frozen) for p, m in mixed.items()}
    steps = [list(order)] if variant["joint"] else [[t] for t in order]
    for i, step in enumerate(steps):
        t0 = time.perf_counter()
        items = [x for t in step for x in train_sets[t]]
        seen = set(order[:i + 1]) if not variant["joint"] else set(order)
        if variant["memory"] and not variant["joint"]:
            sizes = {t: len(train_sets[t]) for t in order[:i]}
            for t, idx in replay_indices(len(items), sizes, config.replay_ratio, rng).items():
                items += [train_sets[t][j] for j in idx]
        if variant["hybrid"]:
            if variant["joint"]:
                items += [x for p in mixed_sets for x in mixed_sets[p]]
            else:
                sizes = {p: len(v) for p, v in mixed_sets.items()}
                for p, idx in hybrid_indices(len(train_sets[step[0]]), seen, sizes, config.replay_ratio,
                                             config.hybrid_replay_ratio, rng).items():
                    items += [mixed_sets[p][j] for j in idx]
        model.train()
        res.history.append(_fit(model, items, trainer, seed + i))
        res.losses.append([h["loss"] for h in res.history[-1]])
        res.train_examples.append(len(items))
        if variant["ewc"]:
            own = train_sets[step[0]]
            bs = int(trainer.get("batch_size", 16))
            batches = [model.collate(own[s:s + bs]) for s in range(0, len(own), bs)][:config.ewc_batches]
            device = next(model.parameters()).device
            model.consolidate([{k: v.to(device) for k, v in b.items()} for b in batches])
        res.train_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        model.eval()
        evaluated = order[:i + 1] if not variant["joint"] else order
        row_acc, row_wer, row_parsed = [], [], []
        for t in evaluated:
            rows = tasks[t]["test"]
            outputs = decode_rows(model, rows, states, eval_batch_size, frozen)
            s = score_rows(rows, outputs)
            row_acc.append(s["accuracy"])
            row_wer.append(s["wer"])
            row_parsed.append(s["parsed"])
            if i == len(steps) - 1:
                res.samples += [{"task": t, "target": target_text(r._asdict()), "output": o}
                                for r, o in zip(rows.head(2).itertuples(index=False), outputs[:2])]
        res.accuracy.append(row_acc)
        res.wer.append(row_wer)
        res.parsed.append(row_parsed)
        res.eval_seconds += time.perf_counter() - t1
        log(f"  {config.variant} after {'+'.join(step) if len(step) < 3 else 'all tasks'}: accuracy "
            + " ".join(f"{a:.2f}" for a in row_acc) + f"  loss {res.losses[-1][0]:.3f} -> {res.losses[-1][-1]:.3f}"
            f"  ({len(items)} examples, {time.perf_counter() - t0:.0f} s)")
    if variant["joint"]:
        final = res.accuracy[-1]
        res.summary = {"average": float(np.mean(final)), "forgetting": float("nan"), "bwt": float("nan"),
                       "learning": float("nan"), "newest": float(final[-1])}
    else:
        res.summary = continual_summary(res.accuracy)
    res.final_wer = float(np.nanmean(res.wer[-1])) if any(np.isfinite(res.wer[-1])) else float("nan")
    t1 = time.perf_counter()
    mixed_rows = [m["test"] for m in mixed.values() if len(m["test"])]
    if mixed_rows:
        rows = pd.concat(mixed_rows, ignore_index=True)
        s = score_rows(rows, decode_rows(model, rows, states, eval_batch_size, frozen))
        res.mixed = {"both": s["accuracy"], "speech": s.get("speech_accuracy", float("nan")),
                     "sound": s.get("sound_accuracy", float("nan")), "wer": s["wer"], "n": s["n"]}
    res.eval_seconds += time.perf_counter() - t1
    if model.appended.mixture is not None:
        res.expert_usage = model.appended.mixture.usage.tolist()
    return res
