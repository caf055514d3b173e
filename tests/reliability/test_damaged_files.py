"""Damaged files are refused with one line naming the file (exit 2 on the CLI), never loaded as different weights:
a flipped byte inside a safetensors file's tensor data (which safetensors itself parses fine), a flipped header
byte, a truncation; for a run's weights and inputs, a training checkpoint and the self-checking format itself
(genir.tensor_files). The index's own files are covered in tests/index (manifest sha256)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from genir.cli import main
from genir.errors import CheckpointError
from genir.tensor_files import load_tensors, save_tensors, tensors_digest
from tests.conftest import make_inter


def _data_offset(path: Path) -> int:
    """Where a safetensors file's tensor data starts (8-byte header length, then the JSON header)."""
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


def flip_data_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    start = _data_offset(path)
    raw[start + (len(raw) - start) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def flip_header_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0x01
    path.write_bytes(bytes(raw))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


DAMAGE = {"data byte": flip_data_byte, "header byte": flip_header_byte, "truncated": truncate}


# -- the format ----------------------------------------------------------------------------------------------------
def test_round_trip_torch_and_numpy_and_tied_tensors(tmp_path):
    w = torch.randn(4, 3)
    tensors = {"a": w, "tied": w, "half": torch.randn(5, dtype=torch.bfloat16), "int": torch.arange(3)}
    save_tensors(tmp_path / "t.safetensors", tensors)
    back = load_tensors(tmp_path / "t.safetensors")
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert torch.equal(back[k], v)
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    save_tensors(tmp_path / "n.safetensors", arrays)
    np.testing.assert_array_equal(load_tensors(tmp_path / "n.safetensors", framework="np")["x"], arrays["x"])
    assert tensors_digest({"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)}) == tensors_digest(arrays)


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_file_is_refused(tmp_path, damage):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"weight": torch.randn(64, 16), "bias": torch.randn(16)})
    DAMAGE[damage](path)
    with pytest.raises(CheckpointError, match=rf"^{path}: (sha256 of the tensors does not match|unreadable)"):
        load_tensors(path)


def test_file_without_digest_loads_unchecked(tmp_path):
    path = tmp_path / "old.safetensors"  # written before genir stored digests
    save_file({"w": torch.ones(3)}, str(path))
    assert torch.equal(load_tensors(path)["w"], torch.ones(3))


# -- through the CLI -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("damaged")
    make_inter(n_users=40, n_items=30, per_user=15).drop(columns="rating").to_csv(d / "inter.csv", index=False)
    run = d / "run"
    assert main(["train", "--model", "lightgcn", "--dataset", str(d / "inter.csv"), "--out", str(run), "epochs=2",
                 "embedding_size=8", "progress=false", "cpu=true"]) == 0
    return d, run


def _copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


# LightGCN derives no inputs from data, so its inputs file has an empty data section: no data byte to flip there
@pytest.mark.parametrize("name,damage", [("best_model.safetensors", d) for d in DAMAGE]
                         + [("inputs.safetensors", "header byte"), ("inputs.safetensors", "truncated")])
def test_eval_refuses_a_damaged_run_file(trained, tmp_path, capsys, name, damage):
    run = _copy_run(trained[1], tmp_path)
    capsys.readouterr()
    assert main(["eval", "--run", str(run)]) == 0
    capsys.readouterr()
    DAMAGE[damage](run / name)
    assert main(["eval", "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"genir: error: {run / name}: ")


def test_resume_refuses_a_damaged_checkpoint(trained, tmp_path, capsys):
    data, run = trained
    run = _copy_run(run, tmp_path)
    state = json.loads((run / "checkpoint" / "trainer_state.json").read_text())
    assert state["files"]  # every file of the checkpoint is listed with its sha256
    target = run / "checkpoint" / min(n for n in state["files"] if n.endswith((".safetensors", ".bin")))
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["train", "--model", "lightgcn", "--dataset", str(data / "inter.csv"), "--out", str(run), "epochs=3",
                 "embedding_size=8", "progress=false", "cpu=true", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"genir: error: {target}: sha256 does not match the checkpoint's record (the file is damaged)"
