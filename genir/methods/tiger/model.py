"""TIGER: generative retrieval over semantic IDs with a transformer encoder-decoder (Rajput et al., NeurIPS 2023).

Every item is its L-code semantic ID from an index dir (``genir index build``). The encoder reads the code tokens
of the user's last ``max_history`` items (L tokens per item, time order); the decoder emits the L tokens of the
next item, constrained by the index's :class:`~genir.decoding.PrefixIndex` so that every decoded ID is a catalogue
item. The network is :class:`~genir.methods.tiger.transformer.GenerativeTransformer`, randomly initialised and
trained from scratch (no pretrained weights); MMGRec (:mod:`genir.methods.mmgrec`) is this class with other
switches (graph item vectors as encoder input, relation-aware attention, Graph RQ-VAE IDs).

Training: the user's training sequence is cut into windows of ``max_history + 1`` items, and every next-item
target of a window is trained in the same pass (causal encoder, each target's decoder sees only its own past);
the loss is the token cross-entropy over the L ID tokens of every target.

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

from genir.data.split import Split
from genir.decoding import CodeTokenLayout, constrained_beam_search, exact_scores
from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch, pad_histories
from genir.methods.base import Recommender
from genir.methods.sasrec.model import SequenceWindows
from genir.methods.tiger.config import TigerConfig
from genir.methods.tiger.transformer import (
    CODE_BASE,
    ENCODER_INPUTS,
    PAD,
    POSITIONS,
    DecoderStep,
    GenerativeTransformer,
)


class UserWindows(SequenceWindows):
    """SASRec's training windows, with the user of each: ``(user, inputs (T,), targets (T,))``."""

    def __getitem__(self, idx):
        return (self.owners[idx], *self.window(idx))


