"""Constrained decoding of semantic IDs: a prefix index over the valid IDs stored as arrays, a beam search that is
generic over the model, and a Hugging Face ``LogitsProcessor`` backed by the same index.

>>> from genir.decoding import PrefixIndex, CodeTokenLayout, beam_search_seq2seq
>>> index = PrefixIndex.from_codes(codes, level_sizes=[256, 256, 256, 256])       # codes: (N, 4) ints
>>> result = beam_search_seq2seq(t5, input_ids, index, beam_width=20, k=10,
...                              layout=CodeTokenLayout(index.level_sizes, base=2))
>>> result.items, result.scores                                                 # (B, 10) each, best first

The layout must be the model's: per-level code tokens (TIGER, the default) or ``shared=True`` when all levels
share one codebook (token ``base + code`` at every level). A wrong one that fits the vocabulary decodes the wrong
tokens silently; see :mod:`genir.decoding.tokens`.
"""

from genir.decoding.beam_search import BeamSearchResult, constrained_beam_search, exact_scores
from genir.decoding.hf_adapters import (
    CausalLMStep,
    Seq2SeqStep,
    beam_search_causal_lm,
    beam_search_seq2seq,
    exact_scores_seq2seq,
)
from genir.decoding.logits_processor import PrefixIndexLogitsProcessor, trie_prefix_allowed_tokens_fn
from genir.decoding.prefix_index import PrefixIndex
from genir.decoding.tokens import CodeTokenLayout
from genir.errors import IndexFormatError

__all__ = [
    "BeamSearchResult",
    "CausalLMStep",
    "CodeTokenLayout",
    "IndexFormatError",
    "PrefixIndex",
    "PrefixIndexLogitsProcessor",
    "Seq2SeqStep",
    "beam_search_causal_lm",
    "beam_search_seq2seq",
    "constrained_beam_search",
    "exact_scores",
    "exact_scores_seq2seq",
    "trie_prefix_allowed_tokens_fn",
]
