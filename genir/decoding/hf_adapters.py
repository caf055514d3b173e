"""Adapters that let :func:`constrained_beam_search` drive Hugging Face models with their KV cache.

* :class:`Seq2SeqStep`: encoder-decoder models (T5, BART, ...): the encoder runs once, the decoder one token per
  step from ``decoder_start_token_id`` with an ``EncoderDecoderCache``. Unlike ``generate`` it runs the first step
  on one row per query (all beams start equal) and reorders the cross-attention cache only when the number of
  beams changes: beams never move between queries, and that cache depends only on the query.
* :class:`CausalLMStep`: decoder-only models: the prompt (left-padded) is the prefix, then one token per step,
  with a ``DynamicCache``.

Each adapter is a ``step_fn`` with a ``reorder_cache`` method; :func:`beam_search_seq2seq` and
:func:`beam_search_causal_lm` wire everything for the common case. The caches are transformers ``Cache`` objects
from the first step on (the adapters create them, never the legacy tuple-of-tuples format) and are reordered in
place with the cache's own ``reorder_cache``, the call ``generate`` makes between beam-search steps.

transformers compatibility: the model's cache argument (and output field) is ``past_key_values`` up to
transformers 5.23 and ``cache`` from 5.24 on (the old name then warns, and goes in 5.40); the adapters pass the name
the model's ``forward`` declares and read the returned cache under either name, so no version warns. Passing
``Cache`` objects needs models that accept them: T5-family from 4.46, Llama-family long before, BART-family and
GPT-2 from 4.52, so transformers >= 4.52.1 (4.52.0 was yanked). ``logits_to_keep`` (4.49+) is passed only to
models whose ``forward`` declares it.

The token layout (``layout`` / ``shared``) must be the one the model was trained with. The adapters know the
model's vocabulary size, but that only catches a layout that does not fit in it (the error then says whether
``shared=True`` would); a per-level layout used with a model whose levels share code tokens (or the reverse) that
fits the vocabulary reads the wrong logits columns and returns wrong IDs with plausible scores, silently.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, CausalLMOutputWithPast

from genir.decoding.beam_search import BeamSearchResult, constrained_beam_search, exact_scores
from genir.decoding.prefix_index import PrefixIndex
from genir.decoding.tokens import CodeTokenLayout, resolve_layout

# transformers 5.24 renamed the cache argument and output field ``past_key_values`` -> ``cache``; the name of the
# installed version, used for models whose ``forward`` signature does not say (``**kwargs`` wrappers)
_DEFAULT_CACHE_ARG = (
    "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"
)
_DYNAMIC_CACHE_TAKES_CONFIG = "config" in inspect.signature(DynamicCache.__init__).parameters


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _forward_params(model) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # builtins or odd wrappers: nothing known
        return set()


def _cache_arg(params: set[str]) -> str:
    """Name of the model's KV-cache argument: ``cache`` (transformers >= 5.24) or ``past_key_values``."""
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return _DEFAULT_CACHE_ARG


def _new_dynamic_cache(model) -> DynamicCache:
    """An empty ``DynamicCache`` laid out like the one the model would build itself (sliding layers and all, on
    versions whose ``DynamicCache`` takes the config)."""
    return DynamicCache(config=model.config) if _DYNAMIC_CACHE_TAKES_CONFIG else DynamicCache()


def _returned_cache(out, sent: Cache) -> Cache:
    """The cache of a forward output, under its current or old name (``keys()`` holds the real field names, so
    reading it triggers no rename warning); the cache that was passed in (updated in place) if neither is set."""
    keys = out.keys()
    for name in ("cache", "past_key_values"):
        if name in keys:
            return out[name]
    return sent


def _reorder_past(past: Cache | None, rows: torch.Tensor, same_queries: bool = False) -> Cache | None:
    """Reorder an HF ``Cache`` in place: row ``i`` becomes old row ``rows[i]`` (the number of rows may change).

    With ``same_queries`` every new row belongs to the same query as the old row at its position, so the
    cross-attention half of an ``EncoderDecoderCache`` (a function of the query's encoder states only) is already
    right and is left alone: it is the largest part of a T5 cache."""
    if past is None:
        return None
    if isinstance(past, EncoderDecoderCache):
        if same_queries:
            past.self_attention_cache.reorder_cache(rows)
        else:
            past.reorder_cache(rows)
        return past
    if isinstance(past, Cache):
        past.reorder_cache(rows)
        return past
    raise TypeError(
        f"expected a transformers Cache as the model's past, got {type(past).__name__}: the adapters pass Cache "
        "objects and need the model to return them (legacy tuple caches are not supported; this model's "
        "transformers version predates Cache support for it: use transformers >= 4.52.1)"
    )


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
    past: EncoderDecoderCache | None = None  # None until the first decoder step


