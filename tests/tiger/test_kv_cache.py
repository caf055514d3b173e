"""The KV-cached decoder step (``DecoderStep(net, kv_cache=True)``) gives the logits of the reference step that
re-runs the decoder over BOS + the prefix (``kv_cache=False``), through a real beam search, exact scoring and any
reordering of a query's rows, for every position / encoder-input switch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from genir.decoding import CodeTokenLayout, PrefixIndex, constrained_beam_search, exact_scores
from genir.models.transformer import (
    CODE_BASE,
    ENCODER_INPUTS,
    PAD,
    POSITIONS,
    DecoderCache,
    DecoderStep,
    GenerativeTransformer,
)
from tests.decoding.conftest import random_catalogue

LEVEL_SIZES = (4, 3, 5)
N_ITEMS, N_QUERIES, MAX_HISTORY, DIM = 40, 4, 6, 8
ATOL = 1e-5
SWITCHES = list(itertools.product(POSITIONS, ENCODER_INPUTS))


class Tiny:
    """A tiny random network in eval mode, its catalogue, and the memory of ``N_QUERIES`` histories (one empty,
    one full, the others padded)."""

    def __init__(self, position: str, encoder_input: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        self.codes = random_catalogue(rng, LEVEL_SIZES, N_ITEMS)  # (N, L)
        self.layout = CodeTokenLayout(LEVEL_SIZES, base=CODE_BASE)
        self.index = PrefixIndex.from_codes(self.codes, LEVEL_SIZES)
        self.net = GenerativeTransformer(
            self.layout.vocab_end, len(LEVEL_SIZES), d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
            num_decoder_layers=2, dropout=0.1, max_history=MAX_HISTORY, position=position,
            encoder_input=encoder_input, item_dim=DIM, user_dim=DIM)
        with torch.no_grad():  # larger than the 0.02 init, so attention weights and logits differ visibly
            for p in self.net.parameters():
                p.normal_(0, 0.3)
        self.net.eval()
        codes = torch.as_tensor(self.codes)
        tokens = torch.cat([self.layout.to_tokens(codes), torch.full((1, len(LEVEL_SIZES)), PAD)])  # (N + 1, L)
        vectors = torch.cat([torch.randn(N_ITEMS, DIM), torch.zeros(1, DIM)])
        history = torch.full((N_QUERIES, MAX_HISTORY), N_ITEMS)  # right-aligned, N_ITEMS = padding
        for q, length in enumerate([0, MAX_HISTORY, 2, 4][:N_QUERIES]):
            if length:
                history[q, -length:] = torch.as_tensor(rng.choice(N_ITEMS, length, replace=False))
        self.history = history
        with torch.no_grad():
            self.memory = self.net.encode(tokens[history], history != N_ITEMS, vectors[history],
                                          torch.randn(N_QUERIES, DIM))

    def state(self):
        return DecoderStep.init_state(*self.memory)


class Lockstep:
    """A step function that runs the cached and the reference step on the same tokens and rows, checks that
    their logits agree, and returns the cached ones."""

    def __init__(self, net):
        self.cached, self.reference = DecoderStep(net, kv_cache=True), DecoderStep(net, kv_cache=False)
        self.levels = []

    def __call__(self, tokens, cache):
        got, cached = self.cached(tokens, cache[0])
        want, reference = self.reference(tokens, cache[1])
        assert isinstance(cached, DecoderCache) and cached.length == tokens.shape[1] + 1
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        self.levels.append(tokens.shape[1])
        return got, (cached, reference)

    @staticmethod
    def reorder_cache(cache, rows):
        return DecoderStep.reorder_cache(cache[0], rows), DecoderStep.reorder_cache(cache[1], rows)


@pytest.mark.parametrize("position,encoder_input", SWITCHES)
def test_cached_beam_search_equals_reference(position, encoder_input):
    tiny = Tiny(position, encoder_input)
    step = Lockstep(tiny.net)
    beams = 6
    found = constrained_beam_search(step, (tiny.state(), tiny.state()), N_QUERIES, tiny.index, beams,
                                    layout=tiny.layout, exclude=tiny.history)
    assert step.levels == list(range(len(LEVEL_SIZES)))  # every level compared, the beams reordered between
    runs = [constrained_beam_search(DecoderStep(tiny.net, kv_cache=kv), tiny.state(), N_QUERIES, tiny.index, beams,
                                    layout=tiny.layout, exclude=tiny.history) for kv in (True, False)]
    for result in (found, runs[1]):
        assert torch.equal(runs[0].items, result.items) and torch.equal(runs[0].valid, result.valid)
        torch.testing.assert_close(runs[0].scores, result.scores, atol=ATOL, rtol=0)
    assert runs[0].valid.all()


@pytest.mark.parametrize("position,encoder_input", SWITCHES)
def test_cached_exact_scores_equal_reference(position, encoder_input):
    tiny = Tiny(position, encoder_input, seed=1)
    step = Lockstep(tiny.net)
    # max_rows 40: chunks of 10 items x 4 queries, so every chunk starts from the reordered initial state
    lockstep = exact_scores(step, (tiny.state(), tiny.state()), N_QUERIES, tiny.codes, tiny.layout, max_rows=40)
    cached, reference = (exact_scores(DecoderStep(tiny.net, kv_cache=kv), tiny.state(), N_QUERIES, tiny.codes,
                                      tiny.layout, max_rows=40) for kv in (True, False))
    assert step.levels == list(range(len(LEVEL_SIZES))) * (N_ITEMS // 10)
    torch.testing.assert_close(cached, reference, atol=ATOL, rtol=0)
    torch.testing.assert_close(lockstep, cached, atol=0, rtol=0)
    assert torch.isfinite(cached).all() and (torch.logsumexp(cached, 1) <= 1e-6).all()


@pytest.mark.parametrize("position,encoder_input", [("absolute", "codes"), ("relation", "features"),
                                                     ("none", "items")])
def test_reorder_inside_query_groups_matches_recomputation(position, encoder_input):
    """Random rows of random code prefixes, reordered after every level by a random permutation of each query's
    rows (and once by a draw with repeats that changes the rows per query, as beam search does): the cached
    logits equal the reference's recomputed from scratch on the reordered prefixes."""
    tiny = Tiny(position, encoder_input, seed=2)
    g = torch.Generator().manual_seed(0)
    rows_per_query = 5
    query = torch.arange(N_QUERIES).repeat_interleave(rows_per_query)
    cache = DecoderStep.reorder_cache(tiny.state(), query)  # per_query 1 -> 5, as exact_scores starts
    tokens = tiny.layout.to_tokens(torch.as_tensor(tiny.codes)[torch.randint(N_ITEMS, (len(query),), generator=g)])
    cached = DecoderStep(tiny.net)
    reference = DecoderStep(tiny.net, kv_cache=False)
    for level in range(len(LEVEL_SIZES)):
        logits, cache = cached(tokens[:, :level], cache)
        fresh = DecoderStep.reorder_cache(tiny.state(), torch.arange(N_QUERIES).repeat_interleave(rows_per_query))
        want, _ = reference(tokens[:, :level], fresh)
        torch.testing.assert_close(logits, want, atol=ATOL, rtol=0)
        if level == 0:  # a draw with repeats: 5 -> 3 rows per query, a row's prefix may be kept twice
            pick = torch.randint(rows_per_query, (N_QUERIES, 3), generator=g)
            rows_per_query = 3
        else:
            pick = torch.stack([torch.randperm(rows_per_query, generator=g) for _ in range(N_QUERIES)])
        previous = cache.per_query
        rows = (pick + torch.arange(N_QUERIES)[:, None] * previous).flatten()
        cache = DecoderStep.reorder_cache(cache, rows)
        assert cache.per_query == rows_per_query
        tokens = tokens.index_select(0, rows)


