"""Hierarchical k-means docids (DSI) and atomic IDs: tree shape, the padding convention, leaf sizes, unique IDs
after the index-in-leaf level, determinism and save/load."""

from __future__ import annotations

import numpy as np
import pytest

from genir.errors import FeatureError
from genir.ids import AtomicIds, HierarchicalKMeans, IdScheme, SemanticIdTable


def test_paths_are_padded_and_leaves_hold_at_most_c_items(blobs):
    scheme = HierarchicalKMeans(k=4, c=10).fit(blobs)
    codes = scheme.encode(blobs)
    depth = scheme.depth
    assert codes.shape == (len(blobs), depth) and depth >= 2
    assert scheme.level_sizes == [5] * depth and scheme.pad_code == 4
    assert (codes[:, 0] < 4).all()  # the root always splits here
    is_pad = codes == 4
    assert not (is_pad[:, :-1] & ~is_pad[:, 1:]).any()  # padding only at the end of a path
    assert is_pad[:, -1].any()  # some leaves are shallower than the deepest one
    _, leaf_sizes = np.unique(codes, axis=0, return_counts=True)
    assert leaf_sizes.max() <= 10
    table = SemanticIdTable.build(scheme, blobs, "index")  # the DSI docid: path + position in the leaf
    assert table.id_length == depth + 1 and table.level_sizes[-1] == leaf_sizes.max()
    assert len(np.unique(table.codes, axis=0)) == len(blobs)


def test_small_catalogue_is_one_leaf_and_max_depth_caps_the_tree(blobs):
    one = HierarchicalKMeans(k=4, c=1000).fit(blobs)
    assert one.depth == 1 and (one.encode(blobs) == one.pad_code).all()
    capped = HierarchicalKMeans(k=2, c=1, max_depth=3).fit(blobs)
    assert capped.depth == 3 and capped.encode(blobs).max() <= 2


def test_identical_points_stop_the_recursion():
    x = np.ones((30, 4), dtype=np.float32)
    scheme = HierarchicalKMeans(k=3, c=5).fit(x)
    assert (scheme.encode(x) == scheme.pad_code).all()


def test_deterministic_and_round_trip(blobs, tmp_path):
    a = HierarchicalKMeans(k=4, c=10, seed=3).fit(blobs)
    b = HierarchicalKMeans(k=4, c=10, seed=3).fit(blobs)
    np.testing.assert_array_equal(a.encode(blobs), b.encode(blobs))
    a.save(tmp_path)
    loaded = IdScheme.load(tmp_path)
    assert isinstance(loaded, HierarchicalKMeans) and loaded.depth == a.depth
    np.testing.assert_array_equal(loaded.encode(blobs), a.encode(blobs))
    new = blobs[:7] + 0.01  # unseen items descend to the nearest centroids
    np.testing.assert_array_equal(loaded.encode(new), a.encode(new))


def test_atomic_ids(blobs, tmp_path):
    scheme = AtomicIds().fit(blobs)
    codes = scheme.encode(blobs)
    assert codes.tolist() == [[i] for i in range(len(blobs))] and scheme.level_sizes == [len(blobs)]
    table = SemanticIdTable.build(scheme, blobs, "none")
    assert table.id_length == 1 and table.stats()["levels"][0]["utilisation"] == 1.0
    scheme.save(tmp_path)
    np.testing.assert_array_equal(IdScheme.load(tmp_path).encode(blobs), codes)
    with pytest.raises(FeatureError, match="atomic IDs cover the 240 fitted items; got 3 rows"):
        scheme.encode(blobs[:3])
