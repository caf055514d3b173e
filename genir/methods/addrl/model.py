"""AD-DRL: attribute-driven disentangled representations, fused per factor across modalities.

Every representation (user ID; per item: ID embedding and one projection per feature modality) is split into
``F`` chunks of ``factor_dim``, one per explicit attribute (genre, release-year bucket, popularity bucket...).
Three auxiliary losses make chunk ``f`` *be* attribute ``f``:

* intra-modality (high level): a classifier per modality tells from a chunk which factor it is (CE);
* inter-modality (high level): chunk ``f`` of modality A matches chunk ``f`` of modality B better than the item's
  other chunks (InfoNCE over factors, symmetric, for every modality pair);
* attribute value (low level): the fused factor ``f`` predicts the value of attribute ``f`` (CE).

Factor-level fusion: per factor, attention weights over the modalities = softmax(MLP(normalised sum of the
modalities' chunks)), fused_f = sum_m w_m * normalise(chunk_{m,f}). Score(u, i) = sum_f w_f * softplus(s * cos(u_f,
fused_{i,f})) with w_f = 1 in training; each factor's share of the score is an explanation, and raising w_f at
inference steers the recommendations toward attribute f (:mod:`genir.methods.addrl.explain`). The ranking loss is
softplus(-(s_pos - max_j s_neg_j)) over ``num_negatives`` uniform negatives, plus the weighted auxiliary losses.

Deviations from the paper / its code (SDLZY/AD-DRL), all for MovieLens-100K on CPU:

* attributes: genre (multi-valued: soft-label CE on the uniform distribution over the item's genres, the paper's
  category is single-valued), release-year buckets for price, training-count buckets for popularity; brand has no
  analogue; ``kg:<relation>`` attributes are optional (see attributes.py);
* modalities: learned ID + MiniLM text + KG + CF (a BPR item table) instead of ID + review text + ViT image; any
  user matrix can be added. All feature rows are L2-normalised before their projection, as the paper does;
* ``score_scale`` s = 5 inside the softplus (the paper: 1, which leaves every factor term in a narrow range and
  cost 0.011 valid NDCG@10 here);
* factor_dim 16 (the paper: 128 / 4 = 32); losses averaged over the batch instead of summed (a learning-rate scale);
  the auxiliary decays, lr and the rest were tuned on the validation split (README), the paper's code sets 1.0;
* fusion MLP weights are per factor, and softmax is applied once (the code applies it twice);
* the auxiliary losses are computed on the batch's positive and negative items, as the paper's code does;
  item representations are computed for the whole catalogue once per step and indexed (same values, faster);
* model selection on the validation split (the released code early-stops on test Recall@20).
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genir.data.split import Split
from genir.errors import ConfigError, FeatureError
from genir.eval.evaluator import EvalBatch
from genir.features.modalities import load_modalities, parse_modalities
from genir.methods.addrl.attributes import Attribute, item_attributes
from genir.methods.addrl.config import ADDRLConfig
from genir.models.base import Recommender
from genir.models.sampling import NegativeSampler


def parse_dims(spec: str) -> dict[str, int]:
    """``"text=384,img=512"`` -> ``{"text": 384, "img": 512}``."""
    out = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, value = part.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ConfigError(f"modality_dims: expected name=columns, got {part!r}") from None
    return out


class FactorFusion(nn.Module):
    """Per-factor attention over modalities: (n, M, F, d) chunks -> (n, F, d) fused factors, (n, F, M) weights."""

    def __init__(self, num_factors: int, factor_dim: int, num_modalities: int):
        super().__init__()
        m = num_modalities
        self.w1 = nn.Parameter(torch.empty(num_factors, factor_dim, m))
        self.b1 = nn.Parameter(torch.zeros(num_factors, m))
        self.w2 = nn.Parameter(torch.empty(num_factors, m, m))
        self.b2 = nn.Parameter(torch.zeros(num_factors, m))
        for w in (self.w1, self.w2):
            for f in range(num_factors):
                nn.init.xavier_uniform_(w.data[f])

    def forward(self, chunks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit = F.normalize(chunks, dim=-1)  # (n, M, F, d)
        query = F.normalize(chunks.sum(1), dim=-1)  # (n, F, d)
        h = torch.tanh(torch.einsum("nfd,fdm->nfm", query, self.w1) + self.b1)
        weights = torch.softmax(torch.einsum("nfm,fmk->nfk", h, self.w2) + self.b2, dim=-1)  # (n, F, M)
        return torch.einsum("nfm,nmfd->nfd", weights, unit), weights


class ADDRL(Recommender):
    config_class = ADDRLConfig
    needs_known_users: ClassVar[bool] = True  # scores come from a learned user table
    # tuned on ml-100k validation (README: the sweep)
    trainer_defaults: ClassVar[dict] = {"lr": 1e-3, "batch_size": 2048, "epochs": 300, "patience": 10}

    def __init__(self, config: ADDRLConfig, split: Split):
        super().__init__(config, split)
        c = config
        self.attributes: list[Attribute] = item_attributes(
            split, c.attributes, year_buckets=c.year_buckets, popularity_buckets=c.popularity_buckets,
            rating_buckets=c.rating_buckets, kg_classes=c.kg_classes)
        if c.factor_dim < 1:
            raise ConfigError(f"addrl: factor_dim must be >= 1, got {c.factor_dim}")
        if c.num_negatives < 1:
            raise ConfigError(f"addrl: num_negatives must be >= 1, got {c.num_negatives}")
        self.num_factors = nf = len(self.attributes)
        d = c.factor_dim * nf

        specs = parse_modalities(c.modalities) if c.modalities.strip() else []
        if any(name == "id" for name, _ in specs):
            raise FeatureError("addrl: modality name 'id' is reserved for the learned item-ID embedding (use_id)")
        dims = parse_dims(c.modality_dims)
        feats = self.saved_input("modalities", lambda: load_modalities(split, c.modalities, dims=dims) if specs else {})
        if not feats and not c.use_id:
            raise ConfigError("addrl: no modality: give modalities or set use_id=true")
        dims = {**dims, **{k: v.shape[1] for k, v in feats.items()}}
        c.modality_dims = ",".join(f"{k}={v}" for k, v in dims.items())  # saved with the run, checked on reload

        self.modality_names = (["id"] if c.use_id else []) + list(feats)
        self.user_emb = nn.Embedding(split.num_users, d)
        nn.init.xavier_uniform_(self.user_emb.weight)
        if c.use_id:
            self.item_emb = nn.Embedding(split.num_items, d)
            nn.init.xavier_uniform_(self.item_emb.weight)
        self.proj = nn.ModuleDict()
        for name, x in feats.items():
            self.register_buffer(f"feat_{name}", F.normalize(torch.as_tensor(x), dim=1), persistent=False)
            self.proj[name] = nn.Linear(x.shape[1], d)
            nn.init.xavier_uniform_(self.proj[name].weight)
            nn.init.zeros_(self.proj[name].bias)
        self.factor_classifier = nn.ModuleDict({
            m: nn.Sequential(nn.LeakyReLU(), nn.Dropout(c.dropout), nn.Linear(c.factor_dim, nf))
            for m in self.modality_names})
        self.fusion = FactorFusion(nf, c.factor_dim, len(self.modality_names))
        self.attribute_heads = nn.ModuleList([nn.Linear(c.factor_dim, a.num_classes) for a in self.attributes])
        for i, a in enumerate(self.attributes):
            self.register_buffer(f"attr_target_{i}", torch.as_tensor(a.target), persistent=False)
        self.register_buffer("factor_weights", torch.ones(nf), persistent=False)  # inference-time control
        self.register_buffer("factor_ids", torch.arange(nf), persistent=False)
        self.sampler = NegativeSampler(split)
        self._cache = None

    @property
    def factor_names(self) -> list[str]:
        return [a.name for a in self.attributes]

    # -- representations ---------------------------------------------------------------------------------------
    def modality_chunks(self) -> torch.Tensor:
        """(num_items, M, F, factor_dim) chunks of every item in every modality."""
        parts = []
        nf, fd = self.num_factors, self.config.factor_dim
        for m in self.modality_names:
            x = self.item_emb.weight if m == "id" else self.proj[m](getattr(self, f"feat_{m}"))
            parts.append(x.view(-1, nf, fd))
        return torch.stack(parts, 1)

    def item_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(chunks (N, M, F, d), fused factors (N, F, d), fusion weights (N, F, M)) of the whole catalogue."""
        chunks = self.modality_chunks()
        fused, weights = self.fusion(chunks)
        return chunks, fused, weights

    def user_factors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_emb(users).view(len(users), self.num_factors, self.config.factor_dim)

    @staticmethod
    def factor_cosines(user_f: torch.Tensor, item_f: torch.Tensor) -> torch.Tensor:
        """(B, F, d) x (N, F, d) -> (B, N, F) cosine per factor."""
        return torch.einsum("bfd,nfd->bnf", F.normalize(user_f, dim=-1), F.normalize(item_f, dim=-1))

    # -- training ----------------------------------------------------------------------------------------------
    def loss(self, batch) -> torch.Tensor:
        self._cache = None
        c = self.config
        users, pos = batch
        b, k = len(users), c.num_negatives
        neg = self.sampler(users.repeat_interleave(k)).view(b, k)
        chunks, fused, _ = self.item_factors()
        u = F.normalize(self.user_factors(users), dim=-1)  # (B, F, d)
        unit = F.normalize(fused, dim=-1)
        g = c.score_scale
        s_pos = F.softplus(g * torch.einsum("bfd,bfd->bf", u, unit[pos])).sum(-1)
        s_neg = F.softplus(g * torch.einsum("bfd,bkfd->bkf", u, unit[neg])).sum(-1)
        rank = F.softplus(-(s_pos - s_neg.max(1).values)).mean()

        items = torch.cat([pos, neg.flatten()])
        total = rank + c.decay_r * self._l2(users, items) / b
        # the auxiliary losses are means over the batch's positive and negative items; each is a function of the
        # item alone, so they are computed once per distinct item and weighted by its count in the batch
        ids, count = torch.unique(items, return_counts=True)
        weight = count.float() / len(items)
        if c.decay_f > 0:
            total = total + c.decay_f * (weight * self.intra_loss(chunks[ids])).sum()
        if c.decay_n > 0 and len(self.modality_names) > 1:
            total = total + c.decay_n * (weight * self.inter_loss(chunks[ids])).sum()
        if c.decay_a > 0:
            total = total + c.decay_a * self.attribute_loss(fused[ids], ids, weight)
        return total

    def _l2(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        reg = self.user_emb(users).pow(2).sum()
        if self.config.use_id:
            reg = reg + self.item_emb(items).pow(2).sum()
        for p in self.proj.values():
            reg = reg + p.weight.pow(2).sum()
        return reg

    def intra_loss(self, chunks: torch.Tensor) -> torch.Tensor:
        """(n,) per item: sum over modalities of the mean over chunks of the factor-identity CE."""
        n, nm, nf, _ = chunks.shape
        logits = torch.stack([self.factor_classifier[m](chunks[:, j]) for j, m in enumerate(self.modality_names)],
                             1)  # (n, M, F, F)
        ce = F.cross_entropy(logits.reshape(-1, nf), self.factor_ids.repeat(n * nm), reduction="none")
        return ce.view(n, nm, nf).mean(-1).sum(-1)

    def inter_loss(self, chunks: torch.Tensor) -> torch.Tensor:
        """(n,) per item: InfoNCE over the item's factors for every modality pair, symmetric, summed over pairs."""
        n, nm, nf, _ = chunks.shape
        a, b = zip(*itertools.combinations(range(nm), 2))
        logits = torch.einsum("npfd,npgd->npfg", chunks[:, list(a)], chunks[:, list(b)]) / self.config.temperature
        target = self.factor_ids.repeat(n * len(a))
        ce = (F.cross_entropy(logits.reshape(-1, nf), target, reduction="none")
              + F.cross_entropy(logits.transpose(2, 3).reshape(-1, nf), target, reduction="none"))
        return 0.5 * ce.view(n, len(a), nf).mean(-1).sum(-1)

    def attribute_loss(self, fused: torch.Tensor, items: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Fused factor f predicts the value of attribute f: soft-label CE, weighted mean over the items that have
        a value, summed over attributes."""
        total = fused.new_zeros(())
        for f, head in enumerate(self.attribute_heads):
            target = getattr(self, f"attr_target_{f}")[items]
            has = (target.sum(1) > 0).float() * weight
            if has.sum() > 0:
                ce = -(target * F.log_softmax(head(fused[:, f]), dim=-1)).sum(1)
                total = total + (has * ce).sum() / has.sum()
        return total

    # -- inference ---------------------------------------------------------------------------------------------
    def prepare_eval(self) -> None:
        with torch.no_grad():
            self._cache = self.item_factors()

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def factor_scores(self, users: torch.Tensor) -> torch.Tensor:
        """(B, N, F): each factor's term w_f * softplus(cos) of the score; the score is their sum."""
        if self._cache is None:
            self.prepare_eval()
        fused = self._cache[1]
        cos = self.factor_cosines(self.user_factors(users), fused)
        return F.softplus(self.config.score_scale * cos) * self.factor_weights

    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        return self.factor_scores(batch.users).sum(-1)

    def fusion_weights(self) -> torch.Tensor:
        """(N, F, M) attention of each item's factors over the modalities (``modality_names``)."""
        if self._cache is None:
            self.prepare_eval()
        return self._cache[2]
