"""Prompts with soft-token slots, answer-only loss, option-letter scoring and greedy answers for causal LMs.

A prompt is plain text in which every :data:`FEATURE_MARK` is one *slot*: the text pieces between marks are
tokenized separately and a slot becomes one position whose input embedding is replaced by a vector supplied by the
caller (Bundle-LLM's hybrid item tokens, a soft prompt). Without marks it is an ordinary text prompt.

Batches are left-padded, so every prompt ends in the last column and the answer (training) or the first
generated token (inference) follows at the same column for every row; position ids count real tokens only. The
loss is the LM's cross-entropy on the answer tokens only (the prompt and the padding are labelled -100). Nothing is
truncated: a prompt longer than ``max_length`` is an error naming its length, because cutting an instruction or
an option silently would change the task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genir.errors import ConfigError

FEATURE_MARK = "<Feature>"


def chat_text(tokenizer, user_text: str, system: str | None = None) -> str:
    """``user_text`` as one user turn of the tokenizer's chat template (after a ``system`` turn when given; a
    short one also replaces a template's long default), ready for the assistant's answer. A tokenizer without a
    template gets plain ``system + "\\n" + user_text + "\\n"``."""
    if getattr(tokenizer, "chat_template", None):
        turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return (system + "\n" if system else "") + user_text + "\n"


@dataclass
class EncodedPrompts:
    """A left-padded batch. ``slot_mask`` marks the positions that take a soft token (row-major order);
    ``labels`` is None without answers."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    slot_mask: torch.Tensor  # (B, T) bool
    labels: torch.Tensor | None = None  # (B, T), -100 outside the answers

    @property
    def position_ids(self) -> torch.Tensor:
        return (self.attention_mask.cumsum(1) - 1).clamp_min(0)

    @property
    def prompt_lengths(self) -> torch.Tensor:
        """Real tokens per row (prompt + answer when encoded with answers)."""
        return self.attention_mask.sum(1)

    def to(self, device) -> EncodedPrompts:
        return EncodedPrompts(self.input_ids.to(device), self.attention_mask.to(device), self.slot_mask.to(device),
                              None if self.labels is None else self.labels.to(device))


def _piece_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_prompts(tokenizer, prompts: list[str], answers: list[str] | None = None, *,
                   max_length: int = 2048, add_eos: bool = True) -> EncodedPrompts:
    """Tokenize ``prompts`` (already in chat form, see :func:`chat_text`) with their slots, append ``answers``
    (+ the end token) when given, and left-pad. The slots hold the pad id; their embeddings are replaced later."""
    if answers is not None and len(answers) != len(prompts):
        raise ConfigError(f"encode_prompts: {len(prompts)} prompts but {len(answers)} answers")
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ConfigError("encode_prompts: the tokenizer has no pad token (use genir.llm.prepare_tokenizer)")
    rows, label_rows, slot_rows = [], [], []
    for i, prompt in enumerate(prompts):
        ids, slots = [], []
        pieces = prompt.split(FEATURE_MARK)
        for j, piece in enumerate(pieces):
            ids += _piece_ids(tokenizer, piece)
            if j < len(pieces) - 1:
                slots.append(len(ids))
                ids.append(pad)
        labels = [-100] * len(ids)
        if answers is not None:
            answer = _piece_ids(tokenizer, answers[i]) + ([tokenizer.eos_token_id] if add_eos else [])
            ids += answer
            labels += answer
        if len(ids) > max_length:
            raise ConfigError(f"encode_prompts: prompt {i} has {len(ids)} tokens, over max_length={max_length}")
        rows.append(ids)
        label_rows.append(labels)
        slot_rows.append(slots)
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    slot_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (ids, lab, slots) in enumerate(zip(rows, label_rows, slot_rows)):
        off = width - len(ids)
        input_ids[i, off:] = torch.tensor(ids, dtype=torch.long)
        mask[i, off:] = 1
        labels[i, off:] = torch.tensor(lab, dtype=torch.long)
        for s in slots:
            slot_mask[i, off + s] = True
    return EncodedPrompts(input_ids, mask, slot_mask, labels if answers is not None else None)


