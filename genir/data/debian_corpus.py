"""Debian package descriptions -> a BEIR folder for generative retrieval (DSI) with incremental indexing.

Input: gzip (or plain) JSON lines with ``package``, ``section``, ``synopsis``, ``description``, as in the frozen
``debian-bookworm-descriptions.jsonl.gz`` (:func:`find_snapshot`), from any path.

* Document: ``_id`` = the package, ``text`` = the long description, ``title`` = ""; metadata ``package``,
  ``section`` and ``synopsis`` for display only. Neither the package name nor the synopsis is added to the text
  (a description may still name its package or repeat its synopsis by itself: counted under ``leaks`` in the
  summary, not edited).
* Query: ``q:<package>``, its synopsis, a known-item query.
* Skipped rows (counted in the summary): an empty description or synopsis, and a package already seen (the
  bookworm snapshot repeats 15 packages with per-architecture descriptions: the first row is kept).
* Duplicates: packages whose descriptions are equal after whitespace normalisation form a duplicate group; the query
  of any member has every member of its group (within the subset) as a relevant document, score 1, since
  nothing in the documents tells them apart.
* Split units: a duplicate group joined, transitively, with the packages whose synopsis is the same (case and
  whitespace ignored), e.g. ``agda`` and ``libghc-agda-dev``. A unit never straddles corpus steps or stages, so
  no valid or test query text is ever a training query (this is coarser than the duplicate group alone).
* Corpus steps: D0 plus ``new_steps`` steps of new topics. Sections are shuffled with the seed and given whole,
  in that order, to step 1 until it holds ``new_share * N / new_steps`` documents, then to step 2, ...; a section
  bigger than 1.5 times that target is skipped. Other sections are D0. A unit goes to the earliest step of its
  members (members of a new-step section may so move to D0 or an earlier step; counted as
  ``moved_to_earlier_step``).
* Stages: D0's units are shuffled and cut into test, valid and train by their share of D0's documents (whole
  units on one side); every query of a new step is a test query: new documents are never trained on by query.

The summary (returned and written as ``genir_corpus.json``) gives the counts per step and stage, the duplicate
groups, the rule, the seed and the source's sha256. The same snapshot and seed give byte-identical files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from genir.atomic import file_sha256
from genir.data.beir import write_beir
from genir.data.json_lines import json_lines
from genir.errors import ConfigError, DatasetError

SNAPSHOT_NAME = "debian-bookworm-descriptions.jsonl.gz"
SNAPSHOT_ENV = "GENIR_DEBIAN_DESCRIPTIONS"
FIELDS = ("package", "section", "synopsis", "description")
METADATA_COLUMNS = ("package", "section", "synopsis")
MAX_SECTION_FACTOR = 1.5  # a section bigger than this times a new step's target is never a new topic
RULE = ("document = long description (no package name, no synopsis added); query = synopsis; relevant = every "
        "package whose description equals the query's package's after whitespace normalisation; split unit = "
        "duplicate group joined with equal synopses (case and whitespace ignored), never split across steps or "
        "stages; new steps = whole sections in seeded random order, skipping sections over "
        f"{MAX_SECTION_FACTOR}x a step's target, a unit goes to its members' earliest step; D0 units cut into "
        "test/valid/train by document share; every new-step query is a test query")


def find_snapshot() -> Path:
    """The descriptions snapshot: ``$GENIR_DEBIAN_DESCRIPTIONS``, else ``<repo>/../shared/data/``."""
    env = os.environ.get(SNAPSHOT_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise DatasetError(f"{path}: file not found (named by ${SNAPSHOT_ENV})")
        return path
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / SNAPSHOT_NAME
    if path.is_file():
        return path
    raise DatasetError(
        f"{path}: Debian descriptions snapshot not found; set ${SNAPSHOT_ENV} to a copy of {SNAPSHOT_NAME}, or "
        "build one: `apt-get -o Acquire::Languages=en update`, read Package and Description-en from the "
        "*_i18n_Translation-en lists under /var/lib/apt/lists/, join Section from `apt-cache dumpavail`, and write "
        "one gzip JSON line per package with package, section, synopsis (first line) and description (the rest)"
    )


def _read_snapshot(path: Path) -> tuple[pd.DataFrame, dict]:
    """Usable rows (``package, section, synopsis, description``, file order) and the counts of skipped rows."""
    rows, seen = [], set()
    counts = {"rows": 0, "skipped": 0, "empty_description": 0, "empty_synopsis": 0, "repeated_package": 0}
    for lineno, obj in json_lines(path):
        missing = [f for f in FIELDS if f not in obj]
        if missing:
            raise DatasetError(f"{path}:{lineno}: missing field(s) {missing} (expected {list(FIELDS)})")
        package, section = obj["package"], obj["section"]
        synopsis, description = obj["synopsis"] or "", obj["description"] or ""
        if not isinstance(package, str) or not package.strip():
            raise DatasetError(f"{path}:{lineno}: 'package' must be a non-empty string, got {package!r}")
        for key, value in (("section", section), ("synopsis", synopsis), ("description", description)):
            if not isinstance(value, str):
                raise DatasetError(f"{path}:{lineno}: {key!r} must be a string, got {type(value).__name__}")
        counts["rows"] += 1
        package = package.strip()
        empty_d, empty_s = not description.strip(), not synopsis.strip()
        counts["empty_description"] += empty_d
        counts["empty_synopsis"] += empty_s
        repeated = not (empty_d or empty_s) and package in seen
        counts["repeated_package"] += repeated  # bookworm repeats 15 packages, one row per architecture
        if empty_d or empty_s or repeated:
            counts["skipped"] += 1
            continue
        seen.add(package)
        rows.append((package, section.strip(), synopsis.strip(), description.strip()))
    if not rows:
        raise DatasetError(f"{path}: no package with both a synopsis and a description")
    return pd.DataFrame(rows, columns=list(FIELDS)), counts


def _normal(text: str) -> str:
    return " ".join(text.split())


def _first_index(keys: list[str]) -> np.ndarray:
    """(N,) for each row, the first row with the same key."""
    first: dict[str, int] = {}
    return np.array([first.setdefault(k, i) for i, k in enumerate(keys)], dtype=np.int64)


def _units(group: np.ndarray, synopsis_first: np.ndarray) -> np.ndarray:
    """(N,) split unit of each row (its smallest row): union of duplicate groups and equal-synopsis rows."""
    parent = group.copy()

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in enumerate(synopsis_first):
        a, b = find(i), find(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(len(parent))], dtype=np.int64)


def _section_plan(sections: pd.Series, new_steps: int, new_share: float, rng: np.random.Generator):
    """The sections of each new step (whole sections in seeded order), the step's target size, and the sections
    skipped as too big for a step."""
    sizes = sections.value_counts()
    names = sorted(sizes.index)
    order = [names[i] for i in rng.permutation(len(names))]
    target = new_share * len(sections) / new_steps if new_steps else 0.0
    plan, skipped, pos = [], [], 0
    for _ in range(new_steps):
        chosen, size = [], 0
        while size < target and pos < len(order):
            section = order[pos]
            pos += 1
            if sizes[section] > MAX_SECTION_FACTOR * target:
                skipped.append(section)
                continue
            chosen.append(section)
            size += int(sizes[section])
        plan.append(chosen)
    return plan, target, skipped


def _stages(unit: np.ndarray, step: np.ndarray, valid_share: float, test_share: float,
            rng: np.random.Generator) -> np.ndarray:
    """(N,) stage of each row: D0 units cut into test / valid / train by their share of D0; new steps: test."""
    stage = np.full(len(unit), "test", dtype=object)
    d0 = step == 0
    units, size = np.unique(unit[d0], return_counts=True)
    perm = rng.permutation(len(units))
    units, size = units[perm], size[perm]
    middle = (np.cumsum(size) - size / 2) / max(int(d0.sum()), 1)
    unit_stage = np.where(middle < test_share, "test", np.where(middle < test_share + valid_share, "valid", "train"))
    stage_of = dict(zip(units.tolist(), unit_stage.tolist()))
    stage[d0] = [stage_of[u] for u in unit[d0]]
    return stage


def _names_package(package: str, text: str) -> bool:
    return re.search(rf"(?<![\w.+-]){re.escape(package)}(?![\w+-])", text, flags=re.IGNORECASE) is not None


def _check_args(docs, valid_share, test_share, new_steps, new_share) -> None:
    if docs is not None and (isinstance(docs, bool) or not isinstance(docs, int) or docs < 1):
        raise ConfigError(f"docs must be a positive integer or None, got {docs!r}")
    if not (0 <= valid_share < 1 and 0 <= test_share < 1 and valid_share + test_share < 1):
        raise ConfigError(f"valid_share and test_share must be >= 0 with a sum < 1, got {valid_share}, {test_share}")
    if isinstance(new_steps, bool) or not isinstance(new_steps, int) or new_steps < 0:
        raise ConfigError(f"new_steps must be an integer >= 0, got {new_steps!r}")
    if not 0 <= new_share < 1:
        raise ConfigError(f"new_share must be in [0, 1), got {new_share}")


def debian_to_beir(snapshot: str | Path, out: str | Path, *, docs: int | None = None, seed: int = 0,
                   valid_share: float = 0.1, test_share: float = 0.1, new_steps: int = 3, new_share: float = 0.1,
                   overwrite: bool = False) -> dict:
    """Convert a descriptions snapshot into the BEIR folder ``out`` (with ``steps.tsv`` and ``genir_corpus.json``)
    by the rules of this module's docstring; ``docs`` packages drawn with ``default_rng(seed)`` (None: all).
    Returns the summary."""
    _check_args(docs, valid_share, test_share, new_steps, new_share)
    path = Path(snapshot)
    rows, counts = _read_snapshot(path)
    rng = np.random.default_rng(seed)
    if docs is not None:
        if docs > len(rows):
            raise ConfigError(f"docs={docs} but {path} has {len(rows)} usable packages")
        rows = rows.iloc[np.sort(rng.choice(len(rows), size=docs, replace=False))].reset_index(drop=True)
    n = len(rows)
    packages = rows["package"].tolist()

    group = _first_index([_normal(d) for d in rows["description"]])
    synopsis_keys = [_normal(s).casefold() for s in rows["synopsis"]]
    unit = _units(group, _first_index(synopsis_keys))

    plan, target, too_big = _section_plan(rows["section"], new_steps, new_share, rng)
    section_step = {s: k for k, chosen in enumerate(plan, start=1) for s in chosen}
    planned = rows["section"].map(lambda s: section_step.get(s, 0)).to_numpy(dtype=np.int64)
    step = pd.Series(planned).groupby(unit).transform("min").to_numpy(dtype=np.int64)
    stage = _stages(unit, step, valid_share, test_share, rng)

    members: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        members.setdefault(int(g), []).append(i)
    qrels = {file: [] for file in ("train.tsv", "dev.tsv", "test.tsv")}
    file_of = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}
    for i, package in enumerate(packages):
        qrels[file_of[stage[i]]].extend((f"q:{package}", packages[j], 1) for j in members[int(group[i])])
    columns = ["query-id", "corpus-id", "score"]
    corpus = pd.DataFrame({"_id": packages, "title": "", "text": rows["description"],
                           **{c: rows[c] for c in METADATA_COLUMNS}})
    queries = pd.DataFrame({"_id": [f"q:{p}" for p in packages], "text": rows["synopsis"]})

    sizes = np.bincount(group, minlength=n)
    unit_sizes = np.bincount(unit, minlength=n)
    groups_of_synopsis = {}
    for key, g in zip(synopsis_keys, group):
        groups_of_synopsis.setdefault(key, set()).add(int(g))
    steps_summary = []
    for k in range(new_steps + 1):
        at = step == k
        entry = {"step": k, "documents": int(at.sum()), "sections": sorted(set(rows["section"][at]))}
        if k:
            entry["planned_sections"] = plan[k - 1]
            entry["planned_documents"] = int(rows["section"].isin(plan[k - 1]).sum())
            entry["target"] = round(target, 3)
        entry["queries"] = {s: int((at & (stage == s)).sum()) for s in ("train", "valid", "test")}
        steps_summary.append(entry)
    summary = {
        "source": str(path),
        "source_sha256": file_sha256(path),
        "seed": seed,
        "params": {"docs": docs, "valid_share": valid_share, "test_share": test_share, "new_steps": new_steps,
                   "new_share": new_share},
        "rule": RULE,
        "rows": {"read": counts["rows"], "skipped": counts["skipped"],
                 "empty_description": counts["empty_description"], "empty_synopsis": counts["empty_synopsis"],
                 "repeated_package": counts["repeated_package"], "usable": counts["rows"] - counts["skipped"], "documents": n},
        "steps": steps_summary,
        "sections_too_big_for_a_step": too_big,
        "moved_to_earlier_step": int((step != planned).sum()),
        "queries": {s: int((stage == s).sum()) for s in ("train", "valid", "test")},
        "qrels": {file: len(r) for file, r in qrels.items()},
        "duplicate_groups": {"groups": int((sizes > 1).sum()), "documents": int(sizes[sizes > 1].sum()),
                             "largest": int(sizes.max())},
        "split_units": {"units_of_several": int((unit_sizes > 1).sum()),
                        "documents": int(unit_sizes[unit_sizes > 1].sum()), "largest": int(unit_sizes.max())},
        "ambiguous_queries": int(sum(len(groups_of_synopsis[k]) > 1 for k in synopsis_keys)),
        "leaks": {
            "documents_naming_their_package": int(sum(_names_package(p, d) for p, d in
                                                      zip(packages, rows["description"]))),
            "documents_containing_their_synopsis": int(sum(k in _normal(d).casefold() for k, d in
                                                           zip(synopsis_keys, rows["description"]))),
        },
    }
    write_beir(out, corpus, queries, {f: pd.DataFrame(r, columns=columns) for f, r in qrels.items()},
               steps=pd.DataFrame({"corpus-id": packages, "step": step}), metadata_columns=METADATA_COLUMNS,
               overwrite=overwrite, extra_json={"genir_corpus.json": summary})
    return summary
