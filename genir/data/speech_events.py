"""The generated speech-and-sound event benchmark (Double Mixture, Kang et al. 2024): reader and build command.

Its tasks, manifest format and decoder labels live in :mod:`genir.data.speech_event_tasks` and are re-exported
here; the generator is :mod:`genir.data.speech_events_build` (``build_speech_events``).

A benchmark folder holds ``manifest.tsv`` (tab-separated, header ``wav transcript task event_type split kind``)
and the clips it names, all 16 kHz mono 16-bit PCM WAVs of at most 8 s (:mod:`genir.data.audio`). Rows are of
four kinds:

* ``speech`` - a spoken sentence describing one event of a semantic task (``conflict:attack``); the paper's
  Speech-ACE05 is ACE05 text spoken by synthetic voices, ours is our own template sentences spoken by espeak-ng
  (:mod:`genir.data.speech_events_build`), so no ACE05 text is needed;
* ``sound`` - an acoustic event with transcript ``none`` (as the paper's ESC-50 rows); our sounds are real
  recordings shipped in Debian packages, or sox-synthesized where no recording exists (``recipes/data/sounds``),
  not ESC-50;
* ``join`` / ``overlay`` - a speech clip spliced with, or mixed over, a sound clip of the same split (the paper's
  Speech-join / Speech-overlay): task ``conflict+nature``, event type ``conflict:attack|nature:rain`` (speech
  first). They are the hybrid memory's mixed samples (train) and the generalisation test (test).

The decoder label of a row is :func:`target_text` (transcript, then ``<event>`` and each event type);
:func:`parse_event_output` inverts it for evaluation. Rebuild a folder with
``python -m genir.data.speech_events build --out DIR [--seed 0] [--per-task N]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.audio import SAMPLE_RATE, load_wav
from genir.data.speech_event_tasks import (
    DEFAULT_STREAM,
    EVENT_TOKEN,
    HYBRID_PAIRS,
    KINDS,
    MANIFEST_COLUMNS,
    MANIFEST_NAME,
    MAX_SECONDS,
    MIXED_KINDS,
    NO_TRANSCRIPT,
    SILENCE_PEAK,
    SOUND_TASKS,
    SPEECH_TASKS,
    SPLITS,
    normalize_transcript,
    parse_event_output,
    target_text,
)
from genir.data.speech_events_build import build as build_speech_events
from genir.errors import DatasetError

__all__ = [
    "DEFAULT_STREAM",
    "EVENT_TOKEN",
    "HYBRID_PAIRS",
    "KINDS",
    "MANIFEST_COLUMNS",
    "MANIFEST_NAME",
    "MAX_SECONDS",
    "MIXED_KINDS",
    "NO_TRANSCRIPT",
    "SILENCE_PEAK",
    "SOUND_TASKS",
    "SPEECH_TASKS",
    "SPLITS",
    "SpeechEvents",
    "build_speech_events",
    "normalize_transcript",
    "parse_event_output",
    "read_speech_events",
    "target_text",
]

_SKIP_REASONS = {"missing_wav": "a missing wav", "unreadable_wav": "an unreadable or corrupt wav",
                 "silent_wav": f"a silent wav (peak below {SILENCE_PEAK})",
                 "empty_transcript": "an empty transcript"}


@dataclass
class SpeechEvents:
    """A read benchmark: one row per usable clip (``clip_id`` = wav path without suffix, ``path`` absolute,
    ``transcript``, ``task``, ``event_type``, ``split``, ``kind``, ``duration_s``), its folder, and ``report``
    (rows read, clips kept and rows skipped by reason)."""

    clips: pd.DataFrame
    root: Path
    report: dict = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        """Tasks present, in order of first appearance."""
        return list(dict.fromkeys(self.clips["task"]))

    def by_task(self, task: str, split: str | None = None) -> pd.DataFrame:
        """The rows of ``task`` (a single task, or a hybrid ``a+b``), of one split if given."""
        keep = self.clips["task"] == task
        if split is not None:
            keep &= self.clips["split"] == split
        return self.clips[keep].reset_index(drop=True)

    def stream_tasks(self, order: tuple[str, ...] = DEFAULT_STREAM, split: str = "train"
                     ) -> list[tuple[str, pd.DataFrame]]:
        """(task, rows of ``split``) in the order of a continual stream; DatasetError for a task with no rows."""
        out = []
        for task in order:
            rows = self.by_task(task, split)
            if rows.empty:
                raise DatasetError(f"{self.root / MANIFEST_NAME}: task {task!r} has no {split} clips "
                                   f"(tasks: {self.tasks})")
            out.append((task, rows))
        return out

    def mixed(self, split: str | None = None, kind: str | None = None) -> pd.DataFrame:
        """Join/overlay rows (one kind if given), of one split if given."""
        keep = self.clips["kind"].isin([kind] if kind else MIXED_KINDS)
        if split is not None:
            keep &= self.clips["split"] == split
        return self.clips[keep].reset_index(drop=True)


def _manifest_rows(manifest: Path) -> list[tuple[int, dict]]:
    """(line number, row) of a manifest; DatasetError naming the file for wrong columns, a wrong field count, an
    unknown split or kind."""
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != MANIFEST_COLUMNS:
                raise DatasetError(f"{manifest}: expected the tab-separated columns {list(MANIFEST_COLUMNS)}, "
                                   f"found {header}")
            rows = []
            for fields in reader:
                line = reader.line_num
                if not any(f.strip() for f in fields):
                    continue
                if len(fields) != len(MANIFEST_COLUMNS):
                    raise DatasetError(f"{manifest}: line {line}: expected {len(MANIFEST_COLUMNS)} tab-separated "
                                       f"fields, found {len(fields)}")
                row = dict(zip(MANIFEST_COLUMNS, (f.strip() for f in fields)))
                if row["split"] not in SPLITS:
                    raise DatasetError(f"{manifest}: line {line}: unknown split {row['split']!r}, expected one "
                                       f"of {list(SPLITS)}")
                if row["kind"] not in KINDS:
                    raise DatasetError(f"{manifest}: line {line}: unknown kind {row['kind']!r}, expected one of "
                                       f"{list(KINDS)}")
                rows.append((line, row))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{manifest}: not UTF-8 text ({e})") from e
    return rows


def read_speech_events(root: str | Path) -> SpeechEvents:
    """Read a benchmark folder (see the module docstring). Rows whose wav is missing, unreadable (corrupt, or not
    16 kHz mono 16-bit) or silent, and speech/join/overlay rows with an empty transcript, are skipped with one
    counted warning per reason; wrong columns, an unknown split or kind, or a missing folder or manifest raise
    DatasetError naming the file."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: speech-events folder not found (build it with `python -m "
                           "genir.data.speech_events build --out DIR`)")
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest not found")
    rows = _manifest_rows(manifest)
    skipped: dict[str, list[str]] = {reason: [] for reason in _SKIP_REASONS}
    kept = []
    for line, row in rows:
        if row["kind"] != "sound" and not row["transcript"]:
            skipped["empty_transcript"].append(f"line {line}")
            continue
        path = (root / row["wav"]).resolve()
        if not path.is_file():
            skipped["missing_wav"].append(row["wav"])
            continue
        try:
            samples = load_wav(path)
        except DatasetError:
            skipped["unreadable_wav"].append(row["wav"])
            continue
        if samples.size == 0 or float(np.abs(samples).max()) < SILENCE_PEAK:
            skipped["silent_wav"].append(row["wav"])
            continue
        kept.append({"clip_id": str(Path(row["wav"]).with_suffix("")), "path": str(path),
                     "transcript": row["transcript"] or NO_TRANSCRIPT, "task": row["task"],
                     "event_type": row["event_type"], "split": row["split"], "kind": row["kind"],
                     "duration_s": samples.size / SAMPLE_RATE})
    for reason, where in skipped.items():
        if where:
            warnings.warn(f"{manifest}: skipped {len(where)} row(s) with {_SKIP_REASONS[reason]} "
                          f"(e.g. {where[0]})", stacklevel=2)
    columns = ["clip_id", "path", "transcript", "task", "event_type", "split", "kind", "duration_s"]
    clips = pd.DataFrame(kept, columns=columns)
    if clips.empty:
        raise DatasetError(f"{manifest}: no usable clip among {len(rows)} row(s)")
    report = {"rows": len(rows), "clips": len(clips), **{k: len(v) for k, v in skipped.items()}}
    return SpeechEvents(clips=clips, root=root, report=report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genir.data.speech_events",
                                     description="Generate or inspect the speech-and-sound event benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="synthesize the benchmark into a new folder (needs espeak-ng and sox)")
    b.add_argument("--out", required=True, help="folder to create (replaced if it exists and --force)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--per-task", type=int, default=None,
                   help="train clips per task (dev, test and mixed rows scale with it; default 120)")
    b.add_argument("--force", action="store_true", help="replace an existing folder")
    i = sub.add_parser("info", help="counts per task, kind and split of a built folder")
    i.add_argument("root")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            root = build_speech_events(args.out, seed=args.seed, per_task=args.per_task, force=args.force)
            print(f"wrote {root / MANIFEST_NAME}")
        data = read_speech_events(args.out if args.command == "build" else args.root)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = data.clips.groupby(["task", "kind", "split"]).size().unstack("split", fill_value=0)
    print(counts.reindex(columns=[s for s in SPLITS if s in counts.columns]).to_string())
    print(f"{len(data.clips)} clips, {data.clips['duration_s'].sum() / 60:.1f} min; report {data.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
