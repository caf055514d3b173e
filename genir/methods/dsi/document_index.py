"""A document index on disk: the identifier index of a BEIR corpus (hierarchical k-means docids, the project's
index format) with the DSI model trained on it in ``DIR/dsi/``, extended corpus step by corpus step with
PromptDSI's update. What ``genir index build --corpus``, ``genir index add --corpus`` and ``genir retrieve --query``
run.

* :func:`build_document_index` - read a BEIR folder (one step of it with ``step``), embed its documents with the
  pretrained encoder, fit the docid scheme on those embeddings (:func:`genir.index.build_index`), and train a DSI on
  the documents, their pseudo-queries and the folder's training queries: ``atomic`` (a classifier row per document)
  or ``semantic`` (the hk-means docids decoded by the constrained beam search). Index and model are renamed into
  place together.
* :func:`add_document_corpus` - a new corpus step: the new documents get docids from the fitted scheme (no refit)
  and the atomic model gets PromptDSI's update (a topic-keyed prompt pool on the frozen encoder is attached at the
  first step; the prompts and the new documents' rows train on the new documents' pairs only; nothing old is
  replayed). Documents already in the index are refused before anything is touched; the index and model are
  replaced in one rename.
* :class:`DocumentIndex` - load both and answer text queries with document ids, their display text and scores.

A semantic-docid model is not extended (its decoder would have to learn the new codes): ``add`` refuses it, and the
README's table says why the atomic model is the default on a CPU.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genir.atomic import atomic_write
from genir.errors import CheckpointError, ConfigError, DatasetError
from genir.tensor_files import load_tensors, save_tensors

MODEL_DIR = "dsi"
WEIGHTS = "model.safetensors"
LEGACY_WEIGHTS = "model.pt"  # the unchecked torch.save file of earlier versions, still read
KINDS = ("atomic", "semantic")
DISPLAY_COLUMNS = ("synopsis", "title")  # what `retrieve` shows beside a document id, first non-empty wins


@dataclass
class Documents:
    """Documents of a BEIR folder (or one step of it), numbered 0..n-1 in folder order.

    ``frame``: ``item`` (document id) and the corpus' columns; ``texts``: the text each document is indexed by;
    ``pairs``: (text, item, kind) training pairs: ``indexing``, ``pseudo`` and the folder's ``query`` pairs."""

    name: str
    source: str
    frame: pd.DataFrame
    texts: list[str]
    pairs: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)


def read_documents(folder: str | Path, *, step: int | None = None, pseudo: int = 2, seed: int = 0) -> Documents:
    """The documents of the BEIR ``folder`` (only corpus step ``step`` of its ``steps.tsv`` when given), with
    ``pseudo`` pseudo-queries each."""
    from genir.data.beir import read_beir
    from genir.data.pseudo_queries import with_pseudo_queries

    task = read_beir(folder)
    steps = task.steps or [np.arange(len(task.catalogue))]  # no steps.tsv: every document is step 0
    if step is None:
        items = np.arange(len(task.catalogue))
    elif 0 <= step < len(steps):
        items = steps[step]
    else:
        raise DatasetError(f"{Path(folder) / 'steps.tsv'}: no corpus step {step} (steps 0..{len(steps) - 1}"
                           f"{'' if task.steps else ': the folder has no steps.tsv'})")
    if pseudo > 0:
        task = with_pseudo_queries(task, pseudo, seed=seed)
    local = np.full(len(task.catalogue), -1, dtype=np.int64)
    local[items] = np.arange(len(items))
    cat = task.catalogue
    frame = cat.columns.iloc[items].reset_index(drop=True)
    frame.insert(0, "item", [str(x) for x in cat.ids[items]])
    pairs = task.train_pairs[local[task.train_pairs["item"].to_numpy()] >= 0]
    pairs = pairs.assign(item=local[pairs["item"].to_numpy()]).reset_index(drop=True)
    texts = cat.texts(("title", "text"))
    name = task.name if step is None else f"{task.name}-D{step}"
    return Documents(name, str(folder), frame, [texts[i] for i in items], pairs)


# -- the model on disk ---------------------------------------------------------------------------------------------
_LAYER = re.compile(r"encoder\.model\.encoder\.layer\.(\d+)\.")


