"""AVG's token-to-voken generator: a caption's tokens in, the image's vokens out, with the project's
:class:`~genir.models.hf_generator.Seq2SeqIdGenerator` (an HF T5) and its constrained beam search over the prefix
index of every indexed image.

Two training stages, both run by the one Trainer (the stage is an attribute, not a second loop):

* ``generative`` - token cross-entropy on the vokens with the logits divided by ``temperature`` (AVG: 0.5);
* ``discriminative`` - AVG's "discrimination-modified" stage: for every batch the constrained beam search
  (``mine_beams`` beams, no gradient) returns the captions' most likely voken strings; those that are not the
  caption's image are its hard negatives. Each sequence's score is its summed token log-probability under the
  model (teacher forcing, with gradient), and the listwise loss is the cross-entropy of the positive among
  [positive, negatives] applied to these RAW scores (one log-softmax; the released code applied a softmax first,
  then cross_entropy's log-softmax again). Loss = generative + ``ltr_weight`` x listwise. ``negative_pool``
  (optional mask) limits the negatives to some images; the recipe passes the images that have training captions
  (a deviation, measured in the method README: an image no training caption describes was never a target, and
  mining it as a negative teaches the generator to push down exactly the unseen images that test captions ask for).

The caption is read either by the frozen pretrained MiniLM (``FrozenTextStates``: its token states, computed once
per caption and kept, through a trained linear projection into the T5 decoder's width; the T5 then has no or a
few trained encoder layers), or by a T5 encoder trained from scratch on a word vocabulary of the training captions.
AVG fine-tunes a pretrained T5 (t5-base); no T5 weights exist here, and the frozen MiniLM is the pretrained text
side a CPU can afford.

Voken embeddings start from the tokenizer's codebook (AVG's ``--add_embedding``), rescaled to the norm of the
model's other token embeddings (the codebook's scale is the RQ latent's, not the embedding table's). Positions that
are not semantic (the collision level) keep their random rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.decoding import constrained_beam_search
from genir.decoding.hf_adapters import Seq2SeqState, Seq2SeqStep
from genir.models.hf_generator import GENERATOR_FILE, Seq2SeqIdGenerator

TEXT_STATES_FILE = "text_states.json"
ADAPTER_FILE = "adapter.safetensors"

STAGES = ("generative", "discriminative")


def word_tokenizer(texts: list[str], min_count: int = 1):
    """A lower-cased word-level HF fast tokenizer over ``texts`` (the training captions): words seen fewer than
    ``min_count`` times, and every word of other texts it never saw, are ``<unk>``. Specials: ``<pad>`` (0, also the
    decoder start), ``<unk>``, ``</s>``."""
    from transformers import PreTrainedTokenizerFast

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>"],
                                                             min_frequency=min_count))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")


class FrozenTextStates:
    """Token states (last hidden layer) of a frozen pretrained encoder, default the packaged all-MiniLM-L6-v2, for
    captions: :meth:`precompute` embeds a list once (cached on disk by content, :mod:`genir.features.cache`) and
    keeps it in memory; :meth:`batch` serves any texts, computing the ones it has not seen."""

    def __init__(self, model_path: str | None = None, max_length: int = 32):
        from genir.features.text import default_model_path

        self.path = str(model_path or default_model_path())
        self.max_length = int(max_length)
        config = json.loads((Path(self.path) / "config.json").read_text())
        self.dim = int(config["hidden_size"])
        self.memory: dict[str, np.ndarray] = {}
        self._tok = self._model = None

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
            for p in self._model.parameters():
                p.requires_grad_(False)

    @torch.no_grad()
    def compute(self, texts: list[str], batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """(len(texts), max_length, dim) float16, zero rows after each text's last token."""
        from tqdm.auto import tqdm

        self._load()
        out = np.zeros((len(texts), self.max_length, self.dim), dtype=np.float16)
        for start in tqdm(range(0, len(texts), batch_size), desc="caption token states", disable=not progress,
                          leave=False):
            enc = self._tok(texts[start:start + batch_size], padding=True, truncation=True,
                            max_length=self.max_length, return_tensors="pt")
            h = self._model(**enc).last_hidden_state * enc["attention_mask"][..., None]  # (b, S, dim)
            out[start:start + len(h), : h.shape[1]] = h.numpy().astype(np.float16)
        return out

    def precompute(self, texts: list[str], progress: bool = False) -> None:
        from genir.features.cache import cached

        texts = sorted(set(map(str, texts)) - set(self.memory))
        if not texts:
            return
        files = sorted((p.name, p.stat().st_size) for p in Path(self.path).iterdir() if p.is_file())
        params = {"model": self.path, "files": files, "max_length": self.max_length,
                  "texts_sha256": hashlib.sha256("\x00".join(texts).encode()).hexdigest()}
        states = cached("text_states", params, "texts", lambda: self.compute(texts, progress=progress))
        for t, h in zip(texts, states):
            self.memory[t] = h[: max(1, int((np.abs(h).sum(-1) > 0).sum()))]

    def batch(self, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, S, dim) float32 states, (B, S) attention mask) of ``texts``."""
        missing = [t for t in texts if t not in self.memory]
        if missing:
            for t, h in zip(missing, self.compute(missing)):
                self.memory[t] = h[: max(1, int((np.abs(h).sum(-1) > 0).sum()))]
        rows = [self.memory[t] for t in texts]
        s = max(len(r) for r in rows)
        states = np.zeros((len(rows), s, self.dim), dtype=np.float32)
        mask = np.zeros((len(rows), s), dtype=np.int64)
        for i, r in enumerate(rows):
            states[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return torch.from_numpy(states).to(device), torch.from_numpy(mask).to(device)


def t5_from_scratch(vocab_size: int, d_model: int, layers: int, heads: int, d_ff: int, dropout: float,
                    pad_id: int, eos_id: int, encoder_layers: int | None = None):
    """A T5 built from a config, randomly initialised: NOT pretrained (no T5 weights can be had offline)."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=max(8, d_model // heads), d_ff=d_ff,
                      num_layers=layers if encoder_layers is None else encoder_layers, num_decoder_layers=layers,
                      num_heads=heads, dropout_rate=dropout,
                      pad_token_id=pad_id, eos_token_id=eos_id, decoder_start_token_id=pad_id,
                      tie_word_embeddings=True)
    return T5ForConditionalGeneration(config)


