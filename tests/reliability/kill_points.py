"""Stop a genir command with SIGKILL right before its N-th change to the file system, for every N chosen.

Run in a fresh interpreter by the fault tests::

    python -m tests.reliability.kill_points TEMPLATE WORK POINTS -- genir-args...

TEMPLATE is a folder (the inputs and the state before the command); for each point a copy of it is made at
WORK/p<N> and the command runs on it, ``{dir}`` in its arguments standing for that copy. A first run at WORK/full goes
to the end and lists the changes it made (files opened for writing, renames and exchanges, removals, folders made)
under the copy; then each chosen point runs in a forked child that installs an audit hook (``sys.addaudithook``)
counting those changes and kills itself with SIGKILL on the N-th, before it happens. POINTS is ``all`` or
``K:SEED`` (K points drawn with that seed, plus every rename/exchange, the moments a dir changes hands, and the
change right after each). The report,
one JSON object on stdout, lists the events and, per point, the event it stopped before and how the child ended.

The interpreter imports genir once and forks per point (a fresh interpreter costs seconds each); the parent runs
no torch or OpenMP work before forking, so the children start clean.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sys
from pathlib import Path

import genir.cli

PRELOAD = ("genir.index", "genir.ids", "genir.runs", "genir.cli_index", "faiss")  # what the commands import lazily

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _paths(event: str, args: tuple) -> list:
    if event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        return [path] if writes else []
    if event in ("os.rename", "genir.exchange"):
        return list(args[:2])
    if event in ("os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate", "os.link", "os.symlink"):
        return [args[0]] if event != "os.link" else list(args[:2])
    return []


def _hook(root: str, events: list, stop_at: int | None):
    def hook(event: str, args: tuple) -> None:
        if event == "os.rmdir" and len(args) > 1 and args[1] is not None:
            return  # inside an rmtree (names relative to a dir fd): counted once, as its shutil.rmtree event
        if event == "os.remove" and len(args) > 1 and args[1] is not None:
            return
        for p in _paths(event, args):
            if isinstance(p, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(p)).startswith(root):
                events.append(f"{event} {os.path.relpath(os.fsdecode(p), root)}")
                if stop_at is not None and len(events) == stop_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return
    return hook


def _run(copy: Path, argv: list[str], stop_at: int | None, events_file: Path | None) -> tuple[str, int | None]:
    """Fork; the child runs ``genir argv`` on ``copy`` with the hook. Returns (how it ended, exit code or None)."""
    args = [a.replace("{dir}", str(copy)) for a in argv]
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            out = os.open(str(copy) + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(out, 2)
            events: list[str] = []
            sys.addaudithook(_hook(str(copy.resolve()) + os.sep, events, stop_at))
            code = genir.cli.main(args)
            if events_file is not None:
                with open(events_file, "w") as fh:  # outside the copy: not an event
                    json.dump(events, fh)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}", None
    return "exit", os.WEXITSTATUS(status)


def main() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    template, work, points = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    argv = sys.argv[sys.argv.index("--") + 1:]
    work.mkdir(parents=True, exist_ok=True)
    full = work / "full"
    shutil.copytree(template, full)
    ended, code = _run(full, argv, None, work / "events.json")
    if code != 0:
        raise SystemExit(f"the uninterrupted run failed ({ended} {code}); see {full}.log")
    events = json.loads((work / "events.json").read_text())
    if points == "all":
        chosen = list(range(1, len(events) + 1))
    else:
        k, seed = map(int, points.split(":"))
        moves = {i + 1 for i, e in enumerate(events) if e.startswith(("os.rename", "genir.exchange"))}
        rest = sorted(set(range(1, len(events) + 1)) - moves)
        after = {m + 1 for m in moves if m < len(events)}  # the first change once a dir has changed hands
        rest = sorted(set(rest) - after)
        chosen = sorted(moves | after | set(random.Random(seed).sample(rest, min(k, len(rest)))))
    report = {"events": events, "points": []}
    for n in chosen:
        copy = work / f"p{n}"
        shutil.copytree(template, copy)
        ended, code = _run(copy, argv, n, None)
        report["points"].append({"point": n, "before": events[n - 1], "ended": ended, "code": code})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
