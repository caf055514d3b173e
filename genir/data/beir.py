"""BEIR-format corpora: read a folder into a :class:`~genir.data.tasks.QueryRetrievalTask`, write one atomically.

Layout (https://github.com/beir-cellar/beir): ``corpus.jsonl`` (``_id``, ``text``, optional ``title`` and
``metadata`` dict), ``queries.jsonl`` (``_id``, ``text``) and ``qrels/{train,dev,test}.tsv`` (header
``query-id\\tcorpus-id\\tscore``; a score <= 0 is not relevant). ``dev`` is genir's ``valid`` stage.

genir extension: an optional ``steps.tsv`` (header ``corpus-id\\tstep``) gives the corpus step (D0, D1, ...) at
which each document arrives, for incremental indexing; an unlisted document is in D0, and a query belongs to the
earliest step among its relevant documents.

Every problem raises :class:`DatasetError` naming the file, and ``file:line`` for a bad row. Queries that no qrels
file judges relevant to anything are dropped and counted in the log, as BEIR's own loader drops them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.catalogue import Catalogue
from genir.data.json_lines import json_lines
from genir.data.tasks import QueryRetrievalTask
from genir.errors import DatasetError

log = logging.getLogger(__name__)

QRELS_STAGES = {"train.tsv": "train", "dev.tsv": "valid", "test.tsv": "test"}  # file -> task stage
QRELS_HEADER = ("query-id", "corpus-id", "score")
STEPS_HEADER = ("corpus-id", "step")
RESERVED_COLUMNS = ("id", "title", "text")  # catalogue columns a metadata key may not shadow


# ------------------------------------------------------------------------------------------------------------
# reading
def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the line break) for each non-blank line of a UTF-8 file."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not UTF-8 ({exc.reason})") from None
            if line.strip():
                yield lineno, line


def _tsv_rows(path: Path, header: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each row after the header line, which must be ``header``."""
    seen_header = False
    for lineno, line in _lines(path):
        fields = line.split("\t")
        if not seen_header:
            if tuple(f.strip().lower() for f in fields) != header:
                expected = "<TAB>".join(header)
                raise DatasetError(f"{path}:{lineno}: expected the header line {expected}, got {line[:80]!r}")
            seen_header = True
            continue
        if len(fields) != len(header):
            raise DatasetError(f"{path}:{lineno}: expected {len(header)} tab-separated columns "
                               f"({', '.join(header)}), got {len(fields)}: {line[:80]!r}")
        yield lineno, [f.strip() for f in fields]


def _id_field(obj: dict, path: Path, lineno: int) -> str:
    if "_id" not in obj:
        raise DatasetError(f"{path}:{lineno}: missing field '_id'")
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise DatasetError(f"{path}:{lineno}: '_id' must be a non-empty string or integer, got {value!r}")
    return str(value)


def _text_field(obj: dict, key: str, path: Path, lineno: int, required: bool) -> str:
    if key not in obj or obj[key] is None:
        if required:
            raise DatasetError(f"{path}:{lineno}: missing field {key!r}")
        return ""
    if not isinstance(obj[key], str):
        raise DatasetError(f"{path}:{lineno}: {key!r} must be a string, got {type(obj[key]).__name__}")
    return obj[key]


def _unique_ids(path: Path) -> Iterator[tuple[int, dict, str]]:
    """(line number, object, its ``_id``) for each line of a JSON-lines file; a repeated ``_id`` is an error."""
    seen: dict[str, int] = {}
    for lineno, obj in json_lines(path):
        key = _id_field(obj, path, lineno)
        if key in seen:
            raise DatasetError(f"{path}:{lineno}: duplicate _id {key!r} (first on line {seen[key]})")
        seen[key] = lineno
        yield lineno, obj, key


def _read_corpus(path: Path) -> pd.DataFrame:
    """Catalogue frame: ``id``, ``title``, ``text`` and one column per metadata key (first-seen order)."""
    rows = []
    meta_keys: dict[str, None] = {}
    for lineno, obj, doc_id in _unique_ids(path):
        text = _text_field(obj, "text", path, lineno, required=True)
        title = _text_field(obj, "title", path, lineno, required=False)
        if not text.strip() and not title.strip():
            raise DatasetError(f"{path}:{lineno}: document {doc_id!r} has an empty text and no title")
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise DatasetError(f"{path}:{lineno}: 'metadata' must be a JSON object, got {type(meta).__name__}")
        for key in meta:
            if key in RESERVED_COLUMNS:
                raise DatasetError(f"{path}:{lineno}: metadata key {key!r} clashes with a catalogue column")
            meta_keys.setdefault(key)
        rows.append((doc_id, title, text, meta))
    if not rows:
        raise DatasetError(f"{path}: no documents")
    frame = pd.DataFrame({"id": [r[0] for r in rows], "title": [r[1] for r in rows], "text": [r[2] for r in rows]})
    for key in meta_keys:
        frame[key] = pd.Series([r[3].get(key) for r in rows], dtype=object)
    return frame


