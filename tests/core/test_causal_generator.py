"""A decoder-only LM (a tiny Llama built from a config: not pretrained) as a text -> ID generator on the same
corpus task: answer-only loss on the code tokens after a left-padded prompt, the constrained beam search through
the causal adapter's KV cache, save/reload."""

from __future__ import annotations

import torch

from genir.index import build_index, load_index
from genir.models.hf_generator import CausalLMIdGenerator
from genir.training import Trainer, TrainerConfig
from tests.core.conftest import word_tokenizer
from tests.core.test_document_retrieval import TOKENIZERS, corpus_task  # noqa: F401  (the fixture)


def tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return LlamaForCausalLM(config)


def test_causal_lm_generator(corpus_task, tmp_path):  # noqa: F811
    task = corpus_task
    index = load_index(build_index(task.catalogue, TOKENIZERS / "hkmeans_docid.yaml", tmp_path / "idx",
                                   overrides={"k": 8, "c": 8}, progress=False))
    tokenizer = word_tokenizer(task.catalogue.texts() + task.queries["text"].tolist())
    model = CausalLMIdGenerator(tiny_llama(tokenizer), tokenizer, index.table.codes, index.table.level_sizes,
                                beam_width=10)
    config = TrainerConfig(epochs=40, batch_size=32, lr=5e-3, metric="hits@10", patience=40, eval_every=10,
                           progress=False, seed=0, output_dir=str(tmp_path / "run"))
    trainer = Trainer(model, task, config=config)
    trainer.fit()
    test = trainer.test()
    assert test["hits@10"] >= 0.2, test  # chance: 0.05
    answer = model.retrieve(["fast network secure"], k=10)
    assert (answer.items >= 0).all() and len(set(answer.items[0].tolist())) == 10
    again = CausalLMIdGenerator.from_pretrained(tmp_path / "run" / "best")
    assert again.retrieve(["fast network secure"], k=10).items.tolist() == answer.items.tolist()
