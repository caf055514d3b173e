"""constrained_beam_search with tiny torch step models: valid IDs only, exact with enough beams, k up to N."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.decoding import CodeTokenLayout, PrefixIndex, constrained_beam_search, exact_scores
from tests.decoding.conftest import BagStep, TinyGRUStep, random_catalogue

problems = st.tuples(
    st.lists(st.integers(1, 6), min_size=1, max_size=4),  # level sizes
    st.integers(1, 50),  # IDs
    st.integers(1, 4),  # queries
    st.integers(0, 3),  # token base
    st.integers(0, 2**31 - 1),  # seed
)


def build(spec, dense_levels=None):
    sizes, n, batch, base, seed = spec
    codes = random_catalogue(np.random.default_rng(seed), sizes, n)
    layout = CodeTokenLayout(sizes, base)
    if dense_levels is not None:
        dense_levels = min(dense_levels, len(sizes))
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=dense_levels)
    model = TinyGRUStep(layout.vocab_end + 2, seed=seed % 1000)
    return codes, layout, index, model, batch


def assert_is_top_k(result, exact: torch.Tensor, codes: np.ndarray, k: int, atol=1e-9):
    """``result`` holds, per query, a best-first list of distinct IDs whose scores are their exact scores and
    equal the k best exact scores (robust to ties)."""
    n = exact.shape[1]
    for q, hits in enumerate(result.to_lists()):
        assert len(hits) == min(k, n)
        items = [h[0] for h in hits]
        assert len(set(items)) == len(items)
        for item, code, score in hits:
            assert tuple(codes[item]) == code
            assert score == pytest.approx(float(exact[q, item]), abs=atol)
        best = exact[q].sort(descending=True).values[: len(hits)]
        assert np.allclose([h[2] for h in hits], best.numpy(), atol=atol)


@settings(max_examples=40, deadline=None)
@given(problems, st.integers(1, 12), st.data())
def test_only_valid_ids_best_first(spec, beam_width, data):
    """(a) whatever the beam width, every returned ID is in the catalogue and scores are sorted."""
    codes, layout, index, model, batch = build(spec, data.draw(st.one_of(st.none(), st.integers(0, 4))))
    k = data.draw(st.integers(1, beam_width))
    result = constrained_beam_search(
        model, model.init_state(batch), batch, index, beam_width, k, layout=layout
    )
    assert result.items.shape == (batch, k) and result.codes.shape == (batch, k, len(layout.level_sizes))
    rows = {tuple(r): i for i, r in enumerate(codes.tolist())}
    for q in range(batch):
        live = result.valid[q]
        assert live.sum() == min(k, len(codes))
        assert live[: int(live.sum())].all()  # padding only at the end
        for item, code in zip(result.items[q][live].tolist(), result.codes[q][live].tolist()):
            assert rows[tuple(code)] == item
        s = result.scores[q][live]
        assert (s[:-1] >= s[1:]).all()
        assert torch.isneginf(result.scores[q][~live]).all() and (result.items[q][~live] == -1).all()


@settings(max_examples=25, deadline=None)
@given(problems, st.data())
def test_enough_beams_is_exact(spec, data):
    """(b) + (f): with beam_width >= N the top-k equals the brute-force ranking, for any k up to N."""
    codes, layout, index, model, batch = build(spec, data.draw(st.one_of(st.none(), st.integers(0, 4))))
    n = len(codes)
    beam_width = data.draw(st.integers(n, n + 3))
    k = data.draw(st.integers(1, n))
    exact = exact_scores(
        model, model.init_state(batch), batch, codes, layout, max_rows=data.draw(st.sampled_from([1, 7, 64]))
    )
    assert exact.shape == (batch, n)
    result = constrained_beam_search(
        model, model.init_state(batch), batch, index, beam_width, k, layout=layout, score_dtype=torch.float64
    )
    assert_is_top_k(result, exact, codes, k)


@settings(max_examples=100, deadline=None)
@given(problems, st.data())
def test_excluded_items_never_returned_and_rest_is_exact(spec, data):
    """exclude: no excluded item comes back; with beams >= N the result is the exact top-k of the other items,
    so a query with many excluded items still gets min(k, N - excluded) of the rest (no beam wasted on them)."""
    codes, layout, index, model, batch = build(spec, data.draw(st.one_of(st.none(), st.integers(0, 4))))
    n = len(codes)
    excluded = [data.draw(st.lists(st.integers(0, n - 1), max_size=n)) for _ in range(batch)]
    as_tensor = data.draw(st.booleans())
    if as_tensor:  # (B, T) padded with N, as Tiger passes its histories
        width = max(len(e) for e in excluded) + 1
        exclude = torch.full((batch, width), n, dtype=torch.long)
        for q, e in enumerate(excluded):
            exclude[q, : len(e)] = torch.tensor(e, dtype=torch.long)
    else:
        exclude = excluded
    beam_width = data.draw(st.integers(1, n + 2))
    k = data.draw(st.integers(1, beam_width))
    result = constrained_beam_search(model, model.init_state(batch), batch, index, beam_width, k, layout=layout,
                                     score_dtype=torch.float64, exclude=exclude)
    exact = exact_scores(model, model.init_state(batch), batch, codes, layout)
    for q, hits in enumerate(result.to_lists()):
        banned = set(excluded[q])
        assert not banned & {h[0] for h in hits}
        others = n - len(banned)
        if beam_width >= n:
            assert len(hits) == min(k, others)
            rest = exact[q].clone()
            rest[list(banned)] = float("-inf")
            best = rest.sort(descending=True).values[: len(hits)]
            assert np.allclose([h[2] for h in hits], best.numpy(), atol=1e-9)
        elif others >= beam_width:  # enough unseen IDs: the beam returns k of them, not a short list
            assert len(hits) == k


def test_exclusion_prunes_fully_excluded_prefixes():
    """With one beam, excluding every ID under the model's favourite first code moves the search to another
    prefix instead of dying there."""
    sizes = [2, 3]
    codes = np.array([[0, 0], [0, 1], [0, 2], [1, 0]])
    index = PrefixIndex.from_codes(codes, sizes)

    def step(tokens, cache):  # prefers code 0 at every level
        logits = torch.full((tokens.shape[0], 5), -5.0)
        logits[:, 0] = 0.0
        logits[:, 2] = 0.0
        return logits, cache

    result = constrained_beam_search(step, None, 1, index, 1, 1, reorder_cache=lambda c, r: c,
                                     exclude=[[0, 1, 2]])
    assert result.items.tolist() == [[3]]
    with pytest.raises(ValueError, match="exclude"):
        constrained_beam_search(step, None, 2, index, 1, 1, reorder_cache=lambda c, r: c, exclude=[[0]])


def test_k_equal_to_catalogue_ranks_everything():
    sizes = [4, 3, 5]
    codes = random_catalogue(np.random.default_rng(7), sizes, 60)  # the full space
    layout = CodeTokenLayout(sizes, base=2)
    index = PrefixIndex.from_codes(codes, sizes)
    model = TinyGRUStep(layout.vocab_end, seed=3)
    result = constrained_beam_search(
        model, model.init_state(3), 3, index, 60, 60, layout=layout, score_dtype=torch.float64
    )
    exact = exact_scores(model, model.init_state(3), 3, codes, layout)
    assert_is_top_k(result, exact, codes, 60)
    # every item appears exactly once per query
    assert all(sorted(result.items[q].tolist()) == list(range(60)) for q in range(3))


def test_beams_never_exceed_distinct_prefixes():
    """Beam width is capped by the number of prefixes at each depth, so small catalogues cost little."""
    sizes = [3, 3]
    codes = np.array([[0, 0], [0, 2], [2, 1]])
    index = PrefixIndex.from_codes(codes, sizes)
    widths = []

    def step(tokens, cache):
        widths.append(tokens.shape[0])
        return torch.zeros(tokens.shape[0], 6), cache

    result = constrained_beam_search(step, None, 2, index, 50, 5, reorder_cache=lambda c, r: c)
    assert widths == [2, 2 * 2]  # 2 queries x (1 root, then 2 distinct first codes)
    assert result.valid.sum(1).tolist() == [3, 3]
    assert (result.items[:, 3:] == -1).all()


def test_dead_beams_are_dropped():
    """A model that gives -inf to valid tokens leaves fewer live hypotheses; they are padding, never IDs."""
    sizes = [3, 2]
    codes = np.array([[0, 0], [0, 1], [1, 0], [2, 1]])
    layout = CodeTokenLayout(sizes, base=1)
    index = PrefixIndex.from_codes(codes, sizes)
    blocked = [layout.offsets[1] + 1]  # level-1 code 1 is impossible for the model
    model = TinyGRUStep(layout.vocab_end, seed=1, blocked=blocked)
    result = constrained_beam_search(model, model.init_state(2), 2, index, 4, 4, layout=layout)
    for hits in result.to_lists():
        assert sorted(h[0] for h in hits) == [0, 2]
    assert (~result.valid[:, 2:]).all()


def test_unconstrained_mode_and_cacheless_model():
    sizes = [4, 4, 4]
    rng = np.random.default_rng(5)
    codes = random_catalogue(rng, sizes, 10)
    layout = CodeTokenLayout(sizes, base=2)
    index = PrefixIndex.from_codes(codes, sizes)
    model = BagStep(layout.vocab_end + 1, batch_size=3, seed=2)
    free = constrained_beam_search(
        model,
        model.init_state(),
        3,
        index,
        64,
        64,
        layout=layout,
        constrained=False,
        score_dtype=torch.float64,
    )
    # 64 beams cover the whole 4^3 space: the unconstrained top-64 is every tuple, ranked exactly
    space = random_catalogue(rng, sizes, 64)
    exact_all = exact_scores(model, model.init_state(), 3, space, layout)
    for q in range(3):
        assert np.allclose(free.scores[q].numpy(), exact_all[q].sort(descending=True).values.numpy())
    in_catalogue = free.items >= 0
    assert in_catalogue.sum(1).tolist() == [10, 10, 10]
    rows = {tuple(r): i for i, r in enumerate(codes.tolist())}
    for q in range(3):
        for item, code in zip(free.items[q].tolist(), free.codes[q].tolist()):
            assert rows.get(tuple(code), -1) == item
    # the constrained search on the same cache-less model ranks exactly the catalogue's entries of that list
    constrained = constrained_beam_search(
        model, model.init_state(), 3, index, 10, 10, layout=layout, score_dtype=torch.float64
    )
    for q in range(3):
        assert constrained.items[q].tolist() == free.items[q][in_catalogue[q]].tolist()


def test_argument_errors():
    index = PrefixIndex.from_codes(np.array([[0, 1]]), [2, 2])
    model = TinyGRUStep(4)
    with pytest.raises(ValueError, match="k <= beam_width"):
        constrained_beam_search(model, model.init_state(1), 1, index, 2, 3)
    with pytest.raises(ValueError, match="level sizes"):
        constrained_beam_search(model, model.init_state(1), 1, index, 2, layout=CodeTokenLayout([2, 3]))
    with pytest.raises(ValueError, match="V >= 6"):
        constrained_beam_search(
            model, model.init_state(1), 1, index, 2, layout=CodeTokenLayout([2, 2], base=2)
        )
    with pytest.raises(TypeError, match="reorder_cache"):
        constrained_beam_search(lambda t, c: (torch.zeros(1, 4), c), None, 1, index, 2)


class PerLevelView:
    """A shared-layout step model seen through a per-level layout: the same distribution over code tuples with
    the logits' columns rearranged, as a per-level model trained on the same data would lay them out.

    At level ``l`` the shared block's first ``K_l`` columns go to level ``l``'s own block, the other levels' blocks
    get ``-inf``, and the rest of the shared model's columns (its tokens ``>= base + K_l`` and everything after the
    block) are appended after the per-level vocabulary, so the full-vocabulary log-softmax is unchanged."""

    def __init__(self, model, shared: CodeTokenLayout, per_level: CodeTokenLayout):
        self.model, self.shared, self.per_level = model, shared, per_level

    def __call__(self, tokens, cache):
        level = tokens.shape[1]
        codes = self.per_level.to_codes(tokens)
        assert (codes >= 0).all()
        logits, cache = self.model(self.shared.to_tokens(codes), cache)
        base, k = self.shared.base, self.shared.level_sizes[level]
        rest = logits[:, base + k :]
        out = torch.full((logits.shape[0], self.per_level.vocab_end + rest.shape[1]), float("-inf"), dtype=logits.dtype)
        out[:, :base] = logits[:, :base]
        start, stop = self.per_level.token_range(level)
        out[:, start:stop] = logits[:, base : base + k]
        out[:, self.per_level.vocab_end :] = rest
        return out, cache

    def reorder_cache(self, cache, rows):
        return self.model.reorder_cache(cache, rows)


@settings(max_examples=40, deadline=None)
@given(problems, st.data())
def test_shared_layout_equals_per_level_model_brute_force(spec, data):
    """shared=True: the constrained search on a model whose levels share code tokens returns only catalogue IDs,
    with exactly the scores of the same model's distribution laid out per level, and with beams >= N the exact
    ranking of every ID (checked against exact_scores). Level sizes differ, so a level's tokens past its K_l in the
    shared block must never be decoded."""
    sizes, n, batch, base, seed = spec
    codes = random_catalogue(np.random.default_rng(seed), sizes, n)
    n = len(codes)
    shared = CodeTokenLayout(sizes, base, shared=True)
    per_level = CodeTokenLayout(sizes, base)
    dense_levels = data.draw(st.one_of(st.none(), st.integers(0, len(sizes))))
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=dense_levels)
    model = TinyGRUStep(shared.vocab_end + 2, seed=seed % 1000)
    view = PerLevelView(model, shared, per_level)
    beam_width = data.draw(st.integers(1, n + 2))
    k = data.draw(st.integers(1, beam_width))

    def search(step, layout):
        return constrained_beam_search(step, model.init_state(batch), batch, index, beam_width, k, layout=layout,
                                       reorder_cache=model.reorder_cache, score_dtype=torch.float64)

    got = search(model, shared)
    ref = search(view, per_level)
    assert torch.equal(got.valid, ref.valid)
    assert torch.allclose(got.scores[got.valid], ref.scores[ref.valid], atol=1e-9)
    # ties aside, the same IDs: every returned ID has the score the per-level model gives it
    exact_shared = exact_scores(model, model.init_state(batch), batch, codes, shared)
    exact_ref = exact_scores(view, model.init_state(batch), batch, codes, per_level,
                             reorder_cache=model.reorder_cache)
    assert torch.allclose(exact_shared, exact_ref, atol=1e-9)
    assert torch.equal(got.codes[got.valid], torch.from_numpy(codes)[got.items[got.valid]])
    if beam_width >= n:
        assert_is_top_k(got, exact_shared, codes, k)
    # the default layout built from the index with shared=True is the same search
    same = constrained_beam_search(model, model.init_state(batch), batch, index, beam_width, k, shared=True,
                                   score_dtype=torch.float64) if base == 0 else got
    assert torch.equal(same.items, got.items)


def test_shared_code_model_with_per_level_layout_says_so():
    """A model over one shared block of codes (V = base + max K) decoded with a per-level layout: the error names
    the layout problem and suggests shared=True instead of reading as "vocabulary too small"."""
    sizes = [8, 8, 8]
    index = PrefixIndex.from_codes(random_catalogue(np.random.default_rng(0), sizes, 20), sizes)
    model = TinyGRUStep(2 + 8 + 1, seed=0)
    with pytest.raises(ValueError, match=r"shared=True") as info:
        constrained_beam_search(model, model.init_state(1), 1, index, 4, layout=CodeTokenLayout(sizes, base=2))
    assert "V=11" in str(info.value) and "V >= 26" in str(info.value)
    result = constrained_beam_search(model, model.init_state(1), 1, index, 4,
                                     layout=CodeTokenLayout(sizes, base=2, shared=True))
    assert result.valid.all()
    with pytest.raises(ValueError, match="contradicts"):
        constrained_beam_search(model, model.init_state(1), 1, index, 4, layout=CodeTokenLayout(sizes, base=2),
                                shared=True)


def test_exclude_rejects_out_of_range_values_but_accepts_padding():
    sizes = [2, 3]
    codes = np.array([[0, 0], [0, 1], [0, 2], [1, 0]])
    index = PrefixIndex.from_codes(codes, sizes)
    n = len(codes)
    model = TinyGRUStep(5, seed=0)

    def search(exclude, batch=2):
        return constrained_beam_search(model, model.init_state(batch), batch, index, 4, exclude=exclude)

    # padding: -1 and N (= num_items, the pad item of histories), as lists and as a padded tensor
    padded = search(torch.tensor([[n, n, 0], [-1, 1, 3]]))
    assert padded.to_lists()[0] and {h[0] for h in padded.to_lists()[0]} == {1, 2, 3}
    assert {h[0] for h in padded.to_lists()[1]} == {0, 2}
    assert torch.equal(search([[0, n], [1, 3, -1]]).items, padded.items)
    assert search([[], []]).valid.all()
    for bad, shown in [([[0, 5], [1]], "5 (query 0)"), ([[0], [-2]], "-2 (query 1)"),
                       (torch.tensor([[0, 1], [7, n]]), "7 (query 1)")]:
        with pytest.raises(ValueError, match="exclude") as info:
            search(bad)
        text = str(info.value)
        assert shown in text and f"[0, {n})" in text and f"-1 or {n}" in text
    with pytest.raises(ValueError, match=r"3 value\(s\)"):
        search([[9, 10, 11], [0]])
    with pytest.raises(ValueError, match="integer"):
        search(torch.tensor([[0.0], [1.0]]))


def padded_catalogue(rng: np.random.Generator, sizes, n: int, end: int) -> np.ndarray:
    """Distinct variable-length IDs: random rows cut after their first ``end`` code and padded with it."""
    rows = random_catalogue(rng, sizes, n)
    is_end = (rows == end).astype(np.int64)
    rows = np.where(np.cumsum(is_end, axis=1) - is_end > 0, end, rows)
    return np.unique(rows, axis=0)[rng.permutation(len(np.unique(rows, axis=0)))]


def scores_to_first_end(model, batch: int, codes: np.ndarray, layout: CodeTokenLayout, end: int) -> torch.Tensor:
    """Brute force, one ID at a time: the sum of the model's log-probabilities of an ID's codes up to and
    including its first ``end`` code (the whole ID when it has none)."""
    out = torch.zeros(batch, len(codes), dtype=torch.float64)
    for j, row in enumerate(codes.tolist()):
        stop = row.index(end) + 1 if end in row else len(row)
        tokens = layout.to_tokens(torch.tensor([row] * batch))
        cache = model.init_state(batch)
        for level in range(stop):
            logits, cache = model(tokens[:, :level], cache)
            lp = torch.log_softmax(logits.double(), dim=-1)
            out[:, j] += lp[:, int(tokens[0, level])]
    return out


@settings(max_examples=40, deadline=None)
@given(problems, st.data())
def test_end_code_scores_ids_up_to_their_end_and_enough_beams_is_exact(spec, data):
    """With end_code the padding after an ID's end counts nothing: exact_scores and the beam search (beams >= N)
    both equal a one-ID-at-a-time brute force that stops at the first end code."""
    sizes, n, batch, base, seed = spec
    rng = np.random.default_rng(seed)
    end = data.draw(st.integers(0, min(sizes) - 1))
    codes = padded_catalogue(rng, sizes, n, end)
    layout = CodeTokenLayout(sizes, base)
    dense = data.draw(st.one_of(st.none(), st.integers(0, len(sizes))))
    index = PrefixIndex.from_codes(codes, sizes, dense_levels=dense)
    model = TinyGRUStep(layout.vocab_end + 2, seed=seed % 1000)
    brute = scores_to_first_end(model, batch, codes, layout, end)
    exact = exact_scores(model, model.init_state(batch), batch, codes, layout, end_code=end,
                         max_rows=data.draw(st.sampled_from([1, 7, 64])))
    assert torch.allclose(exact, brute, atol=1e-9)
    k = data.draw(st.integers(1, len(codes)))
    result = constrained_beam_search(model, model.init_state(batch), batch, index, len(codes), k, layout=layout,
                                     score_dtype=torch.float64, end_code=end)
    assert_is_top_k(result, brute, codes, k)


def test_end_code_stops_calling_the_model_once_every_beam_has_ended():
    """IDs that all end by level 1 of 4: two model calls instead of four, same ranking as the brute force."""
    sizes, end = [3, 3, 3, 3], 0
    codes = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [2, 0, 0, 0], [1, 1, 0, 0]])
    layout = CodeTokenLayout(sizes, base=1)
    index = PrefixIndex.from_codes(codes, sizes)
    model = TinyGRUStep(layout.vocab_end, seed=3)
    result = constrained_beam_search(model, model.init_state(2), 2, index, 3, 3, layout=layout,
                                     score_dtype=torch.float64, end_code=end)
    # [1, 1, 0, 0] needs level 2, but with 3 beams it may or may not survive: the calls stop at the first level
    # where every kept beam has ended
    assert model.calls <= 3
    brute = scores_to_first_end(TinyGRUStep(layout.vocab_end, seed=3), 2, codes, layout, end)
    for q, hits in enumerate(result.to_lists()):
        for item, _, score in hits:
            assert score == pytest.approx(float(brute[q, item]), abs=1e-9)
    short = codes[:3]
    model = TinyGRUStep(layout.vocab_end, seed=3)
    constrained_beam_search(model, model.init_state(2), 2, PrefixIndex.from_codes(short, sizes), 3, 3,
                            layout=layout, end_code=end)
    assert model.calls == 2


def test_end_code_argument_errors():
    index = PrefixIndex.from_codes(np.array([[0, 1]]), [2, 3])
    model = TinyGRUStep(6)
    with pytest.raises(ValueError, match="every level"):
        constrained_beam_search(model, model.init_state(1), 1, index, 2, end_code=2)
    with pytest.raises(ValueError, match="constrained"):
        constrained_beam_search(model, model.init_state(1), 1, index, 2, constrained=False, end_code=0)
