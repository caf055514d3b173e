"""The on-disk feature cache: hits return identical arrays without recomputing, keys separate every input,
corrupt entries are recomputed, writes leave no temporary files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genir.features import cache as fc


class Counter:
    """compute_fn that counts its calls and returns a fixed matrix."""

    def __init__(self, value: np.ndarray):
        self.value = value
        self.calls = 0

    def __call__(self) -> np.ndarray:
        self.calls += 1
        return self.value.copy()


@pytest.fixture
def fn():
    return Counter(np.arange(12, dtype=np.float32).reshape(4, 3) / 7)


def test_root_follows_env(_isolated_cache, monkeypatch, tmp_path):
    assert fc.cache_root() == _isolated_cache
    monkeypatch.delenv("GENIR_CACHE")
    assert fc.cache_root() == fc.Path.home() / ".cache" / "genir" / "features"


def test_hit_is_identical_and_not_recomputed(fn, _isolated_cache):
    a = fc.cached("demo", {"dim": 3}, "fp1", fn)
    b = fc.cached("demo", {"dim": 3}, "fp1", fn)
    assert fn.calls == 1
    assert np.array_equal(a, fn.value) and np.array_equal(a, b) and b.dtype == np.float32
    npy, meta = fc.entry_paths("demo", {"dim": 3}, "fp1")
    assert npy.parent == _isolated_cache / "demo" and npy.is_file()
    info = json.loads(meta.read_text())
    assert info["shape"] == [4, 3] and info["dtype"] == "float32" and info["params"] == {"dim": 3}
    assert info["dataset"] == "fp1" and "created_at" in info
    assert not [p for p in npy.parent.iterdir() if p.name.endswith(".tmp")]


def test_key_depends_on_kind_fingerprint_params_and_version(fn, monkeypatch):
    base = fc.cache_key("demo", {"dim": 3, "seed": 0}, "fp1")
    assert fc.cache_key("demo", {"seed": 0, "dim": 3}, "fp1") == base  # param order is irrelevant
    assert fc.cache_key("other", {"dim": 3, "seed": 0}, "fp1") != base
    assert fc.cache_key("demo", {"dim": 3, "seed": 1}, "fp1") != base
    assert fc.cache_key("demo", {"dim": 3, "seed": 0}, "fp2") != base
    monkeypatch.setattr(fc, "FORMAT_VERSION", fc.FORMAT_VERSION + 1)
    assert fc.cache_key("demo", {"dim": 3, "seed": 0}, "fp1") != base
    fc.cached("demo", {"dim": 3}, "fp1", fn)
    fc.cached("demo", {"dim": 4}, "fp1", fn)
    fc.cached("demo", {"dim": 3}, "fp2", fn)
    assert fn.calls == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape", "bad_sidecar", "no_sidecar"])
def test_corrupt_entry_is_recomputed(fn, damage):
    fc.cached("demo", {}, "fp", fn)
    npy, meta = fc.entry_paths("demo", {}, "fp")
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:60])
    elif damage == "garbage":
        npy.write_bytes(b"not a numpy file at all")
    elif damage == "wrong_shape":
        np.save(npy, np.zeros((2, 3), dtype=np.float32))  # readable, but not what the sidecar says
    elif damage == "bad_sidecar":
        meta.write_text("{truncated")
    else:
        meta.unlink()
    out = fc.cached("demo", {}, "fp", fn)
    assert fn.calls == 2
    assert np.array_equal(out, fn.value)
    assert np.array_equal(fc.cached("demo", {}, "fp", fn), fn.value) and fn.calls == 2  # repaired on disk


def test_unwritable_cache_warns_and_returns(fn, monkeypatch, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GENIR_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cannot write the feature cache"):
        out = fc.cached("demo", {}, "fp", fn)
    assert np.array_equal(out, fn.value)


def test_params_must_be_json(fn):
    with pytest.raises(TypeError, match="JSON-serializable"):
        fc.cached("demo", {"bad": object()}, "fp", fn)
    assert fc.cache_key("demo", {"n": np.int64(3)}, "fp") == fc.cache_key("demo", {"n": 3}, "fp")
