"""Does a refactor change what trains? TIGER on MovieLens-100K trained for a few epochs by genir at two commits
(this checkout and ``--base``, checked out with ``git worktree``), same seed, same index dir, same machine; the
per-epoch training losses and validation metrics of both side by side.

Usage: ``python benchmarks/same_numerics.py --base 69d46af [--epochs 2] [--index DIR]``; writes
``benchmarks/results/same-numerics.json``. The index dir must be readable by both commits (an index built by
either: the manifest's extra fields are ignored by older readers); without ``--index`` one is built from
``tokenizers/rqvae.yaml`` by this checkout. Each side runs in its own process with one thread, the base's package
first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAIN = r"""
import json, sys, torch
torch.set_num_threads(1)
import genir
from genir.data import leave_one_out, load_dataset
from genir.methods import build_method
from genir.training import Trainer, TrainerConfig
index, epochs = sys.argv[1], int(sys.argv[2])
split = leave_one_out(load_dataset("ml-100k"))
model = build_method("tiger", split, {"index": index, "max_history": 20}, seed=2020)
config = TrainerConfig.from_dict({"lr": 1e-3, "batch_size": 64, "epochs": epochs, "patience": epochs,
                                  "seed": 2020, "progress": False, "cpu": True, "eval_every": epochs})
try:
    trainer = Trainer(model, split, config=config)
except TypeError:  # before the generic Trainer(model, data, evaluator, config)
    trainer = Trainer(model, split, config)
result = trainer.fit()
keep = ("epoch", "loss", "valid_ndcg@10", "valid_recall@10", "valid_recall@20")
print(json.dumps({"genir": genir.__file__, "history": [{k: h[k] for k in keep if k in h} for h in result.history]}))
"""


def run(index: Path, epochs: int, pythonpath: str | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, "-c", TRAIN, str(index), str(epochs)], env=env, cwd=tempfile.gettempdir(),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="69d46af", help="the commit to compare with")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--index", default=None, help="an index dir (default: built from tokenizers/rqvae.yaml)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/same-numerics.json"))
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from genir.runs import environment

    with tempfile.TemporaryDirectory() as tmp:
        index = Path(args.index).resolve() if args.index else None
        if index is None:
            from genir.index import build_index

            index = build_index("ml-100k", ROOT / "tokenizers/rqvae.yaml", Path(tmp) / "idx", progress=False)
        base_dir = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base_dir), args.base],
                       check=True)
        try:
            base = run(index, args.epochs, str(base_dir))
            head = run(index, args.epochs, None)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_dir)], check=False)
    rows = []
    for b, h in zip(base["history"], head["history"]):
        row = {"epoch": b["epoch"], "loss_base": b["loss"], "loss_head": h["loss"],
               "loss_rel_diff": abs(b["loss"] - h["loss"]) / abs(b["loss"])}
        for k in ("valid_ndcg@10", "valid_recall@20"):
            if k in b:
                row[f"{k}_base"], row[f"{k}_head"] = b[k], h[k]
        rows.append(row)
        print(json.dumps(row))
    report = {"what": __doc__.splitlines()[0], "command": " ".join(["python", *sys.argv]), "base": args.base,
              "epochs": args.epochs, "rows": rows, "environment": environment()}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
