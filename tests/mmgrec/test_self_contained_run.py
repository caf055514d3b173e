"""A run is self-contained: loading takes the data-derived inputs (MMGRec's graph vectors) from the run instead
of recomputing them, loads every weight strictly, and finds its index by a path relative to the run dir."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from genir.errors import CheckpointError
from genir.runs import RunSpec, load_run, train_run
from genir.training import TrainerConfig
from tests.mmgrec.conftest import TINY_MODEL


def test_mmgrec_run_reloads_without_recomputing_and_moves_with_its_index(
        tmp_path, inter_file, graph_index, feature_file, monkeypatch):
    method = {"index": str(graph_index), "graph_features": f"img={feature_file}", **TINY_MODEL}
    trainer = TrainerConfig(epochs=1, batch_size=32, progress=False, cpu=True, output_dir=str(graph_index / "model"))
    model, _, results = train_run(RunSpec(model="mmgrec", dataset=str(inter_file)), method, trainer)
    run = graph_index / "model"
    info = json.loads((run / "run.json").read_text())
    assert info["method"]["index"] == ".." and set(info["inputs"]) == {"conditioning"}

    from genir.methods.mmgrec import graph

    def no_training(*args, **kwargs):
        raise AssertionError("loading a run must not train the graph encoder again")

    monkeypatch.setattr(graph, "graph_representations", no_training)
    # move the index (with its model) elsewhere: the run still finds its index and its inputs
    moved = tmp_path / "elsewhere" / "gidx"
    shutil.copytree(graph_index, moved)
    shutil.rmtree(graph_index)
    loaded, split, _ = load_run(moved / "model")
    assert torch.equal(loaded.item_vectors, model.item_vectors.cpu())
    assert torch.equal(loaded.user_vectors, model.user_vectors.cpu())
    from genir.runs import evaluate_model

    assert evaluate_model(loaded, split, "test", device="cpu") == pytest.approx(results["test"])

    # strict: a weight file missing one tensor is refused with the file named
    weights = moved / "model" / "best_model.safetensors"
    state = load_file(str(weights))
    state.pop(next(iter(state)))
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="best_model.safetensors: weights do not match model 'mmgrec'"):
        load_run(moved / "model")
