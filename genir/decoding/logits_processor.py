"""Constraining Hugging Face ``generate`` to the valid semantic IDs.

* :class:`PrefixIndexLogitsProcessor`: a ``LogitsProcessor`` backed by a :class:`PrefixIndex`. At each step it
  re-derives every hypothesis' index state from the generated suffix of ``input_ids`` (one vectorized ``advance``
  per level, no Python loop over hypotheses), reads the allowed codes with gathers on the scores' device and sets
  every other token to ``-inf``: tokens of other levels, special tokens, and EOS until all L levels are written.
* :func:`trie_prefix_allowed_tokens_fn`: the usual baseline, a nested Python dict trie walked per hypothesis in
  ``prefix_allowed_tokens_fn`` as in GENRE (De Cao et al., 2021). Kept as the reference and as the slow peer of
  ``benchmarks/constrained_decoding.py``.

To rank IDs by exact sequence log-probability with ``generate`` use ``num_beams=W, length_penalty=0,
do_sample=False, max_new_tokens=L, output_scores=True, return_dict_in_generate=True`` (see the example in
:class:`PrefixIndexLogitsProcessor`): generation then stops on the length, so no EOS log-probability is added to
the scores and ``sequences_scores`` is the sum of the L code log-probabilities, the same quantity as
:func:`genir.decoding.constrained_beam_search`. Without both ``output_scores=True`` and
``return_dict_in_generate=True``, ``generate`` returns only the token tensor, with no ``sequences_scores``. (With
``eos_token_id`` given here and ``max_new_tokens > L`` the beam scores also include ``log p(EOS)``.) Hypotheses
that ``generate`` pads with a score near ``-1e9`` when there are fewer valid IDs than beams are not IDs and must be
dropped.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from genir.decoding.prefix_index import PrefixIndex
from genir.decoding.tokens import CodeTokenLayout, resolve_layout


class PrefixIndexLogitsProcessor(LogitsProcessor):
    """Mask HF ``generate`` scores to the IDs of a prefix index.

    Ranking the IDs by sequence log-probability with an encoder-decoder model (``L`` levels, ``W`` beams)::

        processor = PrefixIndexLogitsProcessor(index, CodeTokenLayout(index.level_sizes, base=2))
        out = model.generate(
            input_ids=input_ids,                    # (B, S)
            logits_processor=LogitsProcessorList([processor]),
            num_beams=W, num_return_sequences=W, length_penalty=0.0, do_sample=False,
            max_new_tokens=index.num_levels,        # stop on the length: no EOS score in the sum
            output_scores=True, return_dict_in_generate=True,  # without both there are no sequences_scores
        )
        codes = processor.layout.to_codes(out.sequences[:, 1:])   # (B*W, L), after the decoder start token
        scores = out.sequences_scores.view(B, W)                  # best first; about -1e9 marks padding

    For a decoder-only model pass ``prompt_length=input_ids.shape[1]`` (prompts left-padded) and take
    ``out.sequences[:, prompt_length:]``.

    Args:
        index: the valid IDs (moved to the scores' device on first use, then cached).
        layout: token ids of the codes (default: ``CodeTokenLayout(index.level_sizes, base=0, shared=shared)``).
            It must match how the model was trained: a per-level layout on a model whose levels share code
            tokens (or the reverse) raises only when the vocabulary is too small for it and otherwise masks the
            wrong tokens silently.
        shared: whether all levels share one block of code tokens (see :class:`CodeTokenLayout`); builds the
            default layout and is checked against ``layout`` when both are given (None: the layout's, or
            per-level).
        prompt_length: tokens of ``input_ids`` before the first code: 1 for encoder-decoder models (the decoder
            start token), the (padded) prompt length for decoder-only models.
        eos_token_id: if given, the only token allowed once all L codes are generated; otherwise nothing is
            (stop generation with ``max_new_tokens=L``).
    """

    def __init__(
        self,
        index: PrefixIndex,
        layout: CodeTokenLayout | None = None,
        *,
        shared: bool | None = None,
        prompt_length: int = 1,
        eos_token_id: int | None = None,
    ):
        self.index = index
        self.layout = resolve_layout(layout, index.level_sizes, shared, "PrefixIndexLogitsProcessor")
        if self.layout.level_sizes != tuple(index.level_sizes):
            raise ValueError(f"layout level sizes {self.layout.level_sizes} != index {index.level_sizes}")
        self.prompt_length = int(prompt_length)
        self.eos_token_id = eos_token_id

    def states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Index state of every hypothesis: ``(R, prompt + l) -> (R,)`` depth-``l`` states (-1: invalid)."""
        suffix = input_ids[:, self.prompt_length :]
        l = min(suffix.shape[1], self.layout.num_levels)
        codes = self.layout.to_codes(suffix[:, :l])  # -1 for tokens outside their level's block
        return self.index.walk(codes)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_length
        self.layout.check_vocab_size(scores.shape[1])
        states = self.states(input_ids)
        out = torch.full_like(scores, float("-inf"))
        if generated < self.layout.num_levels:
            start, stop = self.layout.token_range(generated)
            allowed = self.index.allowed(states.to(scores.device), generated)
            out[:, start:stop] = scores[:, start:stop].masked_fill(~allowed, float("-inf"))
        elif generated == self.layout.num_levels and self.eos_token_id is not None:
            alive = (states >= 0).to(scores.device)
            eos = self.eos_token_id
            out[:, eos] = torch.where(alive, scores[:, eos], float("-inf"))
        return out


def trie_prefix_allowed_tokens_fn(
    codes,
    layout: CodeTokenLayout,
    *,
    prompt_length: int = 1,
    eos_token_id: int | None = None,
):
    """GENRE-style ``prefix_allowed_tokens_fn`` over a nested dict trie of the IDs' token sequences.

    The callback converts each hypothesis' ``input_ids`` to a list, walks the trie from ``prompt_length`` on and
    returns the children's tokens; at a leaf it returns ``[eos_token_id]`` (or ``[]`` without one, which recent
    ``generate`` versions reject, so stop with ``max_new_tokens=L``); for a prefix not in the trie it returns
    ``[]``. The trie is exposed as ``fn.trie``.
    """
    codes = torch.as_tensor(codes)
    tokens = layout.to_tokens(codes.long()).tolist()
    trie: dict = {}
    for row in tokens:
        node = trie
        for token in row:
            node = node.setdefault(token, {})
    leaf = [eos_token_id] if eos_token_id is not None else []

    def prefix_allowed_tokens_fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        node = trie
        for token in input_ids.tolist()[prompt_length:]:
            node = node.get(token)
            if node is None:
                return []
        return list(node) if node else leaf

    prefix_allowed_tokens_fn.trie = trie
    return prefix_allowed_tokens_fn
