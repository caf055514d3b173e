"""The index dir: a named, copyable directory holding a catalogue's semantic IDs (ColBERT / FAISS style).

``genir index build`` writes it and ``genir retrieve`` reads it::

    out/
      manifest.json   format, genir version, catalogue + dataset fingerprints, split, scheme, resolved spec, sizes,
                      files: {relative path: sha256} of every other file
      ids.npy         int32 (N, L) codes, row i = item i
      table.json      the SemanticIdTable's metadata and stats
      items.jsonl     one line per item: index, external id and every catalogue column (title, text, image...)
      scheme/         the fitted scheme (scheme.json + state.safetensors), to encode new items without refitting
      prefix/         the prefix index arrays (genir.decoding.PrefixIndex)

A dir is written into a temporary sibling (``.<name>.tmp-<pid>``) and renamed into place, so a crash never
leaves half an index; replacing an existing index is two renames (old -> backup, new -> final). :func:`load_index`
checks the manifest, the format version and every file's sha256 before loading anything.
:func:`add_items` gives new items IDs with the fitted scheme (no refit; existing IDs never change) and rewrites
the dir the same way, carrying over every entry the index does not manage (``model/``, written by
``genir train --index DIR``, above all); the manifest's sha256s cover only the index's own files.

Writers of one dir (build, add) hold an exclusive advisory lock (:func:`index_lock`, ``fcntl.flock`` on
``.<name>.lock`` beside the dir, so it exists before the dir does and survives the renames) for the whole
read-modify-write: a second writer is refused at once with :class:`IndexLockedError`, never interleaved.

The interactions an index is built from (popularity ranks, CF features, the Graph RQ-VAE graph) are the training
part of one split protocol (``build_index(split="loo" | "temporal")``), recorded in the manifest's ``split``
(:func:`split_record`), so an index meant for a global temporal split never sees an interaction after its cut-off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from genir.atomic import copy_tree, exchange, file_sha256
from genir.errors import (
    ConfigError,
    DatasetError,
    FeatureError,
    GenirError,
    IndexFormatError,
    SemanticIdError,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows): writers are not locked there
    fcntl = None

FORMAT_NAME = "genir.index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IDS_FILE = "ids.npy"
ITEMS_FILE = "items.jsonl"
TABLE_FILE = "table.json"
SCHEME_DIR = "scheme"
PREFIX_DIR = "prefix"
ITEM_FIELDS = ("title", "year", "genres")  # columns a new item may have when the manifest lists none (old dirs)
REQUIRED_FILES = (IDS_FILE, ITEMS_FILE, TABLE_FILE, f"{SCHEME_DIR}/scheme.json", f"{PREFIX_DIR}/meta.json")
SPLITS = ("loo", "temporal", "random")  # protocols of genir.data.make_split that build_index accepts


class IndexLockedError(GenirError):
    """Another writer holds the index dir's lock (:func:`index_lock`); raised at once, never waited on. Names the
    dir and the holder's pid. A user error (the CLI exits 2), not a malformed dir, hence not an IndexFormatError."""


@dataclass
class GenirIndex:
    """A verified, loaded index dir."""

    path: Path
    manifest: dict
    table: object  # genir.ids.SemanticIdTable
    prefix: object  # genir.decoding.PrefixIndex
    items: pd.DataFrame  # columns index, item, title, year, genres (those present)

    @property
    def num_items(self) -> int:
        return self.table.num_items

    def scheme(self):
        """The fitted :class:`genir.ids.IdScheme` saved in ``scheme/`` (loaded on demand)."""
        from genir.ids import IdScheme

        try:
            return IdScheme.load(self.path / SCHEME_DIR)
        except SemanticIdError as exc:
            raise IndexFormatError(str(exc)) from None


