"""Any Hugging Face seq2seq (T5, BART ...) or causal language model (Llama, SmolLM2, GPT-2 ...) as an ID
generator: text in, semantic ID out.

The model's vocabulary is extended with the code tokens of a :class:`~genir.decoding.CodeTokenLayout` placed
after the text vocabulary (``base = len(tokenizer)``; one block per level, or one shared block with
``shared=True`` for schemes with one codebook for every level such as image vokens), the new rows initialised by
``resize_token_embeddings``. Training pairs come from a task (``train_dataset(task)``: a
:class:`~genir.data.tasks.QueryRetrievalTask`'s ``train_pairs``, text -> item); the loss is the model's own
token cross-entropy on the L code tokens (teacher forcing; for a causal model the prompt's tokens are masked out
of the loss, and prompts are left-padded). Retrieval is the project's constrained beam search
(:func:`genir.decoding.beam_search_seq2seq` / :func:`~genir.decoding.beam_search_causal_lm`) over the index's
prefix index, so only existing IDs come out.

DSI (Tay et al., 2022) is :class:`Seq2SeqIdGenerator` on a document corpus with the document texts and queries
as training pairs; AVG's token-to-voken generation is one with shared-codebook vokens. The weights are whatever
the caller loads: a pretrained checkpoint by path, or a configuration built from scratch (then nothing is
pretrained, and results must say so).
"""

from __future__ import annotations

import json
from abc import ABCMeta, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from genir.decoding import CodeTokenLayout, PrefixIndex, beam_search_causal_lm, beam_search_seq2seq
from genir.errors import CheckpointError, ConfigError

GENERATOR_FILE = "genir_generator.json"


class TextItemPairs(TorchDataset):
    """(text, item) training examples of an ID generator."""

    def __init__(self, texts: list[str], items: np.ndarray):
        self.texts = texts
        self.items = items

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i], int(self.items[i])


