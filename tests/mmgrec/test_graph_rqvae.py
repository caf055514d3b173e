"""Graph RQ-VAE: fitted through the index builder with the training graph, saved and reloaded, inductive codes for
new items, popularity collision token, refuses to fit without a graph."""

import json

import numpy as np
import pytest

from genir.errors import SemanticIdError


def test_index_built_with_popularity_tokens(graph_index, split):
    from genir.index import load_index

    idx = load_index(graph_index)
    manifest = json.loads((graph_index / "manifest.json").read_text())
    assert manifest["scheme"] == "graph_rqvae" and manifest["collision"] == "popularity"
    codes = np.asarray(idx.table.codes)
    assert codes.shape == (split.num_items, 3) and len({tuple(c) for c in codes}) == split.num_items
    # inside every group of a shared semantic tuple, the more popular item gets the smaller collision token
    pop = np.bincount(split.train["item"].to_numpy(), minlength=split.num_items)
    groups = {}
    for item, c in enumerate(codes):
        groups.setdefault(tuple(c[:2]), []).append((c[2], -pop[item], item))
    assert any(len(g) > 1 for g in groups.values())
    for g in groups.values():
        assert [t for t, _, _ in sorted(g)] == list(range(len(g)))
        assert sorted(g) == sorted(g, key=lambda x: (x[1], x[2]))


def test_save_load_and_inductive_new_items(graph_index, feature_file):
    from genir.index import load_index

    idx = load_index(graph_index)
    scheme = idx.scheme()
    x = np.load(feature_file)
    np.testing.assert_array_equal(scheme.encode(x), np.asarray(idx.table.codes)[:, :2])
    new = scheme.encode(x[:3] + 5.0)  # other items: no neighbours, encoded from their features
    assert new.shape == (3, 2) and (new >= 0).all() and (new < 4).all()
    vec = scheme.graph_vectors(x[:3] + 5.0)
    assert vec.shape == (3, 8) and not np.allclose(vec, scheme.item_vectors[:3])
    with pytest.raises(SemanticIdError, match="columns"):
        scheme.encode(x[:, :4])


def test_fit_needs_the_graph():
    from genir.methods.mmgrec import GraphRQVAE

    with pytest.raises(SemanticIdError, match="split="):
        GraphRQVAE(progress=False).fit(np.zeros((10, 4), dtype=np.float32))