# -- build ---------------------------------------------------------------------------------------------------------
def build_index(dataset_name_or_path, spec_path: str | Path, out_dir: str | Path,
                overrides: Mapping[str, object] | None = None, progress: bool = True, *,
                features=None, items: str | Path | None = None, overwrite: bool = False,
                split: str = "loo", extra: Callable[[Path], None] | None = None, paired=None) -> Path:
    """Fit the spec's scheme on a catalogue's item features and write the index dir ``out_dir``.

    ``dataset_name_or_path``: ``ml-100k``, a path (see :func:`genir.data.load_dataset`), a ``Dataset``, or a
    :class:`~genir.data.catalogue.Catalogue` (documents, images: no interactions; then nothing that needs
    interactions can be used: CF features, popularity collisions, graph schemes). ``overrides``: spec overrides
    (``codebook_size=32``, ``collision=popularity``). ``features``: an (N, d) array or a ``.npy`` / ``.parquet``
    file used instead of the spec's named features (then new items need a matrix too). ``split``: the protocol
    (``loo``, ``temporal`` or ``random``, see :func:`genir.data.make_split`) whose training part is every interaction the
    index reads: popularity (for ``collision: popularity``), CF features and the graph of a graph scheme. Use the
    protocol the models trained on this index are evaluated with, or the index leaks held-out interactions into
    their IDs; the manifest records it (``split``, :func:`split_record`). What the scheme's ``fit`` needs beyond
    the features it declares (:attr:`genir.ids.IdScheme.fit_context`: ``split``, ``paired`` features named by
    the spec's ``paired:``, ``progress``). Every side column of the catalogue is kept in ``items.jsonl``.
    Holds the dir's lock (:func:`index_lock`) from the target check to the rename. ``extra(tmp)``: writes what
    belongs with the index but is not the index (a model trained on its IDs) into the new dir before it is
    renamed into place, so both appear together or not at all (see :func:`_write_dir`). ``paired``: an (N, d')
    array used instead of the spec's ``paired:`` features (AVG's caption embeddings, NaN rows for images whose
    captions are held out).
    """
    from genir.data import Dataset, load_dataset, make_split
    from genir.data.catalogue import Catalogue
    from genir.features import FEATURES, item_features, load_feature_matrix
    from genir.ids import SemanticIdTable, build_scheme, load_spec

    out_dir = Path(out_dir)
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    spec = load_spec(spec_path, overrides)
    with index_lock(out_dir):
        _check_target(out_dir, overwrite)
        source = dataset_name_or_path
        if isinstance(source, Catalogue):
            dataset, catalogue = None, source
        else:
            dataset = source if isinstance(source, Dataset) else load_dataset(source, items=items)
            catalogue = dataset.catalogue
        where = catalogue.source or catalogue.name
        # the training interactions of every use below (none for a bare catalogue)
        data_split = make_split(dataset, split) if dataset is not None else None
        used_for = []
        scheme = build_scheme(spec)
        context = set(scheme.fit_context)

        def named_features(spec_names: str) -> np.ndarray:
            parts = []
            for name in spec_names.split(","):
                if FEATURES[name].needs_split:  # trained on the split's training interactions (cf)
                    if data_split is None:
                        raise DatasetError(f"{where}: {name} features are learned from interactions; a catalogue "
                                           "without interactions cannot have them")
                    used_for.append(f"{name}_features")
                    parts.append(item_features(name, data_split))
                else:
                    kw = {"progress": progress} if name == "text" else {}
                    parts.append(item_features(name, dataset if dataset is not None else catalogue, **kw))
            return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1)

        if features is None:
            feature_source = spec.features
            x = named_features(spec.features)
        elif isinstance(features, (str, Path)):
            feature_source = str(features)
            x = load_feature_matrix(features, len(catalogue), item_ids=list(catalogue.ids))
        else:
            feature_source = "array"
            x = np.asarray(features, dtype=np.float32)
            if x.ndim != 2 or len(x) != len(catalogue):
                raise FeatureError(f"features: expected ({len(catalogue)}, d), got shape {x.shape}")
        popularity = None
        if spec.collision == "popularity":
            if data_split is None:
                raise DatasetError(f"{where}: collision: popularity needs interactions; a catalogue has none "
                                   "(use collision: index)")
            used_for.append("popularity")
            popularity = np.bincount(data_split.train["item"].to_numpy(), minlength=len(catalogue))
        fit_kw = {}
        if "progress" in context:
            fit_kw["progress"] = progress
        if "split" in context:
            if data_split is None:
                raise DatasetError(f"{where}: scheme {spec.scheme} is fitted on interactions (a graph); a catalogue "
                                   "without interactions cannot use it")
            used_for.append("graph")
            fit_kw["split"] = data_split
        if "paired" in context and paired is not None:
            fit_kw["paired"] = np.asarray(paired, dtype=np.float32)
        elif "paired" in context:
            if not spec.paired:
                raise ConfigError(f"{spec.source}: scheme {spec.scheme} with these params aligns codes with paired "
                                  "features; name them with `paired:` (e.g. paired: text)")
            fit_kw["paired"] = named_features(spec.paired)
        scheme.fit(x, **fit_kw)
        table = SemanticIdTable.build(scheme, x, spec.collision, popularity)
        records = _catalogue_records(catalogue)
        manifest = {
            "format": FORMAT_NAME,
            "catalogue": {"name": catalogue.name, "fingerprint": catalogue.fingerprint(), "n_items": len(catalogue),
                          "source": str(catalogue.source)},
            "dataset": None if dataset is None else {
                "name": dataset.name, "fingerprint": dataset.fingerprint(), "source": str(dataset.source)},
            "scheme": spec.scheme,
            "spec": {**spec.to_dict(), "source": spec.source},
            "features": {"name": spec.features if features is None else "matrix", "source": feature_source,
                         "dim": int(x.shape[1]),
                         "paired": ("matrix" if paired is not None and "paired" in context else spec.paired) or None},
            "collision": spec.collision,
            "split": None if data_split is None else {**split_record(data_split), "used_for": used_for},
            "item_columns": [str(c) for c in catalogue.columns.columns],
            "history": [],
        }

        def write(tmp: Path) -> None:
            scheme.save(tmp / SCHEME_DIR)
            _write_tables(tmp, table, records)

        _write_dir(out_dir, write, manifest, overwrite=overwrite, extra=extra)
    return out_dir


