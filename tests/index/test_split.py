"""build_index(split=...): popularity, CF features and the graph of a graph scheme read only the training part of
the chosen split protocol, and the manifest records it (protocol, cut-off, count, fingerprint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genir.cli import main
from genir.errors import ConfigError
from genir.index import build_index, load_index, split_record

# Two clusters of three items; within a cluster the pre-cut-off counts order the items one way (a1 > a2 > a3,
# b3 > b2 > b1) and the interactions after the cut-off reverse part of it (a3 and b1 become more popular than a2
# and b2 over the whole data).
PRE = {"a1": 8, "a2": 5, "a3": 2, "b1": 2, "b2": 5, "b3": 8}  # 30 interactions, timestamps 1..30
POST = {"a3": 4, "b1": 4}  # 8 interactions, timestamps 31..38
TRAIN = 30  # temporal split: the first 80% by time (38 distinct timestamps: cut at 30.6)


def _inter() -> pd.DataFrame:
    rows = []
    for item, count in PRE.items():
        rows += [(f"u{u}", item) for u in range(count)]
    rows = [(u, i, t + 1) for t, (u, i) in enumerate(sorted(rows, key=lambda r: (int(r[0][1:]), r[1])))]
    post = [(f"u{5 + k}", item) for item, count in POST.items() for k in range(count)]
    rows += [(u, i, len(rows) + 1 + t) for t, (u, i) in enumerate(post)]
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


@pytest.fixture
def inter_csv(tmp_path) -> Path:
    path = tmp_path / "inter.csv"
    _inter().sample(frac=1.0, random_state=0).to_csv(path, index=False)  # file order != time order
    return path


@pytest.fixture
def cluster_features(tmp_path, inter_csv) -> Path:
    """Rows in the dataset's internal item order: the a items near (10, 0), the b items near (-10, 0)."""
    from genir.data import load_dataset

    ids = [str(x) for x in load_dataset(inter_csv).item_ids]
    x = np.array([[10.0 if i[0] == "a" else -10.0, 0.01 * int(i[1])] for i in ids], dtype=np.float32)
    path = tmp_path / "clusters.npy"
    np.save(path, x)
    return path


def _pop_spec(tmp_path: Path, features: str = "text") -> Path:
    """rq_kmeans with one level of two codes (the two clusters) and popularity ranks as the collision level."""
    path = tmp_path / f"pop_{features}.yaml"
    path.write_text(f"scheme: rq_kmeans\nfeatures: {features}\ncollision: popularity\n"
                    "params: {num_levels: 1, codebook_size: 2, niter: 5, seed: 0}\n")
    return path


def _ranks(index) -> dict[str, int]:
    """Item -> its rank within its semantic group (the collision level)."""
    return dict(zip(index.items["item"], index.table.codes[:, -1].tolist()))


