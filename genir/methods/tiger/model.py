"""TIGER: generative retrieval over semantic IDs with a T5 encoder-decoder (Rajput et al., NeurIPS 2023).

Every item is its L-code semantic ID from an index dir (``genir index build``). The encoder reads the code tokens
of the user's last ``max_history`` items in time order, L tokens per item, then EOS; the decoder emits the L
tokens of the next item, constrained by the index's :class:`~genir.decoding.PrefixIndex` so that every decoded ID
is a catalogue item. Code ``c`` of level ``l`` is token ``2 + offset[l] + c`` (PAD = 0, which is also T5's
decoder start token, EOS = 1).

The T5 is randomly initialised and trained from scratch (as in the paper; no pretrained weights are used).
Training: every position ``t >= 1`` of a user's training sequence is one example (items ``< t``, capped to the
last ``max_history``, predict item ``t``); the loss is T5's token cross-entropy over the L target tokens.
Encoder inputs are left-padded in training and at inference (T5's relative positions make the amount of padding
irrelevant once it is masked).

Scoring: :meth:`Tiger.full_scores` is the constrained beam search (``beam_width`` beams, ``beam_width`` items per
user, sequence log-probabilities; every other item is ``-inf``, i.e. a miss when it is the target);
:meth:`Tiger.exact_full_scores` teacher-forces every item's ID, the exact ranking that the beam approximates.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset
from transformers import T5Config, T5ForConditionalGeneration

from genir.data.split import Split
from genir.decoding import CodeTokenLayout, beam_search_seq2seq, exact_scores_seq2seq
from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch
from genir.methods.base import Recommender
from genir.methods.tiger.config import TigerConfig

CODE_BASE = 2  # tokens below are specials: PAD (0), EOS (1)


class NextItemExamples(TorchDataset):
    """One example per (user, position t >= 1): ``(previous items (<= max_history), next item)``."""

    def __init__(self, histories: list[np.ndarray], max_history: int):
        self.examples = [
            (seq[max(0, t - max_history):t], int(seq[t])) for seq in histories for t in range(1, len(seq))
        ]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, idx):
        return self.examples[idx]


class Tiger(Recommender):
    config_class = TigerConfig
    # paper: AdamW lr 0.01 with inverse-sqrt decay, batch 256; here Adam (the trainer's) with a constant lr
    trainer_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 256, "epochs": 100, "patience": 5,
                                        "eval_batch_size": 128}

    def __init__(self, config: TigerConfig, split: Split):
        super().__init__(config, split)
        from genir.index import load_index

        c = config
        if not c.index:
            raise ConfigError("method tiger: `index` is required (an index dir from `genir index build`), "
                              "e.g. index=runs/idx or `genir train --index DIR`")
        if c.pad_id == c.eos_id or max(c.pad_id, c.eos_id) >= CODE_BASE or min(c.pad_id, c.eos_id) < 0:
            raise ConfigError(f"method tiger: pad_id and eos_id must be distinct values in [0, {CODE_BASE}), "
                              f"got {c.pad_id}, {c.eos_id}")
        index = load_index(c.index)
        expected = split.dataset.fingerprint()
        found = index.manifest.get("dataset", {}).get("fingerprint")
        if found != expected or index.num_items != split.num_items:
            raise ConfigError(
                f"{Path(c.index) / 'manifest.json'}: dataset.fingerprint is {found!r} ({index.num_items} items) but "
                f"the training dataset {split.dataset.name!r} has fingerprint {expected!r} ({split.num_items} "
                "items): the index must be built from the same catalogue (`genir index build --dataset ...`)")
        self.layout = CodeTokenLayout(index.table.level_sizes, base=CODE_BASE)
        self.num_levels = self.layout.num_levels
        self.prefix = index.prefix
        codes = torch.tensor(np.array(index.table.codes), dtype=torch.long)  # (N, L)
        tokens = torch.cat([self.layout.to_tokens(codes),
                            torch.full((1, self.num_levels), c.pad_id, dtype=torch.long)])  # (N + 1, L)
        self._item_tokens_cpu = tokens  # for the collate (runs in the DataLoader, on CPU)
        self.register_buffer("item_tokens", tokens.clone(), persistent=False)
        self.register_buffer("item_codes", codes, persistent=False)
        self.t5 = T5ForConditionalGeneration(T5Config(
            vocab_size=self.layout.vocab_end, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff,
            num_layers=c.num_encoder_layers, num_decoder_layers=c.num_decoder_layers, num_heads=c.num_heads,
            dropout_rate=c.dropout, feed_forward_proj="relu", pad_token_id=c.pad_id, eos_token_id=c.eos_id,
            decoder_start_token_id=c.pad_id,
        ))

    # -- inputs ----------------------------------------------------------------------------------------------
    def encoder_inputs(self, history: torch.Tensor, pad_item: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) right-aligned item ids, left-padded with ``pad_item`` -> (input_ids, attention_mask), each
        (B, min(T, max_history) * L + 1): the code tokens of the last ``max_history`` items, then EOS."""
        c = self.config
        hist = history[:, -c.max_history:].clone()
        hist[hist == pad_item] = self.num_items  # the pad row of the token table
        table = self.item_tokens if hist.device == self.item_tokens.device else self._item_tokens_cpu.to(hist.device)
        tokens = table[hist].flatten(1)  # (B, T * L)
        eos = torch.full((tokens.shape[0], 1), c.eos_id, dtype=torch.long, device=tokens.device)
        ids = torch.cat([tokens, eos], dim=1)
        return ids, (ids != c.pad_id).long()

    def collate(self, examples: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
        width = max(1, max(len(h) for h, _ in examples))
        hist = torch.full((len(examples), width), self.num_items, dtype=torch.long)  # left-padded
        for r, (h, _) in enumerate(examples):
            if len(h):
                hist[r, width - len(h):] = torch.as_tensor(h, dtype=torch.long)
        ids, mask = self.encoder_inputs(hist, self.num_items)
        targets = torch.tensor([t for _, t in examples], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": self._item_tokens_cpu[targets]}

    # -- training --------------------------------------------------------------------------------------------
    def train_dataset(self, split: Split) -> TorchDataset:
        return NextItemExamples(split.histories(None), self.config.max_history)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.t5(**batch).loss

    # -- inference -------------------------------------------------------------------------------------------
    def _prefix_on(self, device):
        if self.prefix.device != torch.device(device):
            self.prefix = self.prefix.to(device)
        return self.prefix

    @torch.no_grad()
    def beam_search(self, batch: EvalBatch, k: int | None = None):
        """:class:`~genir.decoding.BeamSearchResult` of the constrained beam search, (B, k) best first."""
        ids, mask = self.encoder_inputs(batch.history, batch.pad_id)
        device = self.item_tokens.device
        return beam_search_seq2seq(self.t5, ids.to(device), self._prefix_on(device), self.config.beam_width,
                                   k or self.config.beam_width, attention_mask=mask.to(device), layout=self.layout)

    @torch.no_grad()
    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        """(B, num_items): the sequence log-probability of the ``beam_width`` decoded items, ``-inf`` elsewhere."""
        result = self.beam_search(batch)
        scores = torch.full((batch.history.shape[0], self.num_items), float("-inf"), device=result.scores.device)
        items = result.items.clamp_min(0)
        value = torch.where(result.valid, result.scores.to(scores.dtype), torch.full_like(scores[:, :1], -torch.inf))
        # padding (-1 -> item 0, -inf) must not overwrite a real score of item 0: scatter-reduce with amax
        return scores.scatter_reduce(1, items, value, reduce="amax")

    @torch.no_grad()
    def recommend(self, histories: list[list[int]], k: int = 10) -> list[list[tuple[int, float]]]:
        """Top-``k`` ``(item, log-probability)`` per history (internal item ids, time order), history items
        excluded; the beam is widened to ``k + len(history)`` when ``beam_width`` is too small for that."""
        width = max(1, max(len(h) for h in histories)) if histories else 1
        hist = torch.full((len(histories), width), self.num_items, dtype=torch.long)
        for r, h in enumerate(histories):
            if len(h):
                hist[r, width - len(h):] = torch.as_tensor(list(h), dtype=torch.long)
        ids, mask = self.encoder_inputs(hist, self.num_items)
        device = self.item_tokens.device
        beams = min(self.num_items, max(self.config.beam_width, k + max((len(set(h)) for h in histories), default=0)))
        result = beam_search_seq2seq(self.t5, ids.to(device), self._prefix_on(device), beams, beams,
                                     attention_mask=mask.to(device), layout=self.layout)
        out = []
        for h, found in zip(histories, result.to_lists()):
            seen = {int(x) for x in h}
            out.append([(item, score) for item, _, score in found if item not in seen][:k])
        return out

    @torch.no_grad()
    def exact_full_scores(self, batch: EvalBatch) -> torch.Tensor:
        """(B, num_items) exact log-probability of every item's ID (teacher forcing; small catalogues)."""
        ids, mask = self.encoder_inputs(batch.history, batch.pad_id)
        device = self.item_tokens.device
        return exact_scores_seq2seq(self.t5, ids.to(device), self.item_codes, self.layout,
                                    attention_mask=mask.to(device)).float()

    def state_dict(self, *args, **kwargs):
        """T5 ties its input embeddings (and the LM head) to one tensor; safetensors refuses shared storage, so
        repeated tensors are returned as copies (loading writes the same values into the one parameter)."""
        state = super().state_dict(*args, **kwargs)
        seen = set()
        for key, value in state.items():
            ptr = value.data_ptr()
            if ptr in seen:
                state[key] = value.clone()
            seen.add(ptr)
        return state
