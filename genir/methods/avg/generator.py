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
  then cross_entropy's log-softmax again). Loss = generative + ``ltr_weight`` x listwise.

Voken embeddings start from the tokenizer's codebook (AVG's ``--add_embedding``), rescaled to the norm of the
model's other token embeddings (the codebook's scale is the RQ latent's, not the embedding table's). Positions that
are not semantic (the collision level) keep their random rows.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genir.decoding import beam_search_seq2seq
from genir.models.hf_generator import Seq2SeqIdGenerator

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


def t5_from_scratch(vocab_size: int, d_model: int, layers: int, heads: int, d_ff: int, dropout: float,
                    pad_id: int, eos_id: int):
    """A T5 built from a config, randomly initialised: NOT pretrained (no T5 weights can be had offline)."""
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=max(8, d_model // heads), d_ff=d_ff,
                      num_layers=layers, num_decoder_layers=layers, num_heads=heads, dropout_rate=dropout,
                      pad_token_id=pad_id, eos_token_id=eos_id, decoder_start_token_id=pad_id,
                      tie_word_embeddings=True)
    return T5ForConditionalGeneration(config)


class TokenToVoken(Seq2SeqIdGenerator):
    """Caption -> vokens. ``stage`` selects the loss; ``relevant`` (optional, item -> items judged the same image,
    e.g. pixel-identical copies) keeps such items out of the mined negatives."""

    def __init__(self, model, tokenizer, item_codes, level_sizes, *, shared: bool, temperature: float = 0.5,
                 ltr_weight: float = 0.5, negatives: int = 9, mine_beams: int = 10, beam_width: int = 10,
                 max_source_length: int = 48, same_image: np.ndarray | None = None, resize: bool = True):
        super().__init__(model, tokenizer, item_codes, level_sizes, shared=shared,
                         max_source_length=max_source_length, beam_width=beam_width, resize=resize)
        self.temperature = float(temperature)
        self.ltr_weight = float(ltr_weight)
        self.negatives = int(negatives)
        self.mine_beams = int(mine_beams)
        self.stage = "generative"
        group = np.arange(self.num_items) if same_image is None else np.asarray(same_image, dtype=np.int64)
        self.register_buffer("group", torch.as_tensor(group), persistent=False)
        self._gen = torch.Generator().manual_seed(0)

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
        scores = self._sequence_log_probs(logits, labels).view(b, 1 + m)  # raw sequence log-probabilities
        ltr = F.cross_entropy(scores, torch.zeros(b, dtype=torch.long, device=scores.device))
        return {"loss": gen + self.ltr_weight * ltr, "gen": gen.detach(), "ltr": ltr.detach()}

    @torch.no_grad()
    def _mine(self, inputs, items: torch.Tensor) -> torch.Tensor:
        """(B, negatives) hard negatives: the top constrained beams that are not an image of the caption's group,
        topped up with random images when the beams hold too few."""
        was = self.model.training
        self.model.eval()
        try:
            beams = min(self.num_items, self.mine_beams)
            if self.prefix.device != inputs["input_ids"].device:
                self.prefix = self.prefix.to(inputs["input_ids"].device)
            found = beam_search_seq2seq(self.model, inputs["input_ids"], self.prefix, beams, beams,
                                        attention_mask=inputs["attention_mask"], layout=self.layout)
        finally:
            self.model.train(was)
        cand = torch.where(found.valid, found.items, torch.full_like(found.items, -1)).cpu()
        group = self.group.cpu()
        own = group[items.cpu()]
        out = torch.empty(len(items), self.negatives, dtype=torch.long)
        for r in range(len(items)):
            row = [int(i) for i in cand[r].tolist() if i >= 0 and group[i] != own[r]][: self.negatives]
            while len(row) < self.negatives:
                j = int(torch.randint(self.num_items, (1,), generator=self._gen))
                if group[j] != own[r]:
                    row.append(j)
            out[r] = torch.tensor(row)
        return out.to(items.device)
