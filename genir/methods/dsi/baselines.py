"""The two systems a user would pick instead of DSI, each updated per corpus step the way it is in practice.

* :class:`BM25Index` - BM25 (``bm25s``, Lucene's variant) over the documents that exist; bm25s has no incremental
  add, so a step re-indexes every document (seconds for 10k documents, and timed as such).
* :class:`DenseIndex` - the pretrained encoder's normalised embeddings in a FAISS inner-product index; a new
  document is one more vector (``add``), nothing retrains.

Both answer a :class:`~genir.data.tasks.QueryBatch` (or a list of strings) with
:class:`~genir.eval.retrieval.RankedLists` over catalogue ids, like the DSI models.
"""

from __future__ import annotations

import numpy as np
import torch

from genir.eval.retrieval import RankedLists
from genir.methods.dsi.atomic import texts_allowed


class BM25Index:
    """BM25 over ``texts`` of catalogue ids ``items`` (re-indexed by :meth:`set_documents`)."""

    def __init__(self, texts: list[str], items: np.ndarray):
        self.set_documents(texts, items)

    def set_documents(self, texts: list[str], items: np.ndarray) -> None:
        import bm25s

        self.items = np.asarray(items, dtype=np.int64)
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)

    def nbytes(self) -> int:
        scores = self.retriever.scores
        return int(sum(np.asarray(v).nbytes for v in scores.values() if hasattr(v, "nbytes")))

    def retrieve(self, batch, k: int = 10) -> RankedLists:
        import bm25s

        texts, allowed = texts_allowed(batch)
        k_ = min(k, len(self.items))
        docs, scores = self.retriever.retrieve(bm25s.tokenize(texts, stopwords="en", show_progress=False), k=k_,
                                               show_progress=False, n_threads=1)
        items = torch.as_tensor(self.items[docs])
        scores = torch.as_tensor(scores, dtype=torch.float32)
        items = torch.where(scores > 0, items, -1)  # no shared term: no answer
        return RankedLists(items, torch.where(scores > 0, scores, float("-inf"))).keep(allowed, k)


class DenseIndex:
    """Inner product of normalised embeddings in a FAISS flat index; ``embed`` maps texts to (B, H) vectors."""

    def __init__(self, embed, dim: int):
        import faiss

        self.embed = embed
        self.index = faiss.IndexFlatIP(dim)
        self.items = np.empty(0, dtype=np.int64)

    def add(self, vectors: np.ndarray, items: np.ndarray) -> None:
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
        self.index.add(v)
        self.items = np.concatenate([self.items, np.asarray(items, dtype=np.int64)])

    def nbytes(self) -> int:
        return int(self.index.ntotal * self.index.d * 4)

    def retrieve(self, batch, k: int = 10) -> RankedLists:
        texts, allowed = texts_allowed(batch)
        q = np.ascontiguousarray(self.embed(texts), dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
        scores, rows = self.index.search(q, min(k, self.index.ntotal))
        items = torch.as_tensor(np.where(rows >= 0, self.items[rows.clip(0)], -1))
        return RankedLists(items, torch.as_tensor(scores)).keep(allowed, k)
