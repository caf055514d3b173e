"""Hugging Face integration: our decoder vs ``generate`` on random tiny T5 models, the LogitsProcessor vs the
GENRE-style trie callback, and the decoder-only adapter.

``generate`` settings under which its beam search ranks by the same score as ours: ``num_beams=W,
num_return_sequences=W, length_penalty=0.0, do_sample=False, max_new_tokens=L`` (stop on length, so no EOS
log-probability enters the scores; ``early_stopping`` then does not matter) and the constraint from
``prefix_allowed_tokens_fn`` or our processor. ``generate`` pads with hypotheses scored about ``-1e9`` when there
are fewer valid IDs than beams; those are dropped before comparing.
"""

from __future__ import annotations

import inspect
import logging
import textwrap
import warnings

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessorList,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache

from genir.decoding import (
    CausalLMStep,
    CodeTokenLayout,
    PrefixIndex,
    PrefixIndexLogitsProcessor,
    Seq2SeqStep,
    beam_search_causal_lm,
    beam_search_seq2seq,
    exact_scores_seq2seq,
    trie_prefix_allowed_tokens_fn,
)
from tests.decoding.conftest import random_catalogue

BASE = 3  # pad 0 (= decoder start), eos 1, one spare special


def tiny_t5(vocab_size: int, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=16,
        num_layers=1,
        num_heads=2,
        d_ff=64,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = T5ForConditionalGeneration(config).eval()
    with torch.no_grad():  # sharper random distributions than the default init: fewer near-ties
        model.lm_head.weight.mul_(8.0)
    return model


def generate_ranking(model, input_ids, layout, beam_width, **constraint):
    out = model.generate(
        input_ids=input_ids,
        num_beams=beam_width,
        num_return_sequences=beam_width,
        length_penalty=0.0,
        do_sample=False,
        early_stopping=True,
        max_new_tokens=layout.num_levels,
        output_scores=True,
        return_dict_in_generate=True,
        **constraint,
    )
    b = input_ids.shape[0]
    sequences = out.sequences.view(b, beam_width, -1)[:, :, 1:]  # drop the decoder start token
    scores = out.sequences_scores.view(b, beam_width)
    ranking = []
    for q in range(b):
        live = scores[q] > -1e8
        codes = layout.to_codes(sequences[q][live])
        ranking.append([(tuple(c), float(s)) for c, s in zip(codes.tolist(), scores[q][live].tolist())])
    return ranking, out


def assert_same_ranking(ours, theirs, atol=1e-4):
    """Equal lengths and scores; IDs equal except where scores tie within ``atol`` at the cut-off."""
    assert len(ours) == len(theirs)
    assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=atol)
    a, b = dict(ours), dict(theirs)
    for code in a.keys() & b.keys():
        assert a[code] == pytest.approx(b[code], abs=atol)
    cutoff = ours[-1][1] if ours else 0.0
    for code in a.keys() ^ b.keys():
        assert {**a, **b}[code] == pytest.approx(cutoff, abs=atol)


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.integers(2, 6), min_size=2, max_size=4),
    st.integers(1, 40),
    st.integers(1, 3),
    st.integers(2, 10),  # num_beams=1 is greedy search in generate, without sequences_scores
    st.integers(0, 2**31 - 1),
)
def test_matches_generate_with_trie(sizes, n, batch, beam_width, seed):
    """(c) our top-W IDs and scores equal ``generate`` + ``prefix_allowed_tokens_fn`` (dict trie)."""
    rng = np.random.default_rng(seed)
    codes = random_catalogue(rng, sizes, n)
    layout = CodeTokenLayout(sizes, BASE)
    index = PrefixIndex.from_codes(codes, sizes)
    model = tiny_t5(layout.vocab_end + 1, seed % 10_000)
    input_ids = torch.from_numpy(rng.integers(BASE, layout.vocab_end, size=(batch, 6)))

    ours = beam_search_seq2seq(model, input_ids, index, beam_width, layout=layout)
    theirs, _ = generate_ranking(
        model,
        input_ids,
        layout,
        beam_width,
        prefix_allowed_tokens_fn=trie_prefix_allowed_tokens_fn(codes, layout),
    )
    for q, hits in enumerate(ours.to_lists()):
        assert_same_ranking([(c, s) for _, c, s in hits], theirs[q])
        for item, code, _ in hits:
            assert tuple(codes[item]) == code


