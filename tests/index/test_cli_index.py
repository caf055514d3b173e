"""genir index build|info|add through the command line (genir.cli.main); user errors exit with 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genir.cli import build_parser, main
from genir.cli_index import add_index_commands
from tests.index.conftest import DIM, item_frame, snapshot


def test_parser_registers_index_commands():
    parser = build_parser()
    args = parser.parse_args(["index", "build", "--scheme", "s.yaml", "--out", "o", "codebook_size=8"])
    # no --dataset: ml-100k (None here, so that --corpus can refuse an explicit --dataset)
    assert (args.dataset, args.scheme, args.out, args.overrides) == (None, "s.yaml", "o", ["codebook_size=8"])
    assert parser.parse_args(["index", "info", "d"]).dir == "d"
    assert parser.parse_args(["index", "add", "d", "--items", "f.csv"]).items == "f.csv"
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    assert add_index_commands(sub).prog.endswith("index")


def test_build_info_add(tmp_path, dataset, spec_file, feature_file, capsys, monkeypatch):
    import genir.data

    monkeypatch.setattr(genir.data, "load_dataset", lambda name, items=None: dataset)
    out = tmp_path / "idx"
    assert main(["index", "build", "--dataset", "tiny", "--scheme", str(spec_file), "--out", str(out),
                 "--features", str(feature_file), "--quiet", "niter=3"]) == 0
    assert f"index written to {out}: 40 items, scheme rq_kmeans" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["spec"]["params"]["niter"] == 3

    assert main(["index", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| level | size | used | utilisation | perplexity | semantic |" in text and "collisions   rate" in text
    assert main(["index", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_items"] == 40

    items, feats = tmp_path / "new.tsv", tmp_path / "new.npy"
    item_frame(["n1", "n2"]).drop(columns="genres").to_csv(items, sep="\t", index=False)
    np.save(feats, np.ones((2, DIM), dtype=np.float32))
    assert main(["index", "add", str(out), "--items", str(items), "--features", str(feats), "--quiet"]) == 0
    assert "added 2 item(s)" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["n_items"] == 42


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _version_2(built):
    path = built / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 2}))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: _flip(d / "ids.npy"), "ids.npy: sha256 does not match"),
    (lambda d: (d / "items.jsonl").unlink(), "items.jsonl: missing"),
    (lambda d: (d / "scheme" / "state.safetensors").unlink(), "state.safetensors: missing"),
    (_version_2, "index format 2 not supported by genir 0.1.0 (reads 1)"),
])
@pytest.mark.parametrize("command", ["info", "add"])
def test_damaged_index_exits_2(tmp_path, built, damage, message, command, capsys):
    damage(built)
    argv = ["index", command, str(built)]
    if command == "add":
        items = tmp_path / "new.csv"
        item_frame(["n1"]).to_csv(items, index=False)
        argv += ["--items", str(items)]
    before = snapshot(built)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genir: error: ") and message in err and "\n" not in err
    assert snapshot(built) == before


def test_build_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scheme: nope\n")
    assert main(["index", "build", "--scheme", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "scheme: expected one of" in capsys.readouterr().err
    assert main(["index", "build", "--scheme", str(bad), "--out", str(tmp_path / "o"), "novalue"]) == 2
    assert "must look like key=value" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
