"""The index lifecycle with a trained generator: `genir index add` keeps the model and makes new items
retrievable at once (no retraining: a new item shares the semantic prefix of a similar old one), then
`genir train --index DIR --resume` fine-tunes on top; the run reloads strictly from its own files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from genir.cli import main
from tests.tiger.test_cli import TRAIN


def _retrieved(capsys) -> list[list[str]]:
    return [line.split() for line in capsys.readouterr().out.splitlines() if line and not line.startswith("#")]


def test_add_then_retrieve_then_resume(index_dir, dataset, tmp_path, capsys):
    assert main(["train", "--index", str(index_dir), *TRAIN]) == 0
    weights = (index_dir / "model" / "best_model.safetensors").read_bytes()
    capsys.readouterr()
    history = [str(x) for x in dataset.item_ids[:3]]
    assert main(["retrieve", "--index", str(index_dir), "--history", ",".join(history), "-k", "3"]) == 0
    top = _retrieved(capsys)[0][1]  # the item the generator puts first for this history

    # a new item whose features equal the top item's: same semantic codes, next position in its group
    features = np.random.default_rng(0).normal(size=(dataset.num_items, 8)).astype(np.float32)
    new = tmp_path / "new.csv"
    pd.DataFrame({"item": ["new-1"], "title": ["A re-release"]}).to_csv(new, index=False)
    np.save(tmp_path / "new.npy", features[[dataset.item_index(top)]])
    assert main(["index", "add", str(index_dir), "--items", str(new), "--features", str(tmp_path / "new.npy")]) == 0
    assert (index_dir / "model" / "best_model.safetensors").read_bytes() == weights  # the generator is kept
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["n_items"] == dataset.num_items + 1
    capsys.readouterr()

    # retrievable at once, without retraining: it shares the top item's prefix, so it comes with it (measured
    # rank 7 of the 22 unseen items on this seed; the top item stays first)
    k = 10
    assert main(["retrieve", "--index", str(index_dir), "--history", ",".join(history), "-k", str(k)]) == 0
    rows = _retrieved(capsys)
    found = [r[1] for r in rows]
    assert "new-1" in found and found[0] == top
    new_row = rows[found.index("new-1")]
    assert "A re-release" in " ".join(new_row) and "(added to the index)" in " ".join(new_row)
    assert main(["retrieve", "--index", str(index_dir), "--history", "new-1", "-k", "3"]) == 0  # as history too
    assert len(_retrieved(capsys)) == 3

    # evaluation still ranks the dataset's catalogue; the model loads strictly from its own files
    assert main(["eval", "--index", str(index_dir)]) == 0
    capsys.readouterr()

    # fine-tune on top of the trained generator, on the grown index
    assert main(["train", "--index", str(index_dir), "--resume", *TRAIN]) == 0
    run = json.loads((index_dir / "model" / "run.json").read_text())
    assert run["spec"]["init_from"].endswith(".model.init")
    assert (index_dir / "model" / "best_model.safetensors").read_bytes() != weights
    capsys.readouterr()
    # the fine-tuning data has no interaction of the new item, so it drops in the ranking but stays in the index
    everything = str(dataset.num_items + 1)
    assert main(["retrieve", "--index", str(index_dir), "--history", ",".join(history), "-k", everything]) == 0
    assert "new-1" in [r[1] for r in _retrieved(capsys)]


def test_resume_without_a_model_exits_2(index_dir, capsys):
    assert main(["train", "--index", str(index_dir), "--resume", *TRAIN]) == 2
    assert "--resume: no trained model in" in capsys.readouterr().err


def test_add_that_grows_the_collision_level_keeps_the_model_loadable(index_dir, dataset, tmp_path, capsys):
    """Many new items under one semantic prefix grow the last (collision) level, so the generator's code-token
    table is larger on the grown index: the saved rows still load (strictly: only that growth is allowed)."""
    assert main(["train", "--index", str(index_dir), *TRAIN]) == 0
    before = json.loads((index_dir / "manifest.json").read_text())["level_sizes"]
    features = np.random.default_rng(0).normal(size=(dataset.num_items, 8)).astype(np.float32)
    copies = before[-1] + 3  # more new items under one prefix than the largest group had
    new = tmp_path / "many.csv"
    pd.DataFrame({"item": [f"copy-{j}" for j in range(copies)], "title": [f"Copy {j}" for j in range(copies)]}
                 ).to_csv(new, index=False)
    np.save(tmp_path / "many.npy", np.repeat(features[:1], copies, axis=0))
    assert main(["index", "add", str(index_dir), "--items", str(new), "--features", str(tmp_path / "many.npy")]) == 0
    after = json.loads((index_dir / "manifest.json").read_text())["level_sizes"]
    assert after[:-1] == before[:-1] and after[-1] > before[-1]
    capsys.readouterr()
    assert main(["retrieve", "--index", str(index_dir), "--history", str(dataset.item_ids[0]), "-k", "5"]) == 0
    assert len(_retrieved(capsys)) == 5
    assert main(["eval", "--index", str(index_dir)]) == 0
    assert main(["train", "--index", str(index_dir), "--resume", *TRAIN]) == 0
