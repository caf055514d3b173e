"""Data-parallel training on CPU: `torchrun --nproc_per_node 2 -m genir train ...` with the trainer's Accelerator
forced to CPU runs two gloo processes; SASRec must reach the same test NDCG@10 as single-process training within
the spread of seeds. (`accelerate launch --cpu --num_processes 2` starts only one process on CPU, hence torchrun.)
Slow: about 8 minutes on 2 idle cores."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EPOCHS = "20"  # every run trains all epochs (no early stop) and keeps its best validation epoch


def _train(out: Path, seed: int, nproc: int) -> dict:
    # the same effective batch (128) in both settings: 64 per process under DDP
    batch = str(128 // nproc)
    args = ["-m", "genir", "train", "--model", "sasrec", "--out", str(out), "--seed", str(seed),
            f"epochs={EPOCHS}", f"batch_size={batch}", "cpu=true", "progress=false", f"patience={EPOCHS}"]
    if nproc == 1:
        cmd = [sys.executable, *args]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
        cmd = [torchrun, "--nproc_per_node", str(nproc), "--master_port", "29533", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1" if nproc > 1 else "2"}
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=1500)
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_single_process(tmp_path):
    single = [_train(tmp_path / f"s{seed}", seed, 1)["test"]["ndcg@10"] for seed in (1, 2)]
    ddp = _train(tmp_path / "ddp", 1, 2)
    assert ddp["device"].startswith("cpu") and ddp["num_processes"] == 2
    spread = max(3 * float(np.std(single, ddof=1)), 0.01)
    assert abs(ddp["test"]["ndcg@10"] - float(np.mean(single))) <= spread, (ddp["test"], single)
