"""Writers of an index dir: `add` keeps what the index does not manage (a trained model/), one writer at a time
(an advisory lock; a second writer exits 2) and a writer killed mid-way leaves the old dir byte-identical."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from genir.cli import main
from genir.index import IndexLockedError, add_items, index_lock, load_index
from tests.index.conftest import DIM, item_frame, snapshot

ROOT = Path(__file__).parents[2]


def _new_items(tmp_path: Path, ids, name="new") -> tuple[Path, Path]:
    items, feats = tmp_path / f"{name}.csv", tmp_path / f"{name}.npy"
    item_frame(ids).drop(columns="genres").to_csv(items, index=False)
    np.save(feats, np.random.default_rng(len(name)).normal(size=(len(ids), DIM)).astype(np.float32))
    return items, feats


def _add_model(built: Path) -> None:
    """What `genir train --index DIR` leaves in DIR: a model/ folder of weights and settings, plus a note."""
    (built / "model" / "best").mkdir(parents=True)
    (built / "model" / "best" / "weights.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    (built / "model" / "config.json").write_text(json.dumps({"model": "tiger", "index": str(built)}))
    (built / "NOTES.md").write_text("trained on the index of 2024-01-01\n")


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".idx"))


def _start(script: str, *args) -> subprocess.Popen:
    """Run ``script`` in a fresh interpreter; return once it printed ``ready`` (it is then blocked in a sleep)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"helper process did not get ready: {line!r}\n{err}")
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()


# -- add keeps what the index does not manage ----------------------------------------------------------------------
def test_add_keeps_model_dir_byte_identical(tmp_path, built):
    _add_model(built)
    model_before, notes = snapshot(built / "model"), (built / "NOTES.md").read_bytes()
    for k, name in enumerate(["first", "second"]):  # the second add reads a manifest written by the first
        items, feats = _new_items(tmp_path, [f"{name}{j}" for j in range(2)], name)
        assert add_items(built, items, features=feats, progress=False)["n_items"] == 42 + 2 * k
        assert snapshot(built / "model") == model_before
        assert (built / "NOTES.md").read_bytes() == notes
        manifest = load_index(built).manifest  # verifies every listed sha256
        assert not [f for f in manifest["files"] if f.startswith("model/") or f == "NOTES.md"]
    assert _leftovers(tmp_path) == []


# -- one writer at a time ------------------------------------------------------------------------------------------
HOLD_LOCK = """
    import sys, time
    from genir.index import index_lock
    with index_lock(sys.argv[1]):
        print("ready", flush=True)
        time.sleep(300)
"""


