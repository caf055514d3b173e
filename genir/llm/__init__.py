"""The shared LLM layer: load a Hugging Face causal LM (default: SmolLM2-135M-Instruct from its GGUF, converted
once and cached), LoRA through peft with adapter-only checkpoints, prompts with soft-token slots, left padding,
answer-only loss and greedy answers. A tiny randomly initialised Llama for tests (:mod:`genir.llm.tiny`)."""

from genir.llm.loading import (
    DEFAULT_LLM,
    LoraSettings,
    add_lora,
    converted_gguf,
    llm_cache_root,
    load_adapter,
    load_causal_lm,
    prepare_tokenizer,
    resolve_llm,
    save_adapter,
    smollm2_gguf,
)
from genir.llm.prompts import (
    FEATURE_MARK,
    EncodedPrompts,
    answer_loss,
    chat_text,
    encode_prompts,
    greedy_answers,
    input_embeddings,
    single_token_ids,
)
from genir.llm.tiny import tiny_llama, tiny_tokenizer

__all__ = [
    "DEFAULT_LLM",
    "FEATURE_MARK",
    "EncodedPrompts",
    "LoraSettings",
    "add_lora",
    "answer_loss",
    "chat_text",
    "converted_gguf",
    "encode_prompts",
    "greedy_answers",
    "input_embeddings",
    "llm_cache_root",
    "load_adapter",
    "load_causal_lm",
    "prepare_tokenizer",
    "resolve_llm",
    "save_adapter",
    "single_token_ids",
    "smollm2_gguf",
    "tiny_llama",
    "tiny_tokenizer",
]
