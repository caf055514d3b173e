"""THE trainer: one loop for every method, on accelerate.

It owns device placement, mixed precision, gradient accumulation, data parallelism (``accelerate launch`` or
``torchrun``), checkpoint + resume, early stopping on a validation metric, a progress bar and a per-epoch log.
It trains any model on any task (recommendation splits, query retrieval, a bare torch dataset for a tokenizer):
a method supplies ``train_dataset(task)`` and ``loss(batch)`` (through ``forward``), an evaluator supplies the
validation metrics (:mod:`genir.eval`). AdamW with parameter groups, warm-up and schedules from transformers'
``get_scheduler``, gradient checkpointing, callbacks.

Validation is sharded: each process ranks its slice of the users or queries and the metric sums are added
across processes, so every process sees the same numbers and takes the same early-stopping decision.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from genir.atomic import exchange, file_sha256
from genir.config import Config, param
from genir.data.batches import BatchedTensorDataset, passthrough_collate
from genir.errors import CheckpointError, ConfigError
from genir.tensor_files import load_tensors, save_tensors

OPTIMIZERS = ("adamw", "adam", "adagrad")


@dataclass
class TrainerConfig(Config):
    epochs: int = param(100, "training epochs (early stopping usually ends sooner)", min=1)
    batch_size: int = param(1024, "examples per batch (per process)", min=1)
    lr: float = param(1e-3, "peak learning rate", min=0.0)
    weight_decay: float = param(0.0, "weight decay: decoupled for adamw (not on biases and norms), L2 on every "
                                "parameter for adam and adagrad", min=0.0)
    optimizer: str = param("adamw", "optimizer", choices=OPTIMIZERS)
    scheduler: str = param("constant", "learning-rate schedule of transformers.get_scheduler (constant, linear, "
                           "cosine, inverse_sqrt, ...); with warmup the *_with_warmup variant")
    warmup_steps: int = param(0, "optimizer steps of linear warm-up", min=0)
    grad_accum: int = param(1, "gradient accumulation steps", min=1)
    max_grad_norm: float = param(0.0, "gradient clipping norm; 0 = none", min=0.0)
    mixed_precision: str = param("no", "accelerate mixed precision", choices=("no", "fp16", "bf16"))
    gradient_checkpointing: bool = param(False, "trade compute for memory (models with "
                                         "gradient_checkpointing_enable(), e.g. Hugging Face ones)")
    eval_every: int = param(1, "validate every N epochs", min=1)
    patience: int = param(10, "stop after this many validations without improvement", min=1)
    metric: str = param("ndcg@10", "validation metric for early stopping and model selection: any name the "
                        "evaluator reports (ndcg@10, recall@20, hits@10, mrr@10 ...)")
    eval_batch_size: int = param(256, "users or queries per evaluation batch", min=1)
    seed: int = param(2020, "seed of initialisation, shuffling, negatives and dropout", min=0)
    seed_rng: bool = param(True, "seed every RNG at the start and at each epoch from seed (exact resume); false "
                           "leaves the global RNG to the caller (a tokenizer seeded when it was built)")
    cpu: bool = param(False, "force CPU even when a GPU is visible (also gives gloo for torchrun on CPU)")
    output_dir: str = param("", "checkpoints, best weights and the log; empty = keep nothing on disk")
    resume: bool = param(False, "continue from output_dir/checkpoint")
    num_workers: int = param(0, "DataLoader worker processes", min=0)
    progress: bool = param(True, "progress bar and per-epoch lines")

    @classmethod
    def from_dict(cls, values: dict, source: str = "trainer", prefix: str = "", *, coerce: bool = True
                  ) -> TrainerConfig:
        return super().from_dict(values, source, prefix, coerce=coerce)

    @classmethod
    def for_method(cls, model_or_class, settings: dict | None = None, source: str = "trainer") -> TrainerConfig:
        """The one place where a method's tuned ``trainer_defaults`` meet a user's settings: defaults of this
        class < the method's ``trainer_defaults`` < ``settings``."""
        return cls.from_dict({**getattr(model_or_class, "trainer_defaults", {}), **(settings or {})}, source)

    def check(self, source: str, prefix: str) -> None:
        if not re.fullmatch(r"[a-z_]+@\d+", self.metric.lower()):
            raise ConfigError(f"{source}: {prefix}metric: expected a metric name like ndcg@10 or hits@10, got "
                              f"{self.metric!r}")


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