@settings(max_examples=8, deadline=None)
@given(
    st.lists(st.integers(2, 5), min_size=2, max_size=3),
    st.integers(1, 30),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_logits_processor_equals_trie_fn(sizes, n, shared, seed):
    """(d) ``generate`` with our LogitsProcessor gives the same sequences and scores as with the trie fn, with a
    per-level or a shared layout."""
    rng = np.random.default_rng(seed)
    codes = random_catalogue(rng, sizes, n)
    layout = CodeTokenLayout(sizes, BASE, shared=shared)
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=int(rng.integers(0, len(sizes) + 1)))
    model = tiny_t5(layout.vocab_end + 2, seed % 10_000)
    input_ids = torch.from_numpy(rng.integers(BASE, layout.vocab_end, size=(2, 5)))
    beam_width = int(rng.integers(2, 9))
    trie_fn = trie_prefix_allowed_tokens_fn(codes, layout)
    ref, ref_out = generate_ranking(model, input_ids, layout, beam_width, prefix_allowed_tokens_fn=trie_fn)
    proc = PrefixIndexLogitsProcessor(index, layout)
    got, got_out = generate_ranking(
        model, input_ids, layout, beam_width, logits_processor=LogitsProcessorList([proc])
    )
    assert got == ref
    assert torch.equal(got_out.sequences, ref_out.sequences)
    assert torch.allclose(got_out.sequences_scores, ref_out.sequences_scores)


def test_processor_masks_every_non_id_token_and_allows_eos_only_at_the_end():
    sizes = [3, 2]
    codes = np.array([[0, 1], [2, 0], [2, 1]])
    layout = CodeTokenLayout(sizes, base=2)
    index = PrefixIndex.from_codes(codes, sizes)
    proc = PrefixIndexLogitsProcessor(index, layout, prompt_length=1, eos_token_id=1)
    scores = torch.zeros(4, 8)
    start = [[0]] * 4
    out = proc(torch.tensor(start), scores)
    assert torch.isfinite(out).tolist() == [[False, False, True, False, True, False, False, False]] * 4
    # after code 2 of level 0 (token 4): level-1 codes 0 and 1 (tokens 5, 6); after an invalid token: nothing
    out = proc(torch.tensor([[0, 4], [0, 2], [0, 3], [0, 7]]), scores)
    assert torch.isfinite(out).tolist() == [
        [False] * 5 + [True, True, False],
        [False] * 6 + [True, False],
        [False] * 8,
        [False] * 8,
    ]
    out = proc(torch.tensor([[0, 4, 5], [0, 2, 5]]), scores[:2])
    assert torch.isfinite(out).tolist() == [[False, True] + [False] * 6, [False] * 8]


