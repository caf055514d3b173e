"""BEIR reader and writer: a hand-written folder read into a task, the write/read round trip, and every bad input
refused with the file (and ``:line``) named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genir.data.beir import read_beir, write_beir
from genir.errors import DatasetError

CORPUS = [
    {"_id": "d1", "title": "Alpha", "text": "alpha text", "metadata": {"section": "net", "synopsis": "alpha tool"}},
    {"_id": "d2", "title": "", "text": "beta text \u00fc", "metadata": {"section": "games", "synopsis": "beta"}},
    {"_id": "d3", "title": "Gamma", "text": "", "metadata": {"section": "net"}},
    {"_id": "d4", "text": "delta text"},
    {"_id": 5, "text": "epsilon"},
]
QUERIES = [
    {"_id": "q1", "text": "find alpha"},
    {"_id": "q2", "text": "find beta"},
    {"_id": "q3", "text": "gamma?"},
    {"_id": "q4", "text": "delta or epsilon"},
    {"_id": "q5", "text": "judged nowhere"},
    {"_id": "q6", "text": "only a zero score"},
]
HEADER = "query-id\tcorpus-id\tscore"


def beir_files() -> dict[str, list[str]]:
    """The lines of each file of the fixture folder (edited by the bad-input cases before writing)."""
    return {
        "corpus.jsonl": [json.dumps(d, ensure_ascii=False) for d in CORPUS],
        "queries.jsonl": [json.dumps(q) for q in QUERIES],
        "qrels/train.tsv": [HEADER, "q1\td1\t1", "q1\td2\t0", "q2\td2\t2"],
        "qrels/dev.tsv": [HEADER, "q3\td3\t1"],
        "qrels/test.tsv": [HEADER, "q4\td4\t1", "q4\t5\t1", "q6\td1\t0"],
        "steps.tsv": ["corpus-id\tstep", "d3\t1", "d4\t2", "5\t2"],
    }


def write_files(folder: Path, files: dict[str, list[str]]) -> Path:
    for name, lines in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


@pytest.fixture
def beir_dir(tmp_path) -> Path:
    return write_files(tmp_path / "toy", beir_files())


def test_read_beir_builds_the_task(beir_dir):
    task = read_beir(beir_dir)
    cat = task.catalogue
    assert task.name == cat.name == "toy"
    assert cat.ids.tolist() == ["d1", "d2", "d3", "d4", "5"]
    assert list(cat.columns.columns) == ["title", "text", "section", "synopsis"]
    assert cat.columns["title"].tolist() == ["Alpha", "", "Gamma", "", ""]
    assert cat.columns["section"].tolist() == ["net", "games", "net", None, None]
    assert cat.columns["synopsis"].tolist() == ["alpha tool", "beta", None, None, None]

    # q5 is in no qrels file, q6 has only a zero score: both dropped
    q = task.queries
    assert q["qid"].tolist() == ["q1", "q2", "q3", "q4"]
    assert q["stage"].tolist() == ["train", "train", "valid", "test"]
    assert q["step"].tolist() == [0, 0, 1, 2]
    assert [s.tolist() for s in task.steps] == [[0, 1], [2], [3, 4]]
    assert task.relevant("q1").tolist() == [0]  # the score-0 row is not relevant
    assert task.relevant("q4").tolist() == [3, 4]
    assert task.qrels["relevance"].tolist() == [1, 2, 1, 1, 1]

    pairs = task.train_pairs
    indexing = pairs[pairs["kind"] == "indexing"]
    assert indexing["text"].tolist() == ["Alpha. alpha text", "beta text \u00fc", "Gamma", "delta text", "epsilon"]
    assert indexing["item"].tolist() == [0, 1, 2, 3, 4]
    queries = pairs[pairs["kind"] == "query"]
    assert list(zip(queries["text"], queries["item"])) == [("find alpha", 0), ("find beta", 1)]
    assert len(pairs) == 7


def test_without_steps_everything_is_d0(beir_dir):
    (beir_dir / "steps.tsv").unlink()
    task = read_beir(beir_dir, name="other")
    assert task.name == "other"
    assert [s.tolist() for s in task.steps] == [[0, 1, 2, 3, 4]]
    assert set(task.queries["step"]) == {0}


def frames_of(task):
    """The frames write_beir takes, rebuilt from a task read by read_beir."""
    cat = task.catalogue
    meta = [c for c in cat.columns.columns if c not in ("title", "text")]
    corpus = pd.concat([pd.DataFrame({"_id": cat.ids}), cat.columns], axis=1)
    queries = task.queries.rename(columns={"qid": "_id"})[["_id", "text"]]
    stage_file = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}
    qrels = task.qrels.merge(task.queries[["qid", "stage"]], on="qid")
    by_file = {stage_file[s]: pd.DataFrame({"query-id": g["qid"], "corpus-id": cat.ids[g["item"].to_numpy()],
                                            "score": g["relevance"]}) for s, g in qrels.groupby("stage")}
    step = np.zeros(len(cat), dtype=int)
    for k, items in enumerate(task.steps):
        step[items] = k
    steps = pd.DataFrame({"corpus-id": cat.ids, "step": step})
    return corpus, queries, by_file, steps, meta


def assert_same_task(a, b):
    assert a.catalogue.ids.tolist() == b.catalogue.ids.tolist()
    pd.testing.assert_frame_equal(a.catalogue.columns, b.catalogue.columns)
    pd.testing.assert_frame_equal(a.queries, b.queries)
    pd.testing.assert_frame_equal(a.qrels, b.qrels)
    pd.testing.assert_frame_equal(a.train_pairs, b.train_pairs)
    assert [s.tolist() for s in a.steps] == [s.tolist() for s in b.steps]


def test_round_trip(beir_dir, tmp_path):
    first = read_beir(beir_dir)
    corpus, queries, qrels, steps, meta = frames_of(first)
    out = write_beir(tmp_path / "copy", corpus, queries, qrels, steps=steps, metadata_columns=meta)
    second = read_beir(out, name="toy")
    assert_same_task(first, second)
    assert "\u00fc" in (out / "corpus.jsonl").read_text(encoding="utf-8")  # ensure_ascii=False
    again = write_beir(tmp_path / "copy2", *frames_of(second)[:3], steps=steps, metadata_columns=meta)
    for f in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv", "steps.tsv"):
        assert (out / f).read_bytes() == (again / f).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "copy2", "toy"]


def test_write_from_frames_reads_back(tmp_path):
    corpus = pd.DataFrame({"_id": ["a", "b", "c"], "title": ["", "B", None], "text": ["first doc", "", "third"],
                           "year": [2001, 2002, np.nan]})
    queries = pd.DataFrame({"_id": ["x", "y"], "text": ["q one", "q two"]})
    qrels = {"train": pd.DataFrame({"query-id": ["x", "x"], "corpus-id": ["a", "b"], "score": [1, 1]}),
             "test.tsv": pd.DataFrame({"query-id": ["y"], "corpus-id": ["c"], "score": [0.5]})}
    task = read_beir(write_beir(tmp_path / "w", corpus, queries, qrels, metadata_columns=["year"]))
    assert task.catalogue.columns["title"].tolist() == ["", "B", ""]
    assert task.catalogue.columns["year"].tolist() == [2001, 2002, None]
    assert task.queries["stage"].tolist() == ["train", "test"]
    assert task.qrels["relevance"].tolist() == [1.0, 1.0, 0.5]
    assert not (tmp_path / "w" / "steps.tsv").exists()


def _append(name, line):
    def edit(files):
        files.setdefault(name, []).append(line)
        return name, len(files[name])
    return edit


def _replace(name, index, line):
    def edit(files):
        files[name][index] = line
        return name, index + 1
    return edit


def _drop(name):
    def edit(files):
        del files[name]
        return name, None
    return edit


def _drop_qrels(files):
    for f in ("qrels/train.tsv", "qrels/dev.tsv", "qrels/test.tsv"):
        del files[f]
    return "qrels", None


BAD_INPUTS = {
    "missing corpus": _drop("corpus.jsonl"),
    "missing queries": _drop("queries.jsonl"),
    "no qrels file": _drop_qrels,
    "malformed JSON": _append("corpus.jsonl", '{"_id": "d9", "text": '),
    "JSON not an object": _append("queries.jsonl", '["q9", "text"]'),
    "missing _id": _append("corpus.jsonl", '{"text": "no id"}'),
    "missing text": _append("queries.jsonl", '{"_id": "q9"}'),
    "duplicate corpus _id": _append("corpus.jsonl", '{"_id": "d2", "text": "again"}'),
    "duplicate query _id": _append("queries.jsonl", '{"_id": "q1", "text": "again"}'),
    "empty query text": _append("queries.jsonl", '{"_id": "q9", "text": "  \\t "}'),
    "empty document without title": _append("corpus.jsonl", '{"_id": "d9", "text": " ", "title": ""}'),
    "qrels row with 2 columns": _append("qrels/train.tsv", "q2\td1"),
    "qrels row with 4 columns": _append("qrels/dev.tsv", "q3\td1\t1\t0"),
    "non-numeric score": _append("qrels/dev.tsv", "q3\td1\thigh"),
    "qrels unknown query": _append("qrels/test.tsv", "q99\td1\t1"),
    "qrels unknown corpus id": _append("qrels/train.tsv", "q2\td99\t1"),
    "query in two stages": _append("qrels/test.tsv", "q1\td4\t1"),
    "qrels without header": _replace("qrels/train.tsv", 0, "q1\td1\t1"),
    "steps unknown corpus id": _append("steps.tsv", "d99\t1"),
    "steps non-integer": _append("steps.tsv", "d1\t1.5"),
    "steps negative": _append("steps.tsv", "d1\t-1"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_and_line(tmp_path, case):
    files = beir_files()
    name, line = BAD_INPUTS[case](files)
    folder = write_files(tmp_path / "bad", files)
    with pytest.raises(DatasetError) as err:
        read_beir(folder)
    message = str(err.value)
    assert Path(name).name in message
    if line is not None:
        assert f"{Path(name).name}:{line}:" in message


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        read_beir(tmp_path / "nowhere")


def _frames():
    corpus = pd.DataFrame({"_id": [f"d{i}" for i in range(6)], "title": "", "text": [f"doc {i}" for i in range(6)],
                           "tags": [["a"], ["b"], ["c"], {"not", "json"}, ["e"], ["f"]]})
    queries = pd.DataFrame({"_id": ["q"], "text": ["query"]})
    qrels = {"test.tsv": pd.DataFrame({"query-id": ["q"], "corpus-id": ["d0"], "score": [1]})}
    return corpus, queries, qrels


def test_write_failure_leaves_nothing(tmp_path):
    corpus, queries, qrels = _frames()
    with pytest.raises(DatasetError, match=r"row 3 \(_id 'd3'\)"):
        write_beir(tmp_path / "out", corpus, queries, qrels, metadata_columns=["tags"])
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_non_empty_out_unless_overwrite(tmp_path):
    corpus, queries, qrels = _frames()
    corpus = corpus.drop(columns="tags")
    out = tmp_path / "out"
    out.mkdir()
    write_beir(out, corpus, queries, qrels)  # an empty folder is fine
    with pytest.raises(DatasetError, match="not empty"):
        write_beir(out, corpus.iloc[:3], queries, qrels)
    assert len(read_beir(out).catalogue) == 6

    bad, _, _ = _frames()
    with pytest.raises(DatasetError):  # a failed overwrite keeps the old folder
        write_beir(out, bad, queries, qrels, metadata_columns=["tags"], overwrite=True)
    assert len(read_beir(out).catalogue) == 6
    write_beir(out, corpus.iloc[:3], queries, qrels, overwrite=True)
    assert len(read_beir(out).catalogue) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_refuses_what_read_would_refuse(tmp_path):
    corpus, queries, qrels = _frames()
    corpus = corpus.drop(columns="tags")
    with pytest.raises(DatasetError, match="unknown"):
        write_beir(tmp_path / "a", corpus, queries, {"dev": qrels["test.tsv"].assign(**{"corpus-id": "zz"})})
    with pytest.raises(DatasetError, match="stage file"):
        write_beir(tmp_path / "b", corpus, queries, {"valid.tsv": qrels["test.tsv"]})
    with pytest.raises(DatasetError, match="duplicate"):
        write_beir(tmp_path / "c", pd.concat([corpus, corpus]), queries, qrels)
    with pytest.raises(DatasetError, match="step"):
        write_beir(tmp_path / "d", corpus, queries, qrels, steps=pd.DataFrame({"corpus-id": ["d0"], "step": [-1]}))
    assert list(tmp_path.iterdir()) == []
