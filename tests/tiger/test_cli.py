from __future__ import annotations

import json

from genir.cli import main

TRAIN = ["epochs=2", "progress=false", "cpu=true", "d_model=32", "num_heads=2", "d_ff=64",
         "num_encoder_layers=1", "num_decoder_layers=1", "max_history=5", "beam_width=8", "batch_size=32"]


def test_retrieve_before_training_exits_2(index_dir, capsys):
    assert main(["retrieve", "--index", str(index_dir), "--history", "i1,i2"]) == 2
    err = capsys.readouterr().err
    assert f"no trained model in {index_dir / 'model'}" in err
    assert f"run `genir train --index {index_dir}` first" in err


def test_train_retrieve_eval_through_the_index(index_dir, dataset, tmp_path, capsys):
    assert main(["train", "--index", str(index_dir), *TRAIN]) == 0
    assert (index_dir / "model" / "best_model.safetensors").is_file()
    info = json.loads((index_dir / "model" / "run.json").read_text())
    assert info["spec"]["model"] == "tiger" and info["method"]["index"] == ".."  # relative: the run moves with its index
    capsys.readouterr()

    history = [str(x) for x in dataset.item_ids[:3]]
    assert main(["retrieve", "--index", str(index_dir), "--history", ",".join(history), "-k", "4"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(rows) == 4
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    assert not {r[1] for r in rows} & set(history)
    assert all(r[1] in set(map(str, dataset.item_ids)) for r in rows)

    batch = tmp_path / "queries.txt"
    batch.write_text(f"{history[0]}\nuser:{dataset.user_ids[0]}\n")
    assert main(["retrieve", "--index", str(index_dir), "--batch", str(batch), "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("#") for line in out) == 2 and len(out) == 2 + 2 * 3

    assert main(["eval", "--index", str(index_dir)]) == 0
    out = capsys.readouterr().out
    assert "tiger (test)" in out and "ndcg@10" in out

    # beside SASRec's row, with the exact ranking and the beam's agreement with it
    sasrec = tmp_path / "sasrec"
    assert main(["train", "--model", "sasrec", "--dataset", str(dataset.source), "--out", str(sasrec), "epochs=1",
                 "progress=false", "cpu=true", "hidden_size=8", "max_seq_length=5"]) == 0
    capsys.readouterr()
    assert main(["eval", "--index", str(index_dir), "--exact", "--compare", str(sasrec), "--json"]) == 0
    out = capsys.readouterr().out
    assert "| tiger (test) |" in out and "| tiger exact (test) |" in out and "| sasrec (test) |" in out
    res = json.loads(out.strip().splitlines()[-1])
    agree = res["agreement"]
    assert agree["users"] == 20 and 0.0 <= agree["same_top_k_list"] <= agree["same_top_k_set"] <= 1.0
    assert abs(agree["metric_difference"]["ndcg@10"] - (agree["metrics_approx"]["ndcg@10"]
                                                        - agree["metrics_exact"]["ndcg@10"])) < 1e-12


def test_train_with_model_and_index_field(index_dir, inter_file, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "tiger", "--dataset", str(inter_file), "--out", str(out), f"index={index_dir}",
                 *TRAIN]) == 0
    assert (out / "best_model.safetensors").is_file()


def test_train_without_model_or_index_exits_2(capsys):
    assert main(["train", "epochs=1"]) == 2
    assert "--model" in capsys.readouterr().err


def test_eval_before_training_exits_2(index_dir, capsys):
    assert main(["eval", "--index", str(index_dir)]) == 2
    assert "no trained model in" in capsys.readouterr().err
