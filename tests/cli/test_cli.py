"""The CLI end to end on small inputs, and its bad-input contract: one line on stderr, exit status 2."""

import json
import re

import pytest

from genir.cli import main
from tests.conftest import make_inter


@pytest.fixture
def csv_dataset(tmp_path):
    p = tmp_path / "inter.csv"
    make_inter(n_users=40, n_items=30, per_user=15).drop(columns="rating").to_csv(p, index=False)
    return p


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_eval_recommend_round_trip(tmp_path, csv_dataset, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "--model", "bpr", "--dataset", csv_dataset, "--out", run,
                             "epochs=3", "embedding_size=8", "progress=false", "cpu=true")
    assert code == 0, err
    assert "| bpr (test) |" in out
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 3 and (run / "best_model.safetensors").is_file()
    code, out, _ = run_cli(capsys, "eval", "--run", run, "--json")
    assert code == 0
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-9)
    code, out, _ = run_cli(capsys, "recommend", "--run", run, "--user", "u3", "-k", "5")
    assert code == 0 and "top-5 recommendations" in out and out.count("score") == 5


def test_yaml_config_and_override_precedence(tmp_path, csv_dataset, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method:\n  embedding_size: 4\ntrainer:\n  epochs: 5\n  lr: 0.5\n")
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "bpr", "--dataset", csv_dataset, "--config", cfg,
                           "--out", run, "epochs=2", "progress=false", "cpu=true")
    assert code == 0, err
    info = json.loads((run / "run.json").read_text())
    assert info["method"]["embedding_size"] == 4 and info["trainer"]["lr"] == 0.5
    assert info["trainer"]["epochs"] == 2  # command line beats the file


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "file not found"),
        ("user,item,timestamp\na,x,1\nb,y\n", "line 3: malformed row"),
        ("user,item,timestamp,clicks\na,x,1,3\n", "unknown column(s) ['clicks']"),
        ("user,item,timestamp\na,x,1\nb,y,2\n", "empty dataset after 5/5-core filtering"),
    ],
    ids=["missing", "malformed", "unknown-column", "empty-after-filter"],
)
def test_bad_dataset_exits_2_naming_file(tmp_path, capsys, content, needle):
    p = tmp_path / "data.csv"
    if content is not None:
        p.write_text(content)
    code, _out, err = run_cli(capsys, "data", "info", "--dataset", p, "--kcore", "5")
    assert code == 2
    assert "data.csv" in err and needle in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_setting_exits_2(capsys):
    code, _, err = run_cli(capsys, "train", "--model", "bpr", "embeding_size=8")
    assert code == 2 and "unknown setting(s) ['embeding_size']" in err


def test_unknown_model_exits_2(capsys):
    code, _, err = run_cli(capsys, "train", "--model", "nope")
    assert code == 2 and "unknown method 'nope'" in err


def test_eval_of_missing_run_exits_2(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", "--run", tmp_path / "nothing")
    assert code == 2 and "not a run directory" in err


def test_eval_of_corrupted_weights_exits_2(tmp_path, csv_dataset, capsys):
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--model", "bpr", "--dataset", csv_dataset, "--out", run, "epochs=1",
                   "progress=false", "cpu=true")[0] == 0
    (run / "best_model.safetensors").write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "eval", "--run", run)
    assert code == 2 and "best_model.safetensors" in err


def test_data_info_ml100k(capsys):
    code, out, _ = run_cli(capsys, "data", "info")
    info = json.loads(out)
    assert code == 0 and info["dataset"]["interactions"] == 100000 and info["split"]["test"] == 943


def test_demo_quick_shows_semantic_ids_and_both_recommenders(tmp_path, capsys, monkeypatch):
    """`genir demo` is about semantic IDs: an index with its stats, the generator's decoded recommendations with
    code tuples beside SASRec's, and the metrics table."""
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "semantic IDs" in out and "collisions" in out and "level" in out  # index info
    assert "TIGER (code tuple)" in out and "SASRec" in out
    assert re.search(r"\(\d+, \d+, \d+, \d+\)", out)  # a 3-level code tuple + collision position
    assert "| tiger |" in out and "| sasrec |" in out and "| pop |" in out
    assert (tmp_path / "demo" / "index" / "model" / "best_model.safetensors").is_file()
    assert re.search(r"demo finished in \d+s", out)