def split_record(split) -> dict:
    """What the manifest records of the split an index was built on, computed the same way for any
    :class:`genir.data.Split` so a model can check that it trains on the index's training interactions:

    * ``protocol``: ``split.protocol`` (``leave_one_out``, ``temporal(0.1,0.1)``);
    * ``cutoff``: for a temporal split, the earliest timestamp outside the training part (every training
      interaction is strictly before it); ``None`` for leave-one-out, which has no global cut-off;
    * ``train_interactions``: the number of training rows (``split.describe()["train"]``);
    * ``train_fingerprint``: sha256 of the training rows ``(user, item, timestamp)`` with external user and item
      ids, sorted, so it depends on the rows only, not on their order or the internal ids.
    """
    dataset = split.dataset
    inter = dataset.inter
    rows = np.asarray(split.train_rows)
    cutoff = None
    if split.protocol.startswith("temporal"):
        held_out = np.ones(len(inter), dtype=bool)
        held_out[rows] = False
        if held_out.any():
            cutoff = float(inter["timestamp"].to_numpy()[held_out].min())
    train = pd.DataFrame({
        "user": np.asarray(dataset.user_ids).astype(str)[inter["user"].to_numpy()[rows]],
        "item": np.asarray(dataset.item_ids).astype(str)[inter["item"].to_numpy()[rows]],
        "timestamp": inter["timestamp"].to_numpy(dtype=np.float64)[rows],
    }).sort_values(["user", "item", "timestamp"], kind="stable")
    h = hashlib.sha256()
    for column in ("user", "item"):
        h.update("\x00".join(train[column]).encode())
        h.update(b"|")
    h.update(np.ascontiguousarray(train["timestamp"].to_numpy(dtype="<f8")).tobytes())
    return {"protocol": split.protocol, "cutoff": cutoff, "train_interactions": len(rows),
            "train_fingerprint": h.hexdigest()}


def _write_tables(tmp: Path, table, records: list[dict]) -> None:
    from genir.decoding import PrefixIndex

    table.save(tmp)
    _write_items(tmp / ITEMS_FILE, records)
    PrefixIndex.from_codes(table.codes, table.level_sizes).save(tmp / PREFIX_DIR)


# -- load / verify -------------------------------------------------------------------------------------------------
def read_manifest(directory: str | Path) -> dict:
    """The manifest of an index dir, with its format checked (no file hashes)."""
    from genir import __version__

    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise IndexFormatError(f"{directory}: not a directory; expected a genir index dir")
    if not path.is_file():
        raise IndexFormatError(f"{path}: missing; {directory} is not a genir index dir")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path}: field 'format' is not {FORMAT_NAME!r}; not a genir index manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexFormatError(f"{path}: index format {version} not supported by genir {__version__} "
                               f"(reads {FORMAT_VERSION})")
    for key, typ in (("files", dict), ("n_items", int), ("id_length", int), ("level_sizes", list)):
        if not isinstance(manifest.get(key), typ):
            raise IndexFormatError(f"{path}: field {key!r} missing or not a {typ.__name__}")
    return manifest


