"""DSI, PromptDSI, IncDSI and the lexical/dense baselines on a synthetic corpus with a tiny randomly initialised
BERT (built from a config in the test and saved to a folder, so it is loaded by path like a real encoder)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from genir.data.catalogue import Catalogue
from genir.data.tasks import QueryRetrievalTask
from genir.eval.continual import continual_summary
from genir.methods.dsi.baselines import BM25Index, DenseIndex
from genir.methods.dsi.encoder import CachedEncoder, masked_mean
from genir.methods.dsi.procedures import (
    DSIConfig,
    QueryCache,
    atomic_dsi,
    document_texts,
    incdsi_step,
    pairs_of,
    prompt_model,
    prompt_step,
    sequential_step,
    train_dsi,
)
from genir.methods.dsi.semantic import SemanticDSI
from tests.conftest import single_threaded
from tests.core.conftest import make_corpus, tiny_bert

_one_thread = single_threaded()


@pytest.fixture(scope="module")
def corpus():
    docs, queries, qrels = make_corpus(120)
    catalogue = Catalogue.from_frame("toy", docs)
    steps = [np.arange(0, 90), np.arange(90, 105), np.arange(105, 120)]
    step_of = np.zeros(120, dtype=int)
    step_of[90:105], step_of[105:] = 1, 2
    queries = queries.merge(qrels, on="qid")
    queries["step"] = step_of[queries["item"]]
    queries["stage"] = np.select([queries["item"] < 60, queries["item"] < 75], ["train", "valid"], "test")
    # D0: queries of documents 0-59 train, 60-74 validate, 75-89 test; new documents' queries are all test
    qrels = queries[["qid", "item"]].assign(relevance=1)
    pairs = pd.concat([docs.assign(item=np.arange(120))[["text", "item"]].assign(kind="indexing"),
                       queries[queries["stage"] == "train"][["text", "item"]].assign(kind="query")],
                      ignore_index=True)
    return QueryRetrievalTask(catalogue, queries[["qid", "text", "stage", "step"]], qrels, train_pairs=pairs,
                              steps=steps, name="toy")


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory, corpus):
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), corpus.catalogue.texts() + corpus.queries["text"].tolist())


CFG = DSIConfig(trainable_layers=2, max_length=16, epochs=15, batch_size=32, lr=5e-3, encoder_lr=0.2,
                step_epochs=10, step_lr=5e-3, n_topics=4, prompt_length=2, top_k=1, incdsi_steps=100, beam_width=10)


def test_cached_encoder_matches_the_models_own_forward(encoder_path):
    enc = CachedEncoder(encoder_path, trainable_layers=2, max_length=16).eval()
    texts = ["alpha beta gamma", "delta", "beta beta alpha delta gamma"]
    with torch.no_grad():
        mine = enc(texts)
        inputs = enc.tokenize(texts)
        ref = masked_mean(enc.model(**inputs).last_hidden_state, inputs["attention_mask"])
    assert torch.allclose(mine, ref, atol=5e-3)  # the cache holds fp16
    # only the upper layers train; the embeddings and the lower layer are frozen
    trainable = {n.split(".")[2] for n, p in enc.model.named_parameters() if p.requires_grad}
    assert trainable == {"1", "2"}  # encoder.layer.<i>: the two upper layers only
    # prompts change the output; zero-length prompts do not
    prompts = torch.randn(3, 2, 2, 32)
    with torch.no_grad():
        hidden, mask = enc.lower(texts)
        assert not torch.allclose(masked_mean(enc.upper(hidden, mask, prompts), mask), mine, atol=1e-3)
        same = masked_mean(enc.upper(hidden, mask, prompts[:, :, :0]), mask)
    assert torch.allclose(same, mine, atol=1e-5)


def test_atomic_dsi_learns_and_incremental_methods_keep_what_they_promise(corpus, encoder_path):
    base = CachedEncoder(encoder_path, trainable_layers=2, max_length=16)
    d0, d1 = corpus.steps[0], corpus.steps[1]
    model = atomic_dsi(copy.deepcopy(base), corpus, d0, CFG)
    from genir.eval.retrieval import RetrievalEvaluator

    valid = RetrievalEvaluator(corpus, "valid", ks=(10,), metrics=("hits",), step=0, corpus_step=0)
    info = train_dsi(model, corpus, d0, valid, CFG, seed=0, progress=False)
    losses = [h["loss"] for h in info["history"]]
    assert losses[-1] < 0.5 * losses[0], losses
    answer = model.retrieve(corpus.stage_queries("test", 0)["text"].tolist(), k=10)
    assert set(answer.items.flatten().tolist()) <= set(d0.tolist())  # only indexed documents come out

    # PromptDSI: encoder and D0 rows frozen, only prompts and D1's rows move; no D0 pair is used
    pmodel = prompt_model(copy.deepcopy(model), document_texts(corpus, d0), CFG, learn_keys=False, seed=0)
    enc_before = {n: p.clone() for n, p in pmodel.dsi.encoder.named_parameters()}
    rows_before = pmodel.dsi.blocks[0].detach().clone()
    keys_before = pmodel.pool.keys.detach().clone()
    prompts_before = pmodel.pool.prompts.detach().clone()
    info = prompt_step(pmodel, corpus, d1, CFG, seed=1, progress=False)
    assert info["pairs"] == len(pairs_of(corpus, d1, ("indexing", "pseudo")))
    assert all(torch.equal(p, enc_before[n]) for n, p in pmodel.dsi.encoder.named_parameters())
    assert torch.equal(pmodel.dsi.blocks[0], rows_before) and torch.equal(pmodel.pool.keys, keys_before)
    assert not torch.equal(pmodel.pool.prompts, prompts_before)
    assert pmodel.pool.train_usage.sum() > 0
    assert info["trained_parameters"] == pmodel.pool.prompts.numel() + len(d1) * 32
    new_docs = corpus.catalogue.texts()
    top = pmodel.retrieve([new_docs[i] for i in d1], k=1).items[:, 0]
    assert (top.numpy() == d1).mean() >= 0.8  # the new documents are found by their own text

    # L2P: learned keys move (pull loss), logged beside the cross-entropy
    l2p = prompt_model(copy.deepcopy(model), document_texts(corpus, d0), CFG, learn_keys=True, seed=0)
    keys = l2p.pool.keys.detach().clone()
    info = prompt_step(l2p, corpus, d1, CFG, seed=1, progress=False)
    assert not torch.equal(l2p.pool.keys, keys) and "aux" in info["history"][0]

    # IncDSI: rows solved without touching the encoder; the new documents are found, old rows unchanged
    inc = copy.deepcopy(model)
    cache = QueryCache(inc, pairs_of(corpus, d0), 500, seed=0)
    enc_before = {n: p.clone() for n, p in inc.encoder.named_parameters()}
    incdsi_step(inc, corpus, d1, cache, CFG, seed=1)
    assert all(torch.equal(p, enc_before[n]) for n, p in inc.encoder.named_parameters())
    assert torch.equal(inc.blocks[0], model.blocks[0])
    top = inc.retrieve([new_docs[i] for i in d1], k=1).items[:, 0]
    assert (top.numpy() == d1).mean() >= 0.8

    # sequential fine-tuning moves the old rows and the encoder (what makes it forget)
    seq = copy.deepcopy(model)
    sequential_step(seq, corpus, d1, CFG, seed=1, progress=False)
    assert not torch.equal(seq.blocks[0], model.blocks[0])


def test_semantic_dsi_only_returns_existing_docids(corpus, encoder_path):
    enc = CachedEncoder(encoder_path, trainable_layers=2, max_length=16)
    d0 = corpus.steps[0]
    rng = np.random.default_rng(0)
    codes = np.stack([rng.integers(0, 4, len(d0)), rng.integers(0, 4, len(d0)), np.zeros(len(d0), int)], 1)
    seen: dict = {}
    for i, row in enumerate(map(tuple, codes[:, :2])):  # position within each (c1, c2) group
        codes[i, 2] = seen.get(row, 0)
        seen[row] = codes[i, 2] + 1
    model = SemanticDSI(enc, codes, [4, 4, int(codes[:, 2].max()) + 1], items=d0, layers=1, beam_width=10)
    info = train_dsi(model, corpus, d0, None, CFG, seed=0, progress=False)
    assert info["history"][-1]["loss"] < info["history"][0]["loss"]
    answer = model.retrieve(corpus.stage_queries("test", 0)["text"].tolist(), k=10)
    found = answer.items[answer.items >= 0]
    assert len(found) and set(found.tolist()) <= set(d0.tolist())
    rows = answer.items[0][answer.items[0] >= 0]
    assert len(set(rows.tolist())) == len(rows)  # no docid twice


def test_baselines_answer_in_catalogue_ids(corpus):
    texts = corpus.catalogue.texts()
    items = np.arange(30, 60)
    bm25 = BM25Index([texts[i] for i in items], items)
    top = bm25.retrieve([texts[40], texts[55]], k=3).items
    assert top[:, 0].tolist() == [40, 55]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(120, 8)).astype(np.float32)
    dense = DenseIndex(lambda q: vectors[[int(t) for t in q]], 8)
    dense.add(vectors[:90], np.arange(90))
    assert dense.retrieve(["5"], k=1).items[0, 0] == 5
    dense.add(vectors[90:], np.arange(90, 120))
    assert dense.retrieve(["100"], k=1).items[0, 0] == 100 and dense.nbytes() == 120 * 8 * 4


def test_continual_summary_on_a_hand_computed_matrix():
    perf = [[0.9], [0.7, 0.8], [0.6, 0.5, 0.4]]
    s = continual_summary(perf)
    assert s["average"] == pytest.approx(0.5)
    # forgetting: D0 best 0.9 -> 0.6 (0.3); D1 best 0.8 -> 0.5 (0.3)
    assert s["forgetting"] == pytest.approx(0.3) and s["d0_forgetting"] == pytest.approx(0.3)
    assert s["bwt"] == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    assert s["learning"] == pytest.approx((0.9 + 0.8 + 0.4) / 3) and s["newest"] == 0.4
    with pytest.raises(ValueError):
        continual_summary([[0.1, 0.2]])


def test_cached_encoder_runs_mpnet_layer_by_layer(tmp_path, corpus):
    """all-mpnet-base-v2's architecture (relative-position bias per layer), on a tiny MPNet built here."""
    from transformers import MPNetConfig, MPNetModel

    from tests.core.conftest import word_tokenizer

    tok = word_tokenizer(corpus.catalogue.texts())
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=80, pad_token_id=tok.pad_token_id)
    MPNetModel(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = CachedEncoder(tmp_path, trainable_layers=1, max_length=16).eval()
    texts = ["alpha beta gamma", "delta", "beta beta alpha delta gamma"]
    with torch.no_grad():
        mine = enc(texts)
        inputs = enc.tokenize(texts)
        ref = masked_mean(enc.model(**inputs).last_hidden_state, inputs["attention_mask"])
        assert torch.allclose(mine, ref, atol=5e-3)
        hidden, mask = enc.lower(texts)
        prompted = masked_mean(enc.upper(hidden, mask, torch.randn(3, 1, 2, 32)), mask)
    assert prompted.shape == mine.shape and not torch.allclose(prompted, mine, atol=1e-3)


def test_pool_centring_removes_the_shared_direction():
    """Features that share a large common direction all pick the key nearest it on raw cosines; centred on
    their mean, each picks its own topic's key."""
    from genir.methods.dsi.prompts import PromptPool

    common = torch.zeros(8)
    common[0] = 10.0
    topics = torch.eye(8)[1:5]  # four topic directions, orthogonal to the common one
    features = common + torch.cat([topics[i].expand(5, 8) for i in range(4)]) + 0.01 * torch.randn(20, 8)
    keys = torch.cat([topics[:3], (common / 10 + topics[3])[None]])  # the last key leans toward the common part
    init = torch.randn(4, 8)
    raw = PromptPool(keys, 1, 1, 1, learn_keys=False, init=init)
    centred = PromptPool(keys, 1, 1, 1, learn_keys=False, init=init, center=features.mean(0))
    assert raw.select(features)[0].unique().tolist() == [3]
    assert centred.select(features)[0].flatten().tolist() == [i for i in range(4) for _ in range(5)]


def test_old_row_guard_matches_its_definition_and_keeps_new_rows_below_old_ones(corpus, encoder_path):
    base = CachedEncoder(encoder_path, trainable_layers=2, max_length=16)
    d0, d1 = corpus.steps[0], corpus.steps[1]
    model = atomic_dsi(copy.deepcopy(base), corpus, d0, CFG)
    texts = document_texts(corpus, d0)
    guarded_cfg = DSIConfig.from_dict({**CFG.to_dict(), "row_guard": 1.0, "guard_margin": 0.5})
    runs = {}
    for name, cfg in (("plain", CFG), ("guarded", guarded_cfg)):
        pm = prompt_model(copy.deepcopy(model), texts, cfg, learn_keys=False, seed=0)
        assert pm.guard_loss().item() == 0.0  # no new rows yet
        prompt_step(pm, corpus, d1, cfg, seed=1, progress=False)
        runs[name] = pm
    pm = runs["guarded"]
    old, new, scale = pm.dsi.blocks[0].detach(), pm.dsi.blocks[1].detach(), pm.dsi.scale
    brute = 0.0
    for w in old:  # the hinge written out row by row
        u = w / w.norm()
        brute += sum(max(0.0, float(scale * (v @ u) - scale * (w @ u) + 0.5)) for v in new)
    assert abs(pm.guard_loss().item() - brute / len(old)) < 1e-3 * max(1.0, brute / len(old))

    def worst_excess(p):  # how far the best new row goes above an old row's own score, in its direction
        o, n = p.dsi.blocks[0].detach(), p.dsi.blocks[1].detach()
        u = torch.nn.functional.normalize(o, dim=-1)
        return float((u @ n.T).max(1).values.sub(o.norm(dim=-1)).clamp_min(0).sum())

    assert worst_excess(runs["guarded"]) < worst_excess(runs["plain"])


def test_align_new_rows_rescales_each_new_row_to_the_old_rows_mean_norm(corpus, encoder_path):
    from genir.methods.dsi.procedures import align_new_rows

    base = CachedEncoder(encoder_path, trainable_layers=2, max_length=16)
    d0, d1 = corpus.steps[0], corpus.steps[1]
    model = atomic_dsi(copy.deepcopy(base), corpus, d0, CFG)
    with torch.no_grad():
        model.blocks[0].mul_(torch.linspace(0.5, 1.5, len(d0))[:, None])  # old rows of unequal norms
    align_new_rows(model)  # one block: nothing to align
    cfg = DSIConfig.from_dict({**CFG.to_dict(), "align_new_rows": True})
    pm = prompt_model(model, document_texts(corpus, d0), cfg, learn_keys=False, seed=0)
    old = pm.dsi.blocks[0].detach().clone()
    prompt_step(pm, corpus, d1, cfg, seed=1, progress=False)
    norms = pm.dsi.blocks[1].detach().norm(dim=1)
    assert torch.allclose(norms, old.norm(dim=1).mean().expand_as(norms), rtol=1e-5)
    assert torch.equal(pm.dsi.blocks[0], old)  # old rows untouched
