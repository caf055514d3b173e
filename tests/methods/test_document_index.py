"""Document indexes through the CLI: `genir index build --corpus`, `genir index add --corpus` (PromptDSI's update)
and `genir retrieve --query`, on a BEIR folder the test writes and a tiny BERT built in the test."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genir.cli import main
from genir.data.beir import write_beir
from genir.methods.dsi.document_index import DocumentIndex, load_model, read_documents, save_model
from genir.methods.dsi.procedures import DSIConfig, atomic_dsi_from, make_encoder, prompt_model
from genir.tensor_files import load_tensors
from tests.conftest import single_threaded
from tests.core.conftest import make_corpus, tiny_bert

SPEC = str(Path(__file__).parents[2] / "tokenizers" / "hkmeans_docid.yaml")


_one_thread = single_threaded()


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    """120 documents in two steps (0-89, 90-119); queries of D0 documents train/dev/test, of D1 test only."""
    docs, queries, qrels = make_corpus(120)
    corpus = docs.rename(columns={"id": "_id"}).assign(synopsis=docs["title"].str.upper())
    q = queries.merge(qrels, on="qid")
    stage = np.where(q["item"] >= 90, "test", np.select([q["item"] < 60, q["item"] < 75], ["train", "dev"], "test"))
    rel = {s: pd.DataFrame({"query-id": q["qid"][stage == s], "corpus-id": [f"doc{i}" for i in q["item"][stage == s]],
                            "score": 1}) for s in ("train", "dev", "test")}
    steps = pd.DataFrame({"corpus-id": [f"doc{i}" for i in range(120)], "step": [0] * 90 + [1] * 30})
    root = tmp_path_factory.mktemp("beir")
    folder = write_beir(root / "corpus", corpus, q.rename(columns={"qid": "_id"})[["_id", "text"]], rel, steps,
                        metadata_columns=("synopsis",))
    encoder = tiny_bert(root / "tiny-bert", docs["title"].tolist() + docs["text"].tolist() + q["text"].tolist())
    return folder, encoder, q.set_index("qid")


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(encoder) -> list[str]:
    return [f"encoder={encoder}", "max_length=16", "epochs=12", "lr=5e-3", "step_epochs=8", "step_lr=5e-3",
            "n_topics=4", "prompt_length=2", "top_k=1", "batch_size=32", "beam_width=10"]


def test_build_add_retrieve_and_refusals(beir, tmp_path, capsys):
    folder, encoder, queries = beir
    out = tmp_path / "docs"
    train = [x for kv in _train(encoder) for x in ("--train", kv)]
    assert main(["index", "build", "--corpus", str(folder), "--step", "0", "--scheme", SPEC, "--out", str(out),
                 "--quiet", *train, "k=4", "c=8"]) == 0
    built = capsys.readouterr().out
    assert "90 documents" in built and "atomic DSI" in built
    losses = [float(x) for x in built.split("(loss ")[1].rstrip(")\n").split(" -> ")]
    assert losses[-1] < 0.5 * losses[0], losses

    # a D0 document's query: the answer lines are "rank  id  synopsis  score", ids of D0 only
    qid = next(q for q, row in queries.iterrows() if row["item"] < 90)
    assert main(["retrieve", "--index", str(out), "--query", queries.loc[qid, "text"], "-k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(lines) == 5
    ids = [ln.split()[1] for ln in lines]
    assert all(int(i[3:]) < 90 for i in ids)
    assert lines[0].split()[2].isupper()  # the document's synopsis (the fixture's are upper case)

    # a new corpus step: PromptDSI's update, then D1 documents can be answered
    before = DocumentIndex(out)
    assert main(["index", "add", str(out), "--corpus", str(folder), "--step", "1", "--quiet"]) == 0
    added = capsys.readouterr().out
    assert "added 30 document(s)" in added and "now 120 documents" in added and "topic-keyed pool of 4" in added
    after = DocumentIndex(out)
    assert after.info["n_items"] == 120 and after.info.get("pool") and len(after.items) == 120
    # the encoder's upper layers and D0's rows did not move; only prompts and D1's rows trained
    for name, value in before.model.state_dict().items():
        assert torch.equal(value, after.model.dsi.state_dict()[name]), name
    d1 = queries[queries["item"] >= 90]
    hits = [f"doc{row['item']}" in [d for d, _, _ in after.search([row["text"]], k=10)[0]] for _, row in d1.iterrows()]
    assert np.mean(hits) > 0.3, np.mean(hits)  # 10 of 120 documents at random: 0.08

    # adding documents already present is refused and leaves the index and model as they were
    state = _digest(out)
    assert main(["index", "add", str(out), "--corpus", str(folder), "--step", "1"]) == 2
    assert "already in the index" in capsys.readouterr().err
    assert _digest(out) == state
    assert main(["index", "add", str(out), "--corpus", str(folder), "--step", "7"]) == 2
    assert "no corpus step 7" in capsys.readouterr().err
    assert _digest(out) == state
    assert main(["retrieve", "--index", str(out), "--history", "1,2"]) == 2
    assert "--query" in capsys.readouterr().err

    # served over HTTP: text queries, document ids with their synopses
    from fastapi.testclient import TestClient

    from genir.serve import Server, create_app

    with TestClient(create_app(Server(out, max_wait_ms=1))) as client:
        row = d1.iloc[0]
        r = client.post("/retrieve", json={"query": row["text"], "k": 10})
        assert r.status_code == 200 and len(r.json()["results"]) == 10
        assert [x["item"] for x in r.json()["results"]] == [d for d, _, _ in after.search([row["text"]], k=10)[0]]
        assert all(x["title"].isupper() for x in r.json()["results"])
        r = client.post("/retrieve", json={"history": ["doc1"]})
        assert r.status_code == 400 and "text queries" in r.json()["error"]
        assert client.get("/info").json()["prompted"] is True


def test_semantic_document_index_decodes_existing_docids_and_is_not_extended(beir, tmp_path, capsys):
    folder, encoder, queries = beir
    out = tmp_path / "sem"
    train = [x for kv in _train(encoder) for x in ("--train", kv)]
    assert main(["index", "build", "--corpus", str(folder), "--step", "0", "--scheme", SPEC, "--out", str(out),
                 "--model", "semantic", "--quiet", *train, "k=4", "c=8"]) == 0
    capsys.readouterr()
    index = DocumentIndex(out)
    found = index.search(queries["text"].tolist()[:20], k=10)
    assert all(1 <= len(r) <= 10 and all(int(d[3:]) < 90 for d, _, _ in r) for r in found)
    state = _digest(out)
    assert main(["index", "add", str(out), "--corpus", str(folder), "--step", "1"]) == 2
    assert "semantic docids" in capsys.readouterr().err
    assert _digest(out) == state


def test_saved_prompted_model_answers_as_before(beir, tmp_path):
    folder, encoder, _ = beir
    cfg = DSIConfig.from_dict(dict(kv.split("=", 1) for kv in _train(encoder)), coerce=True)
    docs = read_documents(folder, step=0)
    enc = make_encoder(cfg)
    model = atomic_dsi_from(enc, enc.embed(docs.texts, progress=False), np.arange(90), 90, cfg)
    pmodel = prompt_model(copy.deepcopy(model), docs.texts, cfg, learn_keys=False, seed=0)
    with torch.no_grad():
        pmodel.pool.prompts.normal_()  # prompts that change the answer
    pmodel.dsi.add_block(torch.randn(5, enc.hidden_size), np.arange(90, 95))
    save_model(pmodel, cfg, tmp_path / "dsi", {})
    loaded, _, info = load_model(tmp_path)
    assert info["kind"] == "atomic" and info["n_items"] == 95
    texts = docs.texts[:7]
    with torch.no_grad():
        assert torch.allclose(loaded.eval().scores(texts), pmodel.eval().scores(texts), atol=1e-5)
    # a model saved by an earlier version (torch.save, model.pt) still loads
    legacy = load_tensors(tmp_path / "dsi" / "model.safetensors")
    torch.save(legacy, tmp_path / "dsi" / "model.pt")
    (tmp_path / "dsi" / "model.safetensors").rename(tmp_path / "model.safetensors.bak")
    old, _, _ = load_model(tmp_path)
    with torch.no_grad():
        assert torch.allclose(old.eval().scores(texts), pmodel.eval().scores(texts), atol=1e-5)
    (tmp_path / "model.safetensors.bak").rename(tmp_path / "dsi" / "model.safetensors")
    stored = load_tensors(tmp_path / "dsi" / "model.safetensors")
    assert not [k for k in stored if "embeddings" in k or ".layer.0." in k]  # the frozen part is not stored
    assert [k for k in stored if ".layer.2." in k] and "pool.prompts" in stored