def verify_index(directory: str | Path) -> dict:
    """Check the manifest and every listed file's sha256 and the shape of ``ids.npy``; returns the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for rel in REQUIRED_FILES:
        if rel not in manifest["files"]:
            raise IndexFormatError(f"{directory / MANIFEST}: files: {rel} not listed")
    for rel, digest in manifest["files"].items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise IndexFormatError(f"{directory / MANIFEST}: files: {rel!r} is not a path inside the index dir")
        path = directory / rel
        if not path.is_file():
            raise IndexFormatError(f"{path}: missing (listed in {directory / MANIFEST})")
        if file_sha256(path) != digest:
            raise IndexFormatError(f"{path}: sha256 does not match {directory / MANIFEST}; the file was edited or "
                                   "corrupted (rebuild the index)")
    ids_path = directory / IDS_FILE
    try:
        ids = np.load(ids_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise IndexFormatError(f"{ids_path}: unreadable ({exc})") from None
    expected = (manifest["n_items"], manifest["id_length"])
    if ids.dtype != np.int32 or ids.shape != expected:
        raise IndexFormatError(f"{ids_path}: {ids.dtype} array of shape {ids.shape}; the manifest says int32 "
                               f"{expected}")
    return manifest


def load_index(directory: str | Path, device=None) -> GenirIndex:
    """Verify (:func:`verify_index`) then load an index dir; IndexFormatError naming the file otherwise."""
    from genir.decoding import PrefixIndex
    from genir.ids import SemanticIdTable

    directory = Path(directory)
    manifest = verify_index(directory)
    try:
        table = SemanticIdTable.load(directory)
    except SemanticIdError as exc:
        raise IndexFormatError(str(exc)) from None
    prefix = PrefixIndex.load(directory / PREFIX_DIR, device=device)
    items = _read_items(directory / ITEMS_FILE)
    n = manifest["n_items"]
    if table.level_sizes != manifest["level_sizes"] or prefix.num_items != n or len(items) != n:
        raise IndexFormatError(f"{directory}: table ({table.num_items} items, sizes {table.level_sizes}), prefix "
                               f"index ({prefix.num_items}) and {ITEMS_FILE} ({len(items)}) disagree with the "
                               f"manifest ({n} items, sizes {manifest['level_sizes']})")
    return GenirIndex(directory, manifest, table, prefix, items)


# -- add -----------------------------------------------------------------------------------------------------------
def add_items(directory: str | Path, items_file: str | Path | pd.DataFrame, features=None, progress: bool = True,
              *, extra: Callable[[Path], None] | None = None, source: str | None = None) -> dict:
    """Give the items of ``items_file`` (csv/tsv/parquet with ``item`` and side columns, or such a DataFrame)
    IDs with the fitted scheme, without refitting, and rewrite the index dir atomically. Returns a summary.

    ``features``: a ``.npy`` / ``.parquet`` file or an (M, d) array of the new items' features (rows in file
    order) with the index's feature dimension; without it, text features are computed from the file's
    title/year/genres. ``extra(tmp)`` writes an updated companion of the index (a model that now knows the new
    items) into the new dir, replacing the old one's, in the same rename. ``source``: how a DataFrame is named
    in messages and the history. Collisions with the
    existing IDs are resolved by continuing each group's last level (positions after the existing items), so
    existing IDs never change; with ``collision: none`` a colliding new item is refused. On any error the dir is
    left untouched. Every entry of the dir that the index does not manage (``model/`` above all) is carried over
    unchanged. Holds the dir's lock (:func:`index_lock`) from reading the index to the rename, so two adds never
    interleave (the second is refused with :class:`IndexLockedError`).
    """
    directory = Path(directory)
    with index_lock(directory):
        _clean_stale(directory)  # a writer killed between its two renames: put the index back before reading it
        return _add_items_locked(directory, items_file, features, progress, extra, source)


def _add_items_locked(directory: Path, items_file, features, progress: bool, extra, source) -> dict:
    from genir.ids import SemanticIdTable

    index = load_index(directory)
    manifest = index.manifest
    allowed = manifest.get("item_columns", list(ITEM_FIELDS))
    if isinstance(items_file, pd.DataFrame):
        frame = _check_items_frame(items_file, allowed, source or "new items")
        items_file = source or "new items"
    else:
        frame = _read_items_file(Path(items_file), allowed)
    existing = set(index.items["item"].astype(str))
    clash = [x for x in frame["item"] if x in existing]
    if clash:
        raise DatasetError(f"{items_file}: item id(s) {clash[:5]} already in the index {directory}")
    scheme = index.scheme()
    if scheme.name == "atomic":
        raise DatasetError(f"{directory}: atomic IDs cannot place unseen items; rebuild the index with the new items")
    x = _new_features(manifest, frame, Path(items_file), features, progress)
    new_sem = scheme.encode(x)  # (M, L_sem)
    codes, sizes = _extend_codes(index.table, new_sem, manifest["collision"], Path(items_file))
    table = SemanticIdTable(codes, sizes, semantic_levels=index.table.semantic_levels, scheme=index.table.scheme,
                            source=str(items_file))
    n = index.num_items
    records = _item_records_from_frame(index.items, start=0) + _item_records_from_frame(frame, start=n)
    new_manifest = {k: v for k, v in manifest.items() if k not in ("files", "created_at")}
    new_manifest["history"] = [*manifest.get("history", []), {
        "added": len(frame), "file": str(items_file),
        "sha256": file_sha256(Path(items_file)) if Path(items_file).is_file() else None, "at": _now(),
        "features": ("matrix" if isinstance(features, np.ndarray) else str(features)) if features is not None
        else manifest["features"]["name"]}]

    def write(tmp: Path) -> None:
        copy_tree(directory / SCHEME_DIR, tmp / SCHEME_DIR)
        _write_tables(tmp, table, records)

    new_manifest["created_at"] = manifest.get("created_at")
    _write_dir(directory, write, new_manifest, overwrite=True, keep_from=(directory, manifest), extra=extra)
    return {"index": str(directory), "added": len(frame), "n_items": table.num_items,
            "level_sizes": table.level_sizes, "new_ids": codes[n:].tolist()}


def _extend_codes(table, new_sem: np.ndarray, policy: str, source: Path) -> tuple[np.ndarray, list[int]]:
    """Existing (N, L) codes + IDs of the new items' (M, L_sem) semantic codes, unique, old rows unchanged."""
    old = table.codes
    sem = table.semantic_levels
    sizes = table.level_sizes
    if policy == "none" or table.id_length == sem:
        new = new_sem
        probe = table.items_of(new)
        if (probe >= 0).any():
            j = int(np.flatnonzero(probe >= 0)[0])
            raise DatasetError(f"{source}: new item {j} gets the ID {new[j].tolist()} of existing item "
                               f"{int(probe[j])} and the index has no collision level (collision: none)")
        _, counts = np.unique(new, axis=0, return_counts=True)
        if (counts > 1).any():
            raise DatasetError(f"{source}: {int((counts > 1).sum())} new ID(s) shared by several new items and "
                               "the index has no collision level (collision: none)")
        return np.concatenate([old, new]), sizes
    # next free position of each semantic group: 1 + the largest last-level code among existing items
    keys_old = [tuple(r) for r in old[:, :sem].tolist()]
    next_pos: dict[tuple, int] = {}
    for key, last in zip(keys_old, old[:, -1].tolist()):
        next_pos[key] = max(next_pos.get(key, 0), last + 1)
    extra = np.empty(len(new_sem), dtype=np.int64)
    for j, key in enumerate(tuple(r) for r in new_sem.tolist()):  # file order within a group (policy index)
        extra[j] = next_pos.get(key, 0)
        next_pos[key] = extra[j] + 1
    new = np.concatenate([new_sem, extra[:, None]], axis=1)
    sizes = [*sizes[:-1], max(sizes[-1], int(extra.max()) + 1 if len(extra) else 0)]
    return np.concatenate([old, new]), sizes


