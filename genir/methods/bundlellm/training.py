"""Bundle-LLM's questions as training data, its evaluator and the progressive optimisation on genir's Trainer.

* :class:`QuestionPool`: ``size`` training questions drawn from the TRAINING bundles, redrawn every epoch (new
  held-out members, partial bundles and negatives, seeded by (seed, epoch)), as the paper's dataset draws them
  on the fly; a ``hard_share`` of them get same-section negatives.
* :class:`ChoiceEvaluator`: HitRate@1 over ALL questions from the letter scores (the prediction is always one of
  the valid letters), and, with ``generate=True``, ValidRatio (share of greedy free-form answers that name a valid
  letter) and the free-form HitRate over all questions (an unparsable answer is a miss). The paper's released
  code divides hits by valid answers only; :func:`evaluate_choices` reports that number too, labelled as such.
* :func:`train_stage`: one stage on the Trainer (AdamW, warm-up, early stopping with patience on the VALIDATION
  questions' HitRate@1, best weights restored). The paper's code stops on the test set; here the test questions
  are never seen before the end.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from genir.data.bundles import BundleQuestion, BundleSet, make_questions
from genir.eval import MetricSums
from genir.training import Trainer, TrainerConfig
from genir.training.trainer import Callback


class QuestionPool(TorchDataset):
    """``size`` training questions, redrawn by :meth:`set_epoch`."""

    def __init__(self, data: BundleSet, bundles, *, size: int, num_candidates: int, hard_share: float = 0.5,
                 max_partial: int = 5, seed: int = 0, pool=None):
        self.data, self.bundles = data, np.asarray(bundles)
        self.size, self.num_candidates, self.hard_share = size, num_candidates, hard_share
        self.max_partial, self.seed, self.pool = max_partial, seed, pool
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        chosen = rng.choice(self.bundles, size=self.size, replace=len(self.bundles) < self.size)
        n_hard = round(self.hard_share * self.size)
        out = []
        for part, kind in ((chosen[:n_hard], "hard"), (chosen[n_hard:], "random")):
            if len(part):
                qs, _ = make_questions(self.data, part, num_candidates=self.num_candidates, negatives=kind,
                                       max_partial=self.max_partial, seed=int(rng.integers(2**31)), pool=self.pool)
                out += qs
        order = rng.permutation(len(out))
        self.questions = [out[i] for i in order]

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> BundleQuestion:
        return self.questions[i]


class _Fixed(TorchDataset):
    def __init__(self, questions: list[BundleQuestion]):
        self.questions = questions

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, i: int) -> BundleQuestion:
        return self.questions[i]


class Redraw(Callback):
    """Draws fresh training questions after every epoch (a fixed list of questions stays as it is)."""

    def __init__(self, pool):
        self.pool = pool

    def on_epoch_end(self, trainer, record: dict) -> None:
        if callable(getattr(self.pool, "set_epoch", None)):
            self.pool.set_epoch(int(record["epoch"]))


def _batches(questions, batch_size):
    for s in range(0, len(questions), batch_size):
        yield questions[s:s + batch_size]


class ChoiceEvaluator:
    """HitRate@1 (+ ValidRatio with ``generate``) of any model with ``choice_scores(questions, generate)`` on a
    fixed list of questions with one number of candidates (see the module docstring)."""

    def __init__(self, questions: list[BundleQuestion], batch_size: int = 8, generate: bool = False):
        if len({len(q.candidates) for q in questions}) > 1:
            raise ValueError("ChoiceEvaluator: the questions must all have the same number of candidates")
        self.questions, self.batch_size, self.generate = list(questions), batch_size, generate

    def model_sums(self, model, device, shard=(0, 1)) -> MetricSums:
        part = self.questions[shard[0]::shard[1]]
        sums = {"hitrate@1": 0.0}
        if self.generate:
            sums.update({"valid_ratio": 0.0, "gen_hitrate@1": 0.0})
        for batch in _batches(part, self.batch_size):
            scores, texts, _ = model.choice_scores(batch, generate=self.generate)
            answers = torch.tensor([q.answer for q in batch], device=scores.device)
            sums["hitrate@1"] += float((scores.argmax(-1) == answers).sum())
            if self.generate:
                from genir.methods.bundlellm.model import parse_letter

                parsed = [parse_letter(t, len(q.candidates)) for t, q in zip(texts, batch)]
                sums["valid_ratio"] += sum(p is not None for p in parsed)
                sums["gen_hitrate@1"] += sum(p == q.answer for p, q in zip(parsed, batch))
        return MetricSums(sums, len(part))


def evaluate_choices(model, questions: list[BundleQuestion], *, batch_size: int = 8, generate: bool = False,
                     mode: str | None = None) -> dict:
    """Metrics on ``questions`` plus prompt length (tokens) and wall seconds per question."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    hits = valid = gen_hits = 0
    tokens = []
    kwargs = {"mode": mode} if mode is not None else {}
    t0 = time.perf_counter()
    for batch in _batches(questions, batch_size):
        scores, texts, lengths = model.choice_scores(batch, generate=generate, **kwargs)
        hits += int((scores.argmax(-1).cpu() == torch.tensor([q.answer for q in batch])).sum())
        if lengths is not None:
            tokens += lengths.cpu().tolist()
        if generate:
            from genir.methods.bundlellm.model import parse_letter

            parsed = [parse_letter(t, len(q.candidates)) for t, q in zip(texts, batch)]
            valid += sum(p is not None for p in parsed)
            gen_hits += sum(p == q.answer for p, q in zip(parsed, batch))
    seconds = time.perf_counter() - t0
    if was_training:
        model.train()
    n = max(1, len(questions))
    out = {"questions": len(questions), "hitrate@1": hits / n, "seconds_per_question": seconds / n}
    if tokens:
        out["prompt_tokens_mean"] = float(np.mean(tokens))
    if generate:
        out.update({"valid_ratio": valid / n, "gen_hitrate@1": gen_hits / n,
                    "gen_hitrate@1_over_valid (released code's metric)": gen_hits / valid if valid else 0.0})
    return out


def train_stage(model, stage: str | None, pool: QuestionPool | list[BundleQuestion], valid_questions: list[BundleQuestion],
                config: TrainerConfig, eval_batch_size: int = 8):
    """Train ``model`` on ``pool`` (set to ``stage`` first when the model has stages), early stopping on the
    validation questions' HitRate@1; returns the Trainer's result (history, best epoch, timings)."""
    if stage is not None:
        model.set_stage(stage)
    if isinstance(pool, list):
        pool = _Fixed(pool)
    trainer = Trainer(model, pool, ChoiceEvaluator(valid_questions, eval_batch_size), config=config,
                      callbacks=(Redraw(pool),))
    return trainer.fit()


def default_trainer_config(**overrides) -> TrainerConfig:
    """The paper's optimiser settings (AdamW, lr 3e-4, warm-up 20 steps, patience 5 on HitRate) with ``overrides``."""
    return TrainerConfig.from_dict({"lr": 3e-4, "warmup_steps": 20, "epochs": 200, "patience": 5,
                                    "metric": "hitrate@1", "batch_size": 4, "progress": False, **overrides},
                                   source="bundlellm trainer")
