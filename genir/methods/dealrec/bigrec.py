"""BIGRec-style LLM recommender (Bao et al., 2023), the recommender DEALRec prunes data for: the prompt lists the
user's recent item titles, the causal LM writes the next title.

**Grounding by the shared decoder** (this project's choice): every catalogue title, as the LM's own tokens plus
EOS and padded with EOS to one length, is a row of the prefix index, so the constrained beam search can only write
existing titles, with the user's history excluded inside the search; the beams' log-probabilities rank the items
for the full-ranking evaluator like every other generative method here. EOS is the index's end code: a title's
score is the probability of its tokens and its first EOS, the padding counts neither in the loss nor in the
ranking (scoring it would favour long titles, which carry less padding), and the search stops once every beam
has ended. BIGRec's own grounding (embed the free
generation and every title with the base LM, rank by L2 distance) is :func:`l2_grounding_scores`, the ablation.

Titles that tokenize identically (MovieLens-100K lists a few films twice under two ids) cannot be told apart by
any text; the later ones get a visible suffix (" [2]", " [3]" ...) so that every item keeps its own ID, and
:attr:`BIGRec.duplicate_titles` counts them. Titles longer than ``max_title_tokens`` are cut (and suffixed too if
the cut makes them collide).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch

from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch
from genir.models.hf_generator import CausalLMIdGenerator, TextItemPairs

PROMPT_HEAD = "A user watched these movies, oldest first:\n"
PROMPT_TAIL = "\nThe next movie the user watches is:"


def title_codes(tokenizer, titles: Sequence[str], max_title_tokens: int = 24) -> tuple[np.ndarray, int]:
    """(N, L) token ids of ``" " + title`` + EOS, right-padded with EOS to the longest, unique per row; and how
    many titles were suffixed to make them unique."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("BIGRec: the tokenizer has no EOS token (titles end with it)")

    def tokens(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    rows, seen, suffixed = [], set(), 0
    for title in titles:
        base = tokens(" " + str(title))[:max_title_tokens]
        ids, copy = base, 1
        while tuple(ids) in seen:  # the suffix goes after the cut, so a cut title can be told apart too
            copy += 1
            suffix = tokens(f" [{copy}]")
            ids = base[:max(0, max_title_tokens - len(suffix))] + suffix
            if copy > 1000:
                raise ConfigError(f"BIGRec: cannot make the title {title!r} unique")
        suffixed += copy > 1
        seen.add(tuple(ids))
        rows.append(ids + [eos])
    width = max(len(r) for r in rows)
    codes = np.full((len(rows), width), eos, dtype=np.int64)
    for i, r in enumerate(rows):
        codes[i, :len(r)] = r
    return codes, suffixed


class BIGRec(CausalLMIdGenerator):
    """A causal LM (pretrained, usually LoRA-wrapped) that writes the next item's title after a prompt of the
    user's recent titles; decoded only into catalogue titles.

    Args:
        model, tokenizer: the HF causal LM and its tokenizer (pad token required; left padding is set).
        titles: the title of every catalogue item (row = internal item id).
        max_history: most recent items listed in the prompt.
        beam_width: beams of the constrained search = items ranked per user.
        max_title_tokens: title tokens kept before the EOS.
        max_prompt_tokens: prompt tokens kept (from the left: the most recent titles stay).
    """

    def __init__(self, model, tokenizer, titles: Sequence[str], *, max_history: int = 10, beam_width: int = 20,
                 max_title_tokens: int = 24, max_prompt_tokens: int = 256):
        codes, self.duplicate_titles = title_codes(tokenizer, titles, max_title_tokens)
        vocab = model.get_input_embeddings().num_embeddings
        tokenizer.truncation_side = "left"  # a long prompt loses its oldest titles, never the question
        super().__init__(model, tokenizer, codes, [vocab] * codes.shape[1], shared=True, code_base=0,
                         max_source_length=max_prompt_tokens, beam_width=beam_width,
                         end_code=tokenizer.eos_token_id)
        self.titles = [str(t) for t in titles]
        self.max_history = int(max_history)
        self.max_title_tokens = int(max_title_tokens)

    def prompt(self, history: Sequence[int]) -> str:
        """The prompt for a history of internal item ids (oldest first; padding ``>= num_items`` dropped)."""
        items = [int(i) for i in history if 0 <= int(i) < self.num_items][-self.max_history:]
        return PROMPT_HEAD + "\n".join(self.titles[i] for i in items) + PROMPT_TAIL

    def pairs(self, histories: Sequence[Sequence[int]], targets: Sequence[int]) -> TextItemPairs:
        """Training examples (prompt, target item) for the Trainer."""
        return TextItemPairs([self.prompt(h) for h in histories], np.asarray(targets, dtype=np.int64))

    @torch.no_grad()
    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        """(B, num_items): the title log-probability of the ``beam_width`` decoded items, ``-inf`` elsewhere; the
        history is excluded inside the search (the beams are spent on new items)."""
        self.model.eval()
        history = batch.history.cpu()
        inputs = self._encode_texts([self.prompt(h.tolist()) for h in history])
        if self.prefix.device != inputs["input_ids"].device:
            self.prefix = self.prefix.to(inputs["input_ids"].device)
        from genir.decoding import beam_search_causal_lm

        beams = min(self.num_items, self.beam_width)
        result = beam_search_causal_lm(self.model, inputs["input_ids"], self.prefix, beams, beams,
                                       attention_mask=inputs["attention_mask"], layout=self.layout,
                                       exclude=history.where(history < self.num_items, -1),
                                       end_code=self.end_code)
        valid = result.valid
        if not (result.codes[valid] == self.item_codes[result.items[valid]].to(result.codes)).all():
            raise RuntimeError("BIGRec: the constrained search returned a title that is not its item's")
        scores = torch.full((len(history), self.num_items + 1), float("-inf"))
        items = torch.where(valid, result.items, self.num_items).cpu()
        scores.scatter_(1, items, result.scores.float().cpu())
        return scores[:, :self.num_items].to(batch.history.device)

    def prepare_eval(self) -> None:
        """Nothing to precompute."""


@torch.no_grad()
def last_token_states(model, tokenizer, texts: Sequence[str], batch_size: int = 32,
                      max_length: int = 64) -> torch.Tensor:
    """(N, H) last-layer hidden state at each text's last token (left padding), BIGRec's text embedding."""
    tokenizer.padding_side = "left"
    out = []
    device = model.get_input_embeddings().weight.device
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt").to(device)
        hidden = model(**enc, output_hidden_states=True).hidden_states[-1]
        out.append(hidden[:, -1].float().cpu())
    return torch.cat(out)


def _base_model(model):
    """A context in which a peft model runs without its adapter (BIGRec embeds with the base LM)."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if disable is not None else nullcontext()


@torch.no_grad()
def title_states(recommender: BIGRec) -> torch.Tensor:
    """(N, H) base-LM embeddings of every title, for :func:`l2_grounding_scores` (compute once)."""
    with _base_model(recommender.model):
        return last_token_states(recommender.model, recommender.tokenizer, recommender.titles)


@torch.no_grad()
def l2_grounding_scores(recommender: BIGRec, batch: EvalBatch, titles: torch.Tensor) -> torch.Tensor:
    """BIGRec's own grounding, the ablation of the constrained decoder: greedy free generation after the prompt
    (as many tokens as the longest title), then every item ranked by minus the L2 distance between the base LM's
    embedding of the generated text and ``titles`` (:func:`title_states`). The history is not excluded from the
    generation, as in BIGRec; the evaluator masks it from the ranking."""
    model, tok = recommender.model, recommender.tokenizer
    model.eval()
    inputs = recommender._encode_texts([recommender.prompt(h.tolist()) for h in batch.history.cpu()])
    out = model.generate(**inputs, max_new_tokens=recommender.item_codes.shape[1], do_sample=False, num_beams=1,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    generated = [t.strip() or tok.eos_token for t in
                 tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)]
    with _base_model(model):
        gen = last_token_states(model, tok, generated)
    return -torch.cdist(gen, titles).to(batch.history.device)