def _new_features(manifest: dict, frame: pd.DataFrame, items_file: Path, features, progress: bool) -> np.ndarray:
    from genir.features import load_feature_matrix

    dim = manifest["features"]["dim"]
    if isinstance(features, np.ndarray):
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != len(frame):
            raise DatasetError(f"{items_file}: {len(frame)} new items but a feature matrix of shape {x.shape}")
        if x.shape[1] != dim:
            raise DatasetError(f"{items_file}: features have {x.shape[1]} columns; the index was built on {dim}")
        return x
    if features is not None:
        x = load_feature_matrix(features, len(frame))
        if x.shape[1] != dim:
            raise DatasetError(f"{features}: has {x.shape[1]} feature columns; the index was built on {dim}")
        return x
    name, source = manifest["features"]["name"], manifest["features"]["source"]
    if source != name or name != "text":
        raise DatasetError(f"{items_file}: the index was built on {source!r} features, which cannot be computed "
                           "for new items here; pass their feature matrix (--features FILE.npy)")
    if "title" not in frame.columns and "text" not in frame.columns:
        raise DatasetError(f"{items_file}: needs a title or text column to build text features (has "
                           f"{list(frame.columns)})")
    from genir.data.catalogue import Catalogue
    from genir.features import text_embeddings
    from genir.features.text import STANDARD_FIELDS

    name = (manifest.get("catalogue") or manifest.get("dataset") or {}).get("name", "index")
    new = Catalogue.from_frame(f"{name}+add", frame, id_column="item", source=str(items_file))
    # the texts are made as at build time: a dataset's items from title/year/genres, a catalogue's with its body
    fields = STANDARD_FIELDS if manifest.get("dataset") else None
    x = text_embeddings(new, progress=progress, fields=fields)
    if x.shape[1] != dim:
        raise DatasetError(f"{items_file}: text features of dimension {x.shape[1]}; the index was built on {dim}")
    return x


