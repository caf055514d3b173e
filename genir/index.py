"""The index dir: a named, copyable directory holding a catalogue's semantic IDs (ColBERT / FAISS style).

``genir index build`` writes it and ``genir retrieve`` reads it::

    out/
      manifest.json   format, genir version, dataset + fingerprint, scheme, resolved spec, sizes,
                      files: {relative path: sha256} of every other file
      ids.npy         int32 (N, L) codes, row i = item i
      table.json      the SemanticIdTable's metadata and stats
      items.jsonl     one line per item: index, external id, title, year, genres
      scheme/         the fitted scheme (scheme.json + state.safetensors), to encode new items without refitting
      prefix/         the prefix index arrays (genir.decoding.PrefixIndex)

A dir is written into a temporary sibling (``.<name>.tmp-<pid>``) and renamed into place, so a crash never
leaves half an index; replacing an existing index is two renames (old -> backup, new -> final). :func:`load_index`
checks the manifest, the format version and every file's sha256 before loading anything.
:func:`add_items` gives new items IDs with the fitted scheme (no refit; existing IDs never change) and rewrites
the dir the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from genir.errors import DatasetError, FeatureError, IndexFormatError, SemanticIdError

FORMAT_NAME = "genir.index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
IDS_FILE = "ids.npy"
ITEMS_FILE = "items.jsonl"
TABLE_FILE = "table.json"
SCHEME_DIR = "scheme"
PREFIX_DIR = "prefix"
ITEM_FIELDS = ("title", "year", "genres")  # side columns kept in items.jsonl (when the dataset has them)
REQUIRED_FILES = (IDS_FILE, ITEMS_FILE, TABLE_FILE, f"{SCHEME_DIR}/scheme.json", f"{PREFIX_DIR}/meta.json")


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
                features=None, items: str | Path | None = None, overwrite: bool = False) -> Path:
    """Fit the spec's scheme on a dataset's item features and write the index dir ``out_dir``.

    ``dataset_name_or_path``: ``ml-100k``, a path (see :func:`genir.data.load_dataset`) or a ``Dataset``.
    ``overrides``: spec overrides (``codebook_size=32``, ``collision=popularity``). ``features``: an (N, d) array
    or a ``.npy`` / ``.parquet`` file used instead of the spec's named features (then new items need a matrix
    too). Popularity (for ``collision: popularity``) is the item's count in the leave-one-out training part.
    """
    from genir.data import Dataset, leave_one_out, load_dataset
    from genir.features import item_features, load_feature_matrix
    from genir.ids import SemanticIdTable, build_scheme, load_spec

    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    spec = load_spec(spec_path, overrides)
    dataset = dataset_name_or_path if isinstance(dataset_name_or_path, Dataset) else \
        load_dataset(dataset_name_or_path, items=items)
    split = None
    scheme = build_scheme(spec)
    needs_split = getattr(scheme, "needs_split", False)  # graph schemes read the training interactions
    if features is None:
        feature_source = spec.features
        names = spec.features.split(",")
        split = leave_one_out(dataset) if "cf" in names or needs_split else None
        parts = [item_features(name, split if split is not None else dataset,
                               **({"progress": progress} if name == "text" else {})) for name in names]
        x = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1)
    elif isinstance(features, (str, Path)):
        feature_source = str(features)
        x = load_feature_matrix(features, dataset.num_items, item_ids=list(map(str, dataset.item_ids)))
    else:
        feature_source = "array"
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or len(x) != dataset.num_items:
            raise FeatureError(f"features: expected ({dataset.num_items}, d), got shape {x.shape}")
    popularity = None
    if spec.collision == "popularity":
        split = split or leave_one_out(dataset)
        popularity = np.bincount(split.train["item"].to_numpy(), minlength=dataset.num_items)
    fit_kw = {"progress": progress} if spec.scheme in ("rqvae", "graph_rqvae") else {}
    if needs_split:
        split = split or leave_one_out(dataset)
        fit_kw["split"] = split
    scheme.fit(x, **fit_kw)
    table = SemanticIdTable.build(scheme, x, spec.collision, popularity)
    records = _item_records(dataset)
    manifest = {
        "format": FORMAT_NAME,
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint(), "source": str(dataset.source)},
        "scheme": spec.scheme,
        "spec": {**spec.to_dict(), "source": spec.source},
        "features": {"name": spec.features if features is None else "matrix", "source": feature_source,
                     "dim": int(x.shape[1])},
        "collision": spec.collision,
        "item_columns": [c for c in ITEM_FIELDS if c in dataset.items.columns],
        "history": [],
    }

    def write(tmp: Path) -> None:
        scheme.save(tmp / SCHEME_DIR)
        _write_tables(tmp, table, records)

    _write_dir(out_dir, write, manifest, overwrite=overwrite)
    return out_dir


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
        if _sha256(path) != digest:
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
def add_items(directory: str | Path, items_file: str | Path, features: str | Path | None = None,
              progress: bool = True) -> dict:
    """Give the items of ``items_file`` (csv/tsv/parquet with ``item`` and side columns) IDs with the fitted
    scheme, without refitting, and rewrite the index dir atomically. Returns a summary.

    ``features``: a ``.npy`` / ``.parquet`` matrix of the new items (rows in file order) with the index's feature
    dimension; without it, text features are computed from the file's title/year/genres. Collisions with the
    existing IDs are resolved by continuing each group's last level (positions after the existing items), so
    existing IDs never change; with ``collision: none`` a colliding new item is refused. On any error the dir is
    left untouched.
    """
    from genir.ids import SemanticIdTable

    directory = Path(directory)
    index = load_index(directory)
    manifest = index.manifest
    frame = _read_items_file(Path(items_file), manifest.get("item_columns", list(ITEM_FIELDS)))
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
        "added": len(frame), "file": str(items_file), "sha256": _sha256(Path(items_file)),
        "at": _now(), "features": str(features) if features is not None else manifest["features"]["name"]}]

    def write(tmp: Path) -> None:
        shutil.copytree(directory / SCHEME_DIR, tmp / SCHEME_DIR)
        _write_tables(tmp, table, records)

    new_manifest["created_at"] = manifest.get("created_at")
    _write_dir(directory, write, new_manifest, overwrite=True)
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
    if features is not None:
        x = load_feature_matrix(features, len(frame))
        if x.shape[1] != dim:
            raise DatasetError(f"{features}: has {x.shape[1]} feature columns; the index was built on {dim}")
        return x
    name, source = manifest["features"]["name"], manifest["features"]["source"]
    if source != name or name != "text":
        raise DatasetError(f"{items_file}: the index was built on {source!r} features, which cannot be computed "
                           "for new items here; pass their feature matrix (--features FILE.npy)")
    if "title" not in frame.columns:
        raise DatasetError(f"{items_file}: needs a title column to build text features (has {list(frame.columns)})")
    from genir.data import Dataset
    from genir.features import text_embeddings

    inter = pd.DataFrame({"user": "new", "item": frame["item"], "timestamp": np.arange(len(frame))})
    side = frame.copy()
    ds = Dataset.from_frames(f"{manifest['dataset']['name']}+add", inter, side, source=str(items_file))
    x = text_embeddings(ds, progress=progress)
    x = x[pd.Index(ds.item_ids).get_indexer(frame["item"])]  # back to file order
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
        "created_at": m.get("created_at"), "dataset": m.get("dataset"), "scheme": m.get("scheme"),
        "features": m.get("features"), "collision": m.get("collision"), "n_items": m["n_items"],
        "id_length": m["id_length"], "level_sizes": m["level_sizes"], "added": len(m.get("history", [])),
        "stats": index.table.stats(), "disk_bytes": sizes, "total_bytes": sum(sizes.values()),
    }


# -- files ---------------------------------------------------------------------------------------------------------
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


def _write_dir(out_dir: Path, write: Callable[[Path], None], manifest: dict, overwrite: bool) -> None:
    """``write(tmp)`` the files into a temporary sibling, add ``manifest.json`` with their hashes, rename into
    place. Nothing is left at ``out_dir`` or in the temporary dir on failure."""
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
        files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        full = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "genir_version": __version__,
                **manifest, "created_at": manifest.get("created_at") or _now(), "updated_at": _now(),
                "n_items": table.num_items, "id_length": table.id_length, "level_sizes": table.level_sizes,
                "semantic_levels": table.semantic_levels, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=1, default=_json_default) + "\n")
        _place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _clean_stale(out_dir: Path) -> None:
    """Remove temporary siblings left by a writer that was killed (its pid is gone); if one was killed between
    its two renames (``out_dir`` missing, a backup present), put the previous index back first."""
    if not out_dir.parent.is_dir():
        return
    for kind in ("old", "tmp"):
        for path in sorted(out_dir.parent.glob(f".{out_dir.name}.{kind}-*")):
            pid = path.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
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
    if not out_dir.exists():
        os.replace(tmp, out_dir)
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _item_records(dataset) -> list[dict]:
    frame = dataset.items.reset_index(drop=True).copy()
    frame.insert(0, "item", [str(x) for x in dataset.item_ids])
    return _item_records_from_frame(frame, start=0)


def _item_records_from_frame(frame: pd.DataFrame, start: int) -> list[dict]:
    out = []
    cols = [c for c in ITEM_FIELDS if c in frame.columns]
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
