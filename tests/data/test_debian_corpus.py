"""Debian descriptions -> BEIR: a synthetic snapshot with duplicate descriptions (within and across sections) and
shared synopses; the converted folder is read back and checked against the module's rules."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from genir.data.beir import read_beir
from genir.data.debian_corpus import SNAPSHOT_ENV, debian_to_beir, find_snapshot
from genir.errors import DatasetError

SECTIONS = {"games": 20, "net": 12, "sound": 10, "math": 8, "mail": 6, "text": 4}  # games: too big for a step
DESCRIPTION_WORDS = ["lorem", "ipsum", "dolor", "amet", "consectetur", "adipiscing", "elit", "sed", "eiusmod",
                     "tempor", "incididunt", "labore", "magna", "aliqua", "enim", "minim", "veniam", "quis",
                     "nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "commodo", "consequat"]
SMALL = {"new_steps": 2, "new_share": 0.4, "valid_share": 0.2, "test_share": 0.2}  # target: 12 documents a step


def synthetic_rows(seed: int = 0) -> list[dict]:
    """60 packages in 6 sections. Descriptions use a vocabulary that shares no word with the package names or
    synopses, so any package name or synopsis found in a document was put there by the converter."""
    rng = np.random.default_rng(seed)
    rows = []
    for section, size in SECTIONS.items():
        for j in range(size):
            words = rng.choice(DESCRIPTION_WORDS, size=14).tolist()
            description = " ".join(words[:7]) + ".\n" + " ".join(words[7:]) + f".\n\nSerial {len(rows)}."
            rows.append({"package": f"{section}tool-{j}", "section": section,
                         "synopsis": f"Handy {section} widget number {j} edition", "description": description})
    by_name = {r["package"]: r for r in rows}

    def same_description(*names):
        for name in names[1:]:
            by_name[name]["description"] = by_name[names[0]]["description"]

    same_description("gamestool-1", "gamestool-2", "gamestool-3")  # within a section
    by_name["gamestool-3"]["description"] = by_name["gamestool-3"]["description"].replace("\n", "  \n ")
    same_description("nettool-0", "nettool-1")
    same_description("soundtool-0", "mathtool-0")  # across two sections that may become new steps
    same_description("gamestool-9", "nettool-5")  # across D0 (games is too big) and net: moves nettool-5
    by_name["mailtool-0"]["synopsis"] = by_name["texttool-0"]["synopsis"] = "transitional package"
    by_name["mailtool-1"]["synopsis"] = "Transitional  package"
    return rows


def write_snapshot(path: Path, rows: list[dict], extra_lines: list[str] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def snapshot(tmp_path) -> Path:
    return write_snapshot(tmp_path / "snap.jsonl.gz", synthetic_rows())


def _units(keys: list[list[str]]) -> list[int]:
    """Connected components of rows linked by equal values of any of the key lists."""
    parent = list(range(len(keys[0])))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for column in keys:
        first = {}
        for i, k in enumerate(column):
            a, b = find(i), find(first.setdefault(k, i))
            parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(parent))]


def check_converted(out: Path, strict_text: bool = True):
    """Read ``out`` back and check the converter's rules; returns (task, summary)."""
    task = read_beir(out)
    summary = json.loads((out / "genir_corpus.json").read_text())
    cat = task.catalogue
    n = len(cat)
    cols = cat.columns
    packages, texts = cat.ids.tolist(), cols["text"].tolist()
    assert cols["package"].tolist() == packages
    assert set(cols["title"]) == {""}
    step = np.zeros(n, dtype=int)
    for k, items in enumerate(task.steps):
        step[items] = k
    stage = dict(zip(task.queries["qid"], task.queries["stage"]))
    assert sorted(stage) == sorted(f"q:{p}" for p in packages)  # one query per package, none dropped
    assert summary["steps"][0]["documents"] + sum(s["documents"] for s in summary["steps"][1:]) == n

    description_key = [" ".join(t.split()) for t in texts]
    synopsis_key = [" ".join(s.split()).casefold() for s in cols["synopsis"]]
    groups = {}
    for i, key in enumerate(description_key):
        groups.setdefault(key, []).append(i)
    for members in groups.values():  # every member of a duplicate group is relevant to each member's query
        for i in members:
            assert sorted(task.relevant(f"q:{packages[i]}").tolist()) == members
    units = _units([description_key, synopsis_key])
    for unit in set(units):  # no group (nor equal synopsis) straddles a step or a stage
        members = [i for i in range(n) if units[i] == unit]
        assert len({step[i] for i in members}) == 1
        assert len({stage[f"q:{packages[i]}"] for i in members}) == 1

    planned = {s: k for k, entry in enumerate(summary["steps"][1:], start=1) for s in entry["planned_sections"]}
    planned_step = np.array([planned.get(s, 0) for s in cols["section"]])
    for i in range(n):  # new-step sections are whole, except members moved to their unit's earliest step
        assert step[i] == min(planned_step[j] for j in range(n) if units[j] == units[i])
    assert summary["moved_to_earlier_step"] == int((step != planned_step).sum())
    for k in range(1, len(task.steps)):  # a new step holds its own sections and duplicates moved from later steps
        assert set(cols["section"][(step == k) & (planned_step == k)]) <= set(summary["steps"][k]["planned_sections"])
        assert (planned_step[step == k] >= k).all()
    for i in np.flatnonzero(step > 0):  # new documents are never trained on by query
        assert stage[f"q:{packages[i]}"] == "test"

    held_out = set(task.queries.loc[task.queries["stage"] != "train", "text"])
    train_texts = task.train_pairs["text"].tolist()
    assert not held_out & set(train_texts)
    assert not {" ".join(t.split()).casefold() for t in held_out} & {" ".join(t.split()).casefold()
                                                                    for t in train_texts}
    if strict_text:
        assert not any(q in t for q, t in itertools.product(held_out, train_texts))
        for package, text, synopsis in zip(packages, texts, cols["synopsis"]):
            assert package not in text and synopsis not in text
    return task, summary


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rules_hold(snapshot, tmp_path, seed):
    summary = debian_to_beir(snapshot, tmp_path / "out", seed=seed, **SMALL)
    check_converted(tmp_path / "out")
    assert summary["duplicate_groups"] == {"groups": 4, "documents": 9, "largest": 3}
    assert summary["split_units"]["units_of_several"] == 5  # the 4 groups and the "transitional package" trio
    assert summary["ambiguous_queries"] == 3
    assert summary["rows"]["documents"] == 60
    assert sum(summary["queries"].values()) == 60
    assert summary["leaks"] == {"documents_naming_their_package": 0, "documents_containing_their_synopsis": 0}