def _stored(name: str, split: int) -> bool:
    """Whether a state-dict entry is stored: everything but the encoder's frozen pretrained part (embeddings,
    layers below ``split``, pooler), which is loaded from the encoder's own folder."""
    if "encoder.model." not in name:
        return True
    m = _LAYER.search(name)
    return bool(m) and int(m.group(1)) >= split


def save_model(model, cfg, folder: Path, meta: dict) -> None:
    """Write ``model.safetensors`` (the trained part of the state, self-checking: :mod:`genir.tensor_files`) and
    ``dsi.json`` (what rebuilds it) into ``folder``."""
    from genir.methods.dsi.prompts import PromptedDSI
    from genir.methods.dsi.semantic import SemanticDSI

    folder.mkdir(parents=True, exist_ok=True)
    dsi = model.dsi if isinstance(model, PromptedDSI) else model
    split = dsi.encoder.split
    state = {k: v for k, v in model.state_dict().items() if _stored(k, split)}
    info = {**meta, "config": cfg.to_dict()}
    if isinstance(model, SemanticDSI):
        info.update(kind="semantic", n_items=int(model.num_items), level_sizes=list(model.layout.level_sizes))
    else:
        info.update(kind="atomic", n_items=int(dsi.num_items),
                    blocks=[b.astype(int).tolist() for b in dsi.block_items])
        if isinstance(model, PromptedDSI):
            pool = model.pool
            info["pool"] = {"size": int(pool.keys.shape[0]), "layers": int(pool.prompts.shape[1]),
                            "length": int(pool.prompts.shape[2]), "top_k": int(pool.top_k)}
    save_tensors(folder / WEIGHTS, state)
    atomic_write(folder / "dsi.json", lambda fh: fh.write((json.dumps(info, indent=1) + "\n").encode()))


def read_model_info(index_dir: str | Path) -> dict:
    path = Path(index_dir) / MODEL_DIR / "dsi.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; {index_dir} holds no DSI model (build it with "
                              "`genir index build --corpus PATH`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: malformed JSON ({e.msg}, line {e.lineno})") from None


