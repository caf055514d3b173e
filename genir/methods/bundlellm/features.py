"""The three frozen non-text views of an item that Bundle-LLM fuses into its soft token, each cached on disk.

* **media** (the paper: BLIP-2 / CLAP content features): the all-MiniLM-L6-v2 embedding of the package's synopsis
  and long description (384-d). Debian packages have no images or audio; the description is the richest
  non-title content.
* **cf** (the paper: LightGCN user-item features): a spectral embedding of the Debian ``Depends`` graph. Nodes are
  the item packages and everything they depend on; edges are Depends/Pre-Depends (first alternative), made
  undirected, with self-loops; the embedding is the top-``dim`` singular vectors of D^-1/2 (A + I) D^-1/2 scaled by
  the square roots of their singular values. The ``Depends`` of the bundles themselves are left out (a
  metapackage's Depends *are* its bundle's members, which would leak test bundles), and so are edges to a bundle.
* **bi** (the paper: LightGCN bundle-item features): LightGCN trained on the TRAINING bundles only (bundles as
  users, members as items; genir's LightGCN and Trainer with early stopping on a seeded 80/10/10 cut of those
  memberships). Items in no training bundle get zeros: no valid or test bundle leaks in.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genir.atomic import file_sha256
from genir.data.bundles import BundleSet
from genir.errors import DatasetError

DEPENDS_FILE = Path(__file__).resolve().parents[3] / "recipes" / "data" / "debian-bookworm-depends.jsonl.gz"


@dataclass
class ItemFeatures:
    """Row i = item i of the bundle set."""

    media: np.ndarray  # (num_items, d_media)
    cf: np.ndarray  # (num_items, d_cf)
    bi: np.ndarray  # (num_items, d_bi)

    def concat(self) -> np.ndarray:
        return np.concatenate([self.media, self.cf, self.bi], axis=1).astype(np.float32)


def read_depends(path: str | Path = DEPENDS_FILE) -> dict[str, list[str]]:
    """package -> the packages it depends on, from JSON lines ``{"package": ..., "depends": [...]}`` (the frozen
    ``recipes/data/debian-bookworm-depends.jsonl.gz``; rebuild: ``apt-cache dumpavail`` on bookworm, for each member
    package take Pre-Depends then Depends, first alternative, name without version or architecture)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dependency file not found")
    out = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                out[str(obj["package"])] = [str(x) for x in obj["depends"]]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path}:{lineno}: expected {{'package': str, 'depends': [str]}} ({exc})") from None
    return out


def description_features(data: BundleSet, model_path=None, progress: bool = False,
                         titles_only: bool = False) -> np.ndarray:
    """(num_items, 384) L2-normalised MiniLM embeddings of 'synopsis. description' (cached); ``titles_only``: of
    the synopsis alone (a few times faster; ``--quick`` runs)."""
    from genir.features.text import encode_texts

    texts = data.items["title"].astype(str).tolist() if titles_only else \
        [f"{t}. {d}" for t, d in zip(data.items["title"], data.items["description"])]
    return encode_texts(texts, model_path, cache=True, progress=progress, fingerprint="bundlellm-media")


def dependency_features(data: BundleSet, depends: dict[str, list[str]], dim: int = 64, seed: int = 0) -> np.ndarray:
    """(num_items, dim) spectral embedding of the Depends graph (see the module docstring; cached)."""
    from genir.features.cache import cached

    bundles = set(data.names)
    packages = data.items["package"].tolist()
    node = {p: i for i, p in enumerate(packages)}
    rows, cols = [], []
    for p in packages:
        if p in bundles:
            continue
        for dep in depends.get(p, []):
            if dep in bundles:
                continue
            j = node.setdefault(dep, len(node))
            rows.append(node[p])
            cols.append(j)
    n = len(node)
    edges = sorted(set(zip(rows, cols)))
    params = {"dim": dim, "seed": seed, "edges_sha256": hashlib.sha256(repr(edges).encode()).hexdigest(),
              "packages_sha256": hashlib.sha256("\x00".join(packages).encode()).hexdigest()}

    def compute() -> np.ndarray:
        from scipy.sparse.linalg import svds

        r = np.array([e[0] for e in edges], dtype=np.int64)
        c = np.array([e[1] for e in edges], dtype=np.int64)
        a = sp.coo_matrix((np.ones(len(r), dtype=np.float64), (r, c)), shape=(n, n)).tocsr()
        a = ((a + a.T) > 0).astype(np.float64) + sp.eye(n)
        deg = np.asarray(a.sum(1)).ravel()
        norm = sp.diags(deg ** -0.5) @ a @ sp.diags(deg ** -0.5)
        k = min(dim, n - 2)
        v0 = np.random.default_rng(seed).standard_normal(n)
        u, s, _ = svds(norm.tocsc(), k=k, v0=v0)
        order = np.argsort(-s)
        emb = (u[:, order] * np.sqrt(s[order]))[: len(packages)]
        signs = np.sign(emb[np.abs(emb).argmax(0), np.arange(k)])  # fix each vector's sign: reproducible
        emb = emb * signs
        if k < dim:
            emb = np.pad(emb, ((0, 0), (0, dim - k)))
        return emb.astype(np.float32)

    return cached("bundlellm-depends", params, "debian-depends", compute)


def bundle_item_features(data: BundleSet, train_bundles, dim: int = 64, seed: int = 0,
                         progress: bool = False) -> np.ndarray:
    """(num_items, dim) LightGCN item embeddings on the training bundles only (zeros for other items; cached by
    genir.methods.cf_features)."""
    from genir.data.dataset import Dataset
    from genir.data.split import random_split
    from genir.methods.cf_features import cf_embeddings

    rows = [(data.names[b], data.items["package"].iat[i], k) for b in np.asarray(train_bundles).tolist()
            for k, i in enumerate(data.members[b].tolist())]
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    ds = Dataset.from_frames("bundles-train", inter, source=f"{data.source} (training bundles)")
    split = random_split(ds, 0.1, 0.1, seed=seed)
    emb = cf_embeddings(split, method="lightgcn", dim=dim, seed=seed, progress=progress,
                        trainer_overrides={"patience": 5})
    out = np.zeros((data.num_items, dim), dtype=np.float32)
    index = {p: i for i, p in enumerate(data.items["package"])}
    out[[index[p] for p in ds.item_ids]] = emb
    return out


def item_features(data: BundleSet, train_bundles, *, depends: dict | None = None, dim: int = 64, seed: int = 0,
                  text_model=None, progress: bool = False, media_titles_only: bool = False) -> ItemFeatures:
    """The three views of every item (see the module docstring)."""
    deps = read_depends() if depends is None else depends
    return ItemFeatures(description_features(data, text_model, progress, media_titles_only),
                        dependency_features(data, deps, dim, seed), bundle_item_features(data, train_bundles, dim, seed,
                                                                                         progress))


def depends_sha256(path: str | Path = DEPENDS_FILE) -> str:
    return file_sha256(Path(path))