def input_embeddings(model, enc: EncodedPrompts, soft_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, H) input embeddings with ``soft_tokens`` (S, H), S = number of slots in row-major order, in the
    slots."""
    emb = model.get_input_embeddings()(enc.input_ids)
    n_slots = int(enc.slot_mask.sum())
    if n_slots == 0:
        return emb
    if soft_tokens is None or soft_tokens.shape != (n_slots, emb.shape[-1]):
        got = None if soft_tokens is None else tuple(soft_tokens.shape)
        raise ConfigError(f"input_embeddings: the prompts have {n_slots} slots of width {emb.shape[-1]}; got soft "
                          f"tokens of shape {got}")
    return emb.masked_scatter(enc.slot_mask.unsqueeze(-1), soft_tokens.to(emb.dtype))


def answer_loss(model, enc: EncodedPrompts, soft_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens (the prompt is masked out). Answers sit in the last columns (left
    padding), so only the logits of those columns are computed (``logits_to_keep``): the LM head over the whole
    prompt would cost as much as a few transformer layers."""
    if enc.labels is None:
        raise ConfigError("answer_loss: the prompts were encoded without answers")
    answer = enc.labels != -100
    if not bool(answer.any()):
        raise ConfigError("answer_loss: every answer is empty")
    first = int(answer.float().argmax(1)[answer.any(1)].min())  # earliest answer column of the batch
    keep = enc.labels.shape[1] - first + 1
    out = model(inputs_embeds=input_embeddings(model, enc, soft_tokens), attention_mask=enc.attention_mask,
                position_ids=enc.position_ids, logits_to_keep=keep)
    logits = out.logits[:, :-1].float()  # (B, keep - 1, V): column t predicts token t + 1
    target = enc.labels[:, first:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=-100)


def single_token_ids(tokenizer, strings: list[str]) -> list[int]:
    """The one token id of each string (an option letter); an error when a string is not one token."""
    ids = []
    for s in strings:
        t = _piece_ids(tokenizer, s)
        if len(t) != 1:
            raise ConfigError(f"{s!r} is {len(t)} tokens for this tokenizer; option letters must be one token each")
        ids.append(t[0])
    return ids


@torch.no_grad()
def greedy_answers(model, enc: EncodedPrompts, soft_tokens: torch.Tensor | None = None, *, max_new_tokens: int = 4,
                   eos_token_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(first-step logits (B, V), generated ids (B, max_new_tokens)) of greedy decoding after each prompt, with
    the KV cache. Rows that produced ``eos_token_id`` keep emitting it."""
    from genir.decoding.hf_adapters import _cache_arg, _forward_params, _new_dynamic_cache

    mask = enc.attention_mask
    pos = enc.position_ids
    cache = _new_dynamic_cache(model)  # filled in place by every forward
    name = _cache_arg(_forward_params(model))  # past_key_values, or cache from transformers 5.24 on
    out = model(inputs_embeds=input_embeddings(model, enc, soft_tokens), attention_mask=mask, position_ids=pos,
                use_cache=True, logits_to_keep=1, **{name: cache})
    first = out.logits[:, -1].float()
    nxt = first.argmax(-1)
    done = torch.zeros_like(nxt, dtype=torch.bool)
    tokens = [nxt]
    last_pos = pos[:, -1:]
    for _ in range(max_new_tokens - 1):
        if eos_token_id is not None:
            done = done | (nxt == eos_token_id)
            if bool(done.all()):
                break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        last_pos = last_pos + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last_pos, use_cache=True,
                    logits_to_keep=1, **{name: cache})
        nxt = out.logits[:, -1].argmax(-1)
        if eos_token_id is not None:
            nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
        tokens.append(nxt)
    generated = torch.stack(tokens, dim=1)
    if generated.shape[1] < max_new_tokens:
        fill = eos_token_id if eos_token_id is not None else 0
        generated = torch.cat([generated, torch.full((generated.shape[0], max_new_tokens - generated.shape[1]), fill,
                                                     dtype=generated.dtype, device=generated.device)], dim=1)
    return first, generated
