"""Adapters that let :func:`constrained_beam_search` drive Hugging Face models with their KV cache.

* :class:`Seq2SeqStep`: encoder-decoder models (T5, BART, ...): the encoder runs once, the decoder one token per
  step from ``decoder_start_token_id`` with ``past_key_values``. Unlike ``generate`` it runs the first step on
  one row per query (all beams start equal) and reorders the cross-attention cache only when the number of beams
  changes: beams never move between queries, and that cache depends only on the query.
* :class:`CausalLMStep`: decoder-only models: the prompt (left-padded) is the prefix, then one token per step.

Each adapter is a ``step_fn`` with a ``reorder_cache`` method; :func:`beam_search_seq2seq` and
:func:`beam_search_causal_lm` wire everything for the common case. The reorder goes through the cache's own
``reorder_cache`` (HF ``Cache`` objects), the same call ``generate`` makes between beam-search steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers.cache_utils import EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from genir.decoding.beam_search import BeamSearchResult, constrained_beam_search, exact_scores
from genir.decoding.prefix_index import PrefixIndex
from genir.decoding.tokens import CodeTokenLayout


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _reorder_past(past: Any, rows: torch.Tensor, same_queries: bool = False) -> Any:
    """Reorder an HF cache in place (legacy tuples: a new tuple). With ``same_queries`` every new row belongs to
    the same query as the old row at its position, so a cross-attention cache (a function of the query's
    encoder states only) is already right and is left alone: it is the largest part of a T5 cache."""
    if past is None:
        return None
    if same_queries and isinstance(past, EncoderDecoderCache):
        past.self_attention_cache.reorder_cache(rows)
        return past
    if hasattr(past, "reorder_cache"):
        past.reorder_cache(rows)
        return past
    # legacy tuple-of-tuples cache
    return tuple(tuple(t.index_select(0, rows.to(t.device)) for t in layer) for layer in past)


@dataclass
class Seq2SeqState:
    """Decoding state of :class:`Seq2SeqStep`.

    ``encoder_hidden`` (B, S, D) and ``encoder_mask`` (B, S) are per query; ``query_of_row`` (R,) says which
    query each decoder row belongs to, and ``row_hidden`` / ``row_mask`` are the encoder states gathered for the
    rows (re-gathered only when the row-to-query map changes, i.e. when the number of beams changes).
    """

    encoder_hidden: torch.Tensor
    encoder_mask: torch.Tensor | None
    query_of_row: torch.Tensor
    row_hidden: torch.Tensor
    row_mask: torch.Tensor | None
    past: Any = None


class Seq2SeqStep:
    """``step_fn`` for an HF encoder-decoder model: ``model(encoder_outputs=..., decoder_input_ids=...,
    past_key_values=..., use_cache=True)``.

    Args:
        model: e.g. ``T5ForConditionalGeneration``; put it in eval mode.
        decoder_start_token_id: first decoder token (default: the model config's).
    """

    def __init__(self, model, decoder_start_token_id: int | None = None):
        self.model = model
        if decoder_start_token_id is None:
            decoder_start_token_id = getattr(model.generation_config, "decoder_start_token_id", None)
            if decoder_start_token_id is None:
                decoder_start_token_id = model.config.decoder_start_token_id
        if decoder_start_token_id is None:
            raise ValueError("the model has no decoder_start_token_id; pass one")
        self.decoder_start_token_id = int(decoder_start_token_id)

    @torch.no_grad()
    def init_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Seq2SeqState:
        """Run the encoder once: (B, S) input ids -> the state of the first step."""
        device = _model_device(self.model)
        input_ids = input_ids.to(device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(device)
        hidden = self.model.get_encoder()(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=device)
        return Seq2SeqState(hidden, attention_mask, rows, hidden, attention_mask)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        device = state.row_hidden.device
        tokens = tokens.to(device)
        if state.past is None:  # first call on these rows: the whole prefix after the start token
            start = torch.full(
                (tokens.shape[0], 1), self.decoder_start_token_id, dtype=torch.long, device=device
            )
            decoder_input = torch.cat([start, tokens], dim=1)
        else:
            decoder_input = tokens[:, -1:]
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=state.row_hidden),
            attention_mask=state.row_mask,
            decoder_input_ids=decoder_input,
            past_key_values=state.past,
            use_cache=True,
        )
        return out.logits[:, -1, :], replace(state, past=out.past_key_values)

    def reorder_cache(self, state: Seq2SeqState, rows: torch.Tensor) -> Seq2SeqState:
        rows = rows.to(state.query_of_row.device)
        query_of_row = state.query_of_row[rows]
        row_hidden, row_mask = state.row_hidden, state.row_mask
        same_queries = torch.equal(query_of_row, state.query_of_row)
        if not same_queries:
            row_hidden = state.encoder_hidden.index_select(0, query_of_row)
            row_mask = (
                None if state.encoder_mask is None else state.encoder_mask.index_select(0, query_of_row)
            )
        past = _reorder_past(state.past, rows, same_queries)
        return Seq2SeqState(
            state.encoder_hidden, state.encoder_mask, query_of_row, row_hidden, row_mask, past
        )


@dataclass
class CausalState:
    """Decoding state of :class:`CausalLMStep`: the (left-padded) prompt rows, their attention mask (grown by
    one column per generated token), the next position id of every row and the KV cache."""

    prompt_ids: torch.Tensor
    attention_mask: torch.Tensor
    next_position: torch.Tensor | None = None
    past: Any = None


class CausalLMStep:
    """``step_fn`` for an HF decoder-only model (``AutoModelForCausalLM``). Prompts must be LEFT-padded so that
    every row's last position is its last real token; position ids follow the attention mask."""

    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def init_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> CausalState:
        device = _model_device(self.model)
        input_ids = input_ids.to(device)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device).long()
        if (mask[:, -1] == 0).any():
            raise ValueError("CausalLMStep needs left-padded prompts: attention_mask[:, -1] must be 1")
        return CausalState(input_ids, mask)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, state: CausalState) -> tuple[torch.Tensor, CausalState]:
        device = state.prompt_ids.device
        tokens = tokens.to(device)
        if state.past is None:
            input_ids = torch.cat([state.prompt_ids, tokens], dim=1)
            mask = torch.cat([state.attention_mask, torch.ones_like(tokens)], dim=1)
            positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        else:
            input_ids = tokens[:, -1:]
            mask = torch.cat([state.attention_mask, torch.ones_like(input_ids)], dim=1)
            positions = state.next_position[:, None]
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=state.past,
            use_cache=True,
            logits_to_keep=1,
        )
        new_state = CausalState(state.prompt_ids, mask, positions[:, -1] + 1, out.past_key_values)
        return out.logits[:, -1, :], new_state

    def reorder_cache(self, state: CausalState, rows: torch.Tensor) -> CausalState:
        rows = rows.to(state.prompt_ids.device)
        return CausalState(
            state.prompt_ids.index_select(0, rows),
            state.attention_mask.index_select(0, rows),
            None if state.next_position is None else state.next_position.index_select(0, rows),
            _reorder_past(state.past, rows),
        )


