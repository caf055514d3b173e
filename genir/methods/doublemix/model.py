"""Double Mixture's model: a frozen Whisper decoder, one appended decoder layer whose FFN is a mixture of
bottleneck-adapter experts with a top-1 router, and a trainable ``<event>`` token; the baselines' variants of it.

The decoder reads cached encoder states (:mod:`genir.features.audio`), so the encoder never runs here. The decoder
forward is written over the HF layers' own modules (q/k/v/out projections, layer norms, fc1/fc2) rather than
through ``WhisperDecoder.forward``, whose cache and mask API changes between transformers releases; it computes
each layer's cross-attention keys/values once per clip and caches self-attention keys/values while decoding.

* **Appended layer** (:class:`AppendedDecoderLayer`): a copy of the last decoder layer, placed after it (before
  the final layer norm), created once for the whole stream. The paper's released code appends a new layer at
  every task (``decoder.layers += [...]`` inside the task loop); we do not grow the decoder. Its attention output
  projections start at zero, and so does the FFN's (``fc2``, or every adapter's up-projection), so the layer
  starts as the identity and the zero-shot Whisper is intact at the start (a deviation: the paper does not say).
* **Mixture of experts** (:class:`MixtureOfAdapters`): the FFN is *replaced* by ``n_experts`` adapters
  (``d -> adapter_dim -> d``, GELU) and a linear router on the layer-normed token state; each token goes to its
  top-1 expert, whose output is scaled by the router probability (Switch Transformer), so the router learns from
  the loss; the optional load-balance loss is Switch's ``n * sum_e f_e * P_e``.
* **``<event>``**: one extra row appended to the (frozen, tied) token embedding / output projection as its own
  parameter, so only that row trains.
* **Prompts (L2P baseline)**: the :class:`~genir.models.prompt_pool.PromptPool` picks ``top_k`` prompts by the
  mean encoder state; they are prefixed to the decoder input (before ``<|startoftranscript|>``).
* **EWC**: a diagonal Fisher of the trainable parameters, summed over finished tasks, anchored at the weights after
  the last one.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from genir.data.speech_events import EVENT_TOKEN
from genir.methods.doublemix.config import VARIANTS, DoubleMixConfig
from genir.models.prompt_pool import PromptPool


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, length, d = x.shape
    return x.view(b, length, n, d // n).transpose(1, 2)  # (B, H, L, d/H)


def cross_kv(attn, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention keys and values of encoder states (B, T, d), once per clip."""
    n = attn.num_heads
    return _heads(attn.k_proj(enc), n), _heads(attn.v_proj(enc), n)


def attend(attn, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
    """Whisper attention of queries from x (B, L, d) over keys/values (B, H, S, d/H); scaling on the queries as
    in Whisper."""
    q = _heads(attn.q_proj(x) * attn.scaling, attn.num_heads)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1.0)
    b, h, length, hd = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, length, h * hd))


def layer_forward(layer, h: torch.Tensor, cross: tuple, past: tuple | None, ffn) -> tuple[torch.Tensor, tuple]:
    """One pre-norm Whisper decoder layer (self-attention, cross-attention, FFN) over the new positions ``h``
    (B, L, d), with ``past`` self-attention keys/values; returns the output and the extended keys/values."""
    x = layer.self_attn_layer_norm(h)
    k, v = _heads(layer.self_attn.k_proj(x), layer.self_attn.num_heads), _heads(layer.self_attn.v_proj(x),
                                                                                 layer.self_attn.num_heads)
    if past is not None:
        k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
    h = h + attend(layer.self_attn, x, k, v, causal=past is None and h.shape[1] > 1)
    h = h + attend(layer.encoder_attn, layer.encoder_attn_layer_norm(h), *cross, causal=False)
    return h + ffn(layer.final_layer_norm(h)), (k, v)


class BottleneckAdapter(nn.Module):
    """``up(gelu(down(x)))``: d -> r -> d; the up-projection starts at zero."""

    def __init__(self, d: int, r: int):
        super().__init__()
        self.down = nn.Linear(d, r)
        self.up = nn.Linear(r, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.gelu(self.down(x)))


