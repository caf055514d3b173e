"""CodeTokenLayout: per-level and shared-codebook token layouts, and the helpers' ``shared`` argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.decoding import CodeTokenLayout, PrefixIndex, PrefixIndexLogitsProcessor
from genir.decoding.tokens import resolve_layout
from tests.decoding.conftest import random_catalogue


def test_per_level_layout_is_unchanged():
    layout = CodeTokenLayout([3, 2, 4], base=2)
    assert not layout.shared
    assert layout.offsets == (2, 5, 7)
    assert layout.vocab_end == 11
    assert [layout.token_range(l) for l in range(3)] == [(2, 5), (5, 7), (7, 11)]
    assert layout.to_tokens(torch.tensor([[2, 1, 3]])).tolist() == [[4, 6, 10]]


def test_shared_layout_uses_one_block_for_all_levels():
    layout = CodeTokenLayout([3, 2, 4], base=2, shared=True)
    assert layout.shared
    assert layout.offsets == (2, 2, 2)
    assert layout.vocab_end == 2 + 4
    assert [layout.token_range(l) for l in range(3)] == [(2, 5), (2, 4), (2, 6)]
    assert layout.to_tokens(torch.tensor([[2, 1, 3], [0, 0, 0]])).tolist() == [[4, 3, 5], [2, 2, 2]]
    # token 4 = code 2: valid at levels 0 and 2, not at level 1 (K_1 = 2); specials and tokens past the block: -1
    tokens = torch.tensor([[4, 4, 4], [1, 3, 5], [6, 2, 0]])
    assert layout.to_codes(tokens).tolist() == [[2, -1, 2], [-1, 1, 3], [-1, 0, -1]]
    assert layout != CodeTokenLayout([3, 2, 4], base=2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(0, 3), st.booleans(), st.integers(0, 10**6))
def test_to_codes_inverts_to_tokens(sizes, base, shared, seed):
    layout = CodeTokenLayout(sizes, base, shared=shared)
    codes = torch.from_numpy(random_catalogue(np.random.default_rng(seed), sizes, 30))
    tokens = layout.to_tokens(codes)
    assert (tokens >= base).all() and (tokens < layout.vocab_end).all()
    assert torch.equal(layout.to_codes(tokens), codes)
    for l in range(len(sizes)):  # every level's tokens lie in its token range
        start, stop = layout.token_range(l)
        assert ((tokens[:, l] >= start) & (tokens[:, l] < stop)).all()
    # every token of the vocabulary maps to a code of level l iff it lies in level l's range
    every = torch.arange(layout.vocab_end + 2)
    for l in range(len(sizes)):
        start, stop = layout.token_range(l)
        prefix = torch.full((every.numel(), l + 1), base, dtype=torch.long)
        prefix[:, l] = every
        got = layout.to_codes(prefix)[:, l]
        inside = (every >= start) & (every < stop)
        assert torch.equal(got >= 0, inside)
        assert torch.equal(got[inside], every[inside] - start)


def test_vocab_size_errors_say_what_is_wrong():
    layout = CodeTokenLayout([8, 8, 8], base=2)  # needs 26 tokens; a shared-code model has 2 + 8 = 10
    with pytest.raises(ValueError, match=r"shared=True") as info:
        layout.check_vocab_size(12)
    text = str(info.value)
    assert "V=12" in text and "V >= 26" in text and "one block per level" in text
    with pytest.raises(ValueError, match="too small") as info:  # not even a shared block fits: no suggestion
        layout.check_vocab_size(9)
    assert "shared=True" not in str(info.value)
    with pytest.raises(ValueError, match="too small"):
        CodeTokenLayout([8, 8, 8], base=2, shared=True).check_vocab_size(9)
    layout.check_vocab_size(26)
    CodeTokenLayout([8, 8, 8], base=2, shared=True).check_vocab_size(10)


def test_shared_argument_of_the_helpers():
    per_level, shared = CodeTokenLayout([3, 2]), CodeTokenLayout([3, 2], shared=True)
    assert resolve_layout(None, [3, 2], None, "f") == per_level
    assert resolve_layout(None, [3, 2], True, "f") == shared
    assert resolve_layout(shared, [3, 2], None, "f") is shared
    assert resolve_layout(shared, [3, 2], True, "f") is shared
    with pytest.raises(ValueError, match="contradicts"):
        resolve_layout(per_level, [3, 2], True, "f")
    with pytest.raises(ValueError, match="contradicts"):
        resolve_layout(shared, [3, 2], False, "f")
    index = PrefixIndex.from_codes(np.array([[0, 1], [2, 0]]), [3, 2])
    assert PrefixIndexLogitsProcessor(index, shared=True).layout == shared
    assert PrefixIndexLogitsProcessor(index).layout == per_level
    with pytest.raises(ValueError, match="contradicts"):
        PrefixIndexLogitsProcessor(index, per_level, shared=True)
    with pytest.raises(TypeError, match="shared"):
        CodeTokenLayout([3, 2], shared="yes")


def test_processor_with_shared_layout_masks_per_level():
    """Level 1 has 2 codes in a block of 3 shared tokens: its third token is never allowed."""
    sizes = [3, 2]
    codes = np.array([[0, 1], [2, 0], [2, 1]])
    layout = CodeTokenLayout(sizes, base=2, shared=True)  # tokens 2, 3, 4
    proc = PrefixIndexLogitsProcessor(PrefixIndex.from_codes(codes, sizes), layout, prompt_length=1)
    scores = torch.zeros(3, 6)
    out = proc(torch.tensor([[0]] * 3), scores)
    assert torch.isfinite(out).tolist() == [[False, False, True, False, True, False]] * 3
    # after code 2 (token 4): codes 0 and 1 (tokens 2, 3); after code 0 (token 2): code 1 (token 3)
    out = proc(torch.tensor([[0, 4], [0, 2], [0, 3]]), scores)
    assert torch.isfinite(out).tolist() == [
        [False, False, True, True, False, False],
        [False, False, False, True, False, False],
        [False] * 6,
    ]
    with pytest.raises(ValueError, match="V >= 5"):
        proc(torch.tensor([[0]]), torch.zeros(1, 4))