def test_new_topics_and_moves(snapshot, tmp_path):
    net_planned = 0
    for seed in range(6):
        out = tmp_path / f"s{seed}"
        summary = debian_to_beir(snapshot, out, seed=seed, **SMALL)
        task = read_beir(out)
        step = {p: k for k, items in enumerate(task.steps) for p in task.catalogue.ids[items]}
        for entry in summary["steps"][1:]:
            assert entry["planned_documents"] >= entry["target"] == 12
            assert entry["documents"] > 0
            assert "games" not in entry["planned_sections"]  # 20 documents > 1.5 x 12
        if any("net" in e["planned_sections"] for e in summary["steps"][1:]):
            net_planned += 1
            assert step["nettool-5"] == step["gamestool-9"] == 0  # moved to its duplicate's step, D0
            assert step["nettool-0"] > 0
            assert summary["moved_to_earlier_step"] >= 1
    assert net_planned  # the move was exercised


def test_deterministic(snapshot, tmp_path):
    a = debian_to_beir(snapshot, tmp_path / "a", seed=7, **SMALL)
    b = debian_to_beir(snapshot, tmp_path / "b", seed=7, **SMALL)
    assert a == b
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(f) for f in files] == ["corpus.jsonl", "genir_corpus.json", "qrels/dev.tsv", "qrels/test.tsv",
                                       "qrels/train.tsv", "queries.jsonl", "steps.tsv"]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    c = debian_to_beir(snapshot, tmp_path / "c", seed=8, **SMALL)
    assert c["steps"] != a["steps"] or c["queries"] != a["queries"]


