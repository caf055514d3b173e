"""SIGKILL at the file-system changes of `genir index build`, `genir index add` and `genir train`
(tests/reliability/kill_points.py stops the command right before its N-th change under the working folder).

After every kill: the index dir is the old one (byte-identical) or the new one (complete: every file's sha256
matches its manifest, the same IDs as an uninterrupted run), never missing or mixed; the next writer cleans up what
the killed one left and succeeds. A killed training run leaves no damaged weights, and `train --resume` from its last
checkpoint ends with the same metrics and weights as an uninterrupted run (or, killed before its first checkpoint,
is refused with one line and exit 2). The default suite draws a seeded sample of points plus every rename and
exchange; ``-m slow`` kills at every point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genir.cli import main
from genir.index import load_index
from genir.tensor_files import load_tensors
from tests.conftest import make_inter, single_threaded
from tests.index.conftest import DIM, item_frame, snapshot, write_spec

ROOT = Path(__file__).parents[2]
_one_thread = single_threaded()
SAMPLE = "4:0"  # 4 random points (seed 0) besides every rename and exchange and the change after each


def kill_at_points(template: Path, work: Path, points: str, *argv: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "tests.reliability.kill_points", str(template), str(work), points,
                           "--", *argv], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["points"], report
    for p in report["points"]:
        assert p["ended"] == "signal 9", p  # every chosen point is reached
    return report


def _without_manifest(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if k != "manifest.json"}


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture
def template(tmp_path) -> Path:
    """Interactions, item side information, features and a spec, plus an index built from them: the state before
    the command under test."""
    t = tmp_path / "template"
    t.mkdir()
    make_inter(n_items=40).to_csv(t / "inter.csv", index=False)
    item_frame(f"i{i}" for i in range(40)).drop(columns="genres").to_csv(t / "items.csv", index=False)
    np.save(t / "feats.npy", np.random.default_rng(0).normal(size=(40, DIM)).astype(np.float32))
    write_spec(t / "spec.yaml")
    item_frame(["new1", "new2"]).drop(columns="genres").to_csv(t / "new.csv", index=False)
    np.save(t / "new.npy", np.random.default_rng(1).normal(size=(2, DIM)).astype(np.float32))
    assert main(build_args(t)) == 0
    return t


def build_args(d, *extra: str) -> list[str]:
    return ["index", "build", "--dataset", f"{d}/inter.csv", "--items", f"{d}/items.csv", "--features",
            f"{d}/feats.npy", "--scheme", f"{d}/spec.yaml", "--out", f"{d}/idx", "--quiet", *extra]


def _check_index_points(report: dict, template: Path, work: Path, redo: list[str]) -> None:
    old = snapshot(template / "idx")
    new = _without_manifest(snapshot(work / "full" / "idx"))
    assert new != _without_manifest(old)
    seen = set()
    for p in report["points"]:
        copy = work / f"p{p['point']}"
        idx = copy / "idx"
        assert idx.is_dir(), f"index dir missing after a kill before {p['before']}"
        now = snapshot(idx)
        if now == old:
            seen.add("old")
        else:
            load_index(idx)  # every listed file present with its sha256
            assert _without_manifest(now) == new, f"a mix after a kill before {p['before']}"
            seen.add("new")
        # the next writer cleans what the killed one left, then succeeds
        assert main([a.replace("{dir}", str(copy)) for a in redo]) == 0
        assert _leftovers(copy, "idx") == []
    assert seen == {"old", "new"}, seen  # the sample hits both sides of the swap


def test_killed_index_build(template, tmp_path):
    work = tmp_path / "work"
    report = kill_at_points(template, work, SAMPLE, *build_args("{dir}", "--overwrite", "codebook_size=3"))
    assert any(e.startswith("genir.exchange") for e in report["events"])
    _check_index_points(report, template, work, build_args("{dir}", "--overwrite", "codebook_size=3"))


ADD = ["index", "add", "{dir}/idx", "--items", "{dir}/new.csv", "--features", "{dir}/new.npy", "--quiet"]


def test_killed_index_add(template, tmp_path):
    work = tmp_path / "work"
    report = kill_at_points(template, work, SAMPLE, *ADD)
    # the redo is an overwrite build: an add after a completed add would be refused (the items are present)
    _check_index_points(report, template, work, build_args("{dir}", "--overwrite"))


TRAIN = ["train", "--model", "bpr", "--dataset", "{dir}/inter.csv", "--out", "{dir}/run", "epochs=4", "patience=10",
         "embedding_size=8", "progress=false", "cpu=true", "seed=3"]


def _train_points(template: Path, tmp_path: Path, points: str) -> None:
    work = tmp_path / "work"
    report = kill_at_points(template, work, points, *TRAIN)
    full = json.loads((work / "full" / "run" / "results.json").read_text())
    full_weights = load_tensors(work / "full" / "run" / "best_model.safetensors")
    outcomes = set()
    for p in report["points"]:
        run = work / f"p{p['point']}" / "run"
        if (run / "best_model.safetensors").exists():
            load_tensors(run / "best_model.safetensors")  # never half-written
        has_checkpoint = any((run / c / "trainer_state.json").is_file() for c in ("checkpoint", "checkpoint.old"))
        args = [a.replace("{dir}", str(work / f"p{p['point']}")) for a in TRAIN]
        code = main([*args, "--resume"])
        if not has_checkpoint:
            assert code == 2, f"resume without a checkpoint after a kill before {p['before']}"
            outcomes.add("refused")
            continue
        assert code == 0, f"resume failed after a kill before {p['before']}"
        outcomes.add("resumed")
        res = json.loads((run / "results.json").read_text())
        assert res["best_epoch"] == full["best_epoch"] and res["epochs_run"] == full["epochs_run"]
        for split in ("valid", "test"):
            for name, value in full[split].items():
                assert res[split][name] == pytest.approx(value, abs=1e-6), (p["before"], split, name)
        weights = load_tensors(run / "best_model.safetensors")
        assert weights.keys() == full_weights.keys()
        for name, tensor in full_weights.items():
            torch.testing.assert_close(weights[name], tensor, atol=1e-5, rtol=1e-5)
        assert not [f.name for f in run.iterdir() if f.name.endswith(".tmp") or f.name == "checkpoint.tmp"]
    assert outcomes == {"refused", "resumed"}, outcomes


def test_killed_train_resumes_to_the_same_result(template, tmp_path):
    _train_points(template, tmp_path, SAMPLE)


@pytest.mark.slow
def test_killed_train_at_every_point(template, tmp_path):
    _train_points(template, tmp_path, "all")


@pytest.mark.slow
def test_killed_index_build_at_every_point(template, tmp_path):
    work = tmp_path / "work"
    args = build_args("{dir}", "--overwrite", "codebook_size=3")
    _check_index_points(kill_at_points(template, work, "all", *args), template, work, args)