def test_eos_variant_matches_trie_fn():
    """With EOS after the last level (GENRE's setting) the processor and the trie fn still agree."""
    rng = np.random.default_rng(11)
    sizes = [4, 3, 4]
    codes = random_catalogue(rng, sizes, 20)
    layout = CodeTokenLayout(sizes, BASE)
    index = PrefixIndex.from_codes(codes, sizes)
    model = tiny_t5(layout.vocab_end, 5)
    input_ids = torch.from_numpy(rng.integers(BASE, layout.vocab_end, size=(2, 5)))
    kwargs = {
        "num_beams": 6,
        "num_return_sequences": 6,
        "length_penalty": 0.0,
        "do_sample": False,
        "max_new_tokens": len(sizes) + 1,
        "output_scores": True,
        "return_dict_in_generate": True,
    }
    ref = model.generate(
        input_ids=input_ids,
        **kwargs,
        prefix_allowed_tokens_fn=trie_prefix_allowed_tokens_fn(codes, layout, eos_token_id=1),
    )
    proc = PrefixIndexLogitsProcessor(index, layout, eos_token_id=1)
    got = model.generate(input_ids=input_ids, **kwargs, logits_processor=LogitsProcessorList([proc]))
    assert torch.equal(got.sequences, ref.sequences)
    assert (got.sequences[:, -1] == 1).all()
    assert torch.allclose(got.sequences_scores, ref.sequences_scores)


def test_seq2seq_exact_scores_and_full_beam():
    rng = np.random.default_rng(2)
    sizes = [4, 4, 3]
    codes = random_catalogue(rng, sizes, 25)
    layout = CodeTokenLayout(sizes, BASE)
    index = PrefixIndex.from_codes(codes, sizes)
    model = tiny_t5(layout.vocab_end, 9)
    input_ids = torch.from_numpy(rng.integers(BASE, layout.vocab_end, size=(3, 4)))
    exact = exact_scores_seq2seq(model, input_ids, codes, layout, max_rows=16)
    result = beam_search_seq2seq(model, input_ids, index, 25, 25, layout=layout, score_dtype=torch.float64)
    for q in range(3):
        order = exact[q].argsort(descending=True)
        assert np.allclose(result.scores[q].numpy(), exact[q][order].numpy(), atol=1e-5)
        assert np.allclose(exact[q][result.items[q]].numpy(), result.scores[q].numpy(), atol=1e-5)


def test_causal_lm_adapter_left_padding():
    """Decoder-only model, prompts of different lengths left-padded in one batch: same scores as each prompt
    decoded alone, and with beams >= N the exact ranking."""
    rng = np.random.default_rng(4)
    sizes = [3, 4, 3]
    codes = random_catalogue(rng, sizes, 18)
    layout = CodeTokenLayout(sizes, BASE)
    index = PrefixIndex.from_codes(codes, sizes)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=layout.vocab_end,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    prompts = [rng.integers(BASE, layout.vocab_end, size=m).tolist() for m in (5, 2, 4)]
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    batched = beam_search_causal_lm(model, input_ids, index, 18, 18, attention_mask=mask, layout=layout)
    for q, p in enumerate(prompts):
        alone = beam_search_causal_lm(model, torch.tensor([p]), index, 18, 18, layout=layout)
        assert np.allclose(batched.scores[q].numpy(), alone.scores[0].numpy(), atol=1e-4)
        # one prompt with generate + our processor gives the same top beams
        proc = PrefixIndexLogitsProcessor(index, layout, prompt_length=len(p))
        out = model.generate(
            input_ids=torch.tensor([p]),
            num_beams=5,
            num_return_sequences=5,
            length_penalty=0.0,
            do_sample=False,
            max_new_tokens=3,
            output_scores=True,
            return_dict_in_generate=True,
            logits_processor=LogitsProcessorList([proc]),
            pad_token_id=0,
        )
        top5 = beam_search_causal_lm(model, torch.tensor([p]), index, 5, 5, layout=layout)
        assert np.allclose(out.sequences_scores.numpy(), top5.scores[0].numpy(), atol=1e-4)
        assert layout.to_codes(out.sequences[:, len(p) :]).tolist() == top5.codes[0].tolist()