def _read_items_file(path: Path, allowed: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"item": str})
        else:
            raise DatasetError(f"{path}: unsupported items file type {suffix!r} (expected .csv, .tsv or .parquet)")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable ({exc})") from None
    return _check_items_frame(df, allowed, path)


def _check_items_frame(df: pd.DataFrame, allowed: list[str], path) -> pd.DataFrame:
    """The checks and normalisation every new-items table gets (``path`` names it in messages)."""
    if "item" not in df.columns:
        raise DatasetError(f"{path}: no 'item' column (has {list(df.columns)})")
    unknown = [c for c in df.columns if c != "item" and c not in allowed]
    if unknown:
        raise DatasetError(f"{path}: unknown column(s) {unknown}; expected 'item' and any of {allowed}")
    if len(df) == 0:
        raise DatasetError(f"{path}: no items")
    df = df.copy()
    df["item"] = df["item"].astype(str)
    dup = df["item"][df["item"].duplicated()].tolist()
    if dup:
        raise DatasetError(f"{path}: duplicate item id(s) {dup[:5]}")
    if "genres" in df.columns:
        df["genres"] = [_genres(g) for g in df["genres"]]
    if "year" in df.columns:
        df["year"] = pd.to_numeric(df["year"], errors="coerce")
    return df.reset_index(drop=True)


def _genres(value) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(g) for g in value]
    if not isinstance(value, str) or not value.strip():
        return []
    return [g.strip() for g in re.split(r"[|,]" if re.search(r"[|,]", value) else r"\s+", value) if g.strip()]


# -- info ----------------------------------------------------------------------------------------------------------
def index_info(directory: str | Path) -> dict:
    """Manifest summary, the table's stats (collisions, per-level utilisation / perplexity) and sizes on disk."""
    index = load_index(directory)
    m = index.manifest
    sizes = {}
    for entry in sorted(index.path.iterdir()):
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        sizes[entry.name] = sum(p.stat().st_size for p in files)
    return {
        "path": str(index.path), "format_version": m["format_version"], "genir_version": m.get("genir_version"),
        "created_at": m.get("created_at"), "catalogue": m.get("catalogue"), "dataset": m.get("dataset"),
        "item_columns": m.get("item_columns"), "scheme": m.get("scheme"),
        "features": m.get("features"), "collision": m.get("collision"), "n_items": m["n_items"],
        "id_length": m["id_length"], "level_sizes": m["level_sizes"], "added": len(m.get("history", [])),
        "split": m.get("split"),  # None: built before genir recorded it (then it was leave-one-out)
        "stats": index.table.stats(), "disk_bytes": sizes, "total_bytes": sum(sizes.values()),
        "shared_codebook": _shared_codebook_stats(index),
    }


def _shared_codebook_stats(index: GenirIndex) -> dict | None:
    """For a scheme with one codebook for every semantic level (AVG's vokens): how many of its codes the IDs use
    at any level, and the perplexity of the codes over all semantic positions; None otherwise."""
    params = (index.manifest.get("spec") or {}).get("params") or {}
    if not params.get("shared_codebook"):
        return None
    table = index.table
    codes = np.asarray(table.codes)[:, : table.semantic_levels].ravel()
    size = max(table.level_sizes[: table.semantic_levels])
    counts = np.bincount(codes, minlength=size)
    p = counts[counts > 0] / counts.sum()
    return {"size": int(size), "used": int((counts > 0).sum()), "utilisation": float((counts > 0).mean()),
            "perplexity": float(np.exp(-(p * np.log(p)).sum())), "levels": int(table.semantic_levels)}


# -- files ---------------------------------------------------------------------------------------------------------
def _lock_path(directory: Path) -> Path:
    directory = Path(os.path.abspath(directory))  # "idx", "./idx" and "/abs/idx" share one lock; "." has a name
    return directory.with_name(f".{directory.name}.lock")


