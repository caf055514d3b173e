"""Provenance of results: environment() names the commit of the code this process imported."""

import re
import subprocess

from genir import runs


def test_commit_is_read_at_import_not_when_a_result_is_written(monkeypatch):
    before = runs.environment()["git"]
    assert before is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", before), before

    def moved_head(cmd, **kwargs):  # as if a later commit were checked out while a worker pool runs
        out = "" if "status" in cmd else "f" * 40 + "\n"
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(subprocess, "run", moved_head)
    assert runs._git_commit() == "f" * 40  # what a read at write time would report
    assert runs.environment()["git"] == before  # what the results record: the imported code's commit
