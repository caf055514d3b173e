"""A full disk under `genir index build`, `index add` and `train` (tests/reliability/disk_full.py): one clear line
naming the file and the reason, exit 2, the old index byte-identical and no temporary file left behind.

The disk is a 1 MiB tmpfs mounted in a private mount namespace (``unshare --user --map-root-user --mount``, no root
needed) and filled up to its last 4 KiB; where user namespaces are not allowed the same run uses a 1 KiB file-size
limit (``RLIMIT_FSIZE``) instead, so the test never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.reliability.test_killed_writers import template  # noqa: F401  the fixture

ROOT = Path(__file__).parents[2]


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    return subprocess.run([unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{probe}'"],
                          check=False, capture_output=True).returncode == 0


def test_full_disk_fails_cleanly(template, tmp_path):  # noqa: F811
    out = tmp_path / "disk"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    helper = [sys.executable, "-m", "tests.reliability.disk_full"]
    if _can_mount_tmpfs(tmp_path):
        mode, reason, errno = "tmpfs", "No space left on device", 28
        cmd = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1" && shift && exec "$@"', "sh",
               str(out), *helper, mode, str(template), str(out)]
    else:
        mode, reason, errno = "fsize", "File too large", 27
        cmd = [*helper, mode, str(template), str(out)]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for step in ("build", "add", "train"):
        r = report[step]
        assert r["code"] == 2, (mode, step, r)
        lines = r["stderr"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"genir: error: {out}/"), (mode, step, r["stderr"])
        assert reason in lines[0] and lines[0].endswith(f"(errno {errno})"), (mode, step, lines)
        assert r["leftovers"] == [], (mode, step, r["leftovers"])
        if step != "train":
            assert r["old_intact"], (mode, step)
    assert "best_model.safetensors" not in report["train"]["files"]


def test_second_trainer_in_one_run_dir_is_refused(tmp_path, capsys):
    from genir.cli import main
    from genir.index import index_lock
    from tests.conftest import make_inter

    data, run = tmp_path / "inter.csv", tmp_path / "run"
    make_inter().to_csv(data, index=False)
    with index_lock(run):  # what a running `genir train --out run` holds
        code = main(["train", "--model", "pop", "--dataset", str(data), "--out", str(run), "progress=false"])
    err = capsys.readouterr().err
    assert code == 2 and "locked by another writer" in err and not run.exists()