def load_model(index_dir: str | Path, codes: np.ndarray | None = None):
    """The DSI model of an index dir (and its config): atomic, prompted (after an ``add``) or semantic
    (``codes``: the index's (N, L) docids, needed for a semantic model)."""
    from genir.methods.dsi.atomic import AtomicDSI
    from genir.methods.dsi.procedures import DSIConfig, make_encoder
    from genir.methods.dsi.prompts import PromptedDSI, PromptPool
    from genir.methods.dsi.semantic import SemanticDSI

    info = read_model_info(index_dir)
    folder = Path(index_dir) / MODEL_DIR
    cfg = DSIConfig.from_dict(info["config"], source=str(folder / "dsi.json"))
    encoder = make_encoder(cfg)
    hidden = encoder.hidden_size
    n = int(info["n_items"])
    if info.get("kind") == "semantic":
        if codes is None or len(codes) < n:
            raise CheckpointError(f"{folder}: a semantic model of {n} documents needs their docids from the index")
        model = SemanticDSI(encoder, codes[:n], info["level_sizes"], layers=cfg.decoder_layers,
                            beam_width=cfg.beam_width, encoder_lr=cfg.encoder_lr)
    elif info.get("kind") == "atomic":
        blocks = [np.asarray(b, dtype=np.int64) for b in info["blocks"]]
        model = AtomicDSI(encoder, torch.zeros(len(blocks[0]), hidden), blocks[0], n, scale=cfg.scale,
                          encoder_lr=cfg.encoder_lr)
        for b in blocks[1:]:
            model.add_block(torch.zeros(len(b), hidden), b)
        if info.get("pool"):
            p = info["pool"]
            pool = PromptPool(torch.zeros(p["size"], hidden), p["layers"], p["length"], p["top_k"], learn_keys=False,
                              init=torch.zeros(1, hidden))
            model = PromptedDSI(model, pool, pull_weight=cfg.pull_weight, row_guard=cfg.row_guard,
                                guard_margin=cfg.guard_margin)
    else:
        raise CheckpointError(f"{folder / 'dsi.json'}: unknown model kind {info.get('kind')!r}")
    if not (folder / WEIGHTS).exists() and (folder / LEGACY_WEIGHTS).is_file():  # written before genir 2026-11-30
        try:
            state = torch.load(folder / LEGACY_WEIGHTS, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as e:
            raise CheckpointError(f"{folder / LEGACY_WEIGHTS}: unreadable ({e})") from None
    else:
        state = load_tensors(folder / WEIGHTS)
    dsi = model.dsi if isinstance(model, PromptedDSI) else model
    missing, unexpected = model.load_state_dict(state, strict=False)
    wrong = [k for k in missing if _stored(k, dsi.encoder.split)] + list(unexpected)
    if wrong:
        raise CheckpointError(f"{folder / WEIGHTS}: does not match {folder / 'dsi.json'} (e.g. {wrong[:3]})")
    return model.eval(), cfg, info


# -- build, add, retrieve ------------------------------------------------------------------------------------------
def _fit_model(model, pairs: pd.DataFrame, cfg, seed: int, progress: bool) -> dict:
    from genir.methods.dsi.procedures import fit_pairs

    info = fit_pairs(model, pairs, None, cfg, epochs=cfg.epochs, lr=cfg.lr, seed=seed, progress=progress)
    return {k: v for k, v in info.items() if k != "history"} | {
        "losses": [round(float(h["loss"]), 4) for h in info["history"]]}


def build_document_index(corpus: str | Path, spec: str | Path, out: str | Path, *, model: str = "atomic",
                         settings: dict | None = None, overrides: dict | None = None, step: int | None = None,
                         pseudo: int = 2, seed: int = 0, overwrite: bool = False, progress: bool = True) -> dict:
    """Index the documents of the BEIR folder ``corpus`` in ``out`` and train a DSI on them (see the module
    docstring). ``settings``: :class:`~genir.methods.dsi.procedures.DSIConfig` overrides (``epochs``,
    ``encoder``, ...); ``overrides``: docid-spec overrides (``k``, ``c``). Returns a summary."""
    import copy

    from genir.data.catalogue import Catalogue
    from genir.index import build_index
    from genir.methods.dsi.procedures import DSIConfig, atomic_dsi_from, make_encoder
    from genir.methods.dsi.semantic import SemanticDSI

    if model not in KINDS:
        raise ConfigError(f"model: expected one of {list(KINDS)}, got {model!r}")
    cfg = DSIConfig.from_dict(dict(settings or {}), source="--train", coerce=True)
    docs = read_documents(corpus, step=step, pseudo=pseudo, seed=seed)
    encoder = make_encoder(cfg)
    encoder.precompute(docs.pairs["text"].tolist(), progress=progress)
    embeddings = encoder.embed(docs.texts, progress=progress)  # pretrained: the docid features and the rows' start
    catalogue = Catalogue.from_frame(docs.name, docs.frame, id_column="item", source=docs.source)
    summary: dict = {"documents": len(docs), "pairs": docs.pairs["kind"].value_counts().to_dict(), "model": model}

    def train_and_save(tmp: Path) -> None:
        torch.manual_seed(seed)
        if model == "atomic":
            dsi = atomic_dsi_from(copy.deepcopy(encoder), embeddings, np.arange(len(docs)), len(docs), cfg)
        else:
            from genir.ids import SemanticIdTable

            table = SemanticIdTable.load(tmp)
            dsi = SemanticDSI(copy.deepcopy(encoder), table.codes, table.level_sizes, layers=cfg.decoder_layers,
                              beam_width=cfg.beam_width, encoder_lr=cfg.encoder_lr)
        summary["training"] = _fit_model(dsi, docs.pairs, cfg, seed, progress)
        save_model(dsi, cfg, tmp / MODEL_DIR, {"corpus": docs.source, "step": step, "pseudo": pseudo, "seed": seed,
                                               "steps": [{"corpus": docs.source, "step": step, "added": len(docs),
                                                          **summary["training"]}]})

    path = build_index(catalogue, spec, out, overrides, progress=progress, features=embeddings.numpy(),
                       overwrite=overwrite, extra=train_and_save)
    return {"index": str(path), **summary}


def add_document_corpus(index_dir: str | Path, corpus: str | Path, *, step: int | None = None,
                        pseudo: int | None = None, seed: int | None = None, progress: bool = True) -> dict:
    """PromptDSI's update of ``index_dir`` with the documents of the BEIR folder ``corpus`` (or its step
    ``step``); see the module docstring. Returns a summary."""
    from genir.data.catalogue import Catalogue
    from genir.index import add_items, load_index
    from genir.methods.dsi.procedures import DSIConfig, make_encoder, prompt_model, prompt_update
    from genir.methods.dsi.prompts import PromptedDSI

    index_dir = Path(index_dir)
    info = read_model_info(index_dir)
    if info.get("kind") != "atomic":
        raise ConfigError(f"{index_dir}: its DSI model has {info.get('kind')} docids; `index add --corpus` extends "
                          "atomic-docid models (PromptDSI's update). Rebuild with every document instead")
    pseudo = int(info.get("pseudo", 2)) if pseudo is None else pseudo
    seed = int(info.get("seed", 0)) if seed is None else seed
    index = load_index(index_dir)
    docs = read_documents(corpus, step=step, pseudo=pseudo, seed=seed)
    present = sorted(set(docs.frame["item"]) & set(index.items["item"].astype(str)))
    if present:
        raise DatasetError(f"{corpus}: {len(present)} document(s) already in the index {index_dir} (e.g. "
                           f"{present[:5]}); nothing was changed")
    allowed = set(index.manifest.get("item_columns", []))
    dropped = [c for c in docs.frame.columns if c != "item" and c not in allowed]
    frame = docs.frame.drop(columns=dropped)
    cfg = DSIConfig.from_dict(info["config"], source=str(index_dir / MODEL_DIR / "dsi.json"))
    features = make_encoder(cfg).embed(docs.texts, progress=progress).numpy()  # pretrained, as at build
    n_before = index.num_items
    summary: dict = {"documents": len(docs), "pairs": docs.pairs["kind"].value_counts().to_dict(),
                     "dropped_columns": dropped}

    def update_and_save(tmp: Path) -> None:
        model, cfg_, meta = load_model(index_dir)  # under the index lock: the model of the index being extended
        if model.num_items != n_before:
            raise CheckpointError(f"{index_dir / MODEL_DIR}: knows {model.num_items} documents, the index "
                                  f"{n_before}; rebuild it")
        if not isinstance(model, PromptedDSI):
            indexed = Catalogue.from_frame("indexed", index.items, id_column="item").texts(("title", "text"))
            model = prompt_model(model, indexed, cfg_, learn_keys=False, seed=seed)
            summary["pool"] = f"topic-keyed pool of {cfg_.n_topics} prompts attached"
        items = np.arange(n_before, n_before + len(docs))
        pairs = docs.pairs.assign(item=docs.pairs["item"].to_numpy() + n_before)
        fit = prompt_update(model, docs.texts, items, pairs, cfg_, seed, progress)
        summary["training"] = {k: v for k, v in fit.items() if k != "history"} | {
            "losses": [round(float(h["loss"]), 4) for h in fit["history"]]}
        meta = {k: v for k, v in meta.items() if k not in ("config", "kind", "n_items", "blocks", "pool")}
        meta["steps"] = [*meta.get("steps", []), {"corpus": str(corpus), "step": step, "added": len(docs),
                                                  **summary["training"]}]
        save_model(model, cfg_, tmp / MODEL_DIR, meta)

    result = add_items(index_dir, frame, features=features, progress=progress, extra=update_and_save,
                       source=str(corpus))
    return {**result, **summary}


class DocumentIndex:
    """An index dir with its DSI model, answering text queries."""

    def __init__(self, index_dir: str | Path):
        from genir.index import load_index

        self.path = Path(index_dir)
        index = load_index(self.path)
        self.items = index.items
        self.model, self.cfg, self.info = load_model(self.path, codes=index.table.codes)

    @staticmethod
    def is_document_index(index_dir: str | Path) -> bool:
        return (Path(index_dir) / MODEL_DIR / "dsi.json").is_file()

    def display(self, row: int) -> str:
        """The document's synopsis or title, else the start of its text."""
        for column in (*DISPLAY_COLUMNS, "text"):
            if column in self.items.columns:
                value = self.items[column].iat[row]
                if isinstance(value, str) and value.strip():
                    value = " ".join(value.split())
                    return value if len(value) <= 100 else value[:97] + "..."
        return ""

    @torch.no_grad()
    def search(self, queries: list[str], k: int = 10) -> list[list[tuple[str, str, float]]]:
        """Per query, up to ``k`` (document id, display text, score) best first."""
        answer = self.model.retrieve(list(queries), k=k)
        ids = self.items["item"].astype(str).tolist()
        return [[(ids[i], self.display(i), float(s)) for i, s in zip(row_items, row_scores) if i >= 0]
                for row_items, row_scores in zip(answer.items.tolist(), answer.scores.tolist())]