class MixtureOfAdapters(nn.Module):
    """``n_experts`` bottleneck adapters and a top-1 router (one adapter and no router when ``n_experts == 1``).

    ``forward(x)`` returns the mixed output and the Switch load-balance loss; ``last_routes`` holds the expert
    of every token of the last call (B, L)."""

    def __init__(self, d: int, r: int, n_experts: int):
        super().__init__()
        self.experts = nn.ModuleList([BottleneckAdapter(d, r) for _ in range(n_experts)])
        self.router = nn.Linear(d, n_experts) if n_experts > 1 else None
        self.last_routes: torch.Tensor | None = None
        self.register_buffer("usage", torch.zeros(n_experts, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.router is None:
            self.last_routes = torch.zeros(x.shape[:-1], dtype=torch.long, device=x.device)
            self.usage += self.last_routes.numel()
            return self.experts[0](x), x.new_zeros(())
        probs = self.router(x).softmax(-1)  # (B, L, E)
        top_p, top = probs.max(-1)  # top-1
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            mask = top == e
            if mask.any():
                out[mask] = top_p[mask, None] * expert(x[mask])
        n = len(self.experts)
        share = F.one_hot(top, n).float().mean(dim=(0, 1))  # f_e: tokens sent to e
        balance = n * (share * probs.mean(dim=(0, 1))).sum()
        self.last_routes = top.detach()
        self.usage += torch.bincount(top.flatten(), minlength=n)
        return out, balance


class AppendedDecoderLayer(nn.Module):
    """A copy of Whisper's last decoder layer with attention output projections zeroed and its FFN either the copied
    dense FFN (``fc2`` zeroed) or a :class:`MixtureOfAdapters` (which replaces it)."""

    def __init__(self, last, ffn: str, n_experts: int, adapter_dim: int):
        super().__init__()
        for name in ("self_attn", "encoder_attn", "self_attn_layer_norm", "encoder_attn_layer_norm",
                     "final_layer_norm"):
            setattr(self, name, copy.deepcopy(getattr(last, name)))
        for attn in (self.self_attn, self.encoder_attn):
            nn.init.zeros_(attn.out_proj.weight)
            nn.init.zeros_(attn.out_proj.bias)
        self.kind = ffn
        d = last.fc1.in_features
        if ffn in ("dense", "frozen"):
            self.fc1, self.fc2 = copy.deepcopy(last.fc1), copy.deepcopy(last.fc2)
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
            self.mixture = None
        else:
            self.mixture = MixtureOfAdapters(d, adapter_dim, 1 if ffn == "adapter" else n_experts)
        self.balance = torch.zeros(())

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        if self.mixture is None:
            return self.fc2(F.gelu(self.fc1(x)))
        out, self.balance = self.mixture(x)
        return out

    def attention_parameters(self):
        for name in ("self_attn", "encoder_attn", "self_attn_layer_norm", "encoder_attn_layer_norm",
                     "final_layer_norm"):
            yield from getattr(self, name).parameters()


class EventDecoder(nn.Module):
    """Frozen Whisper decoder + appended layer + ``<event>`` (+ prompt pool), trained by the one Trainer:
    ``forward(batch)`` returns the loss dict, ``collate`` builds batches of ``{"enc", "target"}`` examples.

    Args:
        whisper: a :class:`genir.llm.whisper.Whisper` (its weights are frozen here, never changed).
        config: the method's :class:`DoubleMixConfig`.
        n_tasks: tasks of the stream (the number of experts when ``config.n_experts`` is 0).
    """

    def __init__(self, whisper, config: DoubleMixConfig, n_tasks: int):
        super().__init__()
        self.config = config
        self.variant = VARIANTS[config.variant]
        self.tokenizer = whisper.tokenizer
        self.prompt_ids = list(whisper.prompt_ids)
        self.eot_id = int(whisper.eot_id)
        self.decoder = whisper.model.model.decoder
        self.decoder.requires_grad_(False)
        emb = self.decoder.embed_tokens.weight
        self.event_id = emb.shape[0]
        seed_ids = self.tokenizer.encode(" event", add_special_tokens=False)
        self.event_row = nn.Parameter(emb[seed_ids].detach().mean(0).clone())  # (d,)
        last = self.decoder.layers[-1]
        self.appended = AppendedDecoderLayer(last, self.variant["ffn"], config.n_experts or n_tasks,
                                             config.adapter_dim)
        self.appended.requires_grad_(True)  # the copied modules came from the frozen decoder
        # read by the Trainer's optimizer: parameters that start from scratch learn faster
        self.lr_multipliers = {"appended.mixture": config.adapter_lr_scale, "pool": config.prompt_lr_scale}
        if self.variant["ffn"] == "frozen":
            self.appended.requires_grad_(False)
        elif not config.train_attention:
            for p in self.appended.attention_parameters():
                p.requires_grad_(False)
        self.pool = None
        if self.variant["prompts"]:
            g = torch.Generator().manual_seed(0)
            keys = torch.randn(config.pool_size, emb.shape[1], generator=g)
            self.pool = PromptPool(keys, layers=1, length=config.prompt_length, top_k=config.prompt_top_k,
                                   learn_keys=True, init=emb.detach())
        self.ewc_fisher: dict[str, torch.Tensor] = {}
        self.ewc_anchor: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- tokens
    def encode_target(self, text: str) -> list[int]:
        """Token ids of a label ``"transcript <event> type"``: each piece BPE-encoded with a leading space (as
        Whisper writes text), ``<event>`` as its own id."""
        ids: list[int] = []
        for i, piece in enumerate(text.split(EVENT_TOKEN)):
            if i:
                ids.append(self.event_id)
            if piece.strip():
                ids += self.tokenizer.encode(" " + " ".join(piece.split()), add_special_tokens=False)
        return ids

    def decode_ids(self, ids: list[int]) -> str:
        """Text of generated ids (up to end-of-text), ``<event>`` written back as the literal token."""
        pieces, cur = [], []
        for i in ids:
            if i == self.eot_id:
                break
            if i == self.event_id:
                pieces.append(cur)
                cur = []
            else:
                cur.append(i)
        pieces.append(cur)
        texts = [self.tokenizer.decode(p, skip_special_tokens=True).strip() for p in pieces]
        return f" {EVENT_TOKEN} ".join(texts).strip()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        base = self.decoder.embed_tokens(ids.clamp_max(self.event_id - 1))
        return torch.where((ids == self.event_id)[..., None], self.event_row.to(base.dtype), base)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., V + 1) over Whisper's vocabulary and ``<event>`` (Whisper ties the output projection)."""
        w = self.decoder.embed_tokens.weight
        return torch.cat([h @ w.T, (h @ self.event_row)[..., None]], -1)

    # ---------------------------------------------------------------- decoder
    def _layers(self):
        return [*self.decoder.layers, self.appended]

    @torch.no_grad()
    def frozen_cross(self, enc: torch.Tensor, dtype: torch.dtype = torch.float16) -> torch.Tensor:
        """(B, layers, 2, H, T, d/H) cross-attention keys and values of the frozen decoder layers for encoder
        states (B, T, d). They never change, so a run computes them once per clip and passes them in batches
        (``"frozen_kv"``): they are most of the cost of a training step and of decoding."""
        kv = [torch.stack(cross_kv(layer.encoder_attn, enc.float()), 1) for layer in self.decoder.layers]
        return torch.stack(kv, 1).to(dtype)

    def _cross(self, enc: torch.Tensor, frozen_kv: torch.Tensor | None = None) -> list[tuple]:
        if frozen_kv is None:
            return [cross_kv(layer.encoder_attn, enc) for layer in self._layers()]
        frozen_kv = frozen_kv.to(enc.dtype)
        return [(frozen_kv[:, i, 0], frozen_kv[:, i, 1]) for i in range(frozen_kv.shape[1])] + [
            cross_kv(self.appended.encoder_attn, enc)]

    def _prefix(self, enc: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        if self.pool is None:
            return None, enc.new_zeros(())
        prompts, pull = self.pool(enc.mean(1))  # (B, 1, k * length, d)
        return prompts[:, 0], pull

    def hidden(self, embeds: torch.Tensor, cross: list, past: list | None, offset: int
               ) -> tuple[torch.Tensor, list]:
        """Final-layer-normed states of the new positions (B, L, d) and the extended self-attention caches."""
        h = embeds + self.decoder.embed_positions.weight[offset:offset + embeds.shape[1]]
        caches = []
        for i, layer in enumerate(self._layers()):
            ffn = self.appended.ffn if layer is self.appended else (
                lambda x, layer=layer: layer.fc2(F.gelu(layer.fc1(x))))
            h, kv = layer_forward(layer, h, cross[i], None if past is None else past[i], ffn)
            caches.append(kv)
        return self.decoder.layer_norm(h), caches

    def collate(self, examples: list[dict]) -> dict:
        """Pads ``prompt + target + <|endoftext|>``; labels are -100 on the prompt and the padding."""
        seqs = [self.prompt_ids + list(e["target"]) + [self.eot_id] for e in examples]
        width = max(len(s) for s in seqs) - 1
        inputs = torch.full((len(seqs), width), self.eot_id, dtype=torch.long)
        labels = torch.full((len(seqs), width), -100, dtype=torch.long)
        p = len(self.prompt_ids)
        for i, s in enumerate(seqs):
            inputs[i, :len(s) - 1] = torch.tensor(s[:-1])
            labels[i, p - 1:len(s) - 1] = torch.tensor(s[p:])
        enc = torch.stack([torch.as_tensor(e["enc"]) for e in examples]).float()
        batch = {"enc": enc, "input_ids": inputs, "labels": labels}
        if all(e.get("frozen_kv") is not None for e in examples):
            batch["frozen_kv"] = torch.stack([e["frozen_kv"] for e in examples]).float()
        return batch

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        enc = batch["enc"].float()
        embeds = self.embed(batch["input_ids"])
        labels = batch["labels"]
        prefix, pull = self._prefix(enc)
        if prefix is not None:
            embeds = torch.cat([prefix.to(embeds.dtype), embeds], 1)
            labels = torch.cat([labels.new_full(prefix.shape[:2], -100), labels], 1)
        h, _ = self.hidden(embeds, self._cross(enc, batch.get("frozen_kv")), None, 0)
        keep = labels != -100
        ce = F.cross_entropy(self.logits(h[keep]), labels[keep])
        out = {"ce": ce.detach()}
        loss = ce
        if self.appended.mixture is not None and self.config.balance_loss > 0:
            loss = loss + self.config.balance_loss * self.appended.balance
            out["balance"] = self.appended.balance.detach()
        if self.pool is not None and self.config.pull_weight > 0:
            loss = loss + self.config.pull_weight * pull
            out["pull"] = pull.detach()
        if self.ewc_fisher:
            penalty = self.ewc_penalty()
            loss = loss + penalty
            out["ewc"] = penalty.detach()
        out["loss"] = loss
        return out

    # ---------------------------------------------------------------- decoding
    @torch.no_grad()
    def generate(self, enc: torch.Tensor, max_new_tokens: int | None = None,
                 frozen_kv: torch.Tensor | None = None) -> list[list[int]]:
        """Greedy decoding from Whisper's prompt for encoder states (B, T, d) (and their :meth:`frozen_cross`, if
        at hand): generated ids per clip (the end token excluded)."""
        was_training = self.training
        self.eval()
        limit = max_new_tokens or self.config.max_new_tokens
        enc = enc.float()
        b = enc.shape[0]
        cross = self._cross(enc, frozen_kv)
        ids = torch.tensor([self.prompt_ids] * b, device=enc.device)
        embeds = self.embed(ids)
        prefix, _ = self._prefix(enc)
        if prefix is not None:
            embeds = torch.cat([prefix.to(embeds.dtype), embeds], 1)
        h, past = self.hidden(embeds, cross, None, 0)
        offset = embeds.shape[1]
        out = torch.zeros(b, 0, dtype=torch.long, device=enc.device)
        done = torch.zeros(b, dtype=torch.bool, device=enc.device)
        for _ in range(limit):
            nxt = self.logits(h[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.eot_id), nxt)
            out = torch.cat([out, nxt[:, None]], 1)
            done |= nxt == self.eot_id
            if bool(done.all()):
                break
            h, past = self.hidden(self.embed(nxt[:, None]), cross, past, offset)
            offset += 1
        self.train(was_training)
        return [[i for i in row if i != self.eot_id] for row in out.tolist()]

    # ---------------------------------------------------------------- state, EWC
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copies of the trainable parameters (the frozen Whisper is not part of a method's state)."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise KeyError(f"EventDecoder state: unknown parameters {unknown}")
        with torch.no_grad():
            for n, t in state.items():
                params[n].copy_(t)

    def ewc_penalty(self) -> torch.Tensor:
        """``lambda / 2 * sum_i F_i (theta_i - theta*_i)^2`` over the trainable parameters."""
        params = dict(self.named_parameters())
        total = self.event_row.new_zeros(())
        for n, f in self.ewc_fisher.items():
            total = total + (f * (params[n] - self.ewc_anchor[n]) ** 2).sum()
        return 0.5 * self.config.ewc_lambda * total

    def consolidate(self, batches) -> None:
        """Adds the diagonal Fisher (squared gradients of the task loss, averaged over ``batches``) of the
        finished task and moves the anchor to the current weights."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        saved, self.ewc_fisher = self.ewc_fisher, {}
        was_training = self.training
        self.train()
        count = 0
        for batch in batches:
            self.zero_grad(set_to_none=True)
            self.forward(batch)["loss"].backward()  # the task loss: the penalty is off while estimating
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2
            count += 1
        self.zero_grad(set_to_none=True)
        self.train(was_training)
        for n, f in fisher.items():
            self.ewc_fisher[n] = saved.get(n, torch.zeros_like(f)) + f / max(count, 1)
        self.ewc_anchor = {n: p.detach().clone() for n, p in params.items()}
