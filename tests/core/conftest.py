"""Fixtures of the core's skeleton tests: catalogues without any interaction (a document corpus with queries,
images with captions) and a word-level tokenizer built on their text, so a tiny T5 can be trained in-process
(no T5 weights or tokenizer exist offline; nothing here is pretrained)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

TOPICS = ["network", "graphics", "audio", "database", "kernel", "python", "editor", "games", "science", "mail"]
WORDS = ["fast", "small", "secure", "portable", "modern", "classic", "simple", "robust", "visual", "remote",
         "parallel", "static", "dynamic", "free", "minimal", "extensible", "scalable", "legacy", "embedded",
         "distributed"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


def make_corpus(n_docs: int = 200, seed: int = 0):
    """(documents frame id/title/text, queries frame qid/text/stage, qrels frame qid/item): 10 topics x 20
    documents; a document is its topic and three distinctive words; its query names the topic and two of them.
    Queries of 150 documents are for training, 25 for validation, 25 for test (every document is indexed)."""
    rng = np.random.default_rng(seed)
    docs, queries, qrels = [], [], []
    for d in range(n_docs):
        topic = TOPICS[d % len(TOPICS)]
        words = rng.choice(WORDS, size=3, replace=False).tolist()
        docs.append({"id": f"doc{d}", "title": f"{topic} {words[0]}",
                     "text": f"a {words[0]} {words[1]} {words[2]} tool for {topic}"})
        queries.append({"qid": f"q{d}", "text": f"{words[1]} {topic} {words[2]}"})
        qrels.append({"qid": f"q{d}", "item": d})
    order = rng.permutation(n_docs)
    stage = np.empty(n_docs, dtype=object)
    stage[order[:150]], stage[order[150:175]], stage[order[175:]] = "train", "valid", "test"
    q = pd.DataFrame(queries)
    q["stage"] = stage
    return pd.DataFrame(docs), q, pd.DataFrame(qrels)


def word_tokenizer(texts: list[str]):
    """A word-level fast tokenizer over ``texts`` with pad, unk and eos tokens."""
    from transformers import PreTrainedTokenizerFast

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")


def tiny_bert(path, texts: list[str], seed: int = 0):
    """Save a 3-layer BERT of width 32 (randomly initialised: not pretrained) and a word tokenizer over ``texts``
    to ``path``: an HF encoder folder for the DSI tests."""
    import torch
    from transformers import BertConfig, BertModel

    tok = word_tokenizer(texts)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)
    BertModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def tiny_t5(tokenizer, seed: int = 0):
    """A 2-layer T5 of width 32, randomly initialised (built from a config: not pretrained)."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=2, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return T5ForConditionalGeneration(config)
