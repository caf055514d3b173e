"""Real semantic IDs: RQ-KMeans and RQ-VAE on MovieLens-100K MiniLM text features (cached on disk after the first
build, ~15-30 s), built from the specs in tokenizers/; the stats must be sane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genir.ids import SemanticIdTable, build_scheme, load_spec

TOKENIZERS = Path(__file__).resolve().parents[2] / "tokenizers"


@pytest.fixture(scope="module")
def text_features(ml100k):
    from genir.features import text_embeddings

    return text_embeddings(ml100k, progress=False)  # (1682, 384)


def build(spec_name: str, x: np.ndarray, popularity=None, **overrides) -> SemanticIdTable:
    spec = load_spec(TOKENIZERS / spec_name, overrides)
    return SemanticIdTable.build(build_scheme(spec).fit(x), x, spec.collision, popularity)


def check_sane(table: SemanticIdTable, x: np.ndarray) -> dict:
    s = table.stats()
    assert s["num_items"] == len(x) == 1682 and s["id_length"] == 4 and s["semantic_levels"] == 3
    assert s["levels"][0]["utilisation"] > 0.5 and s["levels"][0]["perplexity"] > 16
    assert 0.0 < s["collision_rate"] < 0.25  # 18 item pairs have identical texts: at least 18 / 1682 collide
    assert s["collision_rate"] >= 18 / 1682 - 1e-9
    assert len(np.unique(table.codes, axis=0)) == len(x)
    return s


def test_rq_kmeans_ids(text_features, ml100k):
    popularity = np.bincount(ml100k.inter["item"].to_numpy(), minlength=ml100k.num_items)
    table = build("rq_kmeans.yaml", text_features, popularity, collision="popularity")
    check_sane(table, text_features)
    last = table.codes[:, -1]
    groups = table.codes[:, :-1]
    for tup in np.unique(groups[last == 1], axis=0)[:20]:  # rank 0 is the most popular item of its group
        members = np.flatnonzero((groups == tup).all(axis=1))
        assert popularity[members[last[members] == 0]][0] == popularity[members].max()


def test_rqvae_ids(text_features):
    table = build("rqvae.yaml", text_features, epochs=50, progress=False, device="cpu")  # spec: 100
    s = check_sane(table, text_features)
    assert min(lv["utilisation"] for lv in s["levels"][:3]) > 0.9
