"""A tiny dataset with titles/years/genres, a feature matrix saved as .npy and a small rq_kmeans spec, all in
tmp_path, so an index builds in well under a second with no text model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_inter, single_threaded

N_ITEMS = 40
DIM = 8


_one_thread = single_threaded()


def item_frame(ids) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame({
        "item": ids,
        "title": [f"Movie {x}" for x in ids],
        "year": [1990 + k % 10 for k in range(len(ids))],
        "genres": [["Drama", "Comedy"][: 1 + k % 2] for k in range(len(ids))],
    })


@pytest.fixture
def dataset():
    from genir.data import Dataset

    return Dataset.from_frames("tiny", make_inter(n_items=N_ITEMS), item_frame(f"i{i}" for i in range(N_ITEMS)))


@pytest.fixture
def feature_file(tmp_path, dataset) -> Path:
    """(N, DIM) features in the dataset's internal item order."""
    path = tmp_path / "features.npy"
    np.save(path, np.random.default_rng(0).normal(size=(dataset.num_items, DIM)).astype(np.float32))
    return path


def write_spec(path: Path, scheme: str = "rq_kmeans", collision: str = "index", params: str = "") -> Path:
    params = params or ("{num_levels: 2, codebook_size: 4, niter: 5, seed: 0}" if scheme == "rq_kmeans" else "{}")
    path.write_text(f"scheme: {scheme}\nfeatures: text\ncollision: {collision}\nparams: {params}\n")
    return path


@pytest.fixture
def spec_file(tmp_path) -> Path:
    return write_spec(tmp_path / "spec.yaml")


@pytest.fixture
def built(tmp_path, dataset, spec_file, feature_file) -> Path:
    from genir.index import build_index

    return build_index(dataset, spec_file, tmp_path / "idx", features=feature_file, progress=False)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
