"""Generative document retrieval: DSI with atomic or semantic docids, PromptDSI's prompt pool, IncDSI, and the
BM25 / dense baselines, on a frozen-and-cached pretrained encoder (see README.md beside this file).

DSI answers queries (a :class:`~genir.data.tasks.QueryRetrievalTask`), not users, so it is not in the
recommender registry ``genir.methods.METHODS``; ``recipes/promptdsi.py`` runs it.
"""

from genir.methods.dsi.atomic import AtomicDSI, RowScorer
from genir.methods.dsi.baselines import BM25Index, DenseIndex
from genir.methods.dsi.encoder import CachedEncoder
from genir.methods.dsi.incdsi import solve_new_rows
from genir.methods.dsi.procedures import DSIConfig
from genir.methods.dsi.prompts import PromptedDSI, PromptPool, topic_keys
from genir.methods.dsi.semantic import SemanticDSI

__all__ = ["AtomicDSI", "BM25Index", "CachedEncoder", "DSIConfig", "DenseIndex", "PromptPool", "PromptedDSI",
           "RowScorer", "SemanticDSI", "solve_new_rows", "topic_keys"]