class IdGenerator(nn.Module, metaclass=ABCMeta):
    """An HF language model + its tokenizer that generates the codes of ``item_codes`` (N, L); the subclasses
    say how a text and a target ID become a training example and which beam search decodes.

    Args:
        model: an ``AutoModelForSeq2SeqLM`` or ``AutoModelForCausalLM``, pretrained or built from a config (a
            peft-wrapped model works: :meth:`save_pretrained` then saves the adapter only).
        tokenizer: its tokenizer (any HF tokenizer with a pad token).
        item_codes: (N, L) int codes of every item (row = internal id), e.g. ``GenirIndex.table.codes``.
        level_sizes: codebook size of every level.
        shared: one block of code tokens for every level (one codebook).
        max_source_length: longer texts are truncated.
        beam_width: beams of the constrained search (at least the ``k`` asked for).
        code_base: token id of code 0 (default ``len(tokenizer)``: new code tokens after the text vocabulary).
            0 with ``shared=True`` when the codes ARE text token ids (an item's title tokens, as in BIGRec); the
            vocabulary is then not extended.
        end_code: the code that ends a variable-length ID padded to L with it (EOS for titles): the codes after
            its first occurrence are padding, left out of the loss and scored as nothing by the search.
    """

    def __init__(self, model, tokenizer, item_codes, level_sizes, *, shared: bool = False,
                 max_source_length: int = 64, beam_width: int = 20, resize: bool = True,
                 code_base: int | None = None, end_code: int | None = None):
        super().__init__()
        if tokenizer.pad_token_id is None:
            raise ConfigError("Seq2SeqIdGenerator: the tokenizer has no pad token")
        self.model = model
        self.tokenizer = tokenizer
        base = len(tokenizer) if code_base is None else int(code_base)
        self.layout = CodeTokenLayout(level_sizes, base=base, shared=shared)
        if resize and (code_base is None or self.layout.vocab_end > model.get_input_embeddings().num_embeddings):
            model.resize_token_embeddings(self.layout.vocab_end)
        vocab = model.get_input_embeddings().num_embeddings
        if vocab < self.layout.vocab_end:
            raise ConfigError(f"Seq2SeqIdGenerator: the model's vocabulary ({vocab}) is smaller than text + code "
                              f"tokens ({self.layout.vocab_end})")
        codes = torch.tensor(np.array(item_codes), dtype=torch.long)  # (N, L)
        self.register_buffer("item_codes", codes, persistent=False)
        self.prefix = PrefixIndex.from_codes(codes.numpy(), list(level_sizes))
        self.max_source_length = max_source_length
        self.beam_width = beam_width
        self.end_code = None if end_code is None else int(end_code)

    @property
    def num_items(self) -> int:
        return self.item_codes.shape[0]

    # -- training ------------------------------------------------------------------------------------------------
    def train_dataset(self, task) -> TorchDataset:
        """(text, item) pairs of the task (``task.train_pairs``)."""
        pairs = task.train_pairs
        return TextItemPairs(pairs["text"].astype(str).tolist(), pairs["item"].to_numpy())

    def _encode_texts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_source_length,
                             return_tensors="pt")
        device = self.item_codes.device
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}

    def collate(self, rows):
        texts, items = zip(*rows)
        return list(texts), torch.tensor(items, dtype=torch.long)

    def _target_tokens(self, items: torch.Tensor) -> torch.Tensor:
        return self.layout.to_tokens(self.item_codes[items.to(self.item_codes.device)])  # (B, L)

    def _counted(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: the target positions that are part of the ID (all but the padding after ``end_code``)."""
        codes = self.item_codes[items.to(self.item_codes.device)]
        if self.end_code is None:
            return torch.ones_like(codes, dtype=torch.bool)
        is_end = (codes == self.end_code).long()
        return is_end.cumsum(1) - is_end == 0

    def _labels(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) target tokens with the padding after ``end_code`` set to -100 (ignored by the loss)."""
        return self._target_tokens(items).masked_fill(~self._counted(items), -100)

    @abstractmethod
    def loss(self, batch) -> torch.Tensor:
        """The LM's token cross-entropy on the target codes of ``batch`` = (texts, items)."""

    @abstractmethod
    def _beam_search(self, inputs: dict[str, torch.Tensor], beams: int):
        """The constrained beam search of this kind of LM over the prefix index."""

    def forward(self, batch) -> torch.Tensor:
        return self.loss(batch)

    def gradient_checkpointing_enable(self, **kwargs) -> None:
        self.model.gradient_checkpointing_enable(**kwargs)

    def prepare_eval(self) -> None:
        """Nothing to precompute."""

    # -- retrieval -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def retrieve(self, batch, k: int = 10):
        """:class:`~genir.eval.retrieval.RankedLists` of the top-``k`` items per query text (a
        :class:`~genir.data.tasks.QueryBatch`, or a list of strings). Items outside ``batch.allowed`` (a corpus
        step's items) are dropped from the beams' answer, so a list can be shorter than ``k`` then."""
        from genir.eval.retrieval import RankedLists

        texts = batch if isinstance(batch, (list, tuple)) else batch.texts
        allowed = None if isinstance(batch, (list, tuple)) else batch.allowed
        self.model.eval()
        inputs = self._encode_texts(texts)
        beams = min(self.num_items, max(self.beam_width, k))
        if self.prefix.device != inputs["input_ids"].device:
            self.prefix = self.prefix.to(inputs["input_ids"].device)
        result = self._beam_search(inputs, beams)
        items = torch.where(result.valid, result.items, torch.full_like(result.items, -1)).cpu()
        return RankedLists(items, result.scores.float().cpu()).keep(allowed, k)

    # -- persistence -----------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """The HF model (a peft model saves its adapter only) and tokenizer, plus the layout and codes."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory / "model"))
        self.tokenizer.save_pretrained(str(directory / "model"))
        np.save(directory / "item_codes.npy", self.item_codes.cpu().numpy().astype(np.int32))
        meta = {"level_sizes": list(self.layout.level_sizes), "shared": self.layout.shared,
                "max_source_length": self.max_source_length, "beam_width": self.beam_width,
                "text_vocab": len(self.tokenizer), "code_base": self.layout.base}
        (directory / GENERATOR_FILE).write_text(json.dumps(meta, indent=1))

    auto_class = ""  # the transformers Auto class that reloads the model

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> IdGenerator:
        import transformers
        from transformers import AutoTokenizer

        directory = Path(directory)
        meta_path = directory / GENERATOR_FILE
        if not meta_path.is_file():
            raise CheckpointError(f"{directory}: not a saved ID generator (no {GENERATOR_FILE})")
        meta = json.loads(meta_path.read_text())
        tokenizer = AutoTokenizer.from_pretrained(str(directory / "model"), local_files_only=True)
        model = getattr(transformers, cls.auto_class).from_pretrained(str(directory / "model"), local_files_only=True)
        if len(tokenizer) != meta["text_vocab"]:
            raise CheckpointError(f"{meta_path}: text vocabulary {meta['text_vocab']} but the saved tokenizer has "
                                  f"{len(tokenizer)} tokens")
        codes = np.load(directory / "item_codes.npy")
        return cls(model, tokenizer, codes, meta["level_sizes"], shared=meta["shared"],
                   max_source_length=meta["max_source_length"], beam_width=meta["beam_width"], resize=False,
                   code_base=meta.get("code_base", meta["text_vocab"]))


class Seq2SeqIdGenerator(IdGenerator):
    """An encoder-decoder LM: the text is the encoder input, the L code tokens are the decoder's target."""

    auto_class = "AutoModelForSeq2SeqLM"

    def loss(self, batch) -> torch.Tensor:
        texts, items = batch
        return self.model(**self._encode_texts(texts), labels=self._labels(items)).loss

    def _beam_search(self, inputs, beams):
        return beam_search_seq2seq(self.model, inputs["input_ids"], self.prefix, beams, beams,
                                   attention_mask=inputs["attention_mask"], layout=self.layout,
                                   end_code=self.end_code)


class CausalLMIdGenerator(IdGenerator):
    """A decoder-only LM: the (left-padded) text is the prompt and the L code tokens follow it; the loss is on
    the code tokens only (answer-only, the prompt is masked out)."""

    auto_class = "AutoModelForCausalLM"

    def __init__(self, model, tokenizer, item_codes, level_sizes, **kwargs):
        tokenizer.padding_side = "left"  # every prompt ends at the last column, where decoding starts
        super().__init__(model, tokenizer, item_codes, level_sizes, **kwargs)

    def _teacher_forced(self, batch) -> tuple[dict[str, torch.Tensor], int, torch.Tensor]:
        """Model inputs of prompt + target codes, the prompt width, and the (B, L) target tokens."""
        texts, items = batch
        inputs = self._encode_texts(texts)
        target = self._target_tokens(items)  # (B, L)
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(target)], dim=1)
        positions = (mask.cumsum(1) - 1).clamp_min(0)  # left padding: positions count real tokens only
        model_inputs = {"input_ids": torch.cat([inputs["input_ids"], target], dim=1), "attention_mask": mask,
                        "position_ids": positions}
        return model_inputs, inputs["input_ids"].shape[1], target

    def loss(self, batch) -> torch.Tensor:
        model_inputs, width, target = self._teacher_forced(batch)
        target = target.masked_fill(~self._counted(batch[1]), -100)
        labels = torch.cat([torch.full_like(model_inputs["input_ids"][:, :width], -100), target], dim=1)
        return self.model(**model_inputs, labels=labels).loss

    def example_losses(self, batch) -> torch.Tensor:
        """(B,) each example's mean cross-entropy over the code tokens of its ID (per-sample scores, e.g.
        DEALRec's); the padding after ``end_code`` is left out."""
        model_inputs, width, target = self._teacher_forced(batch)
        # the positions that predict the targets; float32 loss whatever the model's dtype (as HF's own loss)
        logits = self.model(**model_inputs).logits[:, width - 1:-1].float()
        counted = self._counted(batch[1]).to(logits.dtype)
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        return (ce * counted).sum(1) / counted.sum(1)

    def _beam_search(self, inputs, beams):
        return beam_search_causal_lm(self.model, inputs["input_ids"], self.prefix, beams, beams,
                                     attention_mask=inputs["attention_mask"], layout=self.layout,
                                     end_code=self.end_code)
