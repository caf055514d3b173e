"""The encoder-decoder shared by the generative recommenders (TIGER, MMGRec): it reads a user's history and
emits the L tokens of the next item's semantic ID.

One network, three switches:

* ``encoder_input``: ``"codes"`` - every history item is its L code tokens (TIGER), ``"items"`` - every history
  item is one token, the sum of its L code-token embeddings (L times fewer encoder tokens), or ``"features"`` -
  every history item is one token, a linear map of a fixed item vector (MMGRec's frozen graph representations);
* ``position``: ``"absolute"`` - learned embeddings of the item's slot in the right-aligned window (TIGER in
  genir, SASRec-style), ``"relation"`` - no positional encoding; MMGRec's relation-aware (user-aware)
  self-attention adds ``(g_u * U_Q x_i) . (g_u * U_K x_j) / sqrt(d_h)`` to every head's logits and
  ``g_u * U_V x_j`` to every head's values, with the gate ``g_u = MLP(h_u)`` from a user vector, or ``"none"``;
* the vocabulary: token 0 = PAD, 1 = BOS (decoder start), codes from 2 with per-level offsets
  (:class:`~genir.decoding.CodeTokenLayout`), so a code of one level can never be emitted at another.

Training reads a window of T history items once and trains all of its T next-item targets together: the encoder
is causal at item granularity (a token of item i sees the tokens of items <= i), and the decoder of target slot s
(predicting item s + 1) cross-attends only to items <= s. This is SASRec's all-positions objective carried over to
an encoder-decoder: an epoch costs one pass per window instead of one encoder pass per (user, position), ~avg
history length times fewer encoder tokens than TIGER's one-example-per-prefix training, with the same
conditional distributions (each target sees exactly its own past). A learned start token, visible to every query,
gives empty histories a well-defined (popularity-like) prediction and keeps attention rows from being empty.
The BOS input of each target also receives the encoder state of the target's most recent item (the "anchor"), as
SASRec predicts from the state at the current position: otherwise a decoder query cannot tell which of the
absolute positions it sees is the present (in training the present is slot s, at inference the last slot).

Decoding (:class:`DecoderStep`) keeps a KV cache by default: the memory's cross-attention keys/values once per
query, shared by its beams, and per beam the self-attention keys/values of its prefix, so each of the L levels
runs the decoder on one new position (without the cache, level l re-runs all l + 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from genir.models.base import normal_init
from genir.models.dropout import Dropout, dropout

PAD, BOS, CODE_BASE = 0, 1, 2
READ_ALL = 1 << 29  # a decoding query's item limit: every history item (padding is 1 << 30, the start token -1)
POSITIONS = ("absolute", "relation", "none")
ENCODER_INPUTS = ("codes", "items", "features")


class Attention(nn.Module):
    """Multi-head attention on :func:`torch.nn.functional.scaled_dot_product_attention` with a boolean mask
    (True = may attend) and, when ``relation`` is set, MMGRec's user-gated relation term (module docstring)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, relation: bool = False, user_dim: int = 0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.h, self.dh, self.dropout = num_heads, d_model // num_heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.relation = relation
        if relation:
            self.u_qkv = nn.Linear(d_model, 3 * self.dh, bias=False)  # U_Q, U_K, U_V: single-head projections
            self.gate = nn.Sequential(nn.Linear(user_dim, self.dh), nn.Tanh(), nn.Linear(self.dh, self.dh))

    def forward(self, x, memory, allowed, user=None):
        """x (B, Q, D), memory (B, S, D), allowed (B or 1, Q, S) bool, user (B, du) -> (B, Q, D)."""
        b, nq, d = x.shape
        q = self.q(x).view(b, nq, self.h, self.dh).transpose(1, 2)  # (B, H, Q, dh)
        k, v = self.kv(memory).view(b, memory.shape[1], 2, self.h, self.dh).permute(2, 0, 3, 1, 4)  # (B, H, S, dh)
        mask = allowed[:, None]
        if self.relation:
            if memory is not x:
                raise ValueError("the relation-aware term is a self-attention term")
            g = self.gate(user)[:, None, :]  # (B, 1, dh)
            uq, uk, uv = (g * t for t in self.u_qkv(x).split(self.dh, dim=-1))  # (B, S, dh) each
            bias = (uq @ uk.transpose(1, 2)) / math.sqrt(self.dh)  # (B, S, S), shared by the heads
            mask = bias[:, None].masked_fill(~allowed[:, None], float("-inf"))
            v = v + uv[:, None]
        if self.training and self.dropout > 0 and q.device.type == "cpu":
            # SDPA's CPU dropout draws a full-cost random number per attention weight; see dropout.py
            if mask.dtype == torch.bool:
                mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dh) + mask, dim=-1)
            y = dropout(weights, self.dropout) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, nq, d))

    def keys_values(self, memory):
        """memory (B, S, D) -> keys and values stacked as (2, B, H, S, dh), the projection of :meth:`forward`, for
        the decoder's KV cache (inference, no relation term)."""
        return self.kv(memory).view(memory.shape[0], memory.shape[1], 2, self.h, self.dh).permute(2, 0, 3, 1, 4)

    def attend(self, x, kv, allowed=None):
        """Inference attention of the queries x (B, Q, D) to precomputed ``kv`` (2, B, H, S, dh) (no dropout, no
        relation term); allowed: None (every key) or a bool mask broadcastable to (B, H, Q, S) -> (B, Q, D)."""
        b, nq, d = x.shape
        q = self.q(x).view(b, nq, self.h, self.dh).transpose(1, 2)  # (B, H, Q, dh)
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=allowed)
        return self.out(y.transpose(1, 2).reshape(b, nq, d))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, feed-forward."""

    def __init__(self, d_model, num_heads, d_ff, dropout, cross: bool, relation: bool = False, user_dim: int = 0):
        super().__init__()
        self.self_attn = Attention(d_model, num_heads, dropout, relation, user_dim)
        self.n1 = nn.LayerNorm(d_model)
        self.cross = Attention(d_model, num_heads, dropout) if cross else None
        self.n2 = nn.LayerNorm(d_model) if cross else None
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), Dropout(dropout), nn.Linear(d_ff, d_model))
        self.n3 = nn.LayerNorm(d_model)
        self.drop = Dropout(dropout)

    def forward(self, x, self_allowed, memory=None, cross_allowed=None, user=None, self_group: int = 0):
        """``self_group`` > 0: the Q queries form contiguous groups of that size that attend only within their
        group, so self-attention runs on (B * Q / g, g, D) with ``self_allowed`` (1, g, g) instead of on a
        (Q, Q) mask that is almost all False (g x fewer attention scores and dropout draws)."""
        h = self.n1(x)
        if self_group:
            b, nq, d = h.shape
            g = h.reshape(b * nq // self_group, self_group, d)
            x = x + self.drop(self.self_attn(g, g, self_allowed, user).reshape(b, nq, d))
        else:
            x = x + self.drop(self.self_attn(h, h, self_allowed, user))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.n2(x), memory, cross_allowed))
        return x + self.drop(self.ff(self.n3(x)))

    def step(self, x, past, cross_kv, cross_allowed):
        """One new decoder position per row, for the KV cache (inference: eval mode, no dropout).

        x (R, 1, D): the new position of each of the R rows, the rows of a query contiguous (R = B x rows per
        query); past (2, R, H, n, dh) or None: this block's self-attention keys/values of the row's n earlier
        positions; cross_kv (2, B, H, S, dh): the memory's cross-attention keys/values, one per query, shared by
        its rows; cross_allowed (B, 1, 1, S). Returns the new x (R, 1, D) and past with this position appended
        (2, R, H, n + 1, dh). Same arithmetic as :meth:`forward` on BOS + the prefix (whose causal groups let a
        position see only itself and earlier ones), restricted to the last position."""
        if self.self_attn.relation:
            raise ValueError("the decoder has no relation-aware self-attention")
        h = self.n1(x)
        kv = self.self_attn.keys_values(h)  # (2, R, H, 1, dh)
        kv = kv if past is None else torch.cat([past, kv], dim=3)
        x = x + self.self_attn.attend(h, kv)  # a new position sees all of its row's positions
        r, _, d = x.shape
        b = cross_kv.shape[1]
        h = self.n2(x).view(b, r // b, d)  # the rows of one query are queries of its one memory
        x = x + self.cross.attend(h, cross_kv, cross_allowed).view(r, 1, d)
        return x + self.ff(self.n3(x)), kv


class GenerativeTransformer(nn.Module):
    """History -> next item's code tokens. See the module docstring for the switches and the training layout."""

    def __init__(self, vocab_size: int, num_levels: int, *, d_model: int, num_heads: int, d_ff: int,
                 num_encoder_layers: int, num_decoder_layers: int, dropout: float, max_history: int,
                 position: str = "absolute", encoder_input: str = "codes", item_dim: int = 0, user_dim: int = 0):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        if encoder_input not in ENCODER_INPUTS:
            raise ValueError(f"encoder_input must be one of {ENCODER_INPUTS}, got {encoder_input!r}")
        if encoder_input == "features" and item_dim <= 0:
            raise ValueError("encoder_input='features' needs item_dim > 0")
        if position == "relation" and user_dim <= 0:
            raise ValueError("position='relation' needs user_dim > 0 (the size of the user vectors)")
        self.num_levels, self.position, self.encoder_input = num_levels, position, encoder_input
        self.max_history = max_history
        self.token_emb = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        # level embeddings of the encoder's code tokens; absent when it reads one token per item (an unused
        # parameter would stop DistributedDataParallel, which expects a gradient for every parameter)
        self.enc_level = nn.Embedding(num_levels, d_model) if encoder_input == "codes" else None
        self.dec_level = nn.Embedding(num_levels, d_model)
        self.pos_emb = nn.Embedding(max_history, d_model) if position == "absolute" else None
        self.item_proj = nn.Linear(item_dim, d_model, bias=False) if encoder_input == "features" else None
        self.start = nn.Parameter(torch.zeros(d_model))
        relation = position == "relation"
        self.encoder = nn.ModuleList(Block(d_model, num_heads, d_ff, dropout, cross=False, relation=relation,
                                           user_dim=user_dim) for _ in range(num_encoder_layers))
        self.decoder = nn.ModuleList(Block(d_model, num_heads, d_ff, dropout, cross=True)
                                     for _ in range(num_decoder_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = Dropout(dropout)
        self.apply(normal_init)

    def encode(self, item_tokens, item_valid, item_vectors=None, user=None):
        """Encode a right-aligned window.

        Args:
            item_tokens: (B, T, L) code tokens of the history items (PAD rows for padding).
            item_valid: (B, T) bool, False for padding.
            item_vectors: (B, T, item_dim) with ``encoder_input='features'``.
            user: (B, user_dim) with ``position='relation'``.

        Returns: memory (B, S, D) and ``memory_item`` (B, S): the window slot of each memory token (-1 for the
        start token, which every query may read; a large value for padding, which none may).
        """
        b, t, nl = item_tokens.shape
        dev = item_tokens.device
        slot = torch.arange(t, device=dev)
        if self.encoder_input == "codes":
            h = self.token_emb(item_tokens) + self.enc_level.weight  # (B, T, L, D)
            if self.pos_emb is not None:
                h = h + self.pos_emb(slot + self.max_history - t)[:, None]
            h = h.flatten(1, 2)  # (B, T*L, D)
            item = slot.repeat_interleave(nl).expand(b, -1)
            valid = item_valid.repeat_interleave(nl, dim=1)
        else:
            h = self.token_emb(item_tokens).sum(2) if self.encoder_input == "items" else self.item_proj(item_vectors)
            if self.pos_emb is not None:
                h = h + self.pos_emb(slot + self.max_history - t)
            item, valid = slot.expand(b, -1), item_valid
        h = torch.cat([self.start.expand(b, 1, -1), h], dim=1)
        item = torch.cat([item.new_full((b, 1), -1), item.masked_fill(~valid, 1 << 30)], dim=1)  # (B, S)
        allowed = item[:, None, :] <= item[:, :, None].clamp_max(t)  # (B, S, S): keys of items <= query's item
        x = self.drop(h)
        for block in self.encoder:
            x = block(x, allowed, user=user)
        return self.enc_norm(x), item

    def decode(self, tokens, levels, memory, memory_item, group_size: int, limit):
        """Logits (B, Q, V) of decoder inputs ``tokens`` (B, Q) at ID levels ``levels`` (Q,).

        The Q queries form contiguous groups of ``group_size``, each one target's sequence (BOS + its codes so
        far), which see each other causally and nothing of the other groups; a query reads the memory tokens
        whose item is <= its ``limit`` (B or 1, Q). Training packs the T targets of a window as T groups;
        decoding packs the beams of a query as groups, so beams share the query's memory instead of copying it."""
        nq = tokens.shape[1]
        if nq % group_size:
            raise ValueError(f"{nq} decoder queries do not split into groups of {group_size}")
        order = torch.arange(group_size, device=tokens.device)
        allowed_self = (order[None, :] <= order[:, None])[None]  # (1, g, g) causal within a group
        allowed_cross = memory_item[:, None, :] <= limit[:, :, None]  # (B, Q, S)
        # anchor: the encoder state of the last memory token a target may read (its most recent item, or the
        # start token), added to the target's BOS input as SASRec reads the state at its own position: it tells
        # the decoder where "now" is, which the keys' absolute positions alone do not
        last = (allowed_cross * torch.arange(1, memory.shape[1] + 1, device=tokens.device)).argmax(-1)  # (B, Q)
        anchor = memory.gather(1, last[:, :, None].expand(-1, -1, memory.shape[2]))
        anchor = anchor * (levels == 0)[None, :, None]  # on the BOS input only: code tokens keep their identity
        x = self.drop(self.token_emb(tokens) + self.dec_level(levels) + anchor)
        for block in self.decoder:
            x = block(x, allowed_self, memory, allowed_cross, self_group=group_size)
        return self.dec_norm(x) @ self.token_emb.weight.T  # tied output embedding

    def training_loss(self, item_tokens, item_valid, target_tokens, target_valid, item_vectors=None, user=None):
        """Mean cross-entropy over the L tokens of every valid target of every window.

        item_tokens (B, T, L) inputs; target_tokens (B, T, L): the ID of the item after each input slot;
        target_valid (B, T)."""
        b, t, nl = target_tokens.shape
        memory, memory_item = self.encode(item_tokens, item_valid, item_vectors, user)
        bos = target_tokens.new_full((b, t, 1), BOS)
        dec_in = torch.cat([bos, target_tokens[:, :, :-1]], dim=2).flatten(1)  # (B, T*L)
        slot = torch.arange(t, device=dec_in.device).repeat_interleave(nl)[None]  # (1, T*L)
        levels = torch.arange(nl, device=dec_in.device).repeat(t)
        logits = self.decode(dec_in, levels, memory, memory_item, nl, slot)  # (B, T*L, V)
        labels = target_tokens.masked_fill(~target_valid[:, :, None], -100).flatten(1)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    def decoder_cache(self, memory, memory_item):
        """What every KV-cached decoding step of the B queries reads and none changes: per decoder block the
        cross-attention keys/values of the memory (2, B, H, S, dh), computed once per query and shared by all of
        its rows (no per-beam copy); the cross mask (B, 1, 1, S) (every history item, padding excluded, as
        :class:`DecoderStep` reads them); and the anchor (B, D) of :meth:`decode`."""
        allowed = memory_item <= READ_ALL  # (B, S)
        last = (allowed * torch.arange(1, memory.shape[1] + 1, device=memory.device)).argmax(-1)  # (B,)
        anchor = memory.gather(1, last[:, None, None].expand(-1, 1, memory.shape[2]))[:, 0]
        cross = [block.cross.keys_values(memory) for block in self.decoder]
        return cross, allowed[:, None, None, :], anchor

    def decode_step(self, tokens, level: int, cross, cross_allowed, anchor, past):
        """The KV-cached counterpart of :meth:`decode` at inference: logits (R, V) of one new decoder input per
        row, ``tokens`` (R,) at ID level ``level`` (BOS at level 0), given the row's earlier positions through
        ``past`` (per decoder block (2, R, H, n, dh) keys/values, None at level 0). The R rows are query-major,
        R / B per query, and read ``cross``, ``cross_allowed``, ``anchor`` of :meth:`decoder_cache`. Returns the
        logits and ``past`` with this position appended: the same logits as :meth:`decode` at the last position
        of BOS + the row's codes, for one decoder position instead of ``level + 1``."""
        if self.training:
            raise RuntimeError("the KV-cached decoder step is for inference (no dropout): call .eval() first")
        x = self.token_emb(tokens) + self.dec_level.weight[level]  # (R, D)
        if level == 0:  # the anchor, on the BOS input only (as in decode)
            x = (x.view(anchor.shape[0], -1, x.shape[1]) + anchor[:, None]).view_as(x)
        x = x[:, None]  # (R, 1, D)
        new = []
        for block, kv, p in zip(self.decoder, cross, past):
            x, p = block.step(x, p, kv, cross_allowed)
            new.append(p)
        return self.dec_norm(x[:, 0]) @ self.token_emb.weight.T, new  # tied output embedding


@dataclass(frozen=True)
class DecoderCache:
    """The KV cache of :class:`DecoderStep` once it has decoded a position. ``cross``, ``cross_allowed`` and
    ``anchor`` are per query (B rows) and never change; ``past`` has one row per decoding row (R = B x
    ``per_query``, query-major) and grows by one position per step, so reordering gathers ``past`` only."""

    cross: list  # per decoder block, (2, B, H, S, dh) cross-attention keys/values of the memory
    cross_allowed: torch.Tensor  # (B, 1, 1, S) bool
    anchor: torch.Tensor  # (B, D)
    past: list  # per decoder block, (2, R, H, n, dh) self-attention keys/values (None before the first position)
    per_query: int  # rows per query
    length: int  # n: decoded positions (BOS + the codes so far)


def _rows_per_query(rows, num_queries: int, per_query: int) -> int:
    """The number of rows per query after keeping ``rows`` (R',) of a query-major layout with ``per_query`` rows
    per query; the rows must stay grouped by query (one memory per query)."""
    if rows.numel() % num_queries:
        raise ValueError(f"{rows.numel()} rows for {num_queries} queries: rows must be query-major")
    new = rows.numel() // num_queries
    expected = torch.arange(num_queries, device=rows.device).repeat_interleave(new)
    if not torch.equal(rows // per_query, expected):
        raise ValueError("DecoderStep keeps one memory per query: rows must stay grouped by query")
    return new


class DecoderStep:
    """``step_fn`` / ``reorder_cache`` for :func:`genir.decoding.constrained_beam_search` and
    :func:`genir.decoding.exact_scores`. The state starts as ``(memory, memory_item)`` of the B queries plus the
    number of rows per query (:meth:`init_state`); the rows of one query are contiguous (query-major, as both
    searches keep them), so each step decodes all of a query's rows against its one memory (no per-beam copy).

    ``kv_cache=True`` (in eval mode): the first step turns the state into a :class:`DecoderCache` (the memory's
    cross-attention keys/values, once per query) and every step runs the decoder on the one new position of each
    row, its self-attention reading the keys/values of the row's earlier positions (gathered with the rows by
    :meth:`reorder_cache`): level l costs one decoder position instead of l + 1. ``kv_cache=False``, and any
    call in training mode (dropout), re-run the short L-token decoder over BOS + the codes so far (the
    reference). The relation-aware attention is the encoder's (the decoder has none), so it is in the memory
    either way."""

    def __init__(self, net: GenerativeTransformer, kv_cache: bool = True):
        self.net, self.kv_cache = net, kv_cache

    @staticmethod
    def init_state(memory, memory_item):
        return memory, memory_item, 1

    def __call__(self, tokens, cache):
        if self.kv_cache and not self.net.training:
            return self._cached(tokens, cache)
        memory, memory_item, per_query = cache
        rows, n = tokens.shape
        b = memory.shape[0]
        dec_in = torch.cat([tokens.new_full((rows, 1), BOS), tokens], dim=1).view(b, per_query * (n + 1))
        levels = torch.arange(n + 1, device=tokens.device).repeat(per_query)
        # every history item may be read (padding is 1 << 30)
        limit = torch.full((1, per_query * (n + 1)), READ_ALL, device=tokens.device)
        logits = self.net.decode(dec_in, levels, memory, memory_item, n + 1, limit)  # (B, g*(n+1), V)
        return logits.view(rows, n + 1, -1)[:, -1], cache

    def _cached(self, tokens, cache):
        """Logits (R, V) of the next code of every row from the positions not yet in the cache: the one new
        position (the last code, or BOS at the first step), or all of BOS + ``tokens`` for a fresh state."""
        if not isinstance(cache, DecoderCache):
            memory, memory_item, per_query = cache
            cross, allowed, anchor = self.net.decoder_cache(memory, memory_item)
            cache = DecoderCache(cross, allowed, anchor, [None] * len(cross), per_query, 0)
        rows, n = tokens.shape
        if rows != cache.anchor.shape[0] * cache.per_query:
            raise ValueError(f"{rows} rows for a cache of {cache.anchor.shape[0]} queries x {cache.per_query}")
        if cache.length > n:
            raise ValueError(f"the cache already holds {cache.length} positions: nothing new in BOS + {n} codes")
        past = cache.past
        for level in range(cache.length, n + 1):  # one position, except for a fresh state given codes
            inp = tokens[:, level - 1] if level else tokens.new_full((rows,), BOS)
            logits, past = self.net.decode_step(inp, level, cache.cross, cache.cross_allowed, cache.anchor, past)
        return logits, replace(cache, past=past, length=n + 1)

    @staticmethod
    def reorder_cache(cache, rows):
        """Keep row ``rows[i]`` as row ``i``; the rows must stay grouped by query (query-major). The per-query
        parts (memory, cross-attention keys/values) are kept as they are; the KV cache's per-row self-attention
        keys/values are gathered. Never modifies ``cache`` in place (:func:`~genir.decoding.exact_scores` reorders
        its initial state once per chunk)."""
        if isinstance(cache, DecoderCache):
            new = _rows_per_query(rows, cache.anchor.shape[0], cache.per_query)
            return replace(cache, past=[p.index_select(1, rows) for p in cache.past], per_query=new)
        memory, memory_item, per_query = cache
        return memory, memory_item, _rows_per_query(rows, memory.shape[0], per_query)
