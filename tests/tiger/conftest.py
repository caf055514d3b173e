"""A tiny interactions file, its 2-level rq_kmeans index (random features) and tiny TIGER sizes, all in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_inter, single_threaded
from tests.index.conftest import write_spec

N_ITEMS = 24
TINY = {"d_model": 32, "num_heads": 2, "d_ff": 64, "num_encoder_layers": 1, "num_decoder_layers": 1,
        "max_history": 5, "beam_width": 8}


_one_thread = single_threaded()


@pytest.fixture
def inter_file(tmp_path) -> Path:
    path = tmp_path / "inter.csv"
    make_inter(n_users=20, n_items=N_ITEMS, per_user=8)[["user", "item", "timestamp"]].to_csv(path, index=False)
    return path


@pytest.fixture
def dataset(inter_file):
    from genir.data import load_dataset

    return load_dataset(inter_file)


@pytest.fixture
def split(dataset):
    from genir.data import leave_one_out

    return leave_one_out(dataset)


@pytest.fixture
def index_dir(tmp_path, dataset) -> Path:
    from genir.index import build_index

    features = np.random.default_rng(0).normal(size=(dataset.num_items, 8)).astype(np.float32)
    spec = write_spec(tmp_path / "spec.yaml", params="{num_levels: 2, codebook_size: 4, niter: 5, seed: 0}")
    return build_index(dataset, spec, tmp_path / "idx", features=features, progress=False)


@pytest.fixture
def tiger(split, index_dir):
    from genir.methods import build_method

    return build_method("tiger", split, {"index": str(index_dir), **TINY}, seed=0)
