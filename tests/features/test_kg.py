"""KG embeddings: films sharing neighbours are close, films sharing none are orthogonal, unlinked items are
zero rows, inverse relations are not double-counted, and ml-100k's coverage is what the docstring says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genir.data import Dataset
from genir.errors import FeatureError
from genir.features import kg_coverage, kg_embeddings
from genir.features.kg import inverse_relations, item_neighbours, kg_incidence


def _row(ds, ext):
    return ds.item_index(ext)


def test_shared_neighbours_are_close(tiny):
    e = kg_embeddings(tiny, dim=16, seed=0)
    assert e.shape == (tiny.num_items, 16) and e.dtype == np.float32
    s10, s20, s30, s40, s50, s60 = (_row(tiny, x) for x in ("10", "20", "30", "40", "50", "60"))
    sim = e @ e.T
    assert sim[s10, s20] > 0.99  # same four neighbours
    assert sim[s30, s40] > 0.99
    assert abs(sim[s10, s30]) < 1e-5 and abs(sim[s20, s40]) < 1e-5  # nothing in common
    norms = np.linalg.norm(e, axis=1)
    assert np.allclose(norms[[s10, s20, s30, s40]], 1.0, atol=1e-5)
    assert norms[s60] == 0.0  # not linked
    assert norms[s50] == 0.0  # linked, but its only neighbour is its own (df 1 < min_df)
    assert np.linalg.norm(kg_embeddings(tiny, dim=16, min_df=1)[s50]) == pytest.approx(1.0, abs=1e-5)


def test_inverse_relations_counted_once(tiny):
    inv = inverse_relations(tiny.kg)
    assert inv["film.film_genre.films_in_this_genre"] == "film.film.genre"
    assert "film.actor.film" not in inv  # no reverse triples for it
    nb = item_neighbours(tiny)
    s10 = _row(tiny, "10")
    got = set(map(tuple, nb.loc[nb["item"] == s10, ["relation", "entity"]].to_numpy()))
    assert got == {("film.film.directed_by", "lucas"), ("film.film.genre", "scifi"), ("film.film.actor", "ford"),
                   ("film.actor.film^-1", "hamill")}
    x, features = kg_incidence(tiny)
    assert x.shape == (tiny.num_items, len(features)) and x.max() == 1.0
    assert ("film.film.actor", "mcdormand") not in features


def test_shared_relation_tail_pairs_beat_unrelated_on_larger_graph():
    """A graph big enough for TruncatedSVD (dim < both sides): two films with 6 shared pairs vs none."""
    rng = np.random.default_rng(0)
    n = 60
    triples = []
    for i in range(n):
        for r in ("actor", "genre", "director"):
            for t in rng.choice(25, size=3, replace=False):
                triples.append((f"e{i}", r, f"{r}{t}"))
    triples += [("e0", r, f"shared{k}") for r in ("actor", "writer") for k in range(3)]
    triples += [("e1", r, f"shared{k}") for r in ("actor", "writer") for k in range(3)]
    inter = pd.DataFrame({"user": [f"u{i % 7}" for i in range(n)], "item": [str(i) for i in range(n)],
                          "timestamp": np.arange(n)})
    ds = Dataset.from_frames("synthetic", inter, kg=pd.DataFrame(triples, columns=["head", "relation", "tail"]),
                             link=pd.DataFrame({"item": [str(i) for i in range(n)], "entity": [f"e{i}" for i in
                                                                                              range(n)]}))
    e = kg_embeddings(ds, dim=8, seed=0)
    x, _ = kg_incidence(ds)
    disjoint = [j for j in range(2, n) if x[0].multiply(x[j]).nnz == 0]
    assert disjoint
    sim = e @ e[0]
    assert sim[1] > sim[disjoint].max()
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e, kg_embeddings(ds, dim=8, seed=0, cache=False))  # deterministic for a seed


def test_no_kg_raises(make_tiny):
    ds = make_tiny(kg=False)
    with pytest.raises(FeatureError, match="tiny: dataset has no knowledge graph"):
        kg_embeddings(ds)


def test_cached_and_keyed_on_kg_content(tiny, make_tiny, _isolated_cache):
    a = kg_embeddings(tiny, dim=4)
    assert len(list((_isolated_cache / "kg").glob("*.npy"))) == 1
    assert np.array_equal(a, kg_embeddings(tiny, dim=4))
    assert len(list((_isolated_cache / "kg").glob("*.npy"))) == 1
    changed = make_tiny()
    changed.kg = changed.kg.iloc[:-2]  # same interactions (same fingerprint), different KG
    kg_embeddings(changed, dim=4)
    assert len(list((_isolated_cache / "kg").glob("*.npy"))) == 2


def test_ml100k_coverage():
    from genir.data import load_dataset

    d = load_dataset("ml-100k")
    cov = kg_coverage(d)
    assert cov == {"items": 1682, "linked": 1598, "with_triples": 1598, "covered": 1596,
                   "covered_fraction": pytest.approx(1596 / 1682), "features": 8775}
    e = kg_embeddings(d, dim=64, seed=0)
    norms = np.linalg.norm(e, axis=1)
    assert e.shape == (1682, 64) and int((norms > 0.5).sum()) == 1596 and int((norms == 0).sum()) == 86
    x, _ = kg_incidence(d)
    shared = (x @ x.T).toarray()  # (1682, 1682) number of kept neighbours two items share
    np.fill_diagonal(shared, -1)
    sim = e @ e.T
    covered = norms > 0
    both = np.outer(covered, covered)
    many, none = sim[(shared >= 5) & both], sim[(shared == 0) & both]
    assert len(many) > 1000 and len(none) > 1000
    assert many.mean() > none.mean() + 0.3
