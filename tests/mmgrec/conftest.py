"""A tiny interactions file, user-supplied item features, a tiny Graph RQ-VAE spec and its index, in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.tiger.conftest import _one_thread, dataset, inter_file, split  # noqa: F401  (shared fixtures)

TINY_GRAPH = {"num_levels": 2, "codebook_size": 4, "latent_dim": 4, "hidden_dims": [8], "epochs": 20,
              "batch_size": 64, "kmeans_iters": 5, "graph_hidden": 16, "graph_dim": 8, "graph_epochs": 3,
              "progress": False, "device": "cpu", "seed": 0}
TINY_MODEL = {"d_model": 16, "num_heads": 2, "d_ff": 32, "num_encoder_layers": 1, "num_decoder_layers": 1,
              "max_history": 5, "beam_width": 8, "graph_hidden": 16, "graph_dim": 8, "graph_epochs": 3,
              "graph_seed": 0}


@pytest.fixture
def feature_file(tmp_path, dataset) -> Path:  # noqa: F811  (the imported fixture)
    path = tmp_path / "img.npy"
    np.save(path, np.random.default_rng(0).normal(size=(dataset.num_items, 6)).astype(np.float32))
    return path


@pytest.fixture
def graph_spec(tmp_path) -> Path:
    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "tokenizers" / "graph_rqvae.yaml").read_text())
    base["params"].update(TINY_GRAPH)
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.fixture
def graph_index(tmp_path, dataset, graph_spec, feature_file, monkeypatch) -> Path:  # noqa: F811
    from genir.index import build_index

    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    return build_index(dataset, graph_spec, tmp_path / "gidx", features=str(feature_file), progress=False)


@pytest.fixture
def mmgrec(split, graph_index, feature_file):  # noqa: F811
    from genir.methods import build_method

    return build_method("mmgrec", split, {"index": str(graph_index), "graph_features": f"img={feature_file}",
                                          **TINY_MODEL}, seed=0)