def _read_queries(path: Path) -> pd.DataFrame:
    rows = []
    for lineno, obj, qid in _unique_ids(path):
        text = _text_field(obj, "text", path, lineno, required=True)
        if not text.strip():
            raise DatasetError(f"{path}:{lineno}: query {qid!r} has an empty text")
        rows.append((qid, text))
    return pd.DataFrame(rows, columns=["qid", "text"])


def _score(value: str, path: Path, lineno: int) -> float:
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise DatasetError(f"{path}:{lineno}: score must be a number, got {value!r}")
    return score


def _read_qrels(folder: Path, queries: set[str], row_of: dict[str, int]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Relevant (qid, item, relevance) rows of every qrels file, and each judged query's stage."""
    files = [(folder / "qrels" / f, stage) for f, stage in QRELS_STAGES.items() if (folder / "qrels" / f).is_file()]
    if not files:
        raise DatasetError(f"{folder / 'qrels'}: no qrels file (expected at least one of {list(QRELS_STAGES)})")
    stage_of: dict[str, tuple[str, Path]] = {}
    rows = []
    for path, stage in files:
        for lineno, (qid, doc_id, score) in _tsv_rows(path, QRELS_HEADER):
            if qid not in queries:
                raise DatasetError(f"{path}:{lineno}: unknown query id {qid!r} (not in queries.jsonl)")
            if doc_id not in row_of:
                raise DatasetError(f"{path}:{lineno}: unknown corpus id {doc_id!r} (not in corpus.jsonl)")
            value = _score(score, path, lineno)
            first = stage_of.setdefault(qid, (stage, path))
            if first[0] != stage:
                raise DatasetError(f"{path}:{lineno}: query id {qid!r} is also in {first[1].name}; a query belongs "
                                   "to one stage")
            if value > 0:
                rows.append((qid, row_of[doc_id], value))
    qrels = pd.DataFrame(rows, columns=["qid", "item", "relevance"])
    qrels = qrels.sort_values("relevance", ascending=False, kind="stable").drop_duplicates(["qid", "item"])
    qrels = qrels.sort_index().reset_index(drop=True)
    qrels["item"] = qrels["item"].astype(np.int64)
    if len(qrels) and (qrels["relevance"] == qrels["relevance"].round()).all():
        qrels["relevance"] = qrels["relevance"].astype(np.int64)
    return qrels, {qid: s for qid, (s, _) in stage_of.items()}


def _read_steps(path: Path, row_of: dict[str, int]) -> np.ndarray:
    """(N,) corpus step of every document (0 when not listed)."""
    step = np.zeros(len(row_of), dtype=np.int64)
    seen: dict[str, int] = {}
    for lineno, (doc_id, value) in _tsv_rows(path, STEPS_HEADER):
        if doc_id not in row_of:
            raise DatasetError(f"{path}:{lineno}: unknown corpus id {doc_id!r} (not in corpus.jsonl)")
        if doc_id in seen:
            raise DatasetError(f"{path}:{lineno}: corpus id {doc_id!r} already given a step on line {seen[doc_id]}")
        seen[doc_id] = lineno
        try:
            k = int(value)
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: step must be an integer >= 0, got {value!r}") from None
        if k < 0:
            raise DatasetError(f"{path}:{lineno}: step must be an integer >= 0, got {value!r}")
        step[row_of[doc_id]] = k
    return step


def read_beir(folder: str | Path, *, name: str | None = None) -> QueryRetrievalTask:
    """A BEIR folder as a task: catalogue ``id, title, text, <metadata keys>``, queries with stage and corpus step,
    qrels over internal ids, and DSI training pairs (every document's ``title. text`` as ``indexing``, every
    (train query, relevant document) as ``query``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: BEIR folder not found")
    for required in ("corpus.jsonl", "queries.jsonl"):
        if not (folder / required).is_file():
            raise DatasetError(f"{folder / required}: file not found (a BEIR folder needs corpus.jsonl, "
                               "queries.jsonl and qrels/)")
    name = name or folder.name
    corpus_path = folder / "corpus.jsonl"
    catalogue = Catalogue.from_frame(name, _read_corpus(corpus_path), id_column="id", source=str(folder))
    row_of = {doc_id: i for i, doc_id in enumerate(catalogue.ids)}
    queries = _read_queries(folder / "queries.jsonl")
    qrels, stage_of = _read_qrels(folder, set(queries["qid"]), row_of)

    relevant_qids = set(qrels["qid"])
    unjudged = int((~queries["qid"].isin(stage_of.keys())).sum())
    no_relevant = int((queries["qid"].isin(stage_of.keys()) & ~queries["qid"].isin(relevant_qids)).sum())
    queries = queries[queries["qid"].isin(relevant_qids)].reset_index(drop=True)
    if queries.empty:
        raise DatasetError(f"{folder / 'qrels'}: no query has a relevant document")
    queries["stage"] = queries["qid"].map(stage_of)

    steps: list[np.ndarray] = []
    doc_step = np.zeros(len(catalogue), dtype=np.int64)
    if (folder / "steps.tsv").is_file():
        doc_step = _read_steps(folder / "steps.tsv", row_of)
        steps = [np.flatnonzero(doc_step == k) for k in range(int(doc_step.max()) + 1)]
    first_step = qrels.assign(step=doc_step[qrels["item"].to_numpy()]).groupby("qid")["step"].min()
    queries["step"] = queries["qid"].map(first_step).astype(np.int64)

    indexing = pd.DataFrame({"text": catalogue.texts(("title", "text")), "item": np.arange(len(catalogue))})
    train = queries[queries["stage"] == "train"][["qid", "text"]].merge(qrels[["qid", "item"]], on="qid")
    pairs = pd.concat([indexing.assign(kind="indexing"), train[["text", "item"]].assign(kind="query")],
                      ignore_index=True)
    pairs["item"] = pairs["item"].astype(np.int64)

    counts = queries["stage"].value_counts().to_dict()
    log.info("%s: %d documents, %d queries %s, %d corpus step(s); dropped %d queries in no qrels file and %d "
             "without a relevant document", folder, len(catalogue), len(queries), counts, max(len(steps), 1),
             unjudged, no_relevant)
    return QueryRetrievalTask(catalogue, queries[["qid", "text", "stage", "step"]], qrels, train_pairs=pairs,
                              steps=steps, name=name)


# ------------------------------------------------------------------------------------------------------------
# writing
def _plain(value):
    """A JSON-ready Python value; TypeError for anything JSON cannot hold (a set, an object)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__} is not JSON-serialisable")