def test_cache_is_per_query_and_rows_must_stay_grouped():
    tiny = Tiny("absolute", "codes")
    step = DecoderStep(tiny.net)
    _, cache = step(torch.empty(N_QUERIES, 0, dtype=torch.long), tiny.state())
    heads, dh = tiny.net.decoder[0].cross.h, tiny.net.decoder[0].cross.dh
    memory_tokens = tiny.memory[0].shape[1]
    beams = DecoderStep.reorder_cache(cache, torch.arange(N_QUERIES).repeat_interleave(7))
    # the cross-attention keys/values stay one per query; only the per-row self-attention cache is gathered
    assert all(kv.shape == (2, N_QUERIES, heads, memory_tokens, dh) for kv in beams.cross)
    assert beams.cross[0] is cache.cross[0]
    assert all(p.shape == (2, N_QUERIES * 7, heads, 1, dh) for p in beams.past)
    assert all(p.shape[1] == N_QUERIES for p in cache.past)  # the reordered cache is a new one
    with pytest.raises(ValueError, match="grouped by query"):
        DecoderStep.reorder_cache(beams, torch.arange(N_QUERIES * 7).flip(0))
    with pytest.raises(ValueError, match="query-major"):
        DecoderStep.reorder_cache(beams, torch.arange(N_QUERIES * 7 - 1))


def test_training_mode_and_kv_cache_false_use_the_reference_path():
    tiny = Tiny("absolute", "codes")
    empty = torch.empty(N_QUERIES, 0, dtype=torch.long)
    _, state = DecoderStep(tiny.net, kv_cache=False)(empty, tiny.state())
    assert isinstance(state, tuple)
    tiny.net.train()
    _, state = DecoderStep(tiny.net)(empty, tiny.state())  # dropout: the reference step, not the cache
    assert isinstance(state, tuple)
    with pytest.raises(RuntimeError, match="eval"):
        tiny.net.decode_step(torch.ones(N_QUERIES, dtype=torch.long), 0, *tiny.net.decoder_cache(*tiny.memory), [None, None])
