"""Run genir writers on a full disk and report, as one JSON object on stdout, how each ended and what it left.

    python -m tests.reliability.disk_full MODE TEMPLATE OUT

MODE ``tmpfs``: OUT is a small tmpfs (the test mounts it in a private mount namespace with ``unshare``); the index
of TEMPLATE is copied there, then the rest of the disk is filled, leaving a few KiB. MODE ``fsize``: OUT is a plain
folder and the process may not write files over 1 KiB (``RLIMIT_FSIZE``, SIGXFSZ ignored, so a write fails with
EFBIG): the fallback where mount namespaces are not allowed. Then an overwriting ``index build``, an ``index add``
and a fresh ``train`` run in turn, each reporting its exit code, its stderr, whether the old index is
byte-identical, and the temporary files left beside or inside the outputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import sys
from pathlib import Path

import genir.cli
import genir.index  # imported before the disk fills
import genir.runs


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_bytes().hex() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fill(folder: Path, leave: int) -> None:
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                fh.write(block)
                fh.flush()
        with contextlib.suppress(OSError):
            fh.flush()
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or ".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".lock"))


def _run(argv: list[str]) -> dict:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = genir.cli.main(argv)
    return {"code": code, "stderr": err.getvalue()}


def main() -> None:
    mode, template, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    shutil.copytree(template / "idx", out / "idx")
    old = _snapshot(out / "idx")
    if mode == "tmpfs":
        _fill(out, leave=4096)
    else:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
    t = str(template)
    report = {}
    report["build"] = _run(["index", "build", "--dataset", f"{t}/inter.csv", "--items", f"{t}/items.csv",
                            "--features", f"{t}/feats.npy", "--scheme", f"{t}/spec.yaml", "--out", str(out / "idx"),
                            "--quiet", "--overwrite", "codebook_size=3"])
    report["build"]["old_intact"] = _snapshot(out / "idx") == old
    report["build"]["leftovers"] = _leftovers(out)
    report["add"] = _run(["index", "add", str(out / "idx"), "--items", f"{t}/new.csv", "--features",
                          f"{t}/new.npy", "--quiet"])
    report["add"]["old_intact"] = _snapshot(out / "idx") == old
    report["add"]["leftovers"] = _leftovers(out)
    report["train"] = _run(["train", "--model", "bpr", "--dataset", f"{t}/inter.csv", "--out", str(out / "run"),
                            "epochs=2", "embedding_size=64", "progress=false", "cpu=true"])
    run = out / "run"
    report["train"]["leftovers"] = _leftovers(out)
    report["train"]["files"] = sorted(p.name for p in run.iterdir()) if run.is_dir() else []
    if (run / "best_model.safetensors").is_file():
        from genir.tensor_files import load_tensors

        load_tensors(run / "best_model.safetensors")  # whole, or this raises
    print(json.dumps(report))


if __name__ == "__main__":
    main()
