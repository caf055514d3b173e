"""A tiny RANDOMLY INITIALISED Llama and a byte-level BPE tokenizer trained on given texts, built in-process.

For tests and ``--quick`` runs only: nothing here is pretrained, and results obtained with it say nothing about a
real LLM. The tokenizer has a ChatML template (as SmolLM2's), ``<|im_end|>`` as its end token and every byte as a
single token, so option letters are one token each.
"""

from __future__ import annotations

import torch

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def tiny_tokenizer(texts, vocab_size: int = 512):
    """A byte-level BPE tokenizer with ``vocab_size`` entries learnt from ``texts`` (an iterable of strings)."""
    from transformers import PreTrainedTokenizerFast

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.padding_side = "left"
    return fast


def tiny_llama(tokenizer, hidden_size: int = 64, layers: int = 2, heads: int = 4, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` sized for ``tokenizer`` (about 0.1M parameters + the
    embedding table)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=16384, tie_word_embeddings=True, initializer_range=0.1,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # token embeddings of std 0.5: the (tied, frozen under LoRA) output head can then give one token a
        # high probability; with the usual 0.02-scale rows the logits of a 64-wide model stay within a few units
        # and no adapter can push a 400-token softmax past ~10%
        torch.nn.init.normal_(model.get_input_embeddings().weight, std=0.5)
    return model.eval()
