"""The generative recommender: a transformer encoder-decoder that generates the semantic ID of the next item
(TIGER, Rajput et al., NeurIPS 2023; MMGRec is the same class with other switches).

Every item is its L-code semantic ID from an index dir (``genir index build``), handed in as a loaded index
(:class:`genir.index.GenirIndex`: the methods open it with :func:`genir.index.open_index_for`). The encoder reads the code tokens
of the user's last ``max_history`` items (L tokens per item, time order); the decoder emits the L tokens of the
next item, constrained by the index's :class:`~genir.decoding.PrefixIndex` so that every decoded ID is a catalogue
item. The network is :class:`~genir.models.transformer.GenerativeTransformer`, randomly initialised and
trained from scratch (no pretrained weights); MMGRec (:mod:`genir.methods.mmgrec`) is this class with other
switches (graph item vectors as encoder input, relation-aware attention, Graph RQ-VAE IDs).

Training: the user's training sequence is cut into windows of ``max_history + 1`` items, and every next-item
target of a window is trained in the same pass (causal encoder, each target's decoder sees only its own past);
the loss is the token cross-entropy over the L ID tokens of every target.

Items added to the index after the dataset was read (``genir index add``: rows ``num_items ..`` of the index)
are generated like any other (cold start: they share semantic prefixes with similar old items) by
:meth:`recommend`; the evaluator's catalogue is the dataset's, so :meth:`full_scores` reports the dataset's
items only. Their encoder vectors (MMGRec's ``encoder_input=features``) are zeros: they have no graph vector.

Scoring: :meth:`full_scores` is the constrained beam search (``beam_width`` beams, ``beam_width`` items per
user, sequence log-probabilities; every other item is ``-inf``, i.e. a miss when it is the target);
:meth:`exact_full_scores` teacher-forces every item's ID, the exact ranking that the beam approximates.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from genir.data.split import Split
from genir.decoding import CodeTokenLayout, constrained_beam_search, exact_scores
from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch, pad_histories
from genir.models.base import Recommender
from genir.models.generative_config import GenerativeConfig
from genir.models.transformer import (
    CODE_BASE,
    ENCODER_INPUTS,
    PAD,
    POSITIONS,
    DecoderStep,
    GenerativeTransformer,
)
from genir.models.windows import UserWindows


class GenerativeRecommender(Recommender):
    config_class = GenerativeConfig
    # paper: AdamW lr 0.01 with inverse-sqrt decay, batch 256; here the Trainer's Adam with a constant lr, early
    # stopping on validation NDCG@10 (lr chosen on ml-100k validation, see README)
    trainer_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 64, "epochs": 200, "patience": 10,
                                        "eval_batch_size": 256}

    def __init__(self, config: GenerativeConfig, split: Split, index):
        """``index``: the loaded index dir (:class:`genir.index.GenirIndex`) whose first ``split.num_items`` items
        are the dataset's catalogue (checked by :func:`genir.index.open_index_for`)."""
        super().__init__(config, split)
        c = config
        name = type(self).__name__.lower()
        if c.position not in POSITIONS:
            raise ConfigError(f"method {name}: position must be one of {POSITIONS}, got {c.position!r}")
        if c.encoder_input not in ENCODER_INPUTS:
            raise ConfigError(f"method {name}: encoder_input must be one of {ENCODER_INPUTS}, got {c.encoder_input!r}")
        self.num_index_items = index.num_items  # >= num_items: items added after the dataset was read
        self.pad_item = index.num_items  # padding of histories inside the model (the split pads with num_items)
        self.layout = CodeTokenLayout(index.table.level_sizes, base=CODE_BASE)
        self.num_levels = self.layout.num_levels
        self.prefix = index.prefix
        codes = torch.tensor(np.array(index.table.codes), dtype=torch.long)  # (N, L)
        tokens = torch.cat([self.layout.to_tokens(codes), torch.full((1, self.num_levels), PAD, dtype=torch.long)])
        self.register_buffer("item_tokens", tokens, persistent=False)  # (N + 1, L), last row = padding
        self.register_buffer("item_codes", codes, persistent=False)
        item_vectors, user_vectors = self.saved_input("conditioning", lambda: self.conditioning(split))
        if c.encoder_input == "features" and item_vectors is None:
            raise ConfigError(f"method {name}: encoder_input=features needs item vectors; {type(self).__name__} has "
                              "none (use encoder_input=codes, or mmgrec for graph item vectors)")
        if c.position == "relation" and user_vectors is None:
            raise ConfigError(f"method {name}: position=relation needs user vectors; {type(self).__name__} has none "
                              "(use mmgrec, whose graph encoder provides them)")
        if item_vectors is not None:
            pad = torch.zeros(1 + self.num_index_items - len(item_vectors), item_vectors.shape[1])
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
    def _own_padding(self, batch: EvalBatch) -> torch.Tensor:
        """The batch's histories with the evaluator's padding (``num_items``) replaced by the model's (the index
        may hold more items than the dataset)."""
        h = batch.history
        return h if batch.pad_id == self.pad_item else h.masked_fill(h == batch.pad_id, self.pad_item)

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
        result = self.beam_search(self._own_padding(batch), batch.users)
        b = batch.history.shape[0]
        scores = torch.full((b, self.num_index_items + 1), float("-inf"), device=result.scores.device)
        items = torch.where(result.valid, result.items, self.num_index_items)  # a missing item -> a spare column
        scores.scatter_(1, items, result.scores.to(scores.dtype))
        return scores[:, :self.num_items]  # the dataset's catalogue; items added to the index are not evaluated

    @torch.no_grad()
    def exact_full_scores(self, batch: EvalBatch) -> torch.Tensor:
        """(B, num_items) exact log-probability of every item's ID (teacher forcing; small catalogues)."""
        memory = self._memory(self._own_padding(batch), batch.users)
        return exact_scores(DecoderStep(self.net), DecoderStep.init_state(*memory), batch.history.shape[0],
                            self.item_codes[:self.num_items], self.layout, device=memory[0].device).float()

    @torch.no_grad()
    def recommend(self, histories: list[list[int]], k: int = 10,
                  users: list[int | None] | None = None) -> list[list[tuple[int, float]]]:
        """Top-``k`` ``(item, log-probability)`` per history (internal item ids, time order; ids from
        ``num_items`` on are items added to the index), history items excluded inside the beam search (the beam is widened to ``k`` when ``beam_width`` is smaller).
        ``users``: the internal user id of each history that is a known user's, else None (relation-aware
        attention then uses the user's learned vector)."""
        hist, _ = pad_histories([np.asarray(h, dtype=np.int64) for h in histories], self.pad_item)
        beams = min(self.num_index_items, max(self.config.beam_width, k))
        user_ids = None if users is None else torch.tensor([-1 if u is None else int(u) for u in users])
        result = self.beam_search(hist, user_ids, beams, min(k, beams))
        return [[(item, score) for item, _, score in found] for found in result.to_lists()]
