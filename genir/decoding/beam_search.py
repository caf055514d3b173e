"""Beam search for fixed-length semantic IDs, generic over the model, constrained by a :class:`PrefixIndex`.

The model is seen only through two callables, so one decoder serves any network that returns next-token logits
and keeps some cache (an HF ``past_key_values``, an RNN state, nothing at all):

* ``step_fn(tokens, cache) -> (logits, new_cache)``: ``tokens`` (R, l) are the token ids of the ``l`` codes
  generated so far for each of the R rows (``l = 0`` at the first step; the model adds its own start token or
  prompt), ``logits`` (R, V) score the next token over the model's full vocabulary (log-probabilities work as
  well: log-softmax leaves them unchanged).
* ``reorder_cache(cache, rows) -> cache``: keep row ``rows[i]`` of the previous call as row ``i``. The number of
  rows may change (B at the first step, B x beams afterwards). It may modify ``cache`` in place, like HF's
  ``Cache.reorder_cache``. If not given, ``step_fn.reorder_cache`` is used (the adapters in
  :mod:`genir.decoding.hf_adapters` have one).

At level ``l`` the scores are the log-softmax over the FULL vocabulary (so a hypothesis' score is its true
sequence log-probability under the model), of which only the ``K_l`` columns of level ``l``'s tokens are read
(``layout.token_range(l)``: its own block, or the first ``K_l`` tokens of the block all levels share);
the prefix index turns invalid codes into ``-inf`` with gathers on the model's device, and the next beams are the
top ``beam_width`` of beams x candidates. At a CSR level the candidates of a beam are its ``max_branch`` children
rather than all ``K_l`` codes (STATIC's idea), so the top-k runs over fewer entries than the unconstrained search.

``end_code`` is for IDs of varying length padded to L with one code (an LLM's titles ending in EOS): a hypothesis
that has written it is complete, the remaining levels repeat it at no cost (an ID's score is the probability of
its codes up to and including the first end code, never of the padding), and the search stops calling the model
once every live hypothesis is complete.

``exclude`` removes given items per query (a recommender's already-seen items) inside the search, not after it:
a prefix whose every ID is excluded for that query gets ``-inf`` like an invalid one, so no beam is spent on it
and the search still returns ``k`` items when the catalogue has ``k`` others. Filtering the beams afterwards, as
is common, returns short lists for users with long histories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genir.decoding.prefix_index import PrefixIndex
from genir.decoding.tokens import CodeTokenLayout, resolve_layout

_MAX_SHOWN = 5  # offending values quoted in an error message

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
ReorderFn = Callable[[Any, torch.Tensor], Any]


@dataclass
class BeamSearchResult:
    """Top-k IDs of every query, best first.

    Attributes:
        items: (B, k) catalogue row of each ID; ``-1`` for padding and, without constraints, for an ID that is
            not in the catalogue.
        codes: (B, k, L) code tuples; ``-1`` for padding.
        scores: (B, k) sequence log-probabilities (sum over the L tokens); ``-inf`` for padding.
        valid: (B, k) bool, False for padding: fewer than k live hypotheses (dead beams are never returned).
    """

    items: torch.Tensor
    codes: torch.Tensor
    scores: torch.Tensor
    valid: torch.Tensor

    def to_lists(self) -> list[list[tuple[int, tuple[int, ...], float]]]:
        """Per query, the live ``(item, codes, score)`` triples, best first, padding dropped."""
        items, codes, scores, valid = (t.cpu() for t in (self.items, self.codes, self.scores, self.valid))
        out = []
        for q in range(items.shape[0]):
            keep = valid[q].nonzero().flatten().tolist()
            out.append([(int(items[q, j]), tuple(codes[q, j].tolist()), float(scores[q, j])) for j in keep])
        return out


def _reorder_of(step_fn: StepFn, reorder_cache: ReorderFn | None) -> ReorderFn:
    if reorder_cache is not None:
        return reorder_cache
    hook = getattr(step_fn, "reorder_cache", None)
    if hook is None:
        raise TypeError("pass reorder_cache=..., or give step_fn a reorder_cache(cache, rows) method")
    return hook


class _Exclusion:
    """Per query, the catalogue rows it must not get, as counts of excluded IDs under every (query, prefix state).

    A candidate child state is dead for query q when the count of q's excluded IDs under it equals the number of
    IDs under it. The counts are kept as sorted keys ``q * S_d + state`` per depth d and read with
    ``searchsorted``, so memory grows with the number of excluded items, not with B x N.
    """

    def __init__(self, index: PrefixIndex, exclude, batch_size: int, device):
        n = index.num_items
        if isinstance(exclude, torch.Tensor):
            if exclude.ndim != 2 or exclude.shape[0] != batch_size:
                raise ValueError(f"exclude must be ({batch_size}, T), got shape {tuple(exclude.shape)}")
            _check_integer(exclude, "exclude")
            rows = exclude.to(device=device, dtype=torch.long)
            queries = torch.arange(batch_size, device=device)[:, None].expand_as(rows)
        else:
            if len(exclude) != batch_size:
                raise ValueError(f"exclude has {len(exclude)} rows, expected one per query ({batch_size})")
            lists = []
            for q, r in enumerate(exclude):
                r = torch.as_tensor(np.asarray(r) if not isinstance(r, torch.Tensor) else r)
                if r.numel():
                    _check_integer(r, f"exclude[{q}]")
                lists.append(r.long().flatten().cpu())
            queries = torch.cat([torch.full_like(r, q) for q, r in enumerate(lists)]).to(device)
            rows = torch.cat(lists).to(device)
        rows, queries = rows.flatten(), queries.flatten()
        # the documented padding values (-1, and N = the pad item of histories padded with ``num_items``) are
        # skipped; anything else outside [0, N) is a caller's bug (a wrong id space, an off-by-one), not padding
        pad = (rows == -1) | (rows == n)
        bad = ~pad & ((rows < 0) | (rows > n))
        if bad.any():
            where = bad.nonzero().flatten()
            shown = ", ".join(
                f"{int(rows[i])} (query {int(queries[i])})" for i in where[:_MAX_SHOWN].tolist()
            )
            more = f" and {where.numel() - _MAX_SHOWN} more" if where.numel() > _MAX_SHOWN else ""
            raise ValueError(
                f"exclude: {where.numel()} value(s) out of range: {shown}{more}; excluded items must be catalogue "
                f"rows in [0, {n}) (the index has {n} items), or the padding values -1 or {n} (num_items)"
            )
        keep = ~pad
        pairs = torch.unique(queries[keep] * n + rows[keep])
        queries = pairs // n
        self.index = index
        states = index.ancestors(pairs % n)  # (n_excluded, L)
        self.keys, self.counts = [None], [None]  # per depth 1..L
        for depth in range(1, index.num_levels + 1):
            keys, counts = torch.unique(queries * index.num_states[depth] + states[:, depth - 1], return_counts=True)
            self.keys.append(keys)
            self.counts.append(counts)

    def dead(self, query: torch.Tensor, children: torch.Tensor, depth: int) -> torch.Tensor:
        """(R, C) bool: which child states (depth ``depth``, -1 = none) hold only excluded IDs for their row's query."""
        keys, counts = self.keys[depth], self.counts[depth]
        if keys.numel() == 0:
            return torch.zeros_like(children, dtype=torch.bool)
        safe = children.clamp_min(0)
        wanted = query[:, None] * self.index.num_states[depth] + safe
        pos = torch.searchsorted(keys, wanted).clamp_max_(keys.numel() - 1)
        excluded = torch.where(keys[pos] == wanted, counts[pos], 0)
        return (children >= 0) & (excluded >= self.index.leaf_counts(depth).index_select(0, safe.flatten()).view_as(safe))