def _text_value(value) -> str:
    value = _plain(value)
    return "" if value is None else str(value)


def _check_ids(values: Sequence, what: str) -> list[str]:
    """Ids as strings; an id that is missing, empty or would break a TSV row is refused."""
    ids = []
    for i, v in enumerate(values):
        v = v.item() if isinstance(v, np.generic) else v
        x = str(v) if isinstance(v, (str, int)) and not isinstance(v, bool) else ""
        if not x.strip() or any(c in x for c in "\t\r\n"):
            raise DatasetError(f"{what}: row {i}: id {v!r} is not a non-empty string or integer without tabs "
                               "or line breaks")
        ids.append(x)
    return ids


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{what}: missing column(s) {missing} (have {list(frame.columns)})")


def _qrels_file(key: str) -> str:
    file = key if key.endswith(".tsv") else f"{key}.tsv"
    if file not in QRELS_STAGES:
        raise DatasetError(f"qrels: unknown stage file {key!r}; expected {list(QRELS_STAGES)}")
    return file


def _score_text(value) -> str:
    score = float(_plain(value))
    if not math.isfinite(score):
        raise DatasetError(f"qrels: score must be a finite number, got {value!r}")
    return str(int(score)) if score.is_integer() else repr(score)


def write_beir(out: str | Path, corpus: pd.DataFrame, queries: pd.DataFrame, qrels: Mapping[str, pd.DataFrame],
               steps: pd.DataFrame | None = None, metadata_columns: Sequence[str] = (), *, overwrite: bool = False,
               extra_json: Mapping[str, dict] | None = None) -> Path:
    """Write a BEIR folder that :func:`read_beir` reads back.

    ``corpus``: ``_id``, ``text``, optional ``title`` and the ``metadata_columns``; ``queries``: ``_id``, ``text``;
    ``qrels``: stage file (``train.tsv``, ``dev.tsv``, ``test.tsv``; the ``.tsv`` may be left out) -> frame
    ``query-id``, ``corpus-id``, ``score``; ``steps``: ``corpus-id``, ``step`` (written to ``steps.tsv``);
    ``extra_json``: more files (name -> dict) written into the folder, such as a summary.

    The folder is built beside ``out`` (``out.tmp-<pid>``) and renamed into place only when complete, so a reader
    never sees half a corpus and a failure leaves nothing behind. An existing non-empty ``out`` is refused unless
    ``overwrite``, which replaces it only after the new folder is complete.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise DatasetError(f"{out}: folder exists and is not empty (pass overwrite=True to replace it)")

    _require_columns(corpus, ("_id", "text", *metadata_columns), "corpus")
    _require_columns(queries, ("_id", "text"), "queries")
    clash = [c for c in metadata_columns if c in RESERVED_COLUMNS]
    if clash:
        raise DatasetError(f"corpus: metadata column(s) {clash} clash with catalogue columns {RESERVED_COLUMNS}")
    doc_ids = _check_ids(corpus["_id"].tolist(), "corpus")
    qids = _check_ids(queries["_id"].tolist(), "queries")
    for ids, what in ((doc_ids, "corpus"), (qids, "queries")):
        dup = pd.Index(ids)[pd.Index(ids).duplicated()].tolist()
        if dup:
            raise DatasetError(f"{what}: duplicate _id(s) {dup[:5]}")
    known_docs, known_queries = set(doc_ids), set(qids)
    if not qrels:
        raise DatasetError("qrels: no stage given (expected at least one of train.tsv, dev.tsv, test.tsv)")
    qrels_rows: dict[str, list[tuple[str, str, str]]] = {}
    for key, frame in qrels.items():
        file = _qrels_file(key)
        _require_columns(frame, QRELS_HEADER, f"qrels {file}")
        rows = list(zip(_check_ids(frame["query-id"].tolist(), f"qrels {file}"),
                        _check_ids(frame["corpus-id"].tolist(), f"qrels {file}"),
                        [_score_text(s) for s in frame["score"].tolist()]))
        unknown_q = sorted({q for q, _, _ in rows} - known_queries)
        unknown_d = sorted({d for _, d, _ in rows} - known_docs)
        if unknown_q or unknown_d:
            raise DatasetError(f"qrels {file}: unknown query id(s) {unknown_q[:5]} / corpus id(s) {unknown_d[:5]}")
        qrels_rows[file] = rows
    steps_rows = None
    if steps is not None:
        _require_columns(steps, STEPS_HEADER, "steps")
        step_ids = _check_ids(steps["corpus-id"].tolist(), "steps")
        unknown = sorted(set(step_ids) - known_docs)
        if unknown:
            raise DatasetError(f"steps: unknown corpus id(s) {unknown[:5]}")
        values = [_plain(v) for v in steps["step"].tolist()]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or int(v) != v for v in values):
            raise DatasetError("steps: every step must be an integer >= 0")
        steps_rows = list(zip(step_ids, [int(v) for v in values]))

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _write_files(tmp, corpus, doc_ids, queries, qids, qrels_rows, steps_rows, metadata_columns, extra_json)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out


def _json_line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _write_files(folder: Path, corpus: pd.DataFrame, doc_ids: list[str], queries: pd.DataFrame, qids: list[str],
                 qrels_rows: dict, steps_rows: list | None, metadata_columns: Sequence[str],
                 extra_json: Mapping[str, dict] | None) -> None:
    titles = corpus["title"].tolist() if "title" in corpus.columns else [""] * len(corpus)
    meta = {c: corpus[c].tolist() for c in metadata_columns}
    with open(folder / "corpus.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for i, (doc_id, title, text) in enumerate(zip(doc_ids, titles, corpus["text"].tolist())):
            try:
                rec = {"_id": doc_id, "title": _text_value(title), "text": _text_value(text)}
                if metadata_columns:
                    rec["metadata"] = {c: _plain(meta[c][i]) for c in metadata_columns}
            except TypeError as exc:
                raise DatasetError(f"corpus: row {i} (_id {doc_id!r}): {exc}") from None
            if not rec["text"].strip() and not rec["title"].strip():
                raise DatasetError(f"corpus: row {i} (_id {doc_id!r}): empty text and no title")
            fh.write(_json_line(rec))
    with open(folder / "queries.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for i, (qid, text) in enumerate(zip(qids, queries["text"].tolist())):
            text = _text_value(text)
            if not text.strip():
                raise DatasetError(f"queries: row {i} (_id {qid!r}): empty text")
            fh.write(_json_line({"_id": qid, "text": text}))
    (folder / "qrels").mkdir()
    for file, rows in qrels_rows.items():
        with open(folder / "qrels" / file, "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\t".join(QRELS_HEADER) + "\n")
            fh.writelines(f"{q}\t{d}\t{s}\n" for q, d, s in rows)
    if steps_rows is not None:
        with open(folder / "steps.tsv", "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\t".join(STEPS_HEADER) + "\n")
            fh.writelines(f"{d}\t{k}\n" for d, k in steps_rows)
    for file, obj in (extra_json or {}).items():
        (folder / file).write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