class TokenToVoken(Seq2SeqIdGenerator):
    """Caption -> vokens. ``stage`` selects the loss; ``same_image`` (optional, item -> group of items judged the
    same image, e.g. pixel-identical copies) keeps such items out of the mined negatives; ``negative_pool``
    (optional (N,) bool) is the set of images that may be negatives at all (default: every image).

    ``ltr_levels`` (optional): the listwise loss ranks voken *prefixes* of that many leading levels (the semantic
    vokens) instead of whole strings: the mined negatives are images whose prefix differs from the positive's and
    from each other's, and each candidate is scored by the log-probability of its prefix only. A collision voken
    says nothing about the image, so ranking it only memorises training captions (see the AVG README)."""

    def __init__(self, model, tokenizer, item_codes, level_sizes, *, shared: bool, temperature: float = 0.5,
                 ltr_weight: float = 0.5, negatives: int = 9, mine_beams: int = 10, beam_width: int = 10,
                 max_source_length: int = 32, same_image: np.ndarray | None = None, resize: bool = True,
                 text_states: FrozenTextStates | None = None, negative_pool: np.ndarray | None = None,
                 ltr_levels: int | None = None):
        super().__init__(model, tokenizer, item_codes, level_sizes, shared=shared,
                         max_source_length=max_source_length, beam_width=beam_width, resize=resize)
        self.text_states = text_states
        if text_states is not None:  # frozen pretrained token states -> the T5's width (trained here)
            self.adapter = nn.Linear(text_states.dim, model.config.d_model)
        self.temperature = float(temperature)
        self.ltr_weight = float(ltr_weight)
        self.negatives = int(negatives)
        self.mine_beams = int(mine_beams)
        if ltr_levels is not None and not 1 <= ltr_levels <= len(level_sizes):
            raise ValueError(f"ltr_levels: expected 1..{len(level_sizes)} leading levels, got {ltr_levels}")
        self.ltr_levels = None if ltr_levels is None else int(ltr_levels)
        self.stage = "generative"
        group = np.arange(self.num_items) if same_image is None else np.asarray(same_image, dtype=np.int64)
        self.register_buffer("group", torch.as_tensor(group), persistent=False)
        self.mining_rng = torch.Generator().manual_seed(0)  # random top-ups of the mined negatives
        self.set_negative_pool(negative_pool)

    def set_negative_pool(self, mask: np.ndarray | None) -> None:
        """The images the discriminative stage may mine as negatives ((N,) bool; None = every image)."""
        pool = np.ones(self.num_items, bool) if mask is None else np.asarray(mask, dtype=bool)
        if pool.shape != (self.num_items,) or pool.sum() < 2:
            raise ValueError(f"negative_pool: expected a ({self.num_items},) mask with at least 2 images, got "
                             f"shape {pool.shape} with {int(pool.sum())}")
        self.negative_pool = pool
        self._pool_items = np.flatnonzero(pool)

    def init_voken_embeddings(self, codebooks: list[np.ndarray], semantic_levels: int) -> None:
        """Copy the codebook(s) into the voken rows of the input embeddings (one shared block, or one block per
        level), rescaled to the mean norm of the text-token rows."""
        emb = self.model.get_input_embeddings().weight  # (V, d)
        with torch.no_grad():
            scale = emb[: self.layout.base].norm(dim=1).mean()
            levels = range(1 if self.layout.shared else semantic_levels)
            for level in levels:
                book = torch.as_tensor(np.asarray(codebooks[level]), dtype=emb.dtype, device=emb.device)
                if book.shape[1] != emb.shape[1]:
                    raise ValueError(f"codebook dimension {book.shape[1]} != generator d_model {emb.shape[1]}")
                start, _ = self.layout.token_range(level)
                book = book * (scale / book.norm(dim=1).mean().clamp_min(1e-8))
                emb[start:start + len(book)] = book

    # -- reading the caption -------------------------------------------------------------------------------------
    def _encode_texts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        if self.text_states is None:
            return super()._encode_texts(texts)
        states, mask = self.text_states.batch(list(texts), self.item_codes.device)
        return {"inputs_embeds": self.adapter(states), "attention_mask": mask}

    def _beam_search(self, inputs, beams):
        """The constrained beam search, from token ids or from the projected frozen states."""
        if "inputs_embeds" not in inputs:
            return super()._beam_search(inputs, beams)
        mask = inputs["attention_mask"]
        hidden = self.model.get_encoder()(inputs_embeds=inputs["inputs_embeds"], attention_mask=mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        state = Seq2SeqState(hidden, mask, rows, hidden, mask)
        return constrained_beam_search(Seq2SeqStep(self.model), state, hidden.shape[0], self.prefix, beams, beams,
                                       hidden.device, layout=self.layout)

    @torch.no_grad()
    def retrieve(self, batch, k: int = 10):
        from genir.eval.retrieval import RankedLists

        texts = batch if isinstance(batch, (list, tuple)) else batch.texts
        allowed = None if isinstance(batch, (list, tuple)) else batch.allowed
        self.eval()
        inputs = self._encode_texts(list(texts))
        if self.prefix.device != self.item_codes.device:
            self.prefix = self.prefix.to(self.item_codes.device)
        result = self._beam_search(inputs, min(self.num_items, max(self.beam_width, k)))
        items = torch.where(result.valid, result.items, torch.full_like(result.items, -1)).cpu()
        return RankedLists(items, result.scores.float().cpu()).keep(allowed, k)

    # -- persistence -----------------------------------------------------------------------------------------------
    def save_pretrained(self, directory) -> None:
        from genir.tensor_files import save_tensors

        super().save_pretrained(directory)
        directory = Path(directory)
        meta = json.loads((directory / GENERATOR_FILE).read_text())
        meta.update(temperature=self.temperature, ltr_weight=self.ltr_weight, negatives=self.negatives,
                    mine_beams=self.mine_beams, ltr_levels=self.ltr_levels)
        (directory / GENERATOR_FILE).write_text(json.dumps(meta, indent=1))
        if self.text_states is not None:
            save_tensors(directory / ADAPTER_FILE, self.adapter.state_dict())
            (directory / TEXT_STATES_FILE).write_text(json.dumps(
                {"model_path": self.text_states.path, "max_length": self.text_states.max_length}, indent=1))

    @classmethod
    def from_pretrained(cls, directory) -> TokenToVoken:
        from genir.errors import CheckpointError
        from genir.tensor_files import load_tensors

        directory = Path(directory)
        base = Seq2SeqIdGenerator.from_pretrained.__func__(Seq2SeqIdGenerator, directory)
        meta = json.loads((directory / GENERATOR_FILE).read_text())
        states = None
        if (directory / TEXT_STATES_FILE).is_file():
            info = json.loads((directory / TEXT_STATES_FILE).read_text())
            path = info["model_path"] if Path(info["model_path"]).is_dir() else None  # moved: the packaged MiniLM
            states = FrozenTextStates(path, info["max_length"])
        gen = cls(base.model, base.tokenizer, base.item_codes.numpy(), meta["level_sizes"], shared=meta["shared"],
                  temperature=meta.get("temperature", 0.5), ltr_weight=meta.get("ltr_weight", 0.5),
                  negatives=meta.get("negatives", 9), mine_beams=meta.get("mine_beams", 10),
                  beam_width=meta["beam_width"], max_source_length=meta["max_source_length"], resize=False,
                  text_states=states, ltr_levels=meta.get("ltr_levels"))
        if states is not None:
            try:
                gen.adapter.load_state_dict(load_tensors(directory / ADAPTER_FILE))
            except (RuntimeError, OSError) as exc:
                raise CheckpointError(f"{directory / ADAPTER_FILE}: {exc}") from None
        return gen

    # -- losses ------------------------------------------------------------------------------------------------
    def _sequence_log_probs(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(R,) summed log-probabilities of ``labels`` (R, L) under ``logits`` (R, L, V): the beam search's
        score of a sequence."""
        return logits.float().log_softmax(-1).gather(2, labels[:, :, None]).squeeze(2).sum(1)

    def loss(self, batch):
        texts, items = batch
        inputs = self._encode_texts(texts)
        target = self._target_tokens(items)  # (B, L)
        if self.stage == "generative":
            logits = self.model(**inputs, labels=target).logits  # (B, L, V)
            gen = F.cross_entropy((logits / self.temperature).flatten(0, 1), target.flatten())
            return {"loss": gen, "gen": gen.detach()}
        negatives = self._mine(inputs, items)  # (B, m) items
        b, m = negatives.shape
        candidates = torch.cat([items.to(negatives.device)[:, None], negatives], 1)  # (B, 1 + m), positive first
        labels = self._target_tokens(candidates.flatten()).view(b * (1 + m), -1)
        encoder = self.model.get_encoder()(**inputs).last_hidden_state  # (B, S, d)
        rep = torch.arange(b, device=encoder.device).repeat_interleave(1 + m)
        logits = self.model(encoder_outputs=(encoder[rep],), attention_mask=inputs["attention_mask"][rep],
                            labels=labels).logits  # (B(1+m), L, V)
        pos = logits.view(b, 1 + m, *logits.shape[1:])[:, 0]
        gen = F.cross_entropy((pos / self.temperature).flatten(0, 1), target.flatten())
        keep = labels.shape[1] if self.ltr_levels is None else self.ltr_levels
        scores = self._sequence_log_probs(logits[:, :keep], labels[:, :keep]).view(b, 1 + m)  # raw log-probabilities
        ltr = F.cross_entropy(scores, torch.zeros(b, dtype=torch.long, device=scores.device))
        return {"loss": gen + self.ltr_weight * ltr, "gen": gen.detach(), "ltr": ltr.detach()}

    @torch.no_grad()
    def _mine(self, inputs, items: torch.Tensor) -> torch.Tensor:
        """(B, negatives) hard negatives: the top constrained beams that are in ``negative_pool`` and not an image
        of the caption's group (with ``ltr_levels``: whose prefix is new), topped up with random such images when
        the beams hold too few."""
        was = self.model.training
        self.model.eval()
        try:
            if self.prefix.device != self.item_codes.device:
                self.prefix = self.prefix.to(self.item_codes.device)
            found = self._beam_search({k: v.detach() for k, v in inputs.items()},
                                      min(self.num_items, self.mine_beams))
        finally:
            self.model.train(was)
        cand = torch.where(found.valid, found.items, torch.full_like(found.items, -1)).cpu()
        group = self.group.cpu()
        prefix = None if self.ltr_levels is None else self.item_codes[:, :self.ltr_levels].cpu().numpy()
        out = torch.empty(len(items), self.negatives, dtype=torch.long)
        for r, item in enumerate(items.cpu().tolist()):
            out[r] = torch.tensor(self._negatives_of(item, cand[r].tolist(), group, prefix))
        return out.to(items.device)

    def _negatives_of(self, item: int, beams: list[int], group: torch.Tensor, prefix: np.ndarray | None) -> list[int]:
        """``self.negatives`` images for ``item``: its beams first, then random pool images (a bounded number of
        draws: a pool may hold few distinct prefixes), repeated if still short. With ``prefix`` ((N, ltr_levels)
        codes), one image per prefix and never the item's own."""
        row: list[int] = []
        seen = set() if prefix is None else {prefix[item].tobytes()}
        draws = (int(self._pool_items[int(torch.randint(len(self._pool_items), (1,), generator=self.mining_rng))])
                 for _ in range(100 * self.negatives))
        for i in itertools.chain((b for b in beams if b >= 0), draws):
            if not self.negative_pool[i] or group[i] == group[item]:
                continue
            if prefix is not None:
                key = prefix[i].tobytes()
                if key in seen:
                    continue
                seen.add(key)
            row.append(i)
            if len(row) == self.negatives:
                break
        if not row:
            raise ValueError(f"negative pool: no image outside image {item}'s group"
                             + ("" if prefix is None else " with another voken prefix"))
        return row + [row[j % len(row)] for j in range(self.negatives - len(row))]
