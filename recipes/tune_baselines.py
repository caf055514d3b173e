"""Grid search of the baselines' settings on the VALIDATION split of MovieLens-100K (leave-one-out).

    python recipes/tune_baselines.py --methods bpr,lightgcn,sasrec --workers 2

Each setting trains once (seed 2020) with early stopping on validation NDCG@10; the best setting per method is
what ``recipes/baselines.py`` uses (its ``TUNED`` table). The test split is never looked at here. Settings run
in parallel worker processes (``--workers``), which pays off on a machine with many cores or a GPU.
Writes ``benchmarks/results/tuning-baselines.json`` (every setting's validation metrics and time).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path

GRIDS = {
    "bpr": {"lr": [1e-3, 5e-3, 1e-2], "weight_decay": [0.0, 1e-6, 1e-5, 1e-4], "embedding_size": [64]},
    "lightgcn": {"lr": [1e-3, 5e-3, 1e-2], "n_layers": [2, 3], "reg_weight": [1e-5, 1e-4]},
    "sasrec": {"lr": [1e-3, 2e-3], "dropout": [0.2, 0.5], "max_seq_length": [50, 200], "batch_size": [128]},
}


def _one(args: tuple[str, dict, bool]) -> dict:
    name, setting, cpu = args
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from genir.data import leave_one_out, load_dataset
    from genir.methods import get_method
    from genir.runs import RunSpec, train_run
    from genir.training import TrainerConfig

    split = leave_one_out(load_dataset("ml-100k"))
    config_cls, model_cls = get_method(name)
    method = {k: v for k, v in setting.items() if k in config_cls.__dataclass_fields__}
    trainer = TrainerConfig.for_method(model_cls, {"seed": 2020, "progress": False, "cpu": cpu,
                                                   **{k: v for k, v in setting.items() if k not in method}})
    t = time.perf_counter()
    _, result, res = train_run(RunSpec(model=name), method, trainer, split=split)
    return {"method": name, "setting": setting, "valid": result.best_valid, "best_epoch": result.best_epoch,
            "seconds": time.perf_counter() - t, "device": res["device"]}


def _best(results: list[dict]) -> dict:
    best: dict = {}
    for r in results:
        if r["method"] not in best or r["valid"]["ndcg@10"] > best[r["method"]]["valid"]["ndcg@10"]:
            best[r["method"]] = r
    return best


def _write(path: Path, args, results: list[dict], seconds: float, done: bool, extra: dict | None = None) -> None:
    """Rewritten after every finished setting, so an interrupted search keeps what it measured."""
    from genir.atomic import write_json
    from genir.runs import environment

    write_json(path, {"command": " ".join([Path(sys.executable).name] + sys.argv),
                      "selection": "valid ndcg@10, seed 2020", "complete": done, "machine": environment(),
                      "workers": args.workers, "seconds": seconds, "best": _best(results), "all": results,
                      **(extra or {})})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="bpr,lightgcn,sasrec")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--out", default="benchmarks/results/tuning-baselines.json")
    args = p.parse_args(argv)
    jobs = []
    for name in args.methods.split(","):
        grid = GRIDS[name]
        for values in itertools.product(*grid.values()):
            jobs.append((name, dict(zip(grid.keys(), values)), args.cpu))
    t0 = time.perf_counter()
    results: list[dict] = []
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    # imported here, not at the top: the workers set their thread count before torch loads
    from genir.experiment import worker_pool

    with worker_pool(args.workers) as pool:
        for fut in as_completed([pool.submit(_one, job) for job in jobs]):
            r = fut.result()
            results.append(r)
            print(f"{r['method']:9s} {r['setting']}  valid ndcg@10 {r['valid']['ndcg@10']:.4f}  "
                  f"epoch {r['best_epoch']}  {r['seconds']:.0f}s", flush=True)
            _write(path, args, results, time.perf_counter() - t0, done=len(results) == len(jobs))
    for name, r in _best(results).items():
        print(f"best {name}: {r['setting']} valid ndcg@10 {r['valid']['ndcg@10']:.4f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
