"""Pseudo-queries made from a document itself, for DSI training without a query generator.

DSI-QG (Zhuang et al., 2022) trains on queries that a doc2query model generates from each document. Here, as a
cheap stand-in that needs no model: the document's first sentence (its most summary-like span) and contiguous random
word spans. They teach the model to map short query-like texts to a document's id, including the documents that
arrive at later corpus steps, whose held-out queries are never trained on.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd

from genir.data.tasks import QueryRetrievalTask
from genir.errors import ConfigError, DatasetError

# a sentence ends at . ! or ? followed by a space and a capital or digit ("0 A.D. (pronounced" goes on), or at a
# blank line
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])|\n\s*\n")


def first_sentence(text: str) -> str:
    """The text up to the end of its first sentence, whitespace normalised."""
    return " ".join(_SENTENCE_END.split(text.strip(), maxsplit=1)[0].split())


def pseudo_queries(text: str, n: int, rng: np.random.Generator, *, min_words: int = 5,
                   max_words: int = 12) -> list[str]:
    """``n`` pseudo-queries of ``text``: its first sentence cut to ``max_words`` words, then contiguous word spans
    of a random length in [min_words, max_words] at random places (the whole text when it is shorter)."""
    if not 1 <= min_words <= max_words:
        raise ConfigError(f"need 1 <= min_words <= max_words, got {min_words}, {max_words}")
    words = text.split()
    if not words:
        raise DatasetError("cannot make pseudo-queries from an empty text")
    if n <= 0:
        return []
    out = [" ".join(first_sentence(text).split()[:max_words])]
    for _ in range(n - 1):
        length = min(int(rng.integers(min_words, max_words + 1)), len(words))
        start = int(rng.integers(0, len(words) - length + 1))
        out.append(" ".join(words[start:start + length]))
    return out


def with_pseudo_queries(task: QueryRetrievalTask, n: int, seed: int = 0) -> QueryRetrievalTask:
    """A copy of ``task`` whose ``train_pairs`` also hold ``n`` pseudo-queries (``kind="pseudo"``) of every document
    of the catalogue, made from its text (:meth:`Catalogue.text`); pseudo rows already there are replaced."""
    rng = np.random.default_rng(seed)
    texts, items = [], []
    for i, doc in enumerate(task.catalogue.texts()):
        if not doc.strip():
            raise DatasetError(f"{task.catalogue.source or task.catalogue.name}: item {task.catalogue.ids[i]!r} has "
                               "no text to make pseudo-queries from")
        made = pseudo_queries(doc, n, rng)
        texts.extend(made)
        items.extend([i] * len(made))
    pseudo = pd.DataFrame({"text": texts, "item": np.asarray(items, dtype=np.int64), "kind": "pseudo"})
    kept = task.train_pairs[task.train_pairs["kind"] != "pseudo"]
    pairs = pd.concat([kept, pseudo], ignore_index=True)
    return dataclasses.replace(task, train_pairs=pairs, steps=list(task.steps))