@contextlib.contextmanager
def index_lock(directory: str | Path) -> Iterator[Path]:
    """Hold the exclusive write lock of the index dir ``directory`` (which need not exist yet) for the block.

    An OS advisory lock (``fcntl.flock``) on ``.<name>.lock`` beside the dir, created with the parent folder if
    needed, with the holder's pid written in it. Non-blocking: if another open file holds it (another process,
    or another ``index_lock`` of this one: it is not re-entrant), :class:`IndexLockedError` names the dir and the
    holder's pid at once. The kernel drops the lock when its holder dies, so a killed writer never leaves the dir
    locked. The lock file is removed on release, while still held; a writer that opened it just before checks,
    once it holds a lock, that its file is still the one at the path, and otherwise takes the new one. Anything
    else that writes into the dir (``genir train --index DIR`` writing ``DIR/model``) should hold it too.
    """
    directory = Path(directory)
    if fcntl is None:  # pragma: no cover
        yield directory
        return
    lock = _lock_path(directory)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexLockedError(f"{directory}: locked by another writer ({_lock_holder(lock)}, lock file {lock}); "
                                   "wait for it to finish, then retry") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            held, current = os.fstat(fd), os.stat(lock)
            same = (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)
        except FileNotFoundError:  # its holder removed it after we opened it
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield directory
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)  # releases the lock


def _lock_holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


