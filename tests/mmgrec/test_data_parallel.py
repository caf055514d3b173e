"""Data-parallel readiness of the generative models: DistributedDataParallel needs a gradient for every parameter
in every step, so no switch may leave an unused parameter; and `torchrun -m genir train --model mmgrec` runs two
gloo processes end to end (training, sharded constrained-beam evaluation, results)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.mmgrec.conftest import TINY_MODEL


@pytest.mark.parametrize("position,encoder_input", [("relation", "features"), ("absolute", "features"),
                                                    ("relation", "items"), ("none", "codes"),
                                                    ("absolute", "codes")])
def test_every_parameter_gets_a_gradient(split, graph_index, feature_file, position, encoder_input):
    from genir.methods import build_method

    model = build_method("mmgrec", split, {"index": str(graph_index), "graph_features": f"img={feature_file}",
                                           **TINY_MODEL, "position": position, "encoder_input": encoder_input},
                         seed=0)
    dataset = model.train_dataset(split)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    model.train()
    model.loss(batch).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters without a gradient (DDP would stop): {unused}"


def test_torchrun_two_processes(tmp_path, inter_file, graph_index, feature_file):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    out = tmp_path / "ddp"
    settings = [f"{k}={v}" for k, v in TINY_MODEL.items()]
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", "29547", "-m", "genir", "train", "--model", "mmgrec",
           "--dataset", str(inter_file), "--out", str(out), f"index={graph_index}",
           f"graph_features=img={feature_file}", *settings, "epochs=2", "batch_size=4", "cpu=true",
           "progress=false"]
    # a fresh feature cache: the graph encoder trains under DDP too, before the generator
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENIR_CACHE": str(tmp_path / "cache-ddp")}
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    # a failing rank's own message (genir's "error: ..." line) is usually far from the end of torchrun's report
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()][:20]
    assert proc.returncode == 0, "\n".join(errors) + "\n...\n" + proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2 and results["device"].startswith("cpu")
    assert 0.0 <= results["test"]["ndcg@10"] <= 1.0