def _docstring_example(obj) -> str:
    """The first ``::`` literal block of ``obj``'s docstring, dedented."""
    lines = inspect.getdoc(obj).splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("::")) + 1
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def test_processor_docstring_example_returns_sequences_scores():
    """The class docstring's ``generate`` example, run as written on a tiny random T5, returns
    ``sequences_scores`` (it needs output_scores=True and return_dict_in_generate=True), and they are the scores
    of our own beam search."""
    rng = np.random.default_rng(3)
    sizes = [4, 3, 4]
    codes = random_catalogue(rng, sizes, 30)
    index = PrefixIndex.from_codes(codes, sizes)
    torch.manual_seed(0)
    config = T5Config(vocab_size=2 + sum(sizes), d_model=16, d_kv=8, num_layers=1, num_heads=2, d_ff=32,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    b, w = 2, 5
    input_ids = torch.from_numpy(rng.integers(2, config.vocab_size, size=(b, 6)))
    example = _docstring_example(PrefixIndexLogitsProcessor)
    assert "output_scores=True" in example and "return_dict_in_generate=True" in example
    env = {"PrefixIndexLogitsProcessor": PrefixIndexLogitsProcessor, "CodeTokenLayout": CodeTokenLayout,
           "LogitsProcessorList": LogitsProcessorList, "model": model, "index": index, "input_ids": input_ids,
           "B": b, "W": w}
    exec(compile(example, "<PrefixIndexLogitsProcessor docstring>", "exec"), env)  # noqa: S102 (our own docstring)
    scores, found = env["scores"], env["codes"]
    assert scores.shape == (b, w) and found.shape == (b * w, len(sizes))
    ours = beam_search_seq2seq(model, input_ids, index, w, layout=CodeTokenLayout(sizes, base=2))
    assert torch.allclose(scores, ours.scores, atol=1e-4)
    rows = {tuple(r) for r in codes.tolist()}
    assert all(tuple(c) in rows for c in found.tolist())


def test_shared_layout_with_t5_matches_generate_and_exact_scores():
    """A T5 whose levels share one block of code tokens (V = base + max K): beam_search_seq2seq(shared=True)
    ranks exactly like exact_scores_seq2seq and like generate + the processor with the same shared layout; the
    per-level layout fails with a message that points at shared=True."""
    rng = np.random.default_rng(8)
    sizes = [5, 3, 4]
    codes = random_catalogue(rng, sizes, 40)
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=1)
    layout = CodeTokenLayout(sizes, BASE, shared=True)
    model = tiny_t5(layout.vocab_end + 1, 4)
    input_ids = torch.from_numpy(rng.integers(BASE, layout.vocab_end, size=(2, 5)))
    exact = exact_scores_seq2seq(model, input_ids, codes, layout)
    full = beam_search_seq2seq(model, input_ids, index, 40, 40, layout=layout, score_dtype=torch.float64)
    for q in range(2):
        assert np.allclose(full.scores[q].numpy(), exact[q].sort(descending=True).values.numpy(), atol=1e-6)
        assert sorted(full.items[q].tolist()) == list(range(40))
    ours = beam_search_seq2seq(model, input_ids, index, 6, layout=layout)
    proc = PrefixIndexLogitsProcessor(index, layout, shared=True, prompt_length=1)
    theirs, _ = generate_ranking(model, input_ids, layout, 6, logits_processor=LogitsProcessorList([proc]))
    for q, hits in enumerate(ours.to_lists()):
        assert_same_ranking([(c, s) for _, c, s in hits], theirs[q])
    with pytest.raises(ValueError, match="shared=True"):
        beam_search_seq2seq(model, input_ids, index, 6, layout=CodeTokenLayout(sizes, BASE))
    with pytest.raises(ValueError, match="contradicts"):
        beam_search_seq2seq(model, input_ids, index, 6, layout=layout, shared=False)


def _tiny_causal_models(vocab_size: int):
    torch.manual_seed(1)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                         pad_token_id=0)).eval()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                                      pad_token_id=0)).eval()
    return llama, gpt2


