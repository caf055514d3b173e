"""Pseudo-queries: the first sentence, then random contiguous spans within the length bounds; deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.data.catalogue import Catalogue
from genir.data.pseudo_queries import first_sentence, pseudo_queries, with_pseudo_queries
from genir.data.tasks import QueryRetrievalTask
from genir.errors import ConfigError, DatasetError

TEXT = ("0 A.D. (pronounced \"zero ey-dee\") is a free real-time strategy game.\nIt runs on many systems and "
        "comes with maps. Players rewrite history between 500 B.C. and 500 A.D. with detailed artwork, sound "
        "and a flexible custom-built engine.")


def test_first_query_is_the_first_sentence():
    queries = pseudo_queries(TEXT, 4, np.random.default_rng(0), max_words=20)
    assert queries[0] == first_sentence(TEXT) == '0 A.D. (pronounced "zero ey-dee") is a free real-time strategy game.'
    assert pseudo_queries(TEXT, 1, np.random.default_rng(0), min_words=2, max_words=4) == ['0 A.D. (pronounced "zero']
    assert first_sentence("Features:\n * one\n * two\n\nMore text.") == "Features: * one * two"


def test_spans_are_contiguous_and_within_bounds():
    words = TEXT.split()
    queries = pseudo_queries(TEXT, 50, np.random.default_rng(1), min_words=3, max_words=7)
    assert len(queries) == 50
    lengths = [len(q.split()) for q in queries[1:]]
    assert min(lengths) >= 3 and max(lengths) <= 7 and len(set(lengths)) > 1
    for q in queries[1:]:
        n = len(q.split())
        assert any(words[i:i + n] == q.split() for i in range(len(words) - n + 1))


def test_short_text_gives_the_whole_text():
    assert pseudo_queries("tiny doc", 3, np.random.default_rng(0)) == ["tiny doc"] * 3


def test_deterministic_per_seed():
    a = pseudo_queries(TEXT, 10, np.random.default_rng(5))
    assert a == pseudo_queries(TEXT, 10, np.random.default_rng(5))
    assert a != pseudo_queries(TEXT, 10, np.random.default_rng(6))


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(alphabet="ab.!? \n", min_size=1, max_size=6), min_size=1, max_size=40),
       n=st.integers(1, 5), seed=st.integers(0, 2**16), bounds=st.tuples(st.integers(1, 6), st.integers(0, 6)))
def test_never_empty(words, n, seed, bounds):
    text = " ".join(words)
    if not text.split():
        with pytest.raises(DatasetError):
            pseudo_queries(text, n, np.random.default_rng(seed))
        return
    low, extra = bounds
    queries = pseudo_queries(text, n, np.random.default_rng(seed), min_words=low, max_words=low + extra)
    assert len(queries) == n
    assert all(q.strip() for q in queries)
    assert all(len(q.split()) <= low + extra for q in queries)


def test_bad_bounds():
    with pytest.raises(ConfigError):
        pseudo_queries(TEXT, 2, np.random.default_rng(0), min_words=8, max_words=4)
    assert pseudo_queries(TEXT, 0, np.random.default_rng(0)) == []


def _task():
    docs = pd.DataFrame({"id": ["a", "b", "c"], "title": ["Alpha", "", "Gamma"],
                         "text": ["first document text here. More words follow in it.", "second one is short",
                                  "third document, with a longer body of words to sample spans from"]})
    queries = pd.DataFrame({"qid": ["q1", "q2"], "text": ["find a", "find c"], "stage": ["train", "test"]})
    qrels = pd.DataFrame({"qid": ["q1", "q2"], "item": [0, 2]})
    return QueryRetrievalTask(Catalogue.from_frame("toy", docs), queries, qrels, steps=[[0, 1], [2]], name="toy")


def test_with_pseudo_queries():
    task = _task()
    before = task.train_pairs.copy()
    out = with_pseudo_queries(task, 3, seed=0)
    pd.testing.assert_frame_equal(task.train_pairs, before)  # the original task is untouched
    pseudo = out.train_pairs[out.train_pairs["kind"] == "pseudo"]
    assert pseudo["item"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # new-step document 2 included
    assert pseudo["text"].iloc[0] == "Alpha. first document text here."
    pd.testing.assert_frame_equal(out.train_pairs.iloc[:len(before)], before)
    assert [s.tolist() for s in out.steps] == [[0, 1], [2]]
    assert out.queries.equals(task.queries)
    pd.testing.assert_frame_equal(with_pseudo_queries(task, 3, seed=0).train_pairs, out.train_pairs)
    assert not with_pseudo_queries(task, 3, seed=1).train_pairs.equals(out.train_pairs)
    twice = with_pseudo_queries(out, 2, seed=0)  # replaces, not adds to, earlier pseudo-queries
    assert (twice.train_pairs["kind"] == "pseudo").sum() == 6