class Seq2SeqStep:
    """``step_fn`` for an HF encoder-decoder model: ``model(encoder_outputs=..., decoder_input_ids=...,
    cache=EncoderDecoderCache(...), use_cache=True)`` (``past_key_values=`` on transformers before the rename).

    Args:
        model: e.g. ``T5ForConditionalGeneration``; put it in eval mode.
        decoder_start_token_id: first decoder token (default: the model config's).
    """

    def __init__(self, model, decoder_start_token_id: int | None = None):
        self.model = model
        self._cache_arg = _cache_arg(_forward_params(model))
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
        past = state.past
        if past is None:  # first call on these rows: the whole prefix after the start token, a fresh cache
            start = torch.full(
                (tokens.shape[0], 1), self.decoder_start_token_id, dtype=torch.long, device=device
            )
            decoder_input = torch.cat([start, tokens], dim=1)
            past = EncoderDecoderCache(_new_dynamic_cache(self.model), _new_dynamic_cache(self.model))
        else:
            decoder_input = tokens[:, -1:]
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=state.row_hidden),
            attention_mask=state.row_mask,
            decoder_input_ids=decoder_input,
            use_cache=True,
            **{self._cache_arg: past},
        )
        return out.logits[:, -1, :], replace(state, past=_returned_cache(out, past))  # (R, V)

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
    past: Cache | None = None  # None until the first step


class CausalLMStep:
    """``step_fn`` for an HF decoder-only model (``AutoModelForCausalLM``). Prompts must be LEFT-padded so that
    every row's last position is its last real token; position ids follow the attention mask. The KV cache is a
    ``DynamicCache``; ``logits_to_keep=1`` is passed to models that declare it (only the last position's logits
    are computed)."""

    def __init__(self, model):
        self.model = model
        params = _forward_params(model)
        self._cache_arg = _cache_arg(params)
        self._extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

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
        past = state.past
        if past is None:  # first call on these rows: prompt + prefix, a fresh cache
            input_ids = torch.cat([state.prompt_ids, tokens], dim=1)
            mask = torch.cat([state.attention_mask, torch.ones_like(tokens)], dim=1)
            positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
            past = _new_dynamic_cache(self.model)
        else:
            input_ids = tokens[:, -1:]
            mask = torch.cat([state.attention_mask, torch.ones_like(input_ids)], dim=1)
            positions = state.next_position[:, None]
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_arg: past},
            **self._extra,
        )
        new_state = CausalState(state.prompt_ids, mask, positions[:, -1] + 1, _returned_cache(out, past))
        return out.logits[:, -1, :], new_state  # (R, V)

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
    shared: bool | None = None,
    decoder_start_token_id: int | None = None,
    **kwargs,
) -> BeamSearchResult:
    """Constrained beam search with an HF encoder-decoder model on its own device; ``kwargs`` go to
    :func:`constrained_beam_search` (``constrained``, ``score_dtype``, ``exclude``).

    ``layout`` must be the token layout the model was trained with (default: ``CodeTokenLayout(
    index.level_sizes, base=0, shared=shared)``); ``shared`` says whether all levels share one block of code
    tokens (one codebook, e.g. AVG's vokens) and is checked against ``layout`` when both are given. A wrong layout
    raises only when it does not fit in the model's vocabulary (``model.config.vocab_size``); one that fits decodes
    the wrong tokens silently (see the module docstring).
    """
    layout = resolve_layout(layout, index.level_sizes, shared, "beam_search_seq2seq")
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
    shared: bool | None = None,
    **kwargs,
) -> BeamSearchResult:
    """Constrained beam search with an HF decoder-only model on its own device (prompts left-padded); ``kwargs``
    go to :func:`constrained_beam_search`.

    ``layout`` / ``shared``: as in :func:`beam_search_seq2seq`; a layout that fits the vocabulary but is not the
    model's decodes the wrong tokens silently.
    """
    layout = resolve_layout(layout, index.level_sizes, shared, "beam_search_causal_lm")
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
    layout: CodeTokenLayout | Sequence[int],
    *,
    shared: bool | None = None,
    attention_mask: torch.Tensor | None = None,
    decoder_start_token_id: int | None = None,
    **kwargs,
) -> torch.Tensor:
    """(B, N) exact sequence log-probabilities of every ID under an HF encoder-decoder model. ``layout`` is a
    :class:`CodeTokenLayout` or the level sizes (base 0, ``shared`` as given); see :func:`beam_search_seq2seq`."""
    step = Seq2SeqStep(model, decoder_start_token_id)
    state = step.init_state(input_ids, attention_mask)
    return exact_scores(
        step, state, input_ids.shape[0], codes, layout, shared=shared, device=_model_device(model), **kwargs
    )