def _check_target(out_dir: Path, overwrite: bool) -> None:
    _clean_stale(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        return
    if not (out_dir / MANIFEST).is_file():
        raise IndexFormatError(f"{out_dir}: exists and is not a genir index dir; refusing to overwrite it")
    if not overwrite:
        raise IndexFormatError(f"{out_dir}: already holds an index; pass overwrite=True (--overwrite) to replace it")


def _write_dir(out_dir: Path, write: Callable[[Path], None], manifest: dict, overwrite: bool,
               keep_from: tuple[Path, dict] | None = None, extra: Callable[[Path], None] | None = None) -> None:
    """``write(tmp)`` the files into a temporary sibling, add ``manifest.json`` with their hashes, rename into
    place. Nothing is left at ``out_dir`` or in the temporary dir on failure. ``keep_from``: (old dir, its
    manifest) whose entries the index does not manage (neither written by ``write`` nor listed in the old
    manifest: ``model/``, notes) are carried into the new dir, outside the new manifest's ``files``. ``extra(tmp)``
    writes such an entry itself (after the hashes, so it stays unmanaged and later rewrites carry it), replacing
    the old dir's entry of that name. The caller holds the dir's lock."""
    from genir import __version__
    from genir.ids import SemanticIdTable

    _check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        table = SemanticIdTable.load(tmp)
        files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        if extra is not None:
            extra(tmp)
        if keep_from is not None:
            _carry_over(*keep_from, tmp)
        full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "genir_version": __version__,
                **manifest, "created_at": manifest.get("created_at") or _now(), "updated_at": _now(),
                "n_items": table.num_items, "id_length": table.id_length, "level_sizes": table.level_sizes,
                "semantic_levels": table.semantic_levels, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=1, default=_json_default) + "\n")
        _place(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.filename is None:  # a failed write (a full disk) names no file: name the index being written
            raise OSError(exc.errno, f"{exc.strerror} (writing the index; the old one is unchanged)",
                          str(out_dir)) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _carry_over(old_dir: Path, old_manifest: dict, tmp: Path) -> None:
    """Hard-link (or copy, where links are not possible) every entry of ``old_dir`` that the index does not manage
    into ``tmp``: not the manifest, not a top-level name of the old manifest's files, not one ``tmp`` already
    has. Links keep big files (a trained model) cheap to carry and leave the old dir untouched."""
    managed = {MANIFEST} | {rel.split("/", 1)[0] for rel in old_manifest.get("files", {})}
    for entry in sorted(old_dir.iterdir()):
        target = tmp / entry.name
        if entry.name in managed or target.exists() or target.is_symlink():
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            copy_tree(entry, target, _link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links, or the link limit
        shutil.copy2(src, dst)


def _clean_stale(out_dir: Path) -> None:
    """Remove temporary siblings left by a writer that was killed; if one was killed between its two renames
    (``out_dir`` missing, a backup present), put the previous index back first. Called with the dir's lock held,
    so no other writer of ``out_dir`` is running and every sibling of another pid is stale."""
    if not out_dir.parent.is_dir():
        return
    for kind in ("old", "tmp"):
        for path in sorted(out_dir.parent.glob(f".{out_dir.name}.{kind}-*")):
            pid = path.name.rsplit("-", 1)[-1]
            # with the lock held a live pid is a reused one, not a writer (where there is no lock: spare it)
            if not pid.isdigit() or int(pid) == os.getpid() or (fcntl is None and _alive(int(pid))):
                continue
            if kind == "old" and not out_dir.exists() and (path / MANIFEST).is_file():
                os.replace(path, out_dir)
            else:
                shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _place(tmp: Path, out_dir: Path) -> None:
    """Put the finished dir ``tmp`` at ``out_dir``: a rename when there is none yet, else one atomic exchange (the
    old index then sits at ``tmp`` until it is removed; a writer killed before that leaves it to ``_clean_stale``),
    or, where the system cannot exchange, two renames with a backup that ``_clean_stale`` puts back."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    if exchange(tmp, out_dir):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    backup = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    shutil.rmtree(backup, ignore_errors=True)
    os.replace(out_dir, backup)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(backup, out_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _catalogue_records(catalogue) -> list[dict]:
    frame = catalogue.columns.reset_index(drop=True).copy()
    frame.insert(0, "item", [str(x) for x in catalogue.ids])
    return _item_records_from_frame(frame, start=0)


def _item_records_from_frame(frame: pd.DataFrame, start: int) -> list[dict]:
    """One record per row: ``index``, ``item`` (external id) and every side column of ``frame``."""
    out = []
    cols = [c for c in frame.columns if c not in ("item", "index")]
    for j, row in enumerate(frame[["item", *cols]].itertuples(index=False)):
        rec = {"index": start + j, "item": str(row[0])}
        for c, v in zip(cols, row[1:]):
            rec[c] = _clean(c, v)
        out.append(rec)
    return out


def _clean(column: str, value):
    if column == "genres":
        return _genres(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if column == "year":
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return value.item() if isinstance(value, np.generic) else value


def _write_items(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(rec, ensure_ascii=False, default=_json_default) + "\n" for rec in records)


def _read_items(path: Path) -> pd.DataFrame:
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path}: unreadable ({exc})") from None
    frame = pd.DataFrame.from_records(records)
    if "index" not in frame.columns or not np.array_equal(frame["index"].to_numpy(), np.arange(len(frame))):
        raise IndexFormatError(f"{path}: lines must carry 'index' 0, 1, 2, ... in order")
    frame["item"] = frame["item"].astype(str)
    return frame


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


# -- models on an index ----------------------------------------------------------------------------------------
def open_index_for(directory: str | Path, split, who: str) -> GenirIndex:
    """Load the index dir a generator trains or scores on, checked against the split it is used with.

    The index's first ``num_items`` items must be the dataset's catalogue, in order (same external ids, same
    catalogue fingerprint when the manifest has one); items after them were added with ``genir index add`` and
    are retrievable but not evaluated. When the index's IDs read interactions (popularity, CF features, a
    graph; the manifest's ``split.used_for``), the model's training interactions must be the same ones (:func:`split_record`), so a model never trains on interactions its
    index left out, nor is evaluated on interactions its IDs saw. ``who`` names the method in the messages.
    """
    if not directory:
        raise ConfigError(f"method {who}: `index` is required (an index dir from `genir index build`), "
                          "e.g. index=runs/idx or `genir train --index DIR`")
    index = load_index(directory)
    dataset = split.dataset
    n = dataset.num_items
    ids = [str(x) for x in dataset.item_ids]
    found = index.items["item"].astype(str).tolist()
    if index.num_items < n or found[:n] != ids:
        first = next((i for i, (a, b) in enumerate(zip(found, ids)) if a != b), min(len(found), n))
        raise ConfigError(
            f"{Path(directory) / ITEMS_FILE}: the index's items ({index.num_items}) do not start with the catalogue "
            f"of dataset {dataset.name!r} ({n} items; first difference at position {first}): build the index from "
            "the same catalogue (`genir index build --dataset ...`)")
    recorded = (index.manifest.get("catalogue") or {}).get("fingerprint")
    if recorded and recorded != dataset.catalogue.fingerprint():
        raise ConfigError(f"{Path(directory) / MANIFEST}: catalogue.fingerprint {recorded} is not that of dataset "
                          f"{dataset.name!r} ({dataset.catalogue.fingerprint()}): same ids, other side columns; "
                          "rebuild the index")
    seen = index.manifest.get("split")  # checked when the IDs read interactions (popularity, CF, a graph)
    if seen and seen.get("used_for") and seen.get("train_fingerprint") != split_record(split)["train_fingerprint"]:
        raise ConfigError(f"{Path(directory) / MANIFEST}: the index's IDs saw the training interactions of split "
                          f"{seen.get('protocol')!r} ({seen.get('train_interactions')} rows); method {who} trains on "
                          f"{split.protocol!r} ({len(split.train_rows)} rows): train with the index's split "
                          f"(--split), or rebuild the index with this one (genir index build --split)")
    return index
