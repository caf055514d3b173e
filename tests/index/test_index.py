"""genir.index: build -> verify/load round trip, tamper detection, atomic writes, adding items without refit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genir import __version__
from genir.atomic import file_sha256 as _sha256
from genir.errors import DatasetError, IndexFormatError
from genir.index import add_items, build_index, index_info, load_index
from tests.index.conftest import DIM, item_frame, snapshot, write_spec


def test_round_trip_codes_items_prefix(built, dataset, feature_file):
    index = load_index(built)
    ids = np.load(built / "ids.npy")
    assert ids.dtype == np.int32 and ids.shape == (dataset.num_items, 3)
    np.testing.assert_array_equal(index.table.codes, ids)
    rows = index.prefix.lookup(torch.from_numpy(ids.astype(np.int64)))
    np.testing.assert_array_equal(rows.numpy(), np.arange(dataset.num_items))
    assert list(index.items["item"]) == [str(x) for x in dataset.item_ids]
    assert list(index.items["title"]) == list(dataset.items["title"])
    assert index.items["genres"].iloc[1] == list(dataset.items["genres"].iloc[1])
    m = index.manifest
    assert (m["format_version"], m["genir_version"], m["n_items"], m["id_length"]) == (1, __version__, 40, 3)
    assert m["dataset"] == {"name": "tiny", "fingerprint": dataset.fingerprint(), "source": ""}
    assert m["scheme"] == "rq_kmeans" and m["spec"]["params"]["codebook_size"] == 4
    assert m["level_sizes"] == index.table.level_sizes
    on_disk = sorted(p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file())
    assert sorted(m["files"]) == [f for f in on_disk if f != "manifest.json"]
    assert {"ids.npy", "items.jsonl", "table.json", "scheme/scheme.json", "prefix/meta.json"} <= set(m["files"])
    assert all(_sha256(built / f) == h for f, h in m["files"].items())
    # the saved scheme re-encodes the features to the same semantic levels, without refitting
    x = np.load(feature_file)
    np.testing.assert_array_equal(index.scheme().encode(x), ids[:, :2])
    assert not list(built.parent.glob(".idx.*"))  # no temporary dir left


def test_info_reports_stats(built):
    info = index_info(built)
    stats = load_index(built).table.stats()
    assert info["stats"] == stats
    assert info["n_items"] == 40 and info["id_length"] == 3 and info["scheme"] == "rq_kmeans"
    assert 0 <= info["stats"]["collision_rate"] < 1 and len(info["stats"]["levels"]) == 3
    assert {"ids.npy", "items.jsonl", "manifest.json", "prefix", "scheme", "table.json"} == set(info["disk_bytes"])
    assert info["total_bytes"] == sum(p.stat().st_size for p in built.rglob("*") if p.is_file())


def test_flipped_byte_names_the_file(built):
    path = built / "ids.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=r"ids\.npy: sha256 does not match"):
        load_index(built)


def test_missing_file_is_named(built):
    (built / "prefix" / "leaf_item.npy").unlink()
    with pytest.raises(IndexFormatError, match=r"leaf_item\.npy: missing"):
        load_index(built)


def test_missing_manifest(built):
    (built / "manifest.json").unlink()
    with pytest.raises(IndexFormatError, match=r"manifest\.json: missing"):
        load_index(built)


def test_unsupported_format_version(built):
    path = built / "manifest.json"
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "format_version": 2}))
    with pytest.raises(IndexFormatError, match=rf"index format 2 not supported by genir {__version__} \(reads 1\)"):
        load_index(built)


def test_ids_shape_must_match_manifest(built):
    np.save(built / "ids.npy", np.zeros((3, 3), dtype=np.int32))
    path = built / "manifest.json"
    m = json.loads(path.read_text())
    m["files"]["ids.npy"] = _sha256(built / "ids.npy")
    path.write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match=r"ids\.npy: int32 array of shape \(3, 3\)"):
        load_index(built)


def test_killed_build_leaves_nothing(tmp_path, dataset, spec_file, feature_file, monkeypatch):
    import genir.index

    def boom(*a, **k):
        raise RuntimeError("killed")

    monkeypatch.setattr(genir.index, "_write_tables", boom)
    with pytest.raises(RuntimeError, match="killed"):
        build_index(dataset, spec_file, tmp_path / "idx", features=feature_file, progress=False)
    assert not (tmp_path / "idx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".idx")]


def test_killed_overwrite_keeps_the_old_index(built, dataset, spec_file, feature_file, monkeypatch):
    import genir.index

    before = snapshot(built)
    monkeypatch.setattr(genir.index, "_place", lambda tmp, out: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build_index(dataset, spec_file, built, features=feature_file, progress=False, overwrite=True)
    assert snapshot(built) == before
    assert [p.name for p in built.parent.iterdir() if p.name.startswith(".idx")] == []


def test_overwrite_rules(tmp_path, built, dataset, spec_file, feature_file):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("keep me")
    with pytest.raises(IndexFormatError, match="not a genir index dir; refusing"):
        build_index(dataset, spec_file, other, features=feature_file, progress=False, overwrite=True)
    assert (other / "a.txt").read_text() == "keep me"
    with pytest.raises(IndexFormatError, match="already holds an index"):
        build_index(dataset, spec_file, built, features=feature_file, progress=False)
    spec2 = write_spec(tmp_path / "spec2.yaml", params="{num_levels: 3, codebook_size: 4, niter: 5}")
    build_index(dataset, spec2, built, features=feature_file, progress=False, overwrite=True)
    assert load_index(built).table.id_length == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".idx")]


def test_overrides_and_popularity_collisions(tmp_path, dataset, spec_file, feature_file):
    out = build_index(dataset, spec_file, tmp_path / "pop", {"collision": "popularity", "codebook_size": "2"},
                      features=feature_file, progress=False)
    index = load_index(out)
    assert index.manifest["collision"] == "popularity" and index.table.level_sizes[:2] == [2, 2]


def _new_items(tmp_path, ids, x, name="new"):
    items = tmp_path / f"{name}.csv"
    item_frame(ids).assign(genres=lambda d: ["|".join(g) for g in d["genres"]]).to_csv(items, index=False)
    feats = tmp_path / f"{name}.npy"
    np.save(feats, np.asarray(x, dtype=np.float32))
    return items, feats


def test_add_items_keeps_old_ids(tmp_path, built, feature_file):
    old = load_index(built)
    scheme_before = snapshot(built / "scheme")
    x_old = np.load(feature_file)
    # two copies of existing items' features (they collide with them) and one new point
    x_new = np.concatenate([x_old[[0, 0]], np.random.default_rng(1).normal(size=(1, DIM))])
    items, feats = _new_items(tmp_path, ["n1", "n2", "n3"], x_new)
    result = add_items(built, items, features=feats, progress=False)
    assert result["added"] == 3 and result["n_items"] == 43
    new = load_index(built)
    codes = new.table.codes
    np.testing.assert_array_equal(codes[:40], old.table.codes)  # existing IDs never change
    assert len(np.unique(codes, axis=0)) == 43
    assert (codes[40:41, :2] == old.table.codes[0, :2]).all() and (codes[41:42, :2] == codes[40, :2]).all()
    group = old.table.codes[(old.table.codes[:, :2] == old.table.codes[0, :2]).all(axis=1)]
    assert codes[40, 2] == group[:, 2].max() + 1 and codes[41, 2] == codes[40, 2] + 1
    np.testing.assert_array_equal(new.scheme().encode(x_new), codes[40:, :2])
    rows = new.prefix.lookup(torch.from_numpy(codes.astype(np.int64)))
    np.testing.assert_array_equal(rows.numpy(), np.arange(43))
    assert list(new.items["item"].iloc[40:]) == ["n1", "n2", "n3"]
    assert new.items["genres"].iloc[41] == ["Drama", "Comedy"] and new.items["index"].iloc[-1] == 42
    assert new.manifest["files"] != old.manifest["files"]
    assert all(_sha256(built / f) == h for f, h in new.manifest["files"].items())
    assert new.manifest["created_at"] == old.manifest["created_at"]
    assert new.manifest["history"][0]["added"] == 3
    assert snapshot(built / "scheme") == scheme_before  # no refit
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".idx")]


@pytest.mark.parametrize("case", ["unknown_column", "existing_id", "duplicate_id", "wrong_dim", "no_features"])
def test_refused_add_leaves_dir_identical(tmp_path, built, case):
    before = snapshot(built)
    x = np.zeros((2, DIM))
    items, feats = _new_items(tmp_path, ["n1", "n2"], x)
    if case == "unknown_column":
        pd.read_csv(items).assign(rating=[1, 2]).to_csv(items, index=False)
        match, kw = r"new\.csv: unknown column\(s\) \['rating'\]", {"features": feats}
    elif case == "existing_id":
        items, feats = _new_items(tmp_path, ["n1", "i3"], x)
        match, kw = r"new\.csv: item id\(s\) \['i3'\] already in the index", {"features": feats}
    elif case == "duplicate_id":
        items, feats = _new_items(tmp_path, ["n1", "n1"], x)
        match, kw = r"new\.csv: duplicate item id\(s\) \['n1'\]", {"features": feats}
    elif case == "wrong_dim":
        np.save(feats, np.zeros((2, DIM + 1), dtype=np.float32))
        match, kw = rf"new\.npy: has {DIM + 1} feature columns; the index was built on {DIM}", {"features": feats}
    else:
        match, kw = r"new\.csv: the index was built on .*features\.npy' features", {}
    with pytest.raises((DatasetError, IndexFormatError), match=match):
        add_items(built, items, progress=False, **kw)
    assert snapshot(built) == before
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".idx")]


def test_add_refused_without_collision_level(tmp_path, dataset, feature_file):
    spec = write_spec(tmp_path / "none.yaml", collision="none",
                      params="{num_levels: 3, codebook_size: 16, niter: 5, seed: 0}")
    x = np.load(feature_file)
    out = build_index(dataset, spec, tmp_path / "none", features=feature_file, progress=False)  # 40 of 16^3
    before = snapshot(out)
    items, feats = _new_items(tmp_path, ["n1"], x[[5]])
    with pytest.raises(DatasetError, match="no collision level"):
        add_items(out, items, features=feats, progress=False)
    assert snapshot(out) == before


def test_atomic_index_refuses_new_items(tmp_path, dataset, feature_file, built):
    out = build_index(dataset, write_spec(tmp_path / "atomic.yaml", "atomic", "none"), tmp_path / "atomic",
                      features=feature_file, progress=False)
    assert load_index(out).table.level_sizes == [40]
    items, feats = _new_items(tmp_path, ["n1"], np.zeros((1, DIM)))
    before = snapshot(out)
    with pytest.raises(DatasetError, match="atomic IDs cannot place unseen items"):
        add_items(out, items, features=feats, progress=False)
    assert snapshot(out) == before


def test_ml100k_rq_kmeans_kg(tmp_path):
    """The real spec on MovieLens-100K with knowledge-graph features (no text model needed)."""
    spec = Path(__file__).parents[2] / "tokenizers" / "rq_kmeans.yaml"
    out = build_index("ml-100k", spec, tmp_path / "ml", {"features": "kg"}, progress=False)
    info = index_info(out)
    assert info["n_items"] == 1682 and info["id_length"] == 4 and info["level_sizes"][:3] == [64, 64, 64]
    index = load_index(out)
    assert index.items["title"].iloc[0] and len(set(index.items["item"])) == 1682


@pytest.mark.slow
def test_ml100k_text_build_and_add_by_title(tmp_path):
    """The real spec as written (MiniLM text features); new items get text features from their title/year/genres.
    Slow only when the ml-100k embeddings are not in the feature cache yet."""
    out = build_index("ml-100k", Path(__file__).parents[2] / "tokenizers" / "rq_kmeans.yaml", tmp_path / "ml",
                      progress=False)
    old = load_index(out)
    assert old.manifest["features"] == {"name": "text", "source": "text", "dim": 384, "paired": None}
    items = tmp_path / "new.csv"
    pd.DataFrame({"item": ["9001", "9002"], "title": ["Toy Story 5", "Alien Resurrection Again"],
                  "year": [2030, 2031], "genres": ["Animation|Children's|Comedy", "Horror|Sci-Fi"]}).to_csv(
        items, index=False)
    add_items(out, items, progress=False)
    new = load_index(out)
    np.testing.assert_array_equal(new.table.codes[:1682], old.table.codes)
    assert len(np.unique(new.table.codes, axis=0)) == 1684
    rows = new.prefix.lookup(torch.from_numpy(new.table.codes[1682:].astype(np.int64)))
    assert rows.tolist() == [1682, 1683]


def test_leftovers_of_a_killed_writer_are_cleaned(tmp_path, built, dataset, spec_file, feature_file):
    dead = 2**22 + 12345  # above the default pid_max, so no such process
    stale_tmp = tmp_path / f".idx.tmp-{dead}"
    stale_tmp.mkdir()
    (stale_tmp / "ids.npy").write_bytes(b"half")
    before = snapshot(built)
    os.replace(built, tmp_path / f".idx.old-{dead}")  # killed between "old -> backup" and "new -> final"
    build_index(dataset, spec_file, tmp_path / "other", features=feature_file, progress=False)
    assert (tmp_path / "idx").exists() is False  # another index's build does not touch it
    with pytest.raises(IndexFormatError, match="already holds an index"):  # the backup is restored first
        build_index(dataset, spec_file, built, features=feature_file, progress=False)
    assert snapshot(built) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".idx")]


@pytest.mark.parametrize("rel", ["prefix/meta.json", "../outside.txt"])
def test_manifest_file_list_is_checked(built, rel):
    path = built / "manifest.json"
    m = json.loads(path.read_text())
    if rel in m["files"]:
        del m["files"][rel]
        match = r"files: prefix/meta\.json not listed"
    else:
        m["files"][rel] = "0" * 64
        match = r"'\.\./outside\.txt' is not a path inside the index dir"
    path.write_text(json.dumps(m))
    with pytest.raises(IndexFormatError, match=match):
        load_index(built)


def test_hkmeans_index_adds_items(tmp_path, dataset, feature_file):
    spec = write_spec(tmp_path / "hk.yaml", "hkmeans", "index", "{k: 4, c: 4, niter: 5, seed: 0}")
    out = build_index(dataset, spec, tmp_path / "hk", features=feature_file, progress=False)
    old = load_index(out).table.codes
    x = np.load(feature_file)[[3, 3, 7]]
    items, feats = _new_items(tmp_path, ["n1", "n2", "n3"], x)
    add_items(out, items, features=feats, progress=False)
    new = load_index(out)
    np.testing.assert_array_equal(new.table.codes[:40], old)
    assert len(np.unique(new.table.codes, axis=0)) == 43
    assert (new.table.codes[40, :-1] == old[3, :-1]).all()