def test_adapters_use_cache_objects_without_deprecation_warnings(monkeypatch):
    """Both adapters keep transformers Cache objects (EncoderDecoderCache / DynamicCache) from the first step,
    reorder them in place, and neither warns: no FutureWarning/DeprecationWarning (e.g. the `past_key_values`
    -> `cache` rename of transformers 5.x) and no deprecation message on the transformers logger."""
    rng = np.random.default_rng(6)
    sizes = [3, 4, 3]
    codes = random_catalogue(rng, sizes, 25)
    layout = CodeTokenLayout(sizes, BASE)
    index = PrefixIndex.from_codes(codes, sizes)
    t5 = tiny_t5(layout.vocab_end, 2)
    llama, gpt2 = _tiny_causal_models(layout.vocab_end)
    input_ids = torch.from_numpy(rng.integers(BASE, layout.vocab_end, size=(2, 4)))

    seen_caches = []
    for step_class in (Seq2SeqStep, CausalLMStep):
        original = step_class.__call__

        def spy(self, tokens, state, _original=original):
            logits, state = _original(self, tokens, state)
            seen_caches.append(state.past)
            return logits, state

        monkeypatch.setattr(step_class, "__call__", spy)

    messages = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    hf_logger = transformers.utils.logging.get_logger("transformers")
    warning_once = getattr(logging.Logger, "warning_once", None)
    if hasattr(warning_once, "cache_clear"):  # transformers logs some deprecations once per process
        warning_once.cache_clear()
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            results = [beam_search_seq2seq(t5, input_ids, index, 6, layout=layout)]
            exact = exact_scores_seq2seq(t5, input_ids, codes, layout, max_rows=16)
            for model in (llama, gpt2):
                results.append(beam_search_causal_lm(model, input_ids, index, 6, layout=layout))
    finally:
        hf_logger.removeHandler(handler)
    assert not [m for m in messages if "deprecat" in m.lower() or "past_key_values" in m], messages
    assert seen_caches and all(isinstance(c, Cache) for c in seen_caches)
    assert any(isinstance(c, EncoderDecoderCache) for c in seen_caches)
    assert any(isinstance(c, DynamicCache) and not isinstance(c, EncoderDecoderCache) for c in seen_caches)
    for result in results:
        assert result.valid.all()
    for q in range(2):  # the KV-cached T5 search scores its IDs like teacher forcing from scratch
        assert np.allclose(exact[q][results[0].items[q]].numpy(), results[0].scores[q].numpy(), atol=1e-4)


def test_causal_adapter_matches_generate_for_gpt2():
    """GPT-2 (no ``logits_to_keep`` in older transformers, learned positions) through CausalLMStep: the same top
    beams and scores as ``generate`` with our processor."""
    rng = np.random.default_rng(12)
    sizes = [3, 3, 2]
    codes = random_catalogue(rng, sizes, 15)
    layout = CodeTokenLayout(sizes, BASE)
    index = PrefixIndex.from_codes(codes, sizes)
    _, gpt2 = _tiny_causal_models(layout.vocab_end)
    prompt = torch.from_numpy(rng.integers(BASE, layout.vocab_end, size=(1, 5)))
    ours = beam_search_causal_lm(gpt2, prompt, index, 4, layout=layout)
    out = gpt2.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), num_beams=4,
                        num_return_sequences=4, length_penalty=0.0, do_sample=False, max_new_tokens=3,
                        output_scores=True, return_dict_in_generate=True, pad_token_id=0,
                        logits_processor=LogitsProcessorList([PrefixIndexLogitsProcessor(index, layout,
                                                                                         prompt_length=5)]))
    assert np.allclose(out.sequences_scores.numpy(), ours.scores[0].numpy(), atol=1e-4)
    assert layout.to_codes(out.sequences[:, 5:]).tolist() == ours.codes[0].tolist()


def test_reorder_rejects_legacy_tuple_caches():
    from genir.decoding.hf_adapters import _reorder_past

    with pytest.raises(TypeError, match="Cache"):
        _reorder_past(((torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 1, 1)),), torch.tensor([1, 0]))