def test_temporal_popularity_counts_nothing_after_the_cutoff(tmp_path, inter_csv, cluster_features, capsys):
    out = tmp_path / "idx"
    assert main(["index", "build", "--dataset", str(inter_csv), "--scheme", str(_pop_spec(tmp_path)), "--out",
                 str(out), "--features", str(cluster_features), "--split", "temporal", "--quiet"]) == 0
    capsys.readouterr()
    index = load_index(out)
    groups = {item: tuple(code[:-1]) for item, code in zip(index.items["item"], index.table.codes.tolist())}
    assert groups["a1"] == groups["a2"] == groups["a3"] != groups["b1"] == groups["b2"] == groups["b3"]
    # the ranks follow the pre-cut-off counts; over all interactions a3 / b1 would come before a2 / b2
    assert _ranks(index) == {"a1": 0, "a2": 1, "a3": 2, "b3": 0, "b2": 1, "b1": 2}
    full = _inter()["item"].value_counts()
    assert full["a3"] > full["a2"] and full["b1"] > full["b2"]

    from genir.data import load_dataset, make_split

    split = make_split(load_dataset(inter_csv), "temporal")
    record = json.loads((out / "manifest.json").read_text())["split"]
    assert record["protocol"] == split.protocol == "temporal(0.1,0.1)"
    assert record["train_interactions"] == split.describe()["train"] == TRAIN
    assert record["cutoff"] == 31.0  # the first timestamp outside training: every training one is before it
    assert split.train["timestamp"].max() < record["cutoff"]
    assert record["train_fingerprint"] == split_record(split)["train_fingerprint"]
    assert record["used_for"] == ["popularity"]

    assert main(["index", "info", str(out)]) == 0
    assert "split        temporal(0.1,0.1): 30 training interactions before 31 (sha256 " in capsys.readouterr().out
    assert main(["index", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == record


@pytest.fixture
def seen(cluster_features):
    """A split-trained feature ``fake_cf`` (like ``cf``) that records the split it is given."""
    from genir.features import FEATURES, Feature

    seen = {}

    def fake_cf(split, **kw):
        seen["fake_cf"] = split
        return np.load(cluster_features)

    FEATURES.register("fake_cf", Feature(fake_cf, needs_split=True))
    yield seen
    FEATURES.pop("fake_cf")


def test_every_use_of_interactions_gets_the_same_split(tmp_path, inter_csv, seen, monkeypatch):
    """Split-trained features, the graph of a graph scheme and popularity all read the split asked for."""
    import genir.ids

    real_build = genir.ids.build_scheme

    def graph_like(spec):
        scheme = real_build(spec)
        fit = scheme.fit

        def fit_on_graph(x, split=None, **kw):
            seen["graph"] = split
            return fit(x, **kw)

        # a scheme that declares it fits on the split's interactions (IdScheme.fit_context), as a graph does
        graph_scheme = type("GraphLike", (type(scheme),), {"fit_context": property(lambda self: ("split",))})
        scheme.__class__ = graph_scheme
        scheme.fit = fit_on_graph
        return scheme

    monkeypatch.setattr(genir.ids, "build_scheme", graph_like)
    out = build_index(str(inter_csv), _pop_spec(tmp_path, "fake_cf"), tmp_path / "cf", progress=False,
                      split="temporal")
    assert seen["fake_cf"] is seen["graph"]
    assert seen["graph"].protocol == "temporal(0.1,0.1)" and seen["graph"].train["timestamp"].max() <= 30
    index = load_index(out)
    assert _ranks(index) == {"a1": 0, "a2": 1, "a3": 2, "b3": 0, "b2": 1, "b1": 2}
    record = index.manifest["split"]
    assert record["used_for"] == ["fake_cf_features", "popularity", "graph"]
    assert record["train_fingerprint"] == split_record(seen["graph"])["train_fingerprint"]


def test_default_is_leave_one_out(built, dataset):
    from genir.data import leave_one_out

    record = load_index(built).manifest["split"]
    split = leave_one_out(dataset)
    assert record == {"protocol": "leave_one_out", "cutoff": None, "train_interactions": len(split.train_rows),
                      "train_fingerprint": split_record(split)["train_fingerprint"], "used_for": []}


def test_random_split_is_recorded(tmp_path, dataset, spec_file, feature_file):
    from genir.data import random_split

    out = build_index(dataset, spec_file, tmp_path / "r", features=feature_file, progress=False, split="random")
    record = load_index(out).manifest["split"]
    split = random_split(dataset)
    assert record["protocol"] == "random(0.1,0.1,seed=0)" and record["cutoff"] is None
    assert record["train_fingerprint"] == split_record(split)["train_fingerprint"]
    assert record["train_interactions"] == len(split.train_rows) < dataset.num_interactions


def test_fingerprint_depends_on_the_rows_only(inter_csv):
    from genir.data import Dataset, make_split

    inter = _inter()
    a = split_record(make_split(Dataset.from_frames("x", inter), "temporal"))
    b = split_record(make_split(Dataset.from_frames("x", inter.iloc[::-1]), "temporal"))
    assert a == b
    moved = inter.assign(timestamp=inter["timestamp"].where(inter.index != 0, 0.5))  # an earlier training row
    c = split_record(make_split(Dataset.from_frames("x", moved), "temporal"))
    assert c["train_interactions"] == a["train_interactions"] and c["train_fingerprint"] != a["train_fingerprint"]


def test_unknown_split_is_refused(tmp_path, dataset, spec_file, feature_file, capsys):
    with pytest.raises(ConfigError, match=r"split: expected one of \['loo', 'temporal', 'random'\], got 'shuffled'"):
        build_index(dataset, spec_file, tmp_path / "x", features=feature_file, progress=False, split="shuffled")
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["index", "build", "--scheme", str(spec_file), "--out", str(tmp_path / "x"), "--split", "shuffled"])
    assert "invalid choice: 'shuffled'" in capsys.readouterr().err