class Tiger(Recommender):
    config_class = TigerConfig
    # paper: AdamW lr 0.01 with inverse-sqrt decay, batch 256; here the Trainer's Adam with a constant lr, early
    # stopping on validation NDCG@10 (lr chosen on ml-100k validation, see README)
    trainer_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 64, "epochs": 200, "patience": 10,
                                        "eval_batch_size": 256}

    def __init__(self, config: TigerConfig, split: Split):
        super().__init__(config, split)
        from genir.index import load_index

        c = config
        name = type(self).__name__.lower()
        if not c.index:
            raise ConfigError(f"method {name}: `index` is required (an index dir from `genir index build`), "
                              "e.g. index=runs/idx or `genir train --index DIR`")
        if c.position not in POSITIONS:
            raise ConfigError(f"method {name}: position must be one of {POSITIONS}, got {c.position!r}")
        if c.encoder_input not in ENCODER_INPUTS:
            raise ConfigError(f"method {name}: encoder_input must be one of {ENCODER_INPUTS}, got {c.encoder_input!r}")
        index = load_index(c.index)
        expected = split.dataset.fingerprint()
        found = index.manifest.get("dataset", {}).get("fingerprint")
        if found != expected or index.num_items != split.num_items:
            raise ConfigError(
                f"{Path(c.index) / 'manifest.json'}: dataset.fingerprint is {found!r} ({index.num_items} items) but "
                f"the training dataset {split.dataset.name!r} has fingerprint {expected!r} ({split.num_items} "
                "items): the index must be built from the same catalogue (`genir index build --dataset ...`)")
        self.pad_item = split.num_items
        self.layout = CodeTokenLayout(index.table.level_sizes, base=CODE_BASE)
        self.num_levels = self.layout.num_levels
        self.prefix = index.prefix
        codes = torch.tensor(np.array(index.table.codes), dtype=torch.long)  # (N, L)
        tokens = torch.cat([self.layout.to_tokens(codes), torch.full((1, self.num_levels), PAD, dtype=torch.long)])
        self.register_buffer("item_tokens", tokens, persistent=False)  # (N + 1, L), last row = padding
        self.register_buffer("item_codes", codes, persistent=False)
        item_vectors, user_vectors = self.conditioning(split)
        if c.encoder_input == "features" and item_vectors is None:
            raise ConfigError(f"method {name}: encoder_input=features needs item vectors; {type(self).__name__} has "
                              "none (use encoder_input=codes, or mmgrec for graph item vectors)")
        if c.position == "relation" and user_vectors is None:
            raise ConfigError(f"method {name}: position=relation needs user vectors; {type(self).__name__} has none "
                              "(use mmgrec, whose graph encoder provides them)")
        if item_vectors is not None:
            pad = torch.zeros(1, item_vectors.shape[1])
            self.register_buffer("item_vectors", torch.cat([torch.as_tensor(item_vectors), pad]), persistent=False)
        else:
            self.item_vectors = None
        if user_vectors is not None:
            self.register_buffer("user_vectors", torch.as_tensor(user_vectors), persistent=False)
        else:
            self.user_vectors = None
        self.net = GenerativeTransformer(
            self.layout.vocab_end, self.num_levels, d_model=c.d_model, num_heads=c.num_heads, d_ff=c.d_ff,
            num_encoder_layers=c.num_encoder_layers, num_decoder_layers=c.num_decoder_layers, dropout=c.dropout,
            max_history=c.max_history, position=c.position, encoder_input=c.encoder_input,
            item_dim=0 if item_vectors is None else item_vectors.shape[1],
            user_dim=0 if user_vectors is None else user_vectors.shape[1])

    # -- hooks for subclasses ------------------------------------------------------------------------------------
    def conditioning(self, split: Split) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(item vectors (N, d_i) or None, user vectors (num_users, d_u) or None): fixed inputs of the encoder
        (``encoder_input=features``) and of the relation-aware attention. TIGER has neither."""
        return None, None

    def _user(self, users: torch.Tensor | None, history: torch.Tensor) -> torch.Tensor | None:
        """User vectors of a batch: the table's rows for known users; for an ad-hoc history (``users`` None or
        -1) the mean of its items' vectors (the inductive analogue of a graph encoder's mean aggregation)."""
        if self.config.position != "relation":
            return None
        valid = (history != self.pad_item).float()[:, :, None]
        adhoc = (self.item_vectors[history] * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        if users is None:
            return adhoc
        return torch.where((users >= 0)[:, None], self.user_vectors[users.clamp_min(0)], adhoc)

    # -- training --------------------------------------------------------------------------------------------
    def train_dataset(self, split: Split) -> TorchDataset:
        return UserWindows(split.histories(None), self.config.max_history, self.pad_item)

    def _inputs(self, history: torch.Tensor, users: torch.Tensor | None):
        return {"item_tokens": self.item_tokens[history], "item_valid": history != self.pad_item,
                "item_vectors": None if self.item_vectors is None else self.item_vectors[history],
                "user": self._user(users, history)}

    def loss(self, batch) -> torch.Tensor:
        users, inp, tgt = batch
        return self.net.training_loss(target_tokens=self.item_tokens[tgt], target_valid=tgt != self.pad_item,
                                      **self._inputs(inp, users))

    # -- inference -------------------------------------------------------------------------------------------
    def _prefix_on(self, device):
        if self.prefix.device != torch.device(device):
            self.prefix = self.prefix.to(device)
        return self.prefix

    def _memory(self, history: torch.Tensor, users: torch.Tensor | None):
        history = history[:, -self.config.max_history:].to(self.item_tokens.device)
        users = users.to(history.device) if users is not None else None
        return self.net.encode(**self._inputs(history, users))

    @torch.no_grad()
    def beam_search(self, history: torch.Tensor, users: torch.Tensor | None = None, beam_width: int | None = None,
                    k: int | None = None, exclude_history: bool = True):
        """:class:`~genir.decoding.BeamSearchResult` of the constrained beam search for right-aligned,
        ``pad_item``-padded histories (B, T): (B, k) items, best first. With ``exclude_history`` the items of
        ``history`` (all T columns, not only the ``max_history`` the encoder reads) are excluded inside the search,
        so the beams are spent on unseen items only."""
        beam_width = beam_width or self.config.beam_width
        memory = self._memory(history, users)
        return constrained_beam_search(DecoderStep(self.net), DecoderStep.init_state(*memory), history.shape[0],
                                       self._prefix_on(memory[0].device), beam_width, k or beam_width,
                                       layout=self.layout, exclude=history if exclude_history else None)

    @torch.no_grad()
    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        """(B, num_items): the sequence log-probability of the ``beam_width`` decoded items, ``-inf`` elsewhere."""
        result = self.beam_search(batch.history, batch.users)
        scores = torch.full((batch.history.shape[0], self.num_items), float("-inf"), device=result.scores.device)
        items = result.items.clamp_min(0)
        value = torch.where(result.valid, result.scores.to(scores.dtype), torch.full_like(scores[:, :1], -torch.inf))
        # padding (-1 -> item 0, -inf) must not overwrite a real score of item 0: scatter-reduce with amax
        return scores.scatter_reduce(1, items, value, reduce="amax")

    @torch.no_grad()
    def exact_full_scores(self, batch: EvalBatch) -> torch.Tensor:
        """(B, num_items) exact log-probability of every item's ID (teacher forcing; small catalogues)."""
        memory = self._memory(batch.history, batch.users)
        return exact_scores(DecoderStep(self.net), DecoderStep.init_state(*memory), batch.history.shape[0],
                            self.item_codes, self.layout, device=memory[0].device).float()

    @torch.no_grad()
    def recommend(self, histories: list[list[int]], k: int = 10,
                  users: list[int | None] | None = None) -> list[list[tuple[int, float]]]:
        """Top-``k`` ``(item, log-probability)`` per history (internal item ids, time order), history items
        excluded inside the beam search (the beam is widened to ``k`` when ``beam_width`` is smaller).
        ``users``: the internal user id of each history that is a known user's, else None (relation-aware
        attention then uses the user's learned vector)."""
        hist, _ = pad_histories([np.asarray(h, dtype=np.int64) for h in histories], self.pad_item)
        beams = min(self.num_items, max(self.config.beam_width, k))
        user_ids = None if users is None else torch.tensor([-1 if u is None else int(u) for u in users])
        result = self.beam_search(hist, user_ids, beams, min(k, beams))
        return [[(item, score) for item, _, score in found] for found in result.to_lists()]
