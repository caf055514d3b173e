"""Time the whole generative path from the command line, as a new user would run it.

    genir index build --dataset ml-100k --scheme tokenizers/rqvae.yaml --out W/index
    genir train --index W/index epochs=E patience=P
    genir eval  --index W/index --compare W/sasrec

with an empty feature cache (``GENIR_CACHE`` pointed at a fresh folder, so the MiniLM text embedding is part of the
measured build). The SASRec run that ``--compare`` puts beside the generative model is trained first, once, with its
own timing reported separately: it is the reference, not part of the path.

Usage: ``python benchmarks/cli_path.py [--epochs 10] [--out benchmarks/results/cli-path-cpu.json]``.
Prints each step's wall time and the evaluator's table; writes a JSON with the machine, the commands and the times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def run_step(name: str, argv: list[str], env: dict) -> dict:
    """Run one CLI command, echo its output, return its wall time and output."""
    print(f"\n$ {' '.join(argv)}", flush=True)
    start, cpu_start = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    print(proc.stdout[-6000:], proc.stderr[-3000:] if proc.returncode else "", sep="\n", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"step {name!r} failed with exit status {proc.returncode}")
    print(f"[{name}] {seconds:.1f} s wall, {cpu:.1f} s CPU, load average {os.getloadavg()[0]:.2f}", flush=True)
    return {"name": name, "command": " ".join(argv[1:]), "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "load_average_after": os.getloadavg()[0], "stdout": proc.stdout[-6000:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="TIGER training epochs (early stopping may end sooner)")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--scheme", default="tokenizers/rqvae.yaml")
    p.add_argument("--sasrec-epochs", type=int, default=30, help="cap of the reference SASRec run")
    p.add_argument("--sasrec-run", default=None, help="an existing SASRec run dir to compare with (skips training one)")
    p.add_argument("--work", default=None, help="working folder (default: a fresh temp dir)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/cli-path-cpu.json"))
    args = p.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="genir-cli-path-"))
    env = dict(os.environ, GENIR_CACHE=str(work / "cache"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    genir = [sys.executable, "-m", "genir"]
    sasrec = Path(args.sasrec_run) if args.sasrec_run else work / "sasrec"
    reference = None if args.sasrec_run else run_step(
        "sasrec (reference, not part of the path)",
        genir + ["train", "--model", "sasrec", "--out", str(sasrec), f"epochs={args.sasrec_epochs}", "patience=5",
                 "progress=false"], env)
    path_steps = [
        run_step("index build", genir + ["index", "build", "--dataset", "ml-100k", "--scheme", args.scheme,
                                         "--out", str(work / "index"), "--quiet"], env),
        run_step("index info", genir + ["index", "info", str(work / "index")], env),
        run_step("train", genir + ["train", "--index", str(work / "index"), f"epochs={args.epochs}",
                                   f"patience={args.patience}", "progress=false"], env),
        run_step("eval", genir + ["eval", "--index", str(work / "index"), "--compare", str(sasrec)], env),
    ]
    total = sum(s["seconds"] for s in path_steps)
    cpu_total = sum(s["cpu_seconds"] for s in path_steps)
    print(f"\nbuild -> train -> eval: {total:.0f} s wall ({total / 60:.1f} min), {cpu_total:.0f} s CPU")
    report = {
        "what": "wall time of the CLI path index build -> info -> train -> eval on ml-100k, empty feature cache",
        "command": "python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "load_average_at_end": os.getloadavg()},
        "path_seconds": round(total, 1),
        "path_cpu_seconds": round(cpu_total, 1),
        "steps": path_steps,
        "reference": reference or {"sasrec_run": str(sasrec)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