def _check_integer(values: torch.Tensor, name: str) -> None:
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer catalogue rows, got dtype {values.dtype}")


def _step_log_probs(
    step_fn: StepFn, tokens, cache, rows: int, layout: CodeTokenLayout, dtype: torch.dtype, device
):
    logits, cache = step_fn(tokens, cache)
    if logits.ndim != 2 or logits.shape[0] != rows:
        raise ValueError(f"step_fn returned logits of shape {tuple(logits.shape)}, expected ({rows}, V)")
    layout.check_vocab_size(logits.shape[1])
    return torch.log_softmax(logits.to(device=device, dtype=dtype), dim=-1), cache


@torch.no_grad()
def constrained_beam_search(
    step_fn: StepFn,
    init_state: Any,
    batch_size: int,
    index: PrefixIndex | None,
    beam_width: int,
    k: int | None = None,
    device: torch.device | str | None = None,
    *,
    reorder_cache: ReorderFn | None = None,
    layout: CodeTokenLayout | None = None,
    shared: bool | None = None,
    constrained: bool = True,
    score_dtype: torch.dtype = torch.float32,
    exclude: Sequence | torch.Tensor | None = None,
    end_code: int | None = None,
) -> BeamSearchResult:
    """Top-``k`` semantic IDs per query by beam search over the L levels.

    Args:
        step_fn, reorder_cache: the model, see the module docstring. ``init_state`` is the cache of the first
            call, with ``batch_size`` rows (one per query).
        index: the valid IDs. Needed when ``constrained``; without constraints it only maps the found code
            tuples to catalogue rows (may be None, then ``layout`` is required and items are -1).
        beam_width: beams kept per query after every level (at most the number of distinct prefixes there).
        k: IDs returned per query, ``k <= beam_width`` (default: ``beam_width``). With ``beam_width`` >= the
            number of IDs in the index the search keeps every prefix and the ranking is exact.
        device: where the search runs (default: the index's device, or the logits' when ``index`` is None).
        layout: token ids of the codes (default: ``CodeTokenLayout(index.level_sizes, base=0, shared=shared)``).
            It must be the layout the model was trained with: a per-level layout read from a model whose levels
            share code tokens (or the reverse) fails only when the vocabulary is too small for it, and otherwise
            ranks the wrong tokens without any error.
        shared: whether all levels share one block of code tokens (see :class:`CodeTokenLayout`); used to build
            the default layout, and checked against ``layout`` when both are given (None: the layout's, or
            per-level).
        constrained: False runs the same search without the mask (for measuring its cost and invalid IDs).
        score_dtype: dtype of log-softmax and accumulated scores (float32 matches HF ``generate``).
        exclude: per query, catalogue rows never to return (e.g. the user's history): a sequence of B int
            sequences, or a (B, T) int tensor. ``-1`` and ``N`` (``num_items``, the pad item histories are padded
            with) are padding and ignored; any other value outside ``[0, N)`` raises ValueError. Needs
            ``constrained``. The search then ranks the remaining IDs exactly as if the excluded ones did not exist.
        end_code: the code that ends a variable-length ID (see the module docstring); the IDs in the index must
            repeat it up to level L once written. Needs ``constrained``. Scores then equal :func:`exact_scores`
            with the same ``end_code``.

    Returns:
        :class:`BeamSearchResult` with (B, k) tensors, best first; dead beams (``-inf``) come back as padding.
    """
    layout = resolve_layout(
        layout, None if index is None else index.level_sizes, shared, "constrained_beam_search"
    )
    if index is not None and tuple(index.level_sizes) != layout.level_sizes:
        raise ValueError(f"layout level sizes {layout.level_sizes} != index level sizes {index.level_sizes}")
    if constrained and index is None:
        raise ValueError("constrained search needs an index")
    k = beam_width if k is None else int(k)
    if not 1 <= k <= beam_width:
        raise ValueError(f"need 1 <= k <= beam_width, got k={k}, beam_width={beam_width}")
    reorder = _reorder_of(step_fn, reorder_cache)
    if device is None and index is not None:
        device = index.device
    device = torch.device(device) if device is not None else None
    if index is not None and device is not None:
        index = index.to(device)
    if exclude is not None and not constrained:
        raise ValueError("exclude needs the constrained search (an index)")
    if end_code is not None:
        if not constrained:
            raise ValueError("end_code needs the constrained search (an index)")
        if not 0 <= int(end_code) < min(layout.level_sizes):
            raise ValueError(f"end_code {end_code} is not a code of every level (sizes {layout.level_sizes})")
        end_code = int(end_code)

    num_levels, b = layout.num_levels, int(batch_size)
    inf = float("inf")
    cache = init_state
    width = 1  # beams per query in the current rows
    history = None  # (B*width, l) codes of the live hypotheses
    scores = None  # (B*width,)
    states = None  # (B*width,) depth-l index states
    exclusion = None
    ended = None  # (B*width,) bool: the hypothesis has written end_code (its ID is complete)
    for level in range(num_levels):
        rows = b * width
        tokens = (
            layout.to_tokens(history)
            if history is not None
            else torch.empty(rows, 0, dtype=torch.long, device=device)
        )
        log_probs, cache = _step_log_probs(
            step_fn, tokens, cache, rows, layout, score_dtype, device
        )
        if device is None:
            device = log_probs.device
        if history is None:
            history = torch.empty(rows, 0, dtype=torch.long, device=device)
            scores = torch.zeros(rows, dtype=score_dtype, device=device)
            states = torch.zeros(rows, dtype=torch.long, device=device)
        start, stop = layout.token_range(level)
        columns = log_probs[:, start:stop]  # (R, K_l): only this level's tokens are read
        dense = not constrained or index.is_dense(level)
        if not constrained:
            candidates = columns
        elif dense:
            valid = index.allowed(states, level)
            candidates = torch.where(valid, columns, -inf)
        else:
            child_codes, valid = index.children(states, level)  # (R, C)
            candidates = columns.gather(1, child_codes).masked_fill_(~valid, -inf)
        if exclude is not None:
            if exclusion is None:
                exclusion = _Exclusion(index.to(device), exclude, b, device)
            query = torch.arange(b, device=device).repeat_interleave(width)
            dead = exclusion.dead(query, index.child_states(states, level), level + 1)
            candidates = candidates.masked_fill(dead, -inf)
            valid = valid & ~dead
        if ended is not None and bool(ended.any()):  # a complete ID only repeats end_code, at no cost
            slot_codes = torch.arange(candidates.shape[1], device=device) if dense else child_codes
            forced = torch.zeros_like(candidates).masked_fill_(~((slot_codes == end_code) & valid), -inf)
            candidates = torch.where(ended[:, None], forced, candidates)
        num_cand = candidates.shape[1]
        total = (scores[:, None] + candidates).view(b, width * num_cand)
        cap = index.num_states[level + 1] if constrained else int(np.prod(layout.level_sizes[: level + 1]))
        new_width = min(beam_width, cap, width * num_cand)
        top_scores, top = total.topk(new_width, dim=1)  # sorted, best first
        source = (
            top // num_cand + torch.arange(b, device=device)[:, None] * width
        ).flatten()  # (B*new_width,)
        slot = (top % num_cand).flatten()
        code = slot if dense else child_codes.take(source * num_cand + slot)
        if constrained:
            parent = states.index_select(0, source)
            states = index.advance(parent, code, level) if dense else index.child_state(parent, slot, level)
            # a -inf pick (fewer live candidates than beams, e.g. after exclusion) may be a padded slot with no
            # child: it is a dead beam, never followed
            states = states.masked_fill(~torch.isfinite(top_scores.flatten()), -1)
        history = torch.cat([history.index_select(0, source), code[:, None]], dim=1)
        scores = top_scores.flatten()
        width = new_width
        if end_code is not None:
            ended = (code == end_code) if ended is None else ended.index_select(0, source) | (code == end_code)
            if level + 1 < num_levels and bool((ended | ~torch.isfinite(scores)).all()):
                # every live ID is complete: walk the padding through the index without the model
                pad = torch.full_like(code, end_code)
                for rest in range(level + 1, num_levels):
                    states = index.advance(states, pad, rest)
                    history = torch.cat([history, pad[:, None]], dim=1)
                break
        if level + 1 < num_levels:
            cache = reorder(cache, source)

    if constrained:
        items = index.item_of(states)
    elif index is not None:
        items = index.lookup(history)
    else:
        items = torch.full_like(scores, -1, dtype=torch.long)
    items, codes, scores = items.view(b, width), history.view(b, width, num_levels), scores.view(b, width)
    valid = torch.isfinite(scores)
    if constrained:
        valid &= items >= 0
    items = items.masked_fill(~valid, -1)
    codes = codes.masked_fill(~valid[:, :, None], -1)
    scores = scores.masked_fill(~valid, -inf)
    if width >= k:
        return BeamSearchResult(items[:, :k], codes[:, :k], scores[:, :k], valid[:, :k])
    pad = k - width
    return BeamSearchResult(
        torch.cat([items, items.new_full((b, pad), -1)], 1),
        torch.cat([codes, codes.new_full((b, pad, num_levels), -1)], 1),
        torch.cat([scores, scores.new_full((b, pad), -inf)], 1),
        torch.cat([valid, valid.new_zeros((b, pad))], 1),
    )