def test_subset_skips_and_summary(tmp_path):
    rows = synthetic_rows()
    rows.append({"package": "empty-desc", "section": "net", "synopsis": "s", "description": "  "})
    rows.append({"package": "empty-syn", "section": "net", "synopsis": "", "description": "d"})
    rows.append({"package": "gamestool-0", "section": "net", "synopsis": "again", "description": "other arch"})
    snap = write_snapshot(tmp_path / "snap.jsonl.gz", rows)
    summary = debian_to_beir(snap, tmp_path / "out", docs=30, seed=1, **SMALL)
    assert summary["rows"] == {"read": 63, "skipped": 3, "empty_description": 1, "empty_synopsis": 1,
                               "repeated_package": 1, "usable": 60, "documents": 30}
    assert summary["seed"] == 1 and len(summary["source_sha256"]) == 64
    task, _ = check_converted(tmp_path / "out")
    assert len(task.catalogue) == 30
    assert not {"empty-desc", "empty-syn"} & set(task.catalogue.ids)
    whole = debian_to_beir(snap, tmp_path / "all", **SMALL)
    cat = read_beir(tmp_path / "all").catalogue
    assert whole["rows"]["documents"] == 60  # a repeated package keeps its first row
    assert cat.columns["synopsis"][cat.index("gamestool-0")] == "Handy games widget number 0 edition"
    other = debian_to_beir(snap, tmp_path / "out2", docs=30, seed=2, **SMALL)
    assert read_beir(tmp_path / "out2").catalogue.ids.tolist() != task.catalogue.ids.tolist()
    assert other["rows"]["documents"] == 30
    with pytest.raises(DatasetError, match="not empty"):
        debian_to_beir(snap, tmp_path / "out", docs=30, seed=1, **SMALL)
    debian_to_beir(snap, tmp_path / "out", docs=20, seed=1, overwrite=True, **SMALL)
    assert len(read_beir(tmp_path / "out").catalogue) == 20


BAD_LINES = {
    "malformed JSON": '{"package": "x", "section": "net"',
    "missing fields": '{"package": "x", "section": "net"}',
    "not an object": '["x", "net", "s", "d"]',
    "synopsis not a string": '{"package": "x", "section": "net", "synopsis": 3, "description": "d"}',
}


@pytest.mark.parametrize("line", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_bad_line_names_file_and_line(tmp_path, line):
    snap = write_snapshot(tmp_path / "snap.jsonl.gz", synthetic_rows(), [line])
    with pytest.raises(DatasetError, match=r"snap\.jsonl\.gz:61:"):
        debian_to_beir(snap, tmp_path / "out", **SMALL)
    assert not (tmp_path / "out").exists()


def test_find_snapshot(tmp_path, monkeypatch, snapshot):
    monkeypatch.setenv(SNAPSHOT_ENV, str(snapshot))
    assert find_snapshot() == snapshot
    monkeypatch.setenv(SNAPSHOT_ENV, str(tmp_path / "missing.jsonl.gz"))
    with pytest.raises(DatasetError, match=SNAPSHOT_ENV):
        find_snapshot()


def test_real_snapshot_head(tmp_path, monkeypatch):
    """The converter on the first 3,000 rows of the real snapshot (skipped where it is absent)."""
    monkeypatch.delenv(SNAPSHOT_ENV, raising=False)
    try:
        real = find_snapshot()
    except DatasetError:
        pytest.skip("the Debian descriptions snapshot is not on this machine")
    with gzip.open(real, "rt", encoding="utf-8") as fh:
        head = list(itertools.islice(fh, 3000))
    snap = tmp_path / "head.jsonl.gz"
    with gzip.open(snap, "wt", encoding="utf-8") as fh:
        fh.write("".join(head))
    summary = debian_to_beir(snap, tmp_path / "out")
    task, _ = check_converted(tmp_path / "out", strict_text=False)  # real descriptions may name their package
    assert len(task.steps) == 4 and all(len(s) for s in task.steps)
    assert summary["rows"]["read"] == 3000
    assert summary["duplicate_groups"]["groups"] > 0


def test_cli_converts_and_refuses_a_bad_snapshot(snapshot, tmp_path, capsys):
    from genir.cli import main

    out = tmp_path / "beir"
    assert main(["data", "debian", "--snapshot", str(snapshot), "--out", str(out), "--docs", "40"]) == 0
    printed = capsys.readouterr().out
    assert "40 documents (D0 " in printed and json.loads((out / "genir_corpus.json").read_text())["rows"]["documents"] == 40
    check_converted(out)
    assert main(["data", "debian", "--snapshot", str(snapshot), "--out", str(out), "--docs", "40"]) == 2
    assert "not empty" in capsys.readouterr().err  # an existing folder is not overwritten without --overwrite
    assert main(["data", "debian", "--snapshot", str(tmp_path / "missing.jsonl.gz"), "--out", str(tmp_path / "x")]) == 2