def test_second_writer_exits_2_and_dir_is_unchanged(tmp_path, built, dataset, spec_file, feature_file, capsys,
                                                    monkeypatch):
    import genir.data

    monkeypatch.setattr(genir.data, "load_dataset", lambda name, items=None: dataset)
    items, feats = _new_items(tmp_path, ["n1", "n2"])
    before = snapshot(built)
    holder = _start(HOLD_LOCK, built)
    try:
        assert main(["index", "add", str(built), "--items", str(items), "--features", str(feats), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"genir: error: {built}: locked by another writer (pid {holder.pid}, lock file ")
        assert "\n" not in err
        assert main(["index", "build", "--dataset", "tiny", "--scheme", str(spec_file), "--out", str(built),
                     "--features", str(feature_file), "--overwrite", "--quiet"]) == 2
        assert f"locked by another writer (pid {holder.pid}" in capsys.readouterr().err
        assert snapshot(built) == before
        assert _leftovers(tmp_path) == [".idx.lock"]
    finally:
        _kill(holder)  # the kernel drops a dead holder's lock
    assert main(["index", "add", str(built), "--items", str(items), "--features", str(feats), "--quiet"]) == 0
    assert load_index(built).num_items == 42
    assert _leftovers(tmp_path) == []  # the lock file is removed on release


def test_lock_held_through_another_fd_refuses_add(tmp_path, built):
    items, feats = _new_items(tmp_path, ["n1"])
    before = snapshot(built)
    lock = tmp_path / ".idx.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(IndexLockedError, match=r"idx: locked by another writer \(pid 4242, lock file .*\.idx\.lock"):
            add_items(built, items, features=feats, progress=False)
        with pytest.raises(IndexLockedError), index_lock(built):  # not re-entrant: any second open file is refused
            pass
    finally:
        os.close(fd)
    assert snapshot(built) == before
    add_items(built, items, features=feats, progress=False)  # a stale lock file (4242 is gone) is taken over
    assert load_index(built).num_items == 41 and _leftovers(tmp_path) == []


def test_lock_before_the_dir_exists(tmp_path):
    target = tmp_path / "sub" / "new_idx"
    with index_lock(target):
        assert (tmp_path / "sub" / ".new_idx.lock").read_text() == f"{os.getpid()}\n"
        assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []


# -- a killed writer -----------------------------------------------------------------------------------------------
KILLED_ADD = """
    import os, sys, time
    from pathlib import Path
    import genir.index as gi

    directory, items, feats, point = sys.argv[1:5]
    name = Path(directory).name
    if point == "before_rename":  # temp dir and its manifest written, nothing renamed yet
        place = gi._place
        def slow_place(tmp, out):
            print("ready", flush=True)
            time.sleep(300)
            place(tmp, out)
        gi._place = slow_place
    elif point == "after_exchange":  # the new index in place by one swap, the old one not yet removed
        exchange = gi.exchange
        def slow_exchange(a, b):
            assert exchange(a, b)
            print("ready", flush=True)
            time.sleep(300)
        gi.exchange = slow_exchange
    else:  # where the system cannot exchange: the old index moved to its backup, the new one not yet in place
        gi.exchange = lambda a, b: False
        replace = os.replace
        def slow_replace(src, dst):
            replace(src, dst)
            if Path(dst).name.startswith(f".{name}.old-"):
                print("ready", flush=True)
                time.sleep(300)
        os.replace = slow_replace
    gi.add_items(directory, items, features=feats, progress=False)
    print("not killed", flush=True)
"""


@pytest.mark.parametrize("point", ["before_rename", "after_exchange", "between_renames"])
def test_killed_add_leaves_the_dir_byte_identical(tmp_path, built, point):
    _add_model(built)
    before = snapshot(built)
    items, feats = _new_items(tmp_path, ["k1", "k2"], "killed")
    proc = _start(KILLED_ADD, built, items, feats, point)
    _kill(proc)
    if point == "before_rename":
        assert snapshot(built) == before
        stale = tmp_path / f".idx.tmp-{proc.pid}"
        assert (stale / "manifest.json").is_file() and (stale / "model").is_dir()  # fully written, never placed
    elif point == "after_exchange":  # the new index is complete and in place; the old one waits to be removed
        assert load_index(built).num_items == 42
        assert snapshot(tmp_path / f".idx.tmp-{proc.pid}") == before
    else:
        assert not built.exists()
        assert snapshot(tmp_path / f".idx.old-{proc.pid}") == before
    assert ".idx.lock" in _leftovers(tmp_path)  # its lock file stays, but not its lock

    items2, feats2 = _new_items(tmp_path, ["n1"], "next")
    add_items(built, items2, features=feats2, progress=False)  # the next writer cleans up, then succeeds
    assert _leftovers(tmp_path) == []
    index = load_index(built)
    added = ["k1", "k2"] if point == "after_exchange" else []
    assert list(index.items["item"].iloc[40:]) == [*added, "n1"]
    after = snapshot(built)
    assert {k: v for k, v in after.items() if k.startswith("model/") or k == "NOTES.md"} == \
        {k: v for k, v in before.items() if k.startswith("model/") or k == "NOTES.md"}
    np.testing.assert_array_equal(index.table.codes[:40], _codes(before))  # the old IDs, unchanged


def _codes(files: dict[str, bytes]) -> np.ndarray:
    import io

    return np.load(io.BytesIO(files["ids.npy"]))