def _verified_checkpoint_state(ckpt: Path) -> dict:
    """The trainer state of checkpoint dir ``ckpt`` after checking the sha256 of every file it lists (checkpoints
    written before the list existed are read unchecked)."""
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{ckpt / 'trainer_state.json'}: unreadable ({exc})") from None
    for name, digest in state.pop("files", {}).items():
        path = ckpt / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if file_sha256(path) != digest:
            raise CheckpointError(f"{path}: sha256 does not match the checkpoint's record (the file is damaged)")
    return state


@dataclass
class TrainResult:
    best_epoch: int
    best_valid: dict
    history: list = field(default_factory=list)  # one dict per epoch: epoch, loss, train_s, valid metrics
    train_seconds: float = 0.0  # wall time of training epochs (no validation)
    total_seconds: float = 0.0  # wall time of fit(), validation included
    time_to_best: float = 0.0  # wall time from the start of fit() until the best validation was measured
    stopped_early: bool = False


class Callback:
    """Hooks into the loop; override what you need. ``trainer.state`` holds epoch, best, history."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        """After each epoch, ``record`` = its log line (loss, timings, valid metrics when validated)."""

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...


class Trainer:
    """Trains a model on a task (or on a torch dataset) and keeps the epoch with the best validation metric.

    ``Trainer(model, train_data, evaluator=None, config=None)``:

    * ``model``: an ``nn.Module`` whose ``forward(batch)`` returns the loss (a tensor, or a dict with ``loss`` and
      other scalars that are averaged into the epoch log); a model with ``train_dataset(task)`` turns a task
      into training examples and may set ``collate``; ``on_epoch_start(epoch)`` is called before each epoch; a
      model that draws its own batches (a tokenizer over an in-memory feature matrix) has ``train_batches(epoch)``
      and ``num_train_batches`` instead (single process);
    * ``train_data``: a task (:class:`~genir.data.Split`, :class:`~genir.data.tasks.QueryRetrievalTask`) or a
      torch ``Dataset`` of ready examples;
    * ``evaluator``: anything with ``model_sums(model, device, shard) -> MetricSums`` (the evaluators of
      :mod:`genir.eval`); default: the task's validation evaluator (:func:`genir.eval.evaluator_for`); with a
      bare dataset and none, every epoch is trained and the last weights are kept.

    A model with ``save_pretrained`` saves itself into ``output_dir/best`` (a peft model saves its adapter only);
    others are saved as ``best_model.safetensors``. The in-memory copy of the best weights holds the trainable
    parameters and the buffers only, so a frozen base model (an LLM under LoRA) is never cloned.
    """

    def __init__(self, model, train_data, evaluator=None, config: TrainerConfig | None = None,
                 accelerator: Accelerator | None = None, *, callbacks: tuple[Callback, ...] = ()):
        from torch.utils.data import Dataset as TorchDataset

        if isinstance(evaluator, TrainerConfig):
            raise TypeError("Trainer(model, train_data, evaluator, config): pass the config as config=")
        self.config = config or TrainerConfig()
        c = self.config
        self.task = None if isinstance(train_data, TorchDataset) else train_data
        self.train_data = train_data
        self.split = self.task  # the name recipes and tests used before tasks existed
        self.accelerator = accelerator or _new_accelerator(c)
        self.model = model
        self.metric = c.metric.lower()
        if evaluator is None and self.task is not None:
            from genir.eval import evaluator_for

            evaluator = evaluator_for(self.task, "valid", batch_size=c.eval_batch_size, metric=self.metric)
        self.valid_evaluator = evaluator
        self.callbacks = tuple(callbacks)
        self.out = Path(c.output_dir) if c.output_dir else None
        self.state: dict = {}

    # ------------------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def _log(self, record: dict) -> None:
        if self.out is not None and self.accelerator.is_main_process:
            with open(self.out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def evaluate(self, evaluator) -> dict[str, float]:
        """This process's share of users or queries, sums added over processes, means returned."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        acc = self.accelerator
        part = evaluator.model_sums(model, acc.device, (acc.process_index, acc.num_processes))
        if acc.num_processes > 1:
            names = sorted(part.sums)
            t = torch.tensor([part.sums[n] for n in names] + [part.count], dtype=torch.float64, device=acc.device)
            t = acc.reduce(t, reduction="sum")
            part = type(part)({n: float(v) for n, v in zip(names, t[:-1].tolist())}, int(t[-1].item()))
        return part.means()

    def _save_best(self, model) -> None:
        if self.out is None or not self.accelerator.is_main_process:
            return
        if callable(getattr(model, "save_pretrained", None)):
            tmp, final = self.out / "best.tmp", self.out / "best"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            return
        save_tensors(self.out / "best_model.safetensors", model.state_dict())

    @staticmethod
    def _trainable_state(model) -> dict[str, torch.Tensor]:
        """A copy of what training changes: trainable parameters and buffers (not a frozen base model)."""
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in frozen}

    def _save_checkpoint(self, state: dict) -> None:
        if self.out is None:
            return
        tmp = self.out / "checkpoint.tmp"
        if self.accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.accelerator.wait_for_everyone()
        try:
            self.accelerator.save_state(str(tmp))
            if self.accelerator.is_main_process:  # the sha256 of every file, checked on resume
                files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
                (tmp / "trainer_state.json").write_text(json.dumps({**state, "files": files}))
        except BaseException:  # a full disk, an interrupt: no half-written checkpoint.tmp stays behind
            if self.accelerator.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if self.accelerator.is_main_process:
            final, old = self.out / "checkpoint", self.out / "checkpoint.old"
            if final.exists() and exchange(tmp, final):  # one atomic swap; the previous checkpoint is now tmp
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # no exchange here: two renames, so a crash at any point leaves one complete checkpoint
                if final.exists():
                    shutil.rmtree(old, ignore_errors=True)
                    os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _optimizer(self, model) -> torch.optim.Optimizer:
        """AdamW with weight decay on matrices and none on biases, norms and other 1-D parameters (transformers'
        and nanoGPT's rule); Adam and Adagrad with classic L2 on every parameter (RecBole's convention, which the
        BPR-family methods were tuned with). A model's ``lr_multipliers`` ({parameter-name prefix: factor}, the
        longest matching prefix wins) gives parts of it their own learning rate, e.g. a pretrained encoder
        fine-tuned gently under a head trained from scratch."""
        c = self.config
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        multipliers = dict(getattr(model, "lr_multipliers", None) or {})

        def factor(name: str) -> float:
            hits = [k for k in multipliers if name.startswith(k)]
            return float(multipliers[max(hits, key=len)]) if hits else 1.0

        groups: dict[tuple[float, float], list] = {}
        for n, p in params:
            decay = c.weight_decay if (c.optimizer != "adamw" or p.ndim >= 2) else 0.0
            groups.setdefault((factor(n), decay), []).append(p)
        param_groups = [{"params": ps, "lr": c.lr * f, "weight_decay": d} for (f, d), ps in groups.items()]
        cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}[c.optimizer]
        return cls(param_groups, lr=c.lr)

    def _scheduler(self, optimizer, steps: int):
        from transformers import get_scheduler

        c = self.config
        name = c.scheduler
        if c.warmup_steps and name == "constant":
            name = "constant_with_warmup"
        try:
            return get_scheduler(name, optimizer, num_warmup_steps=c.warmup_steps, num_training_steps=steps)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"trainer: scheduler {c.scheduler!r}: {exc}") from None

    def _validate(self, state: dict, epoch: int, t_start: float, prior_elapsed: float, unwrapped, record: dict):
        valid = self.evaluate(self.valid_evaluator)
        if self.metric not in valid:
            raise ConfigError(f"trainer: metric {self.metric!r} is not reported by the evaluator; it reports "
                              f"{sorted(valid)}")
        record.update({f"valid_{k}": v for k, v in valid.items()})
        score = valid[self.metric]
        if score > state["best"]:
            state.update(best=score, best_epoch=epoch, bad=0, best_valid=valid,
                         time_to_best=prior_elapsed + time.perf_counter() - t_start)
            self._save_best(unwrapped)
            self._best_state = self._trainable_state(unwrapped)
        else:
            state["bad"] += 1
        return score

    # ------------------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        c = self.config
        acc = self.accelerator
        if c.seed_rng:
            set_seed(c.seed)
        t_start = time.perf_counter()
        if self.out is not None and acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            # what a killed run left half-written (a checkpoint being saved, atomic_write's temporary files); the
            # CLI holds the dir's writer lock, so no other run is writing them
            shutil.rmtree(self.out / "checkpoint.tmp", ignore_errors=True)
            for stale in self.out.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            if not c.resume:  # a fresh run in a used directory starts a fresh log
                (self.out / "log.jsonl").unlink(missing_ok=True)
        model = self.model
        for cb in self.callbacks:
            cb.on_train_begin(self)
        if not any(p.requires_grad for p in model.parameters()):  # non-parametric (MostPopular): validate once
            model.to(acc.device)
            valid = self.evaluate(self.valid_evaluator) if self.valid_evaluator is not None else {}
            self._save_best(model)
            total = time.perf_counter() - t_start
            return TrainResult(0, valid, [{"epoch": 0, **{f"valid_{k}": v for k, v in valid.items()}}],
                               0.0, total, total)
        if c.gradient_checkpointing:
            if not callable(getattr(model, "gradient_checkpointing_enable", None)):
                raise ConfigError(f"trainer: gradient_checkpointing=true but {type(model).__name__} has no "
                                  "gradient_checkpointing_enable()")
            model.gradient_checkpointing_enable()

        own_batches = callable(getattr(model, "train_batches", None))
        if own_batches:  # a model that draws its own batches (a tokenizer over a feature matrix in memory)
            loader, n_batches = None, model.num_train_batches
        else:
            dataset = self.train_data if self.task is None else model.train_dataset(self.task)
            collate = getattr(model, "collate", None) or (
                passthrough_collate if isinstance(dataset, BatchedTensorDataset) else None)
            loader = DataLoader(dataset, batch_size=c.batch_size, shuffle=True, collate_fn=collate,
                                num_workers=c.num_workers)
            n_batches = len(loader)
        optimizer = self._optimizer(model)
        # accelerate steps a prepared scheduler once per process for every optimizer step, so the count is that
        # of one process seeing every batch
        steps = c.epochs * math.ceil(n_batches / c.grad_accum)
        scheduler = self._scheduler(optimizer, steps)
        # buffers are built from the split (graph adjacencies), the same in every process; DDP cannot broadcast
        # sparse tensors at all, so it is told to leave those alone
        model._ddp_params_and_buffers_to_ignore = [n for n, b in model.named_buffers() if b.is_sparse]
        if own_batches:
            self.model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
        else:
            self.model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
        unwrapped = acc.unwrap_model(self.model)

        state = {"epoch": 0, "best": -math.inf, "best_epoch": -1, "bad": 0, "history": [], "train_seconds": 0.0,
                 "time_to_best": 0.0, "best_valid": {}}
        ckpt = self.out / "checkpoint" if self.out is not None else None
        if ckpt is not None and not ckpt.exists() and (self.out / "checkpoint.old").exists():
            ckpt = self.out / "checkpoint.old"  # a crash between the two renames of _save_checkpoint
        if c.resume:
            if ckpt is None or not (ckpt / "trainer_state.json").is_file():
                raise CheckpointError(f"resume: no checkpoint in {ckpt or '(no output_dir set)'}")
            state = _verified_checkpoint_state(ckpt)
            acc.load_state(str(ckpt))
            acc.print(f"resumed from {ckpt} at epoch {state['epoch']}")
        self.state = state

        prior_elapsed = state.get("elapsed", 0.0)  # wall time spent before a resume
        stopped = False
        for epoch in range(state["epoch"], c.epochs):
            # every epoch's randomness (shuffle, negatives, dropout) is a function of (seed, epoch), so a resumed
            # run continues exactly as an uninterrupted one would
            if c.seed_rng:
                set_seed((c.seed * 100_003 + epoch) % 2**32)
            self.model.train()
            if callable(getattr(unwrapped, "on_epoch_start", None)):
                unwrapped.on_epoch_start(epoch)
            t0 = time.perf_counter()
            totals: dict[str, torch.Tensor] = {}
            steps = 0
            batches = unwrapped.train_batches(epoch) if own_batches else loader
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{c.epochs}", leave=False, total=n_batches,
                       disable=not (c.progress and acc.is_local_main_process))
            for batch in bar:
                with acc.accumulate(self.model):
                    out = self.model(batch)
                    parts = out if isinstance(out, dict) else {"loss": out}
                    acc.backward(parts["loss"])
                    if c.max_grad_norm > 0 and acc.sync_gradients:
                        acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                for k, v in parts.items():
                    totals[k] = totals.get(k, 0) + v.detach().float()
                steps += 1
            names = sorted(totals)
            total = torch.stack([torch.as_tensor(totals[k], device=acc.device) for k in names]) / max(1, steps)
            if acc.num_processes > 1:
                total = acc.reduce(total, reduction="mean")
            train_s = time.perf_counter() - t0
            state["train_seconds"] += train_s
            record = {"epoch": epoch + 1, **{k: float(v) for k, v in zip(names, total.tolist())},
                      "train_s": round(train_s, 3)}
            if self.valid_evaluator is not None and ((epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs):
                score = self._validate(state, epoch + 1, t_start, prior_elapsed, unwrapped, record)
                if acc.is_main_process and c.progress:
                    acc.print(f"epoch {epoch + 1:3d}  loss {record['loss']:.4f}  {self.metric} {score:.4f}  "
                              f"best {state['best']:.4f} @ {state['best_epoch']}  ({train_s:.1f}s)")
            elif self.valid_evaluator is None:
                state["best_epoch"] = epoch + 1
            state["history"].append(record)
            state["epoch"] = epoch + 1
            state["elapsed"] = prior_elapsed + time.perf_counter() - t_start
            self._log(record)
            for cb in self.callbacks:
                cb.on_epoch_end(self, record)
            if self.out is not None:
                self._save_checkpoint(state)
            if state["bad"] >= c.patience:
                stopped = True
                break

        if self.valid_evaluator is None:
            self._save_best(unwrapped)  # no validation: the last weights are the result
        # restore the best weights (from memory, or from disk when the best epoch was before a resume)
        elif getattr(self, "_best_state", None) is not None:
            unwrapped.load_state_dict(self._best_state, strict=False)
        elif self.out is not None and (self.out / "best_model.safetensors").is_file():
            best = load_tensors(self.out / "best_model.safetensors", device=str(acc.device))
            unwrapped.load_state_dict(best, strict=False)
        self.model = unwrapped
        result = TrainResult(
            best_epoch=state["best_epoch"], best_valid=state["best_valid"], history=state["history"],
            train_seconds=state["train_seconds"], total_seconds=time.perf_counter() - t_start,
            time_to_best=state["time_to_best"], stopped_early=stopped,
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def test(self, evaluator=None) -> dict[str, float]:
        """Metrics of the (best) model on the task's test stage (or on ``evaluator``)."""
        if evaluator is None:
            from genir.eval import evaluator_for

            if self.task is None:
                raise ConfigError("Trainer.test(): no task to take a test evaluator from; pass one")
            evaluator = evaluator_for(self.task, "test", batch_size=self.config.eval_batch_size)
        return self.evaluate(evaluator)
