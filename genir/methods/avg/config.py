"""AVG's hyper-parameters (one dataclass for the two-tower that supplies aligned features, the generator and its
two training stages). Paper values in the docs; defaults sized for 8k images on a 2-core CPU."""

from __future__ import annotations

from dataclasses import dataclass

from genir.config import Config, param


@dataclass
class AVGConfig(Config):
    # -- LiT-style two-tower: frozen image features + trained projection; frozen MiniLM + trained text head
    tower_dim: int = param(256, "joint embedding size of the two-tower (CLIP ViT-L/14: 768)", min=8)
    tower_hidden: int = param(512, "hidden width of each tower's trained head", min=8)
    tower_epochs: int = param(40, "two-tower training epochs (best on valid Recall@10 kept)", min=1)
    tower_lr: float = param(1e-3, "two-tower learning rate", min=0.0)
    tower_batch: int = param(256, "captions per contrastive batch", min=2)
    # -- token-to-voken generator: a T5 decoder built from a config (no T5 weights exist offline) reading the caption
    text_encoder: str = param("minilm", "caption encoder: the frozen pretrained MiniLM's token states through a "
                              "trained projection (minilm), or a T5 encoder trained from scratch on a word "
                              "vocabulary of the training captions (scratch)", choices=("minilm", "scratch"))
    encoder_layers: int = param(0, "trained T5 encoder layers on top of the MiniLM states (minilm only)", min=0)
    d_model: int = param(128, "generator hidden size = voken code dimension (AVG: 768, t5-base)", min=8)
    layers: int = param(2, "decoder layers (and encoder layers with scratch; t5-base: 12)", min=1)
    heads: int = param(4, "attention heads", min=1)
    d_ff: int = param(512, "feed-forward width", min=8)
    dropout: float = param(0.1, "dropout (AVG: 0.2)", min=0.0, max=0.9)
    max_source_length: int = param(32, "caption tokens kept (AVG: 128)", min=4)
    min_word_count: int = param(1, "scratch: words of the training captions seen fewer times are <unk>", min=1)
    init_vokens: bool = param(True, "initialise the voken embeddings from the tokenizer's codebook (AVG's "
                              "--add_embedding)")
    temperature: float = param(0.5, "generative loss on logits / temperature (AVG: 0.5)", min=1e-3)
    epochs: int = param(30, "generative-stage epochs, best on valid Recall@10 kept (AVG: 100)", min=1)
    lr: float = param(1e-3, "generative-stage learning rate (AVG: 1e-3)", min=0.0)
    batch_size: int = param(64, "captions per batch (AVG: 32 x 4 accumulation)", min=1)
    eval_every: int = param(5, "validate every N epochs", min=1)
    patience: int = param(3, "validations without improvement before stopping", min=1)
    # -- discriminative stage (LTR): beam-mined hard negatives, listwise loss on raw sequence scores
    disc_epochs: int = param(2, "discriminative-stage epochs; 0 = generative stage only (AVG: 5)", min=0)
    disc_lr: float = param(1e-4, "discriminative-stage learning rate (AVG: 1e-4)", min=0.0)
    ltr_weight: float = param(0.5, "weight of the listwise loss next to the generative one (AVG: 0.5)", min=0.0)
    negatives: int = param(5, "hard negatives per caption: the best constrained beams that are not its image "
                           "(AVG: every other beam of 10)", min=1)
    negatives_from: str = param("trained", "images that may be mined as negatives: those with a training caption "
                                "(trained; a deviation, see the README) or every indexed image (all; AVG)",
                                choices=("trained", "all"))
    ltr_over: str = param("images", "what the listwise loss ranks: whole voken strings (images; AVG) or the "
                          "semantic voken prefixes, with negatives of distinct prefixes (prefixes; a deviation, "
                          "see the README)", choices=("images", "prefixes"))
    keep_start: bool = param(False, "validate the generative checkpoint too and keep it when no discriminative "
                             "epoch beats it on valid Recall@10 (model selection over the whole run)")
    mine_beams: int = param(10, "beams of the constrained search that mines the negatives", min=2)
    # -- retrieval
    beam_width: int = param(10, "beams of the constrained search at retrieval (AVG: 10)", min=1)
