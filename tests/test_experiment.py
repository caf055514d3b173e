"""run_arms' journal: finished runs are saved at once, loaded instead of retrained, retrained when changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genir.data import Dataset, leave_one_out
from genir.experiment import Arm, run_arms, write_report
from tests.conftest import make_inter

ROOT = Path(__file__).resolve().parents[1]


def test_journal_resumes_and_shares_runs(tmp_path):
    split = leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=20, n_items=30, per_user=8)))
    arms = [Arm("pop", "pop"), Arm("bpr", "bpr", {"epochs": 2, "batch_size": 64, "embedding_size": 8})]
    common = {"progress": False, "cpu": True}
    hooked, lines = [], []
    first = run_arms(arms, [1, 2], split, common=common, journal=tmp_path / "runs",
                     on_run=lambda arm, seed, model, res: (hooked.append((arm.label, seed)),
                                                          res.update(extra=seed)))
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "bpr-seed1.json", "bpr-seed2.json", "pop-seed1.json", "pop-seed2.json"]
    assert len(hooked) == 4 and json.loads((tmp_path / "runs" / "bpr-seed2.json").read_text())["result"]["extra"] == 2

    # same arms again: nothing is trained, the results are the journaled ones
    again = run_arms(arms, [1, 2], split, common=common, journal=tmp_path / "runs", log=lines.append,
                     on_run=lambda *a: hooked.append("trained"))
    assert len(hooked) == 4 and all("loaded from" in line for line in lines)
    assert again.test_table() == first.test_table() and again.curves == first.curves
    write_report(again, tmp_path / "report", title="t", recipe="t")

    # a changed setting is a different run: retrained and the journal entry replaced
    changed = [Arm("bpr", "bpr", {"epochs": 1, "batch_size": 64, "embedding_size": 8})]
    run_arms(changed, [1], split, common=common, journal=tmp_path / "runs", log=lines.append,
             on_run=lambda *a: hooked.append("retrained"))
    assert hooked[-1] == "retrained"
    saved = json.loads((tmp_path / "runs" / "bpr-seed1.json").read_text())
    assert saved["result"]["settings"]["trainer"]["epochs"] == 1

    # train=False reads the journal only: a missing seed is skipped and the report marks the arm
    partial = run_arms([Arm("pop", "pop"), *changed], [1, 3], split, common=common, journal=tmp_path / "runs",
                       log=lines.append, train=False)
    assert [r["seed"] for r in partial.runs["pop"]] == [1] and [r["seed"] for r in partial.runs["bpr"]] == [1]
    results = write_report(partial, tmp_path / "partial", title="t", recipe="t")
    assert results["partial"] and results["seeds_run"] == {"pop": [1], "bpr": [1]}
    assert "| pop (1 of 2 seeds) |" in (tmp_path / "partial" / "results.md").read_text()


def _mark_worker(arm, seed, model, res):  # module level: picklable for the spawned workers
    res["pid"] = os.getpid()


def test_parallel_workers_fill_the_journal(tmp_path):
    """workers=2 trains the missing runs in spawned processes (the on_run hook runs there), skips journaled ones,
    and returns the same table as a sequential run of the same settings with the same thread count."""
    import torch

    split = leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=20, n_items=30, per_user=8)))
    arms = [Arm("pop", "pop"), Arm("bpr", "bpr", {"epochs": 2, "batch_size": 64, "embedding_size": 8})]
    common = {"progress": False, "cpu": True}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sequential = run_arms(arms, [1, 2], split, common=common, journal=tmp_path / "seq")
    finally:
        torch.set_num_threads(threads)
    run_arms(arms[:1], [1], split, common=common, journal=tmp_path / "par")  # already there: not retrained
    lines = []
    parallel = run_arms(arms, [1, 2], split, common=common, journal=tmp_path / "par", workers=2,
                        threads_per_worker=1, on_run=_mark_worker, log=lines.append)
    assert sum(line.startswith("finished ") for line in lines) == 3
    assert "pid" not in parallel.runs["pop"][0]
    assert all(r["pid"] != os.getpid() for r in parallel.runs["bpr"])
    for label in ("pop", "bpr"):
        for a, b in zip(sequential.runs[label], parallel.runs[label]):
            assert a["test"] == pytest.approx(b["test"], abs=1e-6)
    with pytest.raises(ValueError, match="journal"):
        run_arms(arms, [1], split, common=common, workers=2)


def test_workers_start_the_costliest_arms_first(tmp_path, monkeypatch):
    """Runs are handed to the workers by Arm.cost, highest first (stable among equal costs), so the pool does not
    end with one long run while the other workers idle."""
    from concurrent.futures import ThreadPoolExecutor

    from genir import experiment

    monkeypatch.setattr(experiment, "worker_pool", lambda workers: ThreadPoolExecutor(1))  # runs in submit order
    split = leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=20, n_items=30, per_user=8)))
    arms = [Arm("pop", "pop"), Arm("pop-costly", "pop", cost=3), Arm("pop-middle", "pop", cost=2)]
    started = []
    run_arms(arms, [1, 2], split, common={"progress": False, "cpu": True}, journal=tmp_path, workers=2,
             on_run=lambda arm, seed, model, res: started.append((arm.label, seed)), log=lambda s: None)
    assert started == [("pop-costly", 1), ("pop-costly", 2), ("pop-middle", 1), ("pop-middle", 2), ("pop", 1),
                       ("pop", 2)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_worker_pool_workers_die_with_their_parent():
    """A plain `kill` of a recipe must not leave its workers training (they would keep writing to the journal)."""
    script = (
        "import os, sys, time\n"
        "from genir.experiment import worker_pool\n"
        "pool = worker_pool(1)\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "pool.submit(time.sleep, 120)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        worker = int(parent.stdout.readline())
        assert _running(worker)  # alive while its parent is
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _running(worker):
            time.sleep(0.1)
        if not _running(worker):
            return
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"worker {worker} outlived its parent")
    finally:
        parent.kill()


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
