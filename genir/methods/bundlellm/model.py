"""Bundle-LLM (Liu et al., arXiv 2407.11712): an LLM answers a multiple-choice bundle-completion question whose
items are *hybrid tokens*: the item's title in words followed by ONE soft token, the output of a small attention
fusion over the item's non-text features projected into the LLM's hidden size.

* :class:`FeatureFusion`: media MLP d -> d -> 256 -> 64 (ReLU), cf Linear 64 -> 64, bundle-item Linear 64 -> 64;
  each view L2-normalised, stacked as three "modalities", one self-attention (query/key 64-d, value = the input),
  mean-pooled to 64-d (the paper's fusion without its optional ``w_v``).
* :class:`Projector`: 64 -> 128 -> GELU -> LLM hidden size.
* :class:`BundleLLM`: prompts (partial bundle listed ``1. title<F>; 2. ...``, options ``A. title<F>``, "answer with
  the letter"), answer-only loss on ``<letter><end>``, and the prediction = the most likely letter among the
  question's valid letters at the first answer position (greedy, no sampling); the greedy free-form answer is also
  decoded and parsed for ValidRatio. ``mode``: ``text`` (titles only: stage 1 and zero-shot), ``hybrid`` (titles +
  soft tokens: stage 2) or ``description`` (title + the start of the long description, no soft token: the
  text-heavy prompt of the efficiency comparison).

Deviations from the paper (all recorded in README.md): SmolLM2-135M-Instruct instead of Llama-2-7B, fp32 instead
of 8-bit; titles cut to ``title_words`` words; a short system turn replaces SmolLM2's default one; the answer
is ``<letter><end>`` (the paper: ``<letter>.``); the prediction reads the letter logits at the answer position
of each row (the paper: a fixed -3 offset and a Llama-2 token table); no soft separator token (the paper's README
commands never use it either).
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.config import Config, param
from genir.data.bundles import BundleQuestion
from genir.errors import ConfigError
from genir.llm import (
    FEATURE_MARK,
    add_lora,
    answer_loss,
    chat_text,
    encode_prompts,
    greedy_answers,
    save_adapter,
    single_token_ids,
)
from genir.llm.loading import LoraSettings
from genir.tensor_files import save_tensors

LETTERS = string.ascii_uppercase
MODES = ("text", "hybrid", "description")
SYSTEM = "You build software bundles."
STATE_FILE = "bundlellm.json"


@dataclass
class BundleLLMConfig(Config):
    """Every hyper-parameter of Bundle-LLM, with the paper's default where it has one."""

    num_candidates_stage1: int = param(10, "candidates per training question in stage 1 (paper: 10)", min=2, max=26)
    num_candidates_stage2: int = param(20, "candidates per training question in stage 2 (paper: 20)", min=2, max=26)
    max_partial: int = param(5, "items of the partial bundle shown (paper: num_token 5)", min=1)
    few_shot: int = param(1024, "training questions drawn per epoch (paper: few_shot 1024)", min=1)
    hard_share: float = param(0.5, "share of training questions with same-section negatives (the rest random)",
                              min=0.0, max=1.0)
    title_words: int = param(8, "words of a title kept in prompts", min=1)
    description_words: int = param(40, "words of the long description in the 'description' prompts", min=1)
    fusion_dim: int = param(64, "width of the fusion module (paper: 64)", min=1)
    projector_hidden: int = param(128, "hidden width of the projector (paper: 128)", min=1)
    lora_r: int = param(8, "LoRA rank (paper: 8)", min=1)
    lora_alpha: int = param(16, "LoRA alpha (paper: 16)", min=1)
    lora_dropout: float = param(0.05, "LoRA dropout (paper: 0.05)", min=0.0, max=1.0)
    lora_targets: str = param("q_proj,v_proj", "comma-separated modules that get LoRA (paper: q_proj,v_proj)")
    stage2_lora: bool = param(True, "keep training LoRA in stage 2 (paper: yes)")
    max_new_tokens: int = param(3, "tokens of the greedy free-form answer parsed for ValidRatio", min=1)


def parse_letter(text: str, num_candidates: int) -> int | None:
    """Index of the option a free-form answer names: its first non-space character must be one of the valid
    letters and must not start a longer word ("A", "A.", "A)", "B: x" parse; "Answer", "Z" do not)."""
    t = text.strip()
    if not t or t[0] not in LETTERS[:num_candidates]:
        return None
    if len(t) > 1 and t[1].isalnum():
        return None
    return LETTERS.index(t[0])


