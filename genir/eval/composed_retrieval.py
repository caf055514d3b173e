"""Composed image retrieval with generated images: each generated picture is a query, the gallery holds the exact
targets, and a query's relevant items are the gallery images identical to its own target (Recall@K = a relevant
image in the top K, as in the FashionIQ / Fashion200k literature).

Features come from a registered image encoder (:data:`genir.features.image.IMAGE_ENCODERS`), are centred on the
gallery mean and L2-normalized, and are searched exactly with a FAISS inner-product index; the hits go through
the same :class:`~genir.eval.retrieval.RetrievalEvaluator` as every other retrieval task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from genir.data.catalogue import Catalogue
from genir.data.tasks import QueryRetrievalTask
from genir.eval.retrieval import RankedLists, RetrievalEvaluator
from genir.features.image import IMAGE_ENCODERS

CIR_KS = (1, 10, 50)


def image_features(images: np.ndarray, encoder: str = "pixels", **options) -> np.ndarray:
    """(n, d) float32 features of (n, H, W, 3) uint8 images by a registered image encoder."""
    from PIL import Image

    enc = IMAGE_ENCODERS.get(encoder)(**options)
    return np.asarray(enc.encode([Image.fromarray(im) for im in images]), dtype=np.float32)


def dedupe_gallery(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique images, (n,) gallery row of each target): byte-identical targets share one gallery item."""
    flat = targets.reshape(len(targets), -1)
    _, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    return targets[first], inverse.reshape(-1)


def composed_retrieval(queries: dict[str, tuple[np.ndarray, np.ndarray]], gallery: np.ndarray,
                       encoder: str = "pixels", ks=CIR_KS, **options) -> dict[str, dict[str, float]]:
    """Recall@K of each named query set ``name -> (generated images (n, H, W, 3), gallery row of each one's
    target)`` against ``gallery`` (m, H, W, 3) uint8."""
    import faiss

    g = image_features(gallery, encoder, **options)
    mean = g.mean(0, keepdims=True)

    def normalized(f):
        f = f - mean
        return np.ascontiguousarray(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12), np.float32)

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(normalized(g))
    catalogue = Catalogue.from_frame("gallery", pd.DataFrame({"id": [f"g{i}" for i in range(len(g))]}))
    out = {}
    for name, (images, rows) in queries.items():
        q = normalized(image_features(images, encoder, **options))
        scores, items = index.search(q, min(max(ks), len(g)))
        qids = [f"q{i}" for i in range(len(q))]
        task = QueryRetrievalTask(catalogue, pd.DataFrame({"qid": qids, "text": "", "stage": "test"}),
                                  pd.DataFrame({"qid": qids, "item": np.asarray(rows, dtype=np.int64)}),
                                  name=f"composed retrieval ({name})")
        position = {qid: i for i, qid in enumerate(qids)}
        ranked = RankedLists(torch.from_numpy(items.astype(np.int64)), torch.from_numpy(scores))

        def rank(batch, ranked=ranked, position=position):
            rows_ = [position[qid] for qid in batch.qids]
            return RankedLists(ranked.items[rows_], ranked.scores[rows_])

        res = RetrievalEvaluator(task, "test", ks=ks, metrics=("hits",)).evaluate(rank)
        out[name] = {f"recall@{k}": res[f"hits@{k}"] for k in ks}
    return out
