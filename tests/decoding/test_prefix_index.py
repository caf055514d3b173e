"""PrefixIndex: array trie equals a brute-force trie, round-trips through disk, rejects bad catalogues."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.decoding import IndexFormatError, PrefixIndex
from genir.errors import GenirError
from tests.decoding.conftest import random_catalogue, trie_children

catalogues = st.tuples(
    st.lists(st.integers(1, 6), min_size=1, max_size=4),  # level sizes
    st.integers(1, 60),  # number of IDs (capped by the space)
    st.integers(0, 2**31 - 1),  # seed
)


def all_prefixes(level_sizes, depth):
    return list(itertools.product(*[range(k) for k in level_sizes[:depth]]))


@settings(max_examples=40, deadline=None)
@given(catalogues, st.data())
def test_matches_brute_force_trie(spec, data):
    sizes, n, seed = spec
    codes = random_catalogue(np.random.default_rng(seed), sizes, n)
    dense = data.draw(st.one_of(st.none(), st.integers(0, len(sizes))))
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=dense)
    assert index.num_items == len(codes)
    for depth in range(len(sizes)):
        prefixes = all_prefixes(sizes, depth)
        states = index.walk(torch.tensor(prefixes, dtype=torch.long).reshape(len(prefixes), depth))
        mask = index.allowed(states, depth)
        assert mask.shape == (len(prefixes), sizes[depth])
        for p, row, s in zip(prefixes, mask, states):
            expected = trie_children(codes, p)
            assert set(row.nonzero().flatten().tolist()) == expected
            assert (s >= 0) == bool(expected)
        # the maximum branching factor is the widest node at this depth
        assert index.max_branch[depth] == max(len(trie_children(codes, p)) for p in prefixes)
    # every ID leads to its own row; every other full tuple to -1
    space = torch.tensor(all_prefixes(sizes, len(sizes)), dtype=torch.long)
    found = index.lookup(space)
    rows = {tuple(r): i for i, r in enumerate(codes.tolist())}
    assert found.tolist() == [rows.get(tuple(t), -1) for t in space.tolist()]


def test_dense_and_csr_layouts_agree():
    rng = np.random.default_rng(3)
    sizes = [7, 5, 6, 4]
    codes = random_catalogue(rng, sizes, 300)
    indexes = [PrefixIndex.from_codes(codes, sizes, dense_levels=d) for d in range(len(sizes) + 1)]
    prefixes = torch.from_numpy(codes)
    for depth in range(len(sizes)):
        masks = [ix.allowed(ix.walk(prefixes[:, :depth]), depth) for ix in indexes]
        for m in masks[1:]:
            assert torch.equal(m, masks[0])
    for ix in indexes:
        assert ix.lookup(prefixes).tolist() == list(range(len(codes)))


@settings(max_examples=30, deadline=None)
@given(catalogues, st.data())
def test_ancestors_leaf_counts_and_child_states(spec, data):
    """The tree helpers used to exclude items: ancestors equal walking each ID's prefixes, leaf counts equal the
    brute-force count of IDs under each prefix, child_states equal advancing by each child code."""
    sizes, n, seed = spec
    codes = random_catalogue(np.random.default_rng(seed), sizes, n)
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=data.draw(st.one_of(st.none(),
                                                                                  st.integers(0, len(sizes)))))
    prefixes = torch.from_numpy(codes)
    walked = torch.stack([index.walk(prefixes[:, :d]) for d in range(1, len(sizes) + 1)], dim=1)
    assert torch.equal(index.ancestors(torch.arange(len(codes))), walked)
    for depth in range(len(sizes) + 1):
        for p in all_prefixes(sizes, depth):
            state = int(index.walk(torch.tensor([p], dtype=torch.long).reshape(1, depth))[0])
            under = sum(tuple(r[:depth]) == p for r in codes.tolist())
            if state >= 0:
                assert int(index.leaf_counts(depth)[state]) == under
        if depth < len(sizes):
            states = walked[:, depth - 1] if depth else index.root_states(len(codes))
            child_codes, valid = index.children(states, depth)
            expected = index.advance(states.repeat_interleave(child_codes.shape[1]), child_codes.flatten(), depth)
            got = index.child_states(states, depth)
            assert torch.equal(got, expected.view_as(got).masked_fill(~valid, -1))


def test_dead_states_and_out_of_range_codes():
    index = PrefixIndex.from_codes(np.array([[0, 1], [2, 0]]), [3, 2], dense_levels=1)
    dead = torch.tensor([-1, 0])
    assert index.allowed(dead, 1).tolist() == [[False, False], [False, True]]
    assert index.advance(torch.tensor([0, 0, 0, 0]), torch.tensor([1, -1, 3, 2]), 0).tolist() == [
        -1,
        -1,
        -1,
        1,
    ]
    assert index.advance(torch.tensor([-1, 1, 0]), torch.tensor([0, 0, 0]), 1).tolist() == [-1, 1, -1]
    assert index.item_of(torch.tensor([1, 0, -1])).tolist() == [1, 0, -1]


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [8, 8, 8, 8]
    codes = random_catalogue(rng, sizes, 500)
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=2)
    target = tmp_path / "prefix"
    index.save(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["meta.json", "leaf_item.npy"]
        + [f"dense_{a}_{l}.npy" for a in ("valid", "next") for l in (0, 1)]
        + [f"csr_{a}_{l}.npy" for a in ("indptr", "codes") for l in (2, 3)]
    )
    loaded = PrefixIndex.load(target)
    assert loaded.level_sizes == index.level_sizes and loaded.num_states == index.num_states
    assert loaded.max_branch == index.max_branch and loaded.dense_levels == 2
    assert loaded.nbytes == index.nbytes
    for a, b in zip(index._named_arrays(), loaded._named_arrays()):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert loaded.lookup(torch.from_numpy(codes)).tolist() == list(range(len(codes)))
    # saving again over an existing directory replaces it and leaves no temporary directory behind
    other = PrefixIndex.from_codes(codes[:10], sizes)
    other.save(target)
    assert PrefixIndex.load(target).num_items == 10
    assert [p.name for p in tmp_path.iterdir()] == ["prefix"]


def test_load_rejects_damaged_index(tmp_path):
    codes = random_catalogue(np.random.default_rng(1), [4, 4, 4], 30)
    index = PrefixIndex.from_codes(codes, [4, 4, 4], dense_levels=1)
    index.save(tmp_path / "ok")
    with pytest.raises(IndexFormatError, match="meta.json: missing"):
        PrefixIndex.load(tmp_path / "nothing")

    index.save(tmp_path / "a")
    (tmp_path / "a" / "csr_codes_2.npy").unlink()
    with pytest.raises(IndexFormatError, match=r"csr_codes_2\.npy: missing"):
        PrefixIndex.load(tmp_path / "a")

    index.save(tmp_path / "b")
    np.save(tmp_path / "b" / "leaf_item.npy", np.zeros(30, dtype=np.int32))
    with pytest.raises(IndexFormatError, match=r"leaf_item\.npy: not a permutation"):
        PrefixIndex.load(tmp_path / "b")

    index.save(tmp_path / "c")
    np.save(tmp_path / "c" / "csr_indptr_1.npy", np.zeros(3, dtype=np.int32))
    with pytest.raises(IndexFormatError, match=r"csr_indptr_1\.npy: shape"):
        PrefixIndex.load(tmp_path / "c")

    index.save(tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "d" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexFormatError, match="version 99"):
        PrefixIndex.load(tmp_path / "d")


@pytest.mark.parametrize(
    ("codes", "sizes", "message"),
    [
        (np.array([[0, 1], [1, 0], [0, 1]]), [2, 2], r"rows 0 and 2 are the same ID \[0, 1\]"),
        (np.array([[0, 1], [1, 2]]), [2, 2], r"codes\[1, 1\] = 2 is outside \[0, 2\) of level 1"),
        (np.array([[0, -1]]), [2, 2], r"codes\[0, 1\] = -1 is outside"),
        (np.array([0, 1, 1]), [2, 2], "2-D array"),
        (np.array([[0, 1, 1]]), [2, 2], "3 levels .* level_sizes lists 2"),
        (np.zeros((0, 2), dtype=np.int64), [2, 2], "empty"),
        (np.array([[0.0, 1.0]]), [2, 2], "integer array, got dtype float64"),
        (np.array([[0, 1]]), [2, 0], "positive ints"),
    ],
)
def test_invalid_catalogues_raise(codes, sizes, message):
    with pytest.raises(IndexFormatError, match=message) as info:
        PrefixIndex.from_codes(codes, sizes)
    assert isinstance(info.value, GenirError)


def test_build_is_fast_and_small():
    """A scaled-down version of the 1M-ID target (< 10 s, < 64 MB): 200k random IDs of 4 x 256."""
    rng = np.random.default_rng(0)
    keys = rng.permutation(np.unique(rng.integers(0, 2**32, size=205_000, dtype=np.int64)))[:200_000]
    codes = np.stack([(keys >> (8 * (3 - l))) & 255 for l in range(4)], axis=1)
    start = time.perf_counter()
    index = PrefixIndex.from_codes(codes, [256] * 4)
    assert time.perf_counter() - start < 3.0
    assert index.nbytes < 64 * 2**20 / 4
    assert index.dense_levels == 2 and index.max_branch[0] == 256 and index.max_branch[1] > 240
    sample = torch.from_numpy(codes[::997])
    assert torch.equal(index.lookup(sample), torch.arange(0, 200_000, 997))
