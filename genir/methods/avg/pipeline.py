"""AVG end to end on one core: image-caption task -> frozen pretrained image features (cached) and frozen MiniLM
caption embeddings -> LiT-style two-tower (trained heads) -> aligned image features + caption embeddings -> voken
tokenizer (:class:`~genir.ids.voken.VokenTokenizer`) through :func:`genir.index.build_index` -> token-to-voken
generator trained by the one Trainer (generative stage, then the discriminative stage) -> constrained beam search.

The steps are small functions so that the recipe can stop after any of them (AVG without the discriminative stage
is the generator after :func:`train_generator`'s first stage) and run the baselines on the same inputs; and
:func:`build_image_index` chains them for ``genir index build --images``, writing the generator into the index dir
(``DIR/avg/``) in the same rename as the index. :class:`ImageIndex` loads both and answers text queries.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write
from genir.data.tasks import QueryRetrievalTask
from genir.errors import CheckpointError, ConfigError, DatasetError
from genir.eval.retrieval import RetrievalEvaluator
from genir.methods.avg.config import AVGConfig
from genir.methods.avg.generator import FrozenTextStates, TokenToVoken, t5_from_scratch, word_tokenizer
from genir.methods.avg.two_tower import TwoTower

MODEL_DIR = "avg"
VALID_KS = (1, 5, 10)


@dataclass
class ImageData:
    """What every system of a run shares: the task, frozen image features (N, d_img) and frozen MiniLM
    embeddings of every caption of the task (``texts`` -> rows of ``text_bank``)."""

    task: QueryRetrievalTask
    image_features: np.ndarray
    text_bank: np.ndarray
    texts: list[str]
    encoder: str

    @property
    def num_items(self) -> int:
        return len(self.task.catalogue)


def prepare(task: QueryRetrievalTask, encoder: str = "efficientnet-lite", progress: bool = False,
            **encoder_options) -> ImageData:
    """Image features of the task's catalogue by the registered image ``encoder`` and caption embeddings by the
    packaged MiniLM, both frozen and cached on disk (:mod:`genir.features.cache`)."""
    from genir.features import encode_texts, image_embeddings

    x = image_embeddings(task.catalogue, encoder=encoder, progress=progress, **encoder_options)
    texts = sorted(set(task.queries["text"].astype(str)))
    bank = encode_texts(texts, progress=progress)
    return ImageData(task, x, bank, texts, encoder)


def same_image_groups(task: QueryRetrievalTask) -> np.ndarray:
    """(N,) group of each image: images relevant to one caption (pixel-identical copies) share a group."""
    group = np.arange(len(task.catalogue))
    for _, items in task.qrels.groupby("qid")["item"]:
        items = items.to_numpy()
        if len(items) > 1:
            group[items] = group[items].min()
    return group


def negative_pool(task: QueryRetrievalTask, negatives_from: str = "trained") -> np.ndarray | None:
    """(N,) mask of the images the discriminative stage may mine as negatives: those with a training caption
    (``"trained"``), or None for every image (``"all"``)."""
    if negatives_from == "all":
        return None
    mask = np.zeros(len(task.catalogue), bool)
    mask[task.train_pairs["item"].to_numpy()] = True
    return mask


def evaluator(task: QueryRetrievalTask, stage: str = "valid", ks=VALID_KS) -> RetrievalEvaluator:
    return RetrievalEvaluator(task, stage, ks=ks, metrics=("hits", "mrr"), batch_size=256)


def _trainer_config(epochs: int, batch: int, lr: float, seed: int, progress: bool, eval_every: int = 1,
                    patience: int = 5, max_grad_norm: float = 0.0):
    from genir.training import TrainerConfig

    return TrainerConfig(epochs=epochs, batch_size=batch, lr=lr, metric="hits@10", eval_every=eval_every,
                         patience=patience, seed=seed, progress=progress, max_grad_norm=max_grad_norm)


# -- the two-tower ---------------------------------------------------------------------------------------------------
def train_two_tower(data: ImageData, cfg: AVGConfig, seed: int = 0, progress: bool = False, text_encoder=None):
    """(trained :class:`TwoTower`, the Trainer's result): heads trained on the training captions, the epoch
    with the best valid Recall@10 kept."""
    from genir.training import Trainer

    torch.manual_seed(seed)
    tower = TwoTower(data.image_features, data.text_bank, data.texts, dim=cfg.tower_dim, hidden=cfg.tower_hidden,
                     text_encoder=text_encoder)
    config = _trainer_config(cfg.tower_epochs, cfg.tower_batch, cfg.tower_lr, seed, progress, patience=5)
    result = Trainer(tower, data.task, evaluator(data.task), config=config).fit()
    return tower.eval(), result


@torch.no_grad()
def aligned_features(tower: TwoTower, task: QueryRetrievalTask) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings (N, dim) of every image, caption embeddings (N, dim) of each image's TRAINING captions,
    averaged; all-NaN rows for images without one, so no held-out caption reaches the tokenizer)."""
    tower.eval()
    images = tower.embed_images().cpu().numpy()
    pairs = task.train_pairs
    emb = tower.embed_texts(pairs["text"].astype(str).tolist()).cpu().numpy()
    paired = np.zeros_like(images)
    counts = np.zeros(len(images))
    np.add.at(paired, pairs["item"].to_numpy(), emb)
    np.add.at(counts, pairs["item"].to_numpy(), 1)
    has = counts > 0
    paired[has] /= counts[has, None]
    paired[has] /= np.linalg.norm(paired[has], axis=1, keepdims=True).clip(1e-12)
    paired[~has] = np.nan
    return images.astype(np.float32), paired.astype(np.float32)


# -- the generator ---------------------------------------------------------------------------------------------------
def caption_states(task: QueryRetrievalTask, cfg: AVGConfig, progress: bool = False) -> FrozenTextStates:
    """The frozen MiniLM's token states of every caption of the task (frozen: embedding held-out captions trains
    nothing), cached on disk."""
    states = FrozenTextStates(max_length=cfg.max_source_length)
    states.precompute(task.queries["text"].astype(str).tolist(), progress=progress)
    return states


def make_generator(task: QueryRetrievalTask, codes: np.ndarray, level_sizes: list[int], shared: bool,
                   cfg: AVGConfig, seed: int = 0, codebooks: list[np.ndarray] | None = None,
                   semantic_levels: int | None = None, states: FrozenTextStates | None = None) -> TokenToVoken:
    """A T5 built from a config (nothing pretrained) reading the caption through the frozen MiniLM's states
    (``cfg.text_encoder == "minilm"``; ``states`` shares them between generators) or through its own encoder and a
    word tokenizer of the training captions (``"scratch"``), extended with the code tokens of ``codes``; voken
    embeddings from ``codebooks`` when given and ``cfg.init_vokens``."""
    if cfg.text_encoder == "minilm":
        states = states if states is not None else caption_states(task, cfg)
        tokenizer = word_tokenizer([])  # the decoder's specials only: captions come in as states
        encoder_layers = cfg.encoder_layers
    else:
        states = None
        tokenizer = word_tokenizer(task.train_pairs["text"].astype(str).tolist(), cfg.min_word_count)
        encoder_layers = cfg.layers
    torch.manual_seed(seed)
    model = t5_from_scratch(len(tokenizer), cfg.d_model, cfg.layers, cfg.heads, cfg.d_ff, cfg.dropout,
                            tokenizer.pad_token_id, tokenizer.eos_token_id, encoder_layers)
    gen = TokenToVoken(model, tokenizer, codes, level_sizes, shared=shared, temperature=cfg.temperature,
                       ltr_weight=cfg.ltr_weight, negatives=cfg.negatives, mine_beams=cfg.mine_beams,
                       beam_width=cfg.beam_width, max_source_length=cfg.max_source_length,
                       same_image=same_image_groups(task), text_states=states,
                       negative_pool=negative_pool(task, cfg.negatives_from),
                       ltr_levels=(semantic_levels or len(level_sizes)) if cfg.ltr_over == "prefixes" else None)
    if codebooks is not None and cfg.init_vokens:
        gen.init_voken_embeddings(codebooks, semantic_levels or len(level_sizes))
    return gen


def train_generator(gen: TokenToVoken, task: QueryRetrievalTask, cfg: AVGConfig, stage: str, seed: int = 0,
                    progress: bool = False):
    """One training stage of the generator with the one Trainer (model selection on valid Recall@10). With
    ``cfg.keep_start`` the discriminative stage's starting point is validated too and restored (``best_epoch`` 0)
    when no discriminative epoch beats it."""
    from genir.training import Trainer

    gen.stage = stage
    if stage == "generative":
        config = _trainer_config(cfg.epochs, cfg.batch_size, cfg.lr, seed, progress, cfg.eval_every, cfg.patience,
                                 max_grad_norm=1.0)
    elif stage == "discriminative":
        config = _trainer_config(cfg.disc_epochs, cfg.batch_size, cfg.disc_lr, seed, progress, 1, cfg.disc_epochs,
                                 max_grad_norm=1.0)
    else:
        raise ConfigError(f"generator stage: expected generative or discriminative, got {stage!r}")
    trainer = Trainer(gen, task, evaluator(task), config=config)
    start = None
    if stage == "discriminative" and cfg.keep_start:
        start = copy.deepcopy(gen.state_dict()), trainer.evaluate(trainer.valid_evaluator)
    result = trainer.fit()
    if start is not None and start[1][config.metric] >= result.best_valid.get(config.metric, -1.0):
        gen.load_state_dict(start[0])
        result.best_epoch, result.best_valid = 0, start[1]
    gen.stage = "generative"
    return result


def timed_evaluation(model, task: QueryRetrievalTask, stage: str = "test", ks=(1, 5, 10), k: int = 10) -> dict:
    """Recall@k (= hits@k: one image group per caption), MRR@10 and the answering time per query (batches of 256,
    query encoding included) of ``model.retrieve``."""
    ev = evaluator(task, stage, ks)
    clock = {"s": 0.0, "n": 0, "invalid": 0}

    def answer(batch):
        t0 = time.perf_counter()
        lists = model.retrieve(batch, k=k)
        clock["s"] += time.perf_counter() - t0
        clock["n"] += len(batch.qids)
        clock["invalid"] += int((lists.items < 0).sum())
        return lists

    if hasattr(model, "eval"):
        model.eval()
    metrics = ev.evaluate(answer)
    out = {m.replace("hits", "recall"): v for m, v in metrics.items()}
    out["ms_per_query"] = 1000 * clock["s"] / max(1, clock["n"])
    out["queries"] = clock["n"]
    out["empty_slots"] = clock["invalid"]
    return out


# -- genir index build --images / genir retrieve --------------------------------------------------------------------
def read_image_task(images: str | Path, captions: str | Path | None = None, **kw) -> QueryRetrievalTask:
    """An ``.npz`` archive + a clip-art captions ``.jsonl(.gz)`` (:func:`read_openclipart`), or a folder of images
    + a Karpathy-split JSON (:func:`read_karpathy`)."""
    from genir.data.image_captions import find_openclipart, read_karpathy, read_openclipart

    images = Path(images)
    if images.suffix == ".npz":
        if captions is None:
            sibling = images.with_name(images.name.replace("-64px.npz", "-captions.jsonl.gz"))
            captions = sibling if sibling.is_file() else find_openclipart()[0]
        return read_openclipart(captions, images, **kw)
    if images.is_dir():
        if captions is None or Path(captions).suffix != ".json":
            raise DatasetError(f"{images}: a folder of images needs --captions KARPATHY.json (the Karpathy-split "
                               "JSON of Flickr30k / MS-COCO)")
        return read_karpathy(captions, images, **kw)
    raise DatasetError(f"{images}: expected an .npz image archive (with its captions .jsonl.gz) or a folder of "
                       "images (with a Karpathy-split JSON)")


def build_image_index(images: str | Path, spec: str | Path, out: str | Path, *, captions: str | Path | None = None,
                      settings: dict | None = None, overrides: dict | None = None, encoder: str = "efficientnet-lite",
                      seed: int = 0, overwrite: bool = False, progress: bool = True, limit: int | None = None
                      ) -> dict:
    """Index the images of ``images`` (see :func:`read_image_task`) with the voken spec ``spec`` and train AVG on
    their training captions; the generator is written to ``out/avg/`` in the same rename as the index."""
    from genir.ids import SemanticIdTable
    from genir.index import build_index

    cfg = AVGConfig.from_dict(dict(settings or {}), source="--train", coerce=True)
    task = read_image_task(images, captions, limit=limit)
    data = prepare(task, encoder, progress=progress)
    tower, tower_fit = train_two_tower(data, cfg, seed, progress)
    x, paired = aligned_features(tower, task)
    overrides = {"latent_dim": cfg.d_model, "seed": seed, "progress": progress, **(overrides or {})}
    summary: dict = {"images": data.num_items, "captions": task.describe()["queries"], "encoder": encoder,
                     "read_report": getattr(task, "read_report", {}),
                     "two_tower_valid": tower_fit.best_valid}

    def train_and_save(tmp: Path) -> None:
        from genir.ids import IdScheme

        table = SemanticIdTable.load(tmp)
        scheme = IdScheme.load(tmp / "scheme")
        shared = bool(getattr(scheme.config, "shared_codebook", False))
        books = scheme.codebooks if hasattr(scheme, "codebooks") else None
        gen = make_generator(task, table.codes, table.level_sizes, shared, cfg, seed, books, table.semantic_levels)
        t0 = time.perf_counter()
        fits = [train_generator(gen, task, cfg, "generative", seed, progress)]
        if cfg.disc_epochs:
            fits.append(train_generator(gen, task, cfg, "discriminative", seed, progress))
        summary["training"] = {"seconds": round(time.perf_counter() - t0, 1),
                               "losses": [round(h["loss"], 4) for f in fits for h in f.history],
                               "valid": fits[-1].best_valid}
        save_generator(gen, cfg, tmp / MODEL_DIR, {"images": str(images), "captions": str(task.catalogue.source),
                                                   "encoder": encoder, "seed": seed, **summary})

    path = build_index(task.catalogue, spec, out, overrides, progress=progress, features=x, paired=paired,
                       overwrite=overwrite, extra=train_and_save)
    return {"index": str(path), **summary}


def save_generator(gen: TokenToVoken, cfg: AVGConfig, folder: Path, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    gen.save_pretrained(folder / "generator")
    info = {**meta, "config": cfg.to_dict()}
    atomic_write(folder / "avg.json", lambda fh: fh.write((json.dumps(info, indent=1, default=str) + "\n").encode()))


class ImageIndex:
    """An index dir of images with its AVG generator (``DIR/avg/``), answering text queries."""

    def __init__(self, index_dir: str | Path):
        from genir.index import load_index

        self.path = Path(index_dir)
        index = load_index(self.path)
        self.items = index.items
        self.manifest = index.manifest
        folder = self.path / MODEL_DIR
        if not (folder / "avg.json").is_file():
            raise CheckpointError(f"{folder / 'avg.json'}: not found; {index_dir} holds no AVG generator (build it "
                                  "with `genir index build --images ...`)")
        self.info = json.loads((folder / "avg.json").read_text())
        self.model = TokenToVoken.from_pretrained(folder / "generator").eval()
        if self.model.num_items != index.num_items or not np.array_equal(self.model.item_codes.numpy(),
                                                                          index.table.codes):
            raise CheckpointError(f"{folder}: the generator's vokens do not match {self.path / 'ids.npy'}; rebuild")

    @staticmethod
    def is_image_index(index_dir: str | Path) -> bool:
        return (Path(index_dir) / MODEL_DIR / "avg.json").is_file()

    @property
    def image_root(self) -> Path:
        source = (self.manifest.get("catalogue") or {}).get("source") or ""
        return Path(source).parent if source else self.path

    def title(self, row: int) -> str:
        value = self.items["title"].iat[row] if "title" in self.items.columns else ""
        value = " ".join(str(value or "").split())
        return value if len(value) <= 80 else value[:77] + "..."

    @torch.no_grad()
    def search(self, queries: list[str], k: int = 10) -> list[list[tuple[int, str, str, float]]]:
        """Per query, up to ``k`` (row, image id, title, score) best first; the score is the voken sequence's
        log-probability."""
        answer = self.model.retrieve(list(queries), k=k)
        ids = self.items["item"].astype(str).tolist()
        return [[(i, ids[i], self.title(i), float(s)) for i, s in zip(row_items, row_scores) if i >= 0]
                for row_items, row_scores in zip(answer.items.tolist(), answer.scores.tolist())]

    def image(self, row: int):
        from genir.features.image import open_image

        return open_image(self.items["image"].iat[row], self.image_root, str(self.path))