@torch.no_grad()
def exact_scores(
    step_fn: StepFn,
    init_state: Any,
    batch_size: int,
    codes,
    layout: CodeTokenLayout | Sequence[int],
    *,
    shared: bool | None = None,
    reorder_cache: ReorderFn | None = None,
    max_rows: int = 4096,
    score_dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    end_code: int | None = None,
) -> torch.Tensor:
    """Sequence log-probability of EVERY catalogue ID for every query, by teacher forcing: (B, N).

    The exact ranking that beam search approximates; meant for small catalogues and for checking the decoder.
    Items are scored in chunks of ``max_rows // batch_size`` items x all queries. Each chunk starts from
    ``reorder_cache(init_state, rows)`` with the query of every row, so ``reorder_cache`` must accept the initial
    state and must not modify it in place (true for the adapters in :mod:`genir.decoding.hf_adapters`).
    Scores use the same full-vocabulary log-softmax as :func:`constrained_beam_search`. ``layout`` is a
    :class:`CodeTokenLayout` or the level sizes (then base 0, and ``shared`` says whether the levels share one
    block of code tokens; with a layout, ``shared`` if given must agree with it). With ``end_code`` an ID's score
    stops after its first end code (the padding after it counts nothing), as in :func:`constrained_beam_search`.
    """
    if isinstance(layout, CodeTokenLayout):
        layout = resolve_layout(layout, None, shared, "exact_scores")
    else:
        layout = resolve_layout(None, layout, shared, "exact_scores")
    reorder = _reorder_of(step_fn, reorder_cache)
    codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
    if codes.ndim != 2 or codes.shape[1] != layout.num_levels:
        raise ValueError(f"codes must have shape (N, {layout.num_levels}), got {tuple(codes.shape)}")
    b, n = int(batch_size), codes.shape[0]
    chunk = max(1, int(max_rows) // b)
    out = []
    for first in range(0, n, chunk):
        part = codes[first : first + chunk]
        c = part.shape[0]
        dev = device if device is not None else part.device
        tokens = layout.to_tokens(part.to(dev)).repeat(b, 1)  # (B*c, L), query-major
        query_rows = torch.arange(b, device=dev).repeat_interleave(c)
        cache = reorder(init_state, query_rows)
        total = torch.zeros(b * c, dtype=score_dtype, device=dev)
        counted = torch.ones(b * c, part.shape[1], dtype=torch.bool, device=dev)
        if end_code is not None:  # levels after the first end code are padding
            is_end = (part.to(dev) == int(end_code)).long()
            counted = (is_end.cumsum(1) - is_end == 0).repeat(b, 1)
        for level in range(layout.num_levels):
            if not bool(counted[:, level].any()):
                break
            log_probs, cache = _step_log_probs(
                step_fn, tokens[:, :level], cache, b * c, layout, score_dtype, dev
            )
            step = log_probs.gather(1, tokens[:, level : level + 1]).squeeze(1)
            total += torch.where(counted[:, level], step, torch.zeros_like(step))
        out.append(total.view(b, c))
    return torch.cat(out, dim=1)
