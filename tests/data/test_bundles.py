"""Bundle data: the Debian reader's counted problems, the split by bundle, questions, and the paper's file format."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest

from genir.data.bundles import (
    make_questions,
    near_duplicate_groups,
    read_bundle_construction,
    read_debian_bundles,
    split_bundles,
)
from genir.errors import ConfigError, DatasetError


def _write(path, rows):
    with gzip.open(path, "wt") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


def _descriptions(n_sections=3, per_section=12):
    rows = []
    for s in range(n_sections):
        for k in range(per_section):
            rows.append({"package": f"p{s}-{k}", "section": f"sec{s}", "synopsis": f"package {k} of section {s}",
                         "description": f"long text {s} {k}"})
    rows.append({"package": "notext", "section": "sec0", "synopsis": "", "description": "only a body"})
    return rows


@pytest.fixture()
def files(tmp_path):
    bundles = [
        {"bundle": "b-good", "section": "metapackages", "depends": ["p0-0", "p0-1", "p0-2"], "recommends": ["p0-3"]},
        {"bundle": "b-unknown", "section": "metapackages", "depends": ["p1-0", "ghost", "p1-1"], "recommends": []},
        {"bundle": "b-notext", "section": "metapackages", "depends": ["p2-0", "notext", "p2-1"], "recommends": []},
        {"bundle": "b-tiny", "section": "metapackages", "depends": ["p2-2", "ghost2"], "recommends": []},
        {"bundle": "b-good", "section": "metapackages", "depends": ["p0-5", "p0-6"], "recommends": []},
    ]
    return _write(tmp_path / "b.jsonl.gz", bundles), _write(tmp_path / "d.jsonl.gz", _descriptions())


def test_debian_reader_counts_and_names_every_problem(files):
    bpath, dpath = files
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_debian_bundles(bpath, dpath)
    assert data.names == ["b-good", "b-unknown", "b-notext"]
    probs = data.report["problems"]
    assert probs["unknown_member"]["count"] == 2 and set(probs["unknown_member"]["bundles"]) == {"b-unknown", "b-tiny"}
    assert probs["member_without_text"]["bundles"] == {"b-notext": ["notext"]}
    assert list(probs["too_small"]["bundles"]) == ["b-tiny"]
    assert list(probs["repeated_bundle"]["bundles"]) == ["b-good"]
    text = " | ".join(str(w.message) for w in caught)
    assert "unknown member" in text and "b-unknown" in text and "too small" in text and "b-tiny" in text
    assert [data.items["package"][i] for i in data.members[0]] == ["p0-0", "p0-1", "p0-2", "p0-3"]
    assert data.items["title"][data.members[0][0]] == "package 0 of section 0"
    with gzip.open(bpath, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    for kind, bundle in (("unknown member", "b-unknown"), ("member without text", "b-notext")):
        bad = [r for r in rows if r["bundle"] == bundle]
        single = _write(bpath.parent / f"{bundle}.jsonl.gz", bad)
        with pytest.raises(DatasetError, match=f"{bundle}.*{kind}"):
            read_debian_bundles(single, dpath, strict=True)


def test_debian_reader_rejects_malformed_lines(tmp_path, files):
    _, dpath = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"bundle": "x", "depends": "p0-0"}\n')
    with pytest.raises(DatasetError, match="bad.jsonl:1: 'depends' must be a list"):
        read_debian_bundles(bad, dpath)
    bad.write_text("{not json\n")
    with pytest.raises(DatasetError, match="bad.jsonl:1: malformed JSON"):
        read_debian_bundles(bad, dpath)


def _synthetic(tmp_path, n_bundles=40, size=5):
    rng = np.random.default_rng(0)
    desc = _descriptions(n_sections=4, per_section=30)
    pkgs = [d["package"] for d in desc if d["synopsis"]]
    bundles = []
    for b in range(n_bundles):
        members = list(rng.choice(pkgs, size=size, replace=False))
        bundles.append({"bundle": f"blend-{b}", "section": "metapackages", "depends": members, "recommends": []})
    # a task family and a near-duplicate pair
    for lang in ("french", "german", "dutch"):
        bundles.append({"bundle": f"task-{lang}-desktop", "section": "tasks", "depends": list(rng.choice(pkgs, 4)),
                        "recommends": []})
    bundles.append({"bundle": "twin-a", "section": "metapackages", "depends": pkgs[:6], "recommends": []})
    bundles.append({"bundle": "twin-b", "section": "metapackages", "depends": pkgs[1:7], "recommends": []})
    return read_debian_bundles(_write(tmp_path / "b.jsonl.gz", bundles), _write(tmp_path / "d.jsonl.gz", desc))


def test_split_keeps_near_duplicates_on_one_side(tmp_path):
    data = _synthetic(tmp_path)
    groups = near_duplicate_groups(data)
    idx = {n: i for i, n in enumerate(data.names)}
    assert groups[idx["task-french-desktop"]] == groups[idx["task-german-desktop"]] == groups[idx["task-dutch-desktop"]]
    assert groups[idx["twin-a"]] == groups[idx["twin-b"]]  # Jaccard 5/7
    for seed in range(5):
        split = split_bundles(data, seed=seed)
        for a, b in (("twin-a", "twin-b"), ("task-french-desktop", "task-dutch-desktop")):
            assert split.stage[idx[a]] == split.stage[idx[b]]
        s = split.summary()
        assert s["train"] + s["valid"] + s["test"] == data.num_bundles and s["test"] <= round(0.1 * data.num_bundles)
    assert (split_bundles(data, seed=3).stage == split_bundles(data, seed=3).stage).all()


@pytest.mark.parametrize("negatives", ["random", "hard"])
def test_questions_have_exactly_one_member_among_shuffled_candidates(tmp_path, negatives):
    data = _synthetic(tmp_path)
    section = data.items["section"].to_numpy()
    qs, stats = make_questions(data, np.arange(data.num_bundles), num_candidates=10, negatives=negatives,
                               per_bundle=3, seed=1)
    assert stats["questions"] == len(qs) == 3 * data.num_bundles
    answers = []
    for q in qs:
        members = set(data.members[q.bundle].tolist())
        assert len(q.candidates) == len(set(q.candidates)) == 10
        assert [c in members for c in q.candidates].count(True) == 1 and q.positive in members
        assert 1 <= len(q.partial) <= 5 and q.positive not in q.partial and set(q.partial) <= members
        if negatives == "hard":
            assert all(section[c] == section[q.positive] for c in q.candidates)
        answers.append(q.answer)
    assert len(set(answers)) > 5  # the right answer is not always at the same letter
    again, _ = make_questions(data, np.arange(data.num_bundles), num_candidates=10, negatives=negatives,
                              per_bundle=3, seed=1)
    assert again == qs


def test_hard_negatives_top_up_from_random_when_the_section_is_small(tmp_path):
    data = _synthetic(tmp_path)
    pool = np.concatenate([np.arange(40), *data.members[:5]])  # with repeats; every section has < 25 items in it
    qs, stats = make_questions(data, np.arange(5), num_candidates=26, negatives="hard", seed=0, pool=pool)
    assert stats["hard_topped_up"] == 5
    for q in qs:
        assert len(set(q.candidates)) == 26 and set(q.candidates) <= set(pool.tolist())
        assert [c in set(data.members[q.bundle].tolist()) for c in q.candidates].count(True) == 1
    with pytest.raises(ConfigError, match="too few items"):
        make_questions(data, np.arange(5), num_candidates=26, pool=np.arange(20))


def _paper_fixture(folder):
    folder.mkdir()
    (folder / "item_info.json").write_text(json.dumps({str(i): {"title_en": f"item {i}"} for i in range(12)}))
    (folder / "bi_train.txt").write_text("0, 1, 2, 3\n1, 4, 5\n2, 6\n")
    (folder / "bi_valid_input.txt").write_text("3, 1, 2\n")
    (folder / "bi_valid_gt.txt").write_text("3, 3\n")
    (folder / "bi_test_input.txt").write_text("4, 4, 5, 6\n5, 7\n")
    (folder / "bi_test_gt.txt").write_text("4, 7, 8\n")
    return folder


def test_paper_format_reader(tmp_path):
    folder = _paper_fixture(tmp_path / "pog")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bc = read_bundle_construction(folder)
    assert "too small" in " ".join(str(w.message) for w in caught)  # train bundle 2 has one item
    data = bc.data
    assert data.titles()[:2] == ["item 0", "item 1"] and len(bc.train) == 2
    assert [data.members[b].tolist() for b in bc.train] == [[1, 2, 3], [4, 5]]
    test = bc.fixed["test"]
    assert len(test) == 1  # test bundle 5 has no answer: dropped
    (_b, (inputs, gts)), = test.items()
    assert inputs == [4, 5, 6] and gts == [7, 8]
    qs, _ = make_questions(data, list(test), num_candidates=5, per_bundle=5, fixed=test, seed=0)
    assert [q.positive for q in qs] == [7, 8]
    for q in qs:
        assert q.partial == (4, 5, 6) and not ({4, 5, 6, 7, 8} - {q.positive}) & set(q.candidates)
    (folder / "bi_test_gt.txt").write_text("4, 99\n")
    with pytest.raises(DatasetError, match=r"bi_test_gt.txt:1: bundle 4: unknown item id"):
        read_bundle_construction(folder)