class FeatureFusion(nn.Module):
    """Three views of an item -> one ``dim`` vector (see the module docstring)."""

    def __init__(self, media_dim: int, cf_dim: int, bi_dim: int, dim: int = 64):
        super().__init__()
        self.media = nn.Sequential(nn.Linear(media_dim, media_dim), nn.ReLU(), nn.Linear(media_dim, 256), nn.ReLU(),
                                   nn.Linear(256, dim))
        self.cf = nn.Linear(cf_dim, dim)
        self.bi = nn.Linear(bi_dim, dim)
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.dim = dim

    def forward(self, media: torch.Tensor, cf: torch.Tensor, bi: torch.Tensor) -> torch.Tensor:
        views = torch.stack([F.normalize(self.media(F.normalize(media, dim=-1)), dim=-1),
                             F.normalize(self.cf(cf), dim=-1), F.normalize(self.bi(bi), dim=-1)], dim=1)  # (N, 3, d)
        att = torch.softmax(self.w_q(views) @ self.w_k(views).transpose(1, 2) / math.sqrt(self.dim), dim=-1)
        return (att @ views).mean(1)  # (N, d)


class Projector(nn.Module):
    def __init__(self, dim: int, hidden: int, llm_hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, llm_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _words(text: str, n: int) -> str:
    w = str(text).split()
    return " ".join(w[:n]) + (" ..." if len(w) > n else "")


class BundleLLM(nn.Module):
    """An LLM (wrapped with LoRA here) + fusion + projector over frozen item features.

    Args:
        llm, tokenizer: a Hugging Face causal LM and its tokenizer (:func:`genir.llm.load_causal_lm`).
        titles: item titles (row = item index); descriptions: long descriptions (for ``description`` prompts).
        features: :class:`~genir.methods.bundlellm.features.ItemFeatures` or None (text-only use).
    """

    def __init__(self, llm, tokenizer, titles: list[str], features=None, config: BundleLLMConfig | None = None,
                 descriptions: list[str] | None = None):
        super().__init__()
        self.config = c = config or BundleLLMConfig()
        c.validate("bundlellm")
        self.llm = add_lora(llm, LoraSettings(c.lora_r, c.lora_alpha, c.lora_dropout,
                                                    tuple(t.strip() for t in c.lora_targets.split(",") if t.strip())))
        self.tokenizer = tokenizer
        self.titles = [_words(t, c.title_words) for t in titles]
        self.descriptions = None if descriptions is None else [_words(d, c.description_words) for d in descriptions]
        self.letter_ids = single_token_ids(tokenizer, list(LETTERS[:26]))
        hidden = self.llm.get_input_embeddings().embedding_dim
        self.fusion = self.projector = None
        if features is not None:
            for name in ("media", "cf", "bi"):
                self.register_buffer(name, torch.as_tensor(np.asarray(getattr(features, name)), dtype=torch.float32),
                                     persistent=False)
            self.fusion = FeatureFusion(self.media.shape[1], self.cf.shape[1], self.bi.shape[1], c.fusion_dim)
            self.projector = Projector(c.fusion_dim, c.projector_hidden, hidden)
        self.mode = "text"
        self.collate = list  # a batch is a list of BundleQuestion

    # -- stages ----------------------------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> None:
        """``zero-shot`` (nothing trains), ``stage1`` (LoRA on text prompts), ``stage2`` (fusion + projector, + LoRA
        when ``stage2_lora``, on hybrid prompts)."""
        if stage not in ("zero-shot", "stage1", "stage2"):
            raise ConfigError(f"BundleLLM.set_stage: unknown stage {stage!r}")
        if stage == "stage2" and self.fusion is None:
            raise ConfigError("BundleLLM: stage 2 needs item features (features=None was given)")
        self.mode = "hybrid" if stage == "stage2" else "text"
        for n, p in self.llm.named_parameters():
            p.requires_grad = "lora_" in n and (stage == "stage1" or (stage == "stage2" and self.config.stage2_lora))
        for part in (self.fusion, self.projector):
            if part is not None:
                part.requires_grad_(stage == "stage2")

    # -- prompts ---------------------------------------------------------------------------------------------------
    def _item(self, i: int, mode: str) -> str:
        if mode == "hybrid":
            return f"{self.titles[i]}{FEATURE_MARK}"
        if mode == "description":
            if self.descriptions is None:
                raise ConfigError("BundleLLM: 'description' prompts need descriptions=")
            return f"{self.titles[i]}: {self.descriptions[i]}"
        return self.titles[i]

    def prompt(self, q: BundleQuestion, mode: str | None = None) -> str:
        mode = mode or self.mode
        if mode not in MODES:
            raise ConfigError(f"BundleLLM: unknown prompt mode {mode!r}; expected one of {MODES}")
        if len(q.candidates) > len(LETTERS):
            raise ConfigError(f"BundleLLM: {len(q.candidates)} candidates, at most {len(LETTERS)} letters")
        partial = "; ".join(f"{k + 1}. {self._item(i, mode)}" for k, i in enumerate(q.partial))
        options = "\n".join(f"{LETTERS[k]}. {self._item(i, mode)}" for k, i in enumerate(q.candidates))
        user = (f"A bundle has: {partial}.\nWhich package completes it?\n{options}\n"
                f"Answer with one letter from A to {LETTERS[len(q.candidates) - 1]}.")
        return chat_text(self.tokenizer, user, SYSTEM)

    def encode(self, questions: list[BundleQuestion], with_answers: bool, mode: str | None = None):
        """(EncodedPrompts, soft tokens or None) of a batch on the model's device."""
        mode = mode or self.mode
        answers = [LETTERS[q.answer] for q in questions] if with_answers else None
        enc = encode_prompts(self.tokenizer, [self.prompt(q, mode) for q in questions], answers, max_length=16384)
        device = self.llm.get_input_embeddings().weight.device
        enc = enc.to(device)
        soft = None
        if mode == "hybrid":
            items = torch.tensor([i for q in questions for i in (*q.partial, *q.candidates)], device=device)
            soft = self.soft_tokens(items)
        return enc, soft

    def soft_tokens(self, items: torch.Tensor) -> torch.Tensor:
        """(S, H) hybrid-token vectors of the items."""
        return self.projector(self.fusion(self.media[items], self.cf[items], self.bi[items]))

    # -- training and inference --------------------------------------------------------------------------------------
    def loss(self, batch: list[BundleQuestion]) -> torch.Tensor:
        enc, soft = self.encode(batch, with_answers=True)
        return answer_loss(self.llm, enc, soft)

    def forward(self, batch):
        return self.loss(batch)

    @torch.no_grad()
    def choice_scores(self, questions: list[BundleQuestion], generate: bool = False, mode: str | None = None):
        """(B, N) logits of the valid letters at the answer position, and (when ``generate``) the greedy answers
        decoded as text."""
        enc, soft = self.encode(questions, with_answers=False, mode=mode)
        n = len(questions[0].candidates)
        if any(len(q.candidates) != n for q in questions):
            raise ConfigError("BundleLLM.choice_scores: a batch must have one number of candidates")
        first, gen = greedy_answers(self.llm, enc, soft, max_new_tokens=self.config.max_new_tokens if generate else 1,
                                    eos_token_id=self.tokenizer.eos_token_id)
        scores = first[:, self.letter_ids[:n]]
        texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True) if generate else None
        return scores, texts, enc.prompt_lengths

    # -- persistence -------------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """The LoRA adapter only (``adapter/``), fusion + projector weights, and the config; never the base LLM."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_adapter(self.llm, directory / "adapter")
        if self.fusion is not None:
            state = {f"fusion.{k}": v for k, v in self.fusion.state_dict().items()}
            state.update({f"projector.{k}": v for k, v in self.projector.state_dict().items()})
            save_tensors(directory / "fusion.safetensors", state)
        (directory / STATE_FILE).write_text(json.dumps({"config": self.config.to_dict(), "mode": self.mode}, indent=1))

    def load_trained(self, directory: str | Path) -> None:
        """Load what :meth:`save_pretrained` wrote into this model (same base LLM and features)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from genir.errors import CheckpointError

        directory = Path(directory)
        if not (directory / STATE_FILE).is_file():
            raise CheckpointError(f"{directory}: not a saved Bundle-LLM ({STATE_FILE} missing)")
        set_peft_model_state_dict(self.llm, load_file(str(directory / "adapter" / "adapter_model.safetensors")))
        if (directory / "fusion.safetensors").is_file():
            if self.fusion is None:
                raise CheckpointError(f"{directory}: has fusion weights but this model has no item features")
            state = load_file(str(directory / "fusion.safetensors"))
            self.fusion.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("fusion.")})
            self.projector.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("projector.")})
        self.mode = json.loads((directory / STATE_FILE).read_text())["mode"]
