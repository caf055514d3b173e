"""DSI with semantic docids (Tay et al., 2022): the pretrained encoder and a small trained Transformer decoder that
generates a document's hierarchical k-means code, one level at a time, decoded by the project's constrained beam
search so that only existing docids come out.

The decoder cross-attends to the encoder's last-layer token states; its vocabulary is the code tokens only (one
block per level, :class:`~genir.decoding.CodeTokenLayout` with base 0) plus a start token, so the output layer is
sum(K_l) wide instead of a text vocabulary plus codes. DSI used T5 for both sides; here the encoder is a
pretrained sentence encoder (no T5 weights exist offline) and the decoder is trained from scratch (2 layers by
default), which is what "a small trained decoder over docids" means in the tables.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.decoding import CodeTokenLayout, PrefixIndex, constrained_beam_search
from genir.eval.retrieval import RankedLists
from genir.methods.dsi.atomic import TextPairsModel, texts_allowed
from genir.methods.dsi.encoder import CachedEncoder


class SemanticDSI(TextPairsModel):
    """Encoder + code decoder over the (N, L) ``item_codes`` of an index (``level_sizes`` per level).

    ``items``: the catalogue id of each code row (default: row i is item i), so a model can index part of a
    catalogue (D0 of an incremental corpus) and still answer in catalogue ids. ``encoder_lr``: the encoder's
    learning rate as a multiple of the trainer's (the decoder is trained from scratch, the encoder fine-tuned).
    """

    def __init__(self, encoder: CachedEncoder, item_codes: np.ndarray, level_sizes, *, items=None,
                 layers: int = 2, heads: int | None = None, dropout: float = 0.1, beam_width: int = 20,
                 encoder_lr: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.lr_multipliers = {"encoder.": encoder_lr}
        hidden = encoder.hidden_size
        heads = heads or max(1, hidden // 64)
        self.layout = CodeTokenLayout(list(level_sizes), base=0)
        self.bos = self.layout.vocab_end
        codes = torch.as_tensor(np.array(item_codes), dtype=torch.long)
        self.register_buffer("item_codes", codes, persistent=False)
        self.items = np.arange(len(codes)) if items is None else np.asarray(items, dtype=np.int64)
        self._row_of = {int(item): row for row, item in enumerate(self.items)}
        self.prefix = PrefixIndex.from_codes(codes.numpy(), list(level_sizes))
        self.embed = nn.Embedding(self.layout.vocab_end + 1, hidden)
        self.position = nn.Embedding(self.layout.num_levels, hidden)
        layer = nn.TransformerDecoderLayer(hidden, heads, 4 * hidden, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, self.layout.vocab_end)
        self.beam_width = beam_width
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.position.weight, std=0.02)

    @property
    def num_items(self) -> int:
        return self.item_codes.shape[0]

    def _logits(self, tokens: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """(R, l+1, V) next-token logits after the start token and ``tokens`` (R, l)."""
        start = torch.full((tokens.shape[0], 1), self.bos, dtype=torch.long, device=tokens.device)
        seq = torch.cat([start, tokens], dim=1)
        x = self.embed(seq) + self.position.weight[: seq.shape[1]]
        causal = nn.Transformer.generate_square_subsequent_mask(seq.shape[1], device=seq.device, dtype=x.dtype)
        h = self.decoder(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_mask == 0, tgt_is_causal=True)
        return self.out(self.norm(h))

    # -- the Trainer's contract (dataset, collate, forward: TextPairsModel) ------------------------------------
    def loss(self, batch) -> torch.Tensor:
        texts, items = batch
        _, memory, mask = self.encoder(texts, return_tokens=True)
        rows = torch.tensor([self._row_of[int(i)] for i in items.tolist()], device=self.item_codes.device)
        target = self.layout.to_tokens(self.item_codes[rows])  # (B, L)
        logits = self._logits(target[:, :-1], memory, mask)  # (B, L, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

    @torch.no_grad()
    def retrieve(self, batch, k: int = 10) -> RankedLists:
        """Top-``k`` docids per query by constrained beam search (beams = max(beam_width, k))."""
        texts, allowed = texts_allowed(batch)
        _, memory, mask = self.encoder(list(texts), return_tokens=True)
        beams = min(self.num_items, max(self.beam_width, k))
        device = memory.device
        if self.prefix.device != device:
            self.prefix = self.prefix.to(device)

        def step(tokens, cache):
            mem, m = cache
            return self._logits(tokens, mem, m)[:, -1], cache

        def reorder(cache, rows):
            return cache[0].index_select(0, rows), cache[1].index_select(0, rows)

        result = constrained_beam_search(step, (memory, mask), len(texts), self.prefix, beams, beams,
                                         device=device, reorder_cache=reorder, layout=self.layout)
        rows = result.items.cpu()
        items = torch.where(result.valid.cpu(), torch.as_tensor(self.items)[rows.clamp_min(0)], -1)
        return RankedLists(items, result.scores.float().cpu()).keep(allowed, k)
