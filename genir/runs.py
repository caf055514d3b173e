"""A *run*: one method trained on one dataset split, kept as a directory that `genir eval` and
`genir recommend` reload.

Run dir layout: ``run.json`` (what was trained: dataset, split, method and trainer configs, seed, versions;
an index dir by a path relative to the run dir), ``best_model.safetensors`` (every persistent tensor; loaded
strictly), ``inputs.safetensors`` (the inputs the model computed from data when it was built: a graph encoder's
vectors, modality features; loading takes them from here and never recomputes or retrains them),
``log.jsonl`` (one line per epoch), ``results.json`` (valid and test metrics, timings) and ``checkpoint/`` (the
last epoch, for ``resume=true``). ``init_from=RUN`` starts a run from another run's best weights (fine-tuning,
e.g. after ``genir index add``; token tables that grew keep their old rows).

Settings come from three places, highest precedence first: ``key=value`` overrides, a YAML file, the defaults
(the method's ``trainer_defaults`` over :class:`TrainerConfig`'s). A key names either a method field, a
trainer field or one of the run fields below; an unknown key is an error.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

import genir
from genir.atomic import atomic_write
from genir.data import Split, k_core, load_dataset, make_split
from genir.errors import CheckpointError, ConfigError
from genir.eval import FullRankingEvaluator
from genir.methods import Recommender, build_method, get_method
from genir.models.base import preloaded_inputs
from genir.tensor_files import load_tensors, save_tensors
from genir.training import Trainer, TrainerConfig, TrainResult

RUN_FIELDS = ("model", "dataset", "items", "split", "kcore", "init_from")
WEIGHTS_FILE = "best_model.safetensors"
INPUTS_FILE = "inputs.safetensors"


@dataclass
class RunSpec:
    """What data a run uses and which method it trains; with the two configs it fully describes a run."""

    model: str = "sasrec"
    dataset: str = "ml-100k"
    items: str = ""  # optional item side-information file for a generic interactions file
    split: str = "loo"  # "loo" (leave-one-out), "temporal" or "random" (per user, MMRec's protocol)
    kcore: int = 0  # 0 = no filtering
    init_from: str = ""  # a run dir whose best weights initialise this run (fine-tuning)


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    flat = {}
    for k, v in data.items():  # sections `method:` and `trainer:` are accepted as well as flat keys
        if k in ("method", "trainer") and isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    return flat


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"override {p!r} must look like key=value")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def resolve(settings: dict, model: str | None = None) -> tuple[RunSpec, dict, TrainerConfig]:
    """Split flat settings into (run spec, method config dict, trainer config), validating every key."""
    settings = dict(settings)
    spec_values = {k: settings.pop(k) for k in RUN_FIELDS if k in settings}
    if model:
        spec_values["model"] = model
    spec = RunSpec(**{k: (int(v) if k == "kcore" else str(v)) for k, v in spec_values.items()})
    config_cls, model_cls = get_method(spec.model)
    method_fields = set(config_cls.__dataclass_fields__)
    trainer_fields = set(TrainerConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - method_fields - trainer_fields)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {unknown} for model {spec.model!r}; method fields: {sorted(method_fields)}; "
            f"trainer fields: {sorted(trainer_fields)}; run fields: {list(RUN_FIELDS)}"
        )
    method = {k: v for k, v in settings.items() if k in method_fields}
    config_cls.from_dict(method, source=f"method {spec.model}")  # validate now, before any data is read
    trainer = TrainerConfig.for_method(model_cls, {k: v for k, v in settings.items() if k in trainer_fields})
    return spec, method, trainer


def load_split(spec: RunSpec) -> Split:
    ds = load_dataset(spec.dataset, items=spec.items or None)
    if spec.kcore:
        ds = k_core(ds, spec.kcore)
    return make_split(ds, spec.split)


def environment() -> dict:
    """The machine and versions behind a result: every results JSON (runs, recipes, benchmarks) records it.
    Load averages are included because other processes on a small machine skew every timing."""
    import numpy

    return {
        "genir": genir.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        "git": _COMMIT_AT_IMPORT,
    }


def _git_commit() -> str | None:
    """The commit of the genir checkout that produced a result (``+dirty`` with uncommitted changes to tracked
    files), or None outside a git checkout (an installed wheel)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():  # an installed copy: git would report an enclosing repository's commit
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