def beam_search_seq2seq(
    model,
    input_ids: torch.Tensor,
    index: PrefixIndex,
    beam_width: int,
    k: int | None = None,
    *,
    attention_mask: torch.Tensor | None = None,
    layout: CodeTokenLayout | None = None,
    decoder_start_token_id: int | None = None,
    **kwargs,
) -> BeamSearchResult:
    """Constrained beam search with an HF encoder-decoder model on its own device; ``kwargs`` go to
    :func:`constrained_beam_search` (``constrained``, ``score_dtype``)."""
    step = Seq2SeqStep(model, decoder_start_token_id)
    state = step.init_state(input_ids, attention_mask)
    device = _model_device(model)
    return constrained_beam_search(
        step, state, input_ids.shape[0], index, beam_width, k, device, layout=layout, **kwargs
    )


def beam_search_causal_lm(
    model,
    input_ids: torch.Tensor,
    index: PrefixIndex,
    beam_width: int,
    k: int | None = None,
    *,
    attention_mask: torch.Tensor | None = None,
    layout: CodeTokenLayout | None = None,
    **kwargs,
) -> BeamSearchResult:
    """Constrained beam search with an HF decoder-only model on its own device (prompts left-padded)."""
    step = CausalLMStep(model)
    state = step.init_state(input_ids, attention_mask)
    device = _model_device(model)
    return constrained_beam_search(
        step, state, input_ids.shape[0], index, beam_width, k, device, layout=layout, **kwargs
    )


def exact_scores_seq2seq(
    model,
    input_ids: torch.Tensor,
    codes,
    layout: CodeTokenLayout,
    *,
    attention_mask: torch.Tensor | None = None,
    decoder_start_token_id: int | None = None,
    **kwargs,
) -> torch.Tensor:
    """(B, N) exact sequence log-probabilities of every ID under an HF encoder-decoder model."""
    step = Seq2SeqStep(model, decoder_start_token_id)
    state = step.init_state(input_ids, attention_mask)
    return exact_scores(step, state, input_ids.shape[0], codes, layout, device=_model_device(model), **kwargs)
