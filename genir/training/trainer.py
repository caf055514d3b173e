"""THE trainer: one loop for every method, on accelerate.

It owns device placement, mixed precision, gradient accumulation, data parallelism (``accelerate launch`` or
``torchrun``), checkpoint + resume, early stopping on a validation metric, a progress bar and a per-epoch log.
A method supplies ``train_dataset(split)``, ``loss(batch)`` (through ``forward``) and ``full_scores``.

Validation is sharded: each process ranks its slice of the users and the metric sums are added across
processes, so every process sees the same numbers and takes the same early-stopping decision.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from genir.data.split import Split
from genir.errors import CheckpointError, ConfigError
from genir.eval.evaluator import FullRankingEvaluator, MetricSums
from genir.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, parse_metric
from genir.methods.base import BatchedTensorDataset, Recommender, coerce, passthrough_collate


@dataclass
class TrainerConfig:
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_accum: int = 1  # gradient accumulation steps
    max_grad_norm: float = 0.0  # 0 = no clipping
    mixed_precision: str = "no"  # "no", "fp16" or "bf16" (accelerate)
    eval_every: int = 1  # validate every N epochs
    patience: int = 10  # stop after this many validations without improvement
    metric: str = "ndcg@10"  # validation metric for early stopping and model selection
    eval_batch_size: int = 256
    seed: int = 2020
    cpu: bool = False  # force CPU even when a GPU is visible (also gives gloo for torchrun on CPU)
    output_dir: str = ""  # checkpoints, best weights and the log; "" = keep nothing on disk
    resume: bool = False  # continue from output_dir/checkpoint if it exists
    num_workers: int = 0
    progress: bool = True

    @classmethod
    def from_dict(cls, values: dict, source: str = "trainer") -> TrainerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}; trainer fields: {sorted(known)}")
        out = {k: coerce(v, type(getattr(cls, k)), f"{source}: {k}") for k, v in values.items()}
        cfg = cls(**out)
        if cfg.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"{source}: mixed_precision must be no, fp16 or bf16, got {cfg.mixed_precision!r}")
        try:
            parse_metric(cfg.metric)
        except ValueError as exc:
            raise ConfigError(f"{source}: metric: {exc}") from None
        return cfg


def _new_accelerator(c: TrainerConfig) -> Accelerator:
    """An Accelerator for this config. accelerate keeps its settings in process-wide singletons; a recipe that
    trains several models in one process (with different precision or accumulation) needs them cleared
    first. A distributed process group (PartialState) is kept, so this is safe under torchrun / accelerate
    launch; a non-distributed one is re-detected.

    Under a multi-process launch on a machine without CUDA the run goes to the CPU (gloo) even without
    ``cpu=true``: accelerate would otherwise start N independent single-process runs, each training on all the
    data. (It also keeps a model trained first in the process, such as MMGRec's graph encoder, from fixing the
    process-wide state to "not distributed" before the main model's trainer asks for the process group.)"""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = c.cpu or (launched and not torch.cuda.is_available())
    distributed = bool(PartialState._shared_state) and PartialState().distributed_type != DistributedType.NO
    AcceleratorState._reset_state(reset_partial_state=not distributed)
    GradientState._reset_state()
    return Accelerator(cpu=cpu, mixed_precision=c.mixed_precision, gradient_accumulation_steps=c.grad_accum)


def bf16_is_native(cpu: bool = False) -> bool:
    """Whether bf16 autocast (``mixed_precision="bf16"``) runs on native kernels here: a CUDA GPU with bf16, or a
    CPU whose oneDNN has bf16 kernels (AVX-512 / AMX on x86, BF16 on Arm). Elsewhere torch emulates it and it is
    slower than fp32. Recipes turn it on only where it is native."""
    if not cpu and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict
    history: list = field(default_factory=list)  # one dict per epoch: epoch, loss, train_s, valid metrics
    train_seconds: float = 0.0  # wall time of training epochs (no validation)
    total_seconds: float = 0.0  # wall time of fit(), validation included
    time_to_best: float = 0.0  # wall time from the start of fit() until the best validation was measured
    stopped_early: bool = False


class Trainer:
    """Trains a :class:`Recommender` on a :class:`Split` and selects the epoch with the best validation metric."""

    def __init__(self, model: Recommender, split: Split, config: TrainerConfig | None = None,
                 accelerator: Accelerator | None = None):
        self.config = config or TrainerConfig()
        self.split = split
        c = self.config
        self.accelerator = accelerator or _new_accelerator(c)
        self.model = model
        self.metric = c.metric.lower()
        ks = sorted(set(DEFAULT_KS) | {parse_metric(self.metric)[1]})
        self.valid_evaluator = FullRankingEvaluator(split, "valid", ks=ks, metrics=DEFAULT_METRICS,
                                                    batch_size=c.eval_batch_size)
        self.out = Path(c.output_dir) if c.output_dir else None

    # ------------------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def _log(self, record: dict) -> None:
        if self.out is not None and self.accelerator.is_main_process:
            with open(self.out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def evaluate(self, evaluator: FullRankingEvaluator) -> dict[str, float]:
        """Rank this process's share of users, add the sums over processes, return the means."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        model.prepare_eval()
        acc = self.accelerator
        users = evaluator.users[acc.process_index::acc.num_processes]

        def score_fn(batch):
            return model.full_scores(batch.to(acc.device))

        part = evaluator.evaluate_sums(score_fn, users)
        if acc.num_processes > 1:
            names = sorted(part.sums)
            t = torch.tensor([part.sums[n] for n in names] + [part.count], dtype=torch.float64, device=acc.device)
            t = acc.reduce(t, reduction="sum")
            part = MetricSums({n: float(v) for n, v in zip(names, t[:-1].tolist())}, int(t[-1].item()))
        return part.means()

    def _save_best(self, model: Recommender) -> None:
        if self.out is None or not self.accelerator.is_main_process:
            return
        tmp = self.out / "best_model.safetensors.tmp"
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp))
        os.replace(tmp, self.out / "best_model.safetensors")

    def _save_checkpoint(self, state: dict) -> None:
        if self.out is None:
            return
        tmp = self.out / "checkpoint.tmp"
        if self.accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        if self.accelerator.is_main_process:
            (tmp / "trainer_state.json").write_text(json.dumps(state))
            final, old = self.out / "checkpoint", self.out / "checkpoint.old"
            if final.exists():  # swap by renames, so a crash at any point leaves one complete checkpoint
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        c = self.config
        acc = self.accelerator
        set_seed(c.seed)
        t_start = time.perf_counter()
        if self.out is not None and acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            if not c.resume:  # a fresh run in a used directory starts a fresh log
                (self.out / "log.jsonl").unlink(missing_ok=True)
        model = self.model
        if not model.trainable:  # non-parametric (MostPopular): nothing to optimize, validate once
            model.to(acc.device)
            valid = self.evaluate(self.valid_evaluator)
            self._save_best(model)
            total = time.perf_counter() - t_start
            return TrainResult(0, valid, [{"epoch": 0, **{f"valid_{k}": v for k, v in valid.items()}}],
                               0.0, total, total)

        dataset = model.train_dataset(self.split)
        collate = model.collate or (passthrough_collate if isinstance(dataset, BatchedTensorDataset) else None)
        loader = DataLoader(dataset, batch_size=c.batch_size, shuffle=True, collate_fn=collate,
                            num_workers=c.num_workers)
        optimizer = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        # buffers are built from the split (graph adjacencies), the same in every process; DDP cannot broadcast
        # sparse tensors at all, so it is told to leave those alone
        model._ddp_params_and_buffers_to_ignore = [n for n, b in model.named_buffers() if b.is_sparse]
        self.model, optimizer, loader = acc.prepare(model, optimizer, loader)
        unwrapped = acc.unwrap_model(self.model)

        state = {"epoch": 0, "best": -math.inf, "best_epoch": -1, "bad": 0, "history": [], "train_seconds": 0.0,
                 "time_to_best": 0.0, "best_valid": {}}
        ckpt = self.out / "checkpoint" if self.out is not None else None
        if ckpt is not None and not ckpt.exists() and (self.out / "checkpoint.old").exists():
            ckpt = self.out / "checkpoint.old"  # a crash between the two renames of _save_checkpoint
        if c.resume:
            if ckpt is None or not (ckpt / "trainer_state.json").is_file():
                raise CheckpointError(f"resume: no checkpoint in {ckpt or '(no output_dir set)'}")
            acc.load_state(str(ckpt))
            state = json.loads((ckpt / "trainer_state.json").read_text())
            acc.print(f"resumed from {ckpt} at epoch {state['epoch']}")

        prior_elapsed = state.get("elapsed", 0.0)  # wall time spent before a resume
        stopped = False
        for epoch in range(state["epoch"], c.epochs):
            # every epoch's randomness (shuffle, negatives, dropout) is a function of (seed, epoch), so a resumed
            # run continues exactly as an uninterrupted one would
            set_seed((c.seed * 100_003 + epoch) % 2**32)
            self.model.train()
            unwrapped.on_epoch_start(epoch)
            t0 = time.perf_counter()
            total, steps = torch.zeros((), device=acc.device), 0
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{c.epochs}", leave=False,
                       disable=not (c.progress and acc.is_local_main_process))
            for batch in bar:
                with acc.accumulate(self.model):
                    loss = self.model(batch)
                    acc.backward(loss)
                    if c.max_grad_norm > 0 and acc.sync_gradients:
                        acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                total += loss.detach()
                steps += 1
            if acc.num_processes > 1:
                total = acc.reduce(total, reduction="mean")
            train_s = time.perf_counter() - t0
            state["train_seconds"] += train_s
            record = {"epoch": epoch + 1, "loss": float(total) / max(1, steps), "train_s": round(train_s, 3)}
            if (epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs:
                valid = self.evaluate(self.valid_evaluator)
                record.update({f"valid_{k}": v for k, v in valid.items()})
                score = valid[self.metric]
                if score > state["best"]:
                    state.update(best=score, best_epoch=epoch + 1, bad=0, best_valid=valid,
                                 time_to_best=prior_elapsed + time.perf_counter() - t_start)
                    self._save_best(unwrapped)
                    self._best_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
                else:
                    state["bad"] += 1
                if acc.is_main_process and c.progress:
                    acc.print(f"epoch {epoch + 1:3d}  loss {record['loss']:.4f}  {self.metric} {score:.4f}  "
                              f"best {state['best']:.4f} @ {state['best_epoch']}  ({train_s:.1f}s)")
            state["history"].append(record)
            state["epoch"] = epoch + 1
            state["elapsed"] = prior_elapsed + time.perf_counter() - t_start
            self._log(record)
            if self.out is not None:
                self._save_checkpoint(state)
            if state["bad"] >= c.patience:
                stopped = True
                break

        # restore the best weights (from memory, or from disk when the best epoch was before a resume)
        if getattr(self, "_best_state", None) is not None:
            unwrapped.load_state_dict(self._best_state)
        elif self.out is not None and (self.out / "best_model.safetensors").is_file():
            best = load_file(str(self.out / "best_model.safetensors"), device=str(acc.device))
            unwrapped.load_state_dict(best, strict=False)
        self.model = unwrapped
        return TrainResult(
            best_epoch=state["best_epoch"], best_valid=state["best_valid"], history=state["history"],
            train_seconds=state["train_seconds"], total_seconds=time.perf_counter() - t_start,
            time_to_best=state["time_to_best"], stopped_early=stopped,
        )

    def test(self) -> dict[str, float]:
        """Full-ranking metrics of the (best) model on the test split."""
        ev = FullRankingEvaluator(self.split, "test", batch_size=self.config.eval_batch_size)
        return self.evaluate(ev)