# Read once, when this process loads genir (two quick git calls, only in a checkout): a long-lived process (a
# recipe's worker pool) runs the code it imported, so a commit read when a result is written could name code the
# process never ran.
_COMMIT_AT_IMPORT = _git_commit()


def _write_json(path: Path, obj) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, default=str).encode()))


def train_run(spec: RunSpec, method: dict, trainer: TrainerConfig, split: Split | None = None
              ) -> tuple[Recommender, TrainResult, dict]:
    """Train, select on validation, test; write the run dir if ``trainer.output_dir`` is set.

    Returns (model with the best weights, training result, results dict)."""
    split = split or load_split(spec)
    model = build_method(spec.model, split, method, seed=trainer.seed)
    if spec.init_from:
        init_weights(model, Path(spec.init_from))
    out = Path(trainer.output_dir) if trainer.output_dir else None
    t = Trainer(model, split, config=trainer)
    # with several processes only the main one writes the run dir: the others would race its clean-up of
    # temporary files (Trainer.fit removes atomic_write's leftovers) and could lose their half-renamed run.json
    if out is not None and t.accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        arrays, layout = flatten_inputs(model.saved_inputs)
        save_tensors(out / INPUTS_FILE, arrays or {"_empty": np.zeros(0, dtype=np.float32)})
        _write_json(out / "run.json", {
            "spec": asdict(spec), "method": _portable_method(model.config.to_dict(), out), "trainer": asdict(trainer),
            "split": split.describe(), "dataset": split.dataset.describe(), "inputs": layout,
            "environment": environment(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
    result = t.fit()
    test = t.test()
    results = {
        "model": spec.model, "seed": trainer.seed, "best_epoch": result.best_epoch, "valid": result.best_valid,
        "test": test, "train_seconds": result.train_seconds, "total_seconds": result.total_seconds,
        "time_to_best": result.time_to_best, "epochs_run": len(result.history),
        "seconds_per_epoch": result.train_seconds / max(1, sum(1 for h in result.history if "train_s" in h)),
        "device": str(t.device), "num_processes": t.accelerator.num_processes,
    }
    if out is not None and t.accelerator.is_main_process:
        _write_json(out / "results.json", results)
    return t.model, result, results


def load_run(run_dir: str | Path) -> tuple[Recommender, Split, dict]:
    """Rebuild a trained model and its split from a run dir (refuses a dir that is not a finished run)."""
    d = Path(run_dir)
    if not (d / "run.json").is_file():
        raise CheckpointError(f"{d}: not a run directory (no run.json); train one with `genir train --out {d}`")
    if not (d / "best_model.safetensors").is_file():
        raise CheckpointError(f"{d}: run has no best_model.safetensors (training did not finish a validation)")
    try:
        info = json.loads((d / "run.json").read_text())
        spec = RunSpec(**info["spec"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{d / 'run.json'}: unreadable run description ({exc})") from None
    split = load_split(spec)
    method = _resolve_method(info.get("method", {}), d)
    inputs = {}
    if "inputs" in info:
        if not (d / INPUTS_FILE).is_file():
            raise CheckpointError(f"{d}: {INPUTS_FILE} is missing (the run's data-derived inputs)")
        inputs = unflatten_inputs(load_tensors(d / INPUTS_FILE, framework="np"), info["inputs"])
    with preloaded_inputs(inputs):
        model = build_method(spec.model, split, method)
    state = load_tensors(d / WEIGHTS_FILE)
    load_weights(model, state, d / WEIGHTS_FILE, spec.model)
    model.eval()
    return model, split, info


def load_weights(model: torch.nn.Module, saved: dict[str, torch.Tensor], path: Path, name: str = "") -> None:
    """Load ``saved`` into ``model`` strictly: the same tensor names, the same shapes, except a tensor that grew
    along its first dimension, which keeps the saved rows first and its other rows as initialised. That is a
    generator's code-token table after ``genir index add`` grew the collision level: its block is the last of
    the vocabulary, so every saved row keeps its meaning."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match model {name!r} (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]})")
    merged = {}
    for key, value in saved.items():
        target = own[key]
        if value.shape == target.shape:
            merged[key] = value
        elif value.ndim == target.ndim and value.shape[1:] == target.shape[1:] and value.shape[0] < target.shape[0]:
            merged[key] = torch.cat([value.to(target.dtype), target[value.shape[0]:].detach().cpu()])
        else:
            raise CheckpointError(f"{path}: weights do not match model {name!r}: {key} has shape "
                                  f"{tuple(value.shape)}, the model {tuple(target.shape)}")
    model.load_state_dict(merged, strict=True)


def init_weights(model: torch.nn.Module, run_dir: Path) -> None:
    """Load another run's best weights into ``model`` to fine-tune it (:func:`load_weights`: a token table that
    grew keeps the saved rows)."""
    path = Path(run_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"init_from: {path} not found (a run dir with best weights)")
    load_weights(model, load_tensors(path), path, "init_from")


def _portable_method(method: dict, run_dir: Path) -> dict:
    """The method config as written into run.json: an index dir relative to the run dir, so that a run and its
    index can be moved or copied together."""
    if method.get("index"):
        method = {**method, "index": os.path.relpath(Path(method["index"]).resolve(), run_dir.resolve())}
    return method


def _resolve_method(method: dict, run_dir: Path) -> dict:
    if method.get("index") and not Path(method["index"]).is_absolute():
        method = {**method, "index": str((run_dir / method["index"]).resolve())}
    return method


def flatten_inputs(inputs: dict) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays by key, layout) of a model's saved inputs: arrays, tuples of arrays or None, dicts of arrays."""
    arrays, layout = {}, {}

    def arr(v) -> np.ndarray:
        v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        return np.ascontiguousarray(v)

    for name, value in inputs.items():
        if value is None:
            layout[name] = {"kind": "none"}
        elif isinstance(value, dict):
            layout[name] = {"kind": "dict", "keys": list(value)}
            arrays.update({f"{name}/{k}": arr(v) for k, v in value.items()})
        elif isinstance(value, (tuple, list)):
            layout[name] = {"kind": "tuple", "present": [v is not None for v in value]}
            arrays.update({f"{name}/{i}": arr(v) for i, v in enumerate(value) if v is not None})
        else:
            layout[name] = {"kind": "array"}
            arrays[name] = arr(value)
    return arrays, layout


def unflatten_inputs(arrays: dict[str, np.ndarray], layout: dict) -> dict:
    out = {}
    for name, spec in layout.items():
        kind = spec["kind"]
        if kind == "none":
            out[name] = None
        elif kind == "dict":
            out[name] = {k: arrays[f"{name}/{k}"] for k in spec["keys"]}
        elif kind == "tuple":
            out[name] = tuple(arrays[f"{name}/{i}"] if present else None for i, present in enumerate(spec["present"]))
        else:
            out[name] = arrays[name]
    return out


def evaluate_model(model: Recommender, split: Split, stage: str = "test", device: str | None = None) -> dict:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    model.prepare_eval()
    ev = FullRankingEvaluator(split, stage)
    return ev.evaluate(lambda b: model.full_scores(b.to(device)))


def item_names(model, split) -> tuple[list[str], list[str]]:
    """External ids and titles of every item a model can return: the dataset's, then (for a model on an index
    that grew with `genir index add`) the added items' from the index."""
    ds = split.dataset
    ids = [str(x) for x in ds.item_ids]
    titles = [ds.title(i) for i in range(ds.num_items)]
    index_dir = getattr(model.config, "index", "")
    if index_dir and getattr(model, "num_index_items", ds.num_items) > ds.num_items:
        from genir.index import load_index

        items = load_index(index_dir).items
        extra = items.iloc[ds.num_items:]
        ids += extra["item"].astype(str).tolist()
        titles += [str(t) if isinstance(t, str) else f"item {i}"
                   for t, i in zip(extra.get("title", extra["item"]), extra["item"])]
    return ids, titles
