"""Curated product bundles: the Debian metapackage snapshot, the Bundle-MLLM paper's file format, a split by bundle
and multiple-choice bundle-completion questions.

**Debian bundles** (:func:`read_debian_bundles`): ``debian-bookworm-bundles.jsonl.gz`` (``bundle``, ``section``,
``depends``, ``recommends``) joined with ``debian-bookworm-descriptions.jsonl.gz`` (``package``, ``section``,
``synopsis``, ``description``). A bundle's members are its depends then its recommends, repeats dropped. An item is
a member package; its title is the synopsis. Problems are dropped, counted and named in ``report`` and in one
warning per kind (or raised as :class:`~genir.errors.DatasetError` naming the bundle with ``strict=True``): a member
not in the descriptions file (``unknown_member``), a member with an empty synopsis (``member_without_text``), a
bundle left with fewer than ``min_members`` members (``too_small``), a bundle name seen twice (the first is kept).

**Split by bundle** (:func:`split_bundles`). Near-duplicate bundles must not straddle train and test, or a test
question is answered by memorising a training bundle. Rule: (1) every bundle whose name starts with ``task-`` is
one family (Debian's installer tasks; the ``task-<language>[-<desktop>]-desktop`` bundles list the same
localisation packages per language, e.g. firefox-esr-l10n-X, libreoffice-l10n-X, hunspell-X, and
``task-<language>`` shares aspell/manpages packages the same way); (2) two bundles whose member sets have Jaccard
similarity >= ``jaccard`` are joined; groups are the transitive closure of (1) and (2). Groups are shuffled with the
seed and handed whole to test, then valid, while the stage stays within its share of the bundles; the others (and
every group bigger than a stage's share, e.g. the task family) are train.

**Questions** (:func:`make_questions`): a partial bundle (up to ``max_partial`` = 5 members, sampled) and
``num_candidates`` shuffled candidates of which exactly one is a held-out member and none is another member of the
bundle. Negatives are uniform over the candidate pool (``random``) or drawn from the positive's Debian section
(``hard``; topped up with random items when the section is too small, counted as ``hard_topped_up``).

**Paper format** (:func:`read_bundle_construction`): ``bi_train.txt``, ``bi_{valid,test}_input.txt``,
``bi_{valid,test}_gt.txt`` (one bundle per line: ``bundle_id, item_id, item_id, ...``), ``item_info.json`` (item id
-> ``{"title_en": ...}`` or ``{"title": ...}``, a dict keyed by id or a list).
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genir.atomic import file_sha256
from genir.data.json_lines import json_lines
from genir.errors import ConfigError, DatasetError

BUNDLES_SNAPSHOT = "debian-bookworm-bundles.jsonl.gz"
BUNDLES_ENV = "GENIR_DEBIAN_BUNDLES"
NEGATIVES = ("random", "hard")
SPLIT_RULE = ("split by bundle: every task-* bundle is one family; bundles with member-set Jaccard >= {jaccard} are "
              "joined (transitively); groups shuffled with the seed go whole to test, then valid, up to each "
              "stage's share of bundles ({test_share}, {valid_share}); the rest, and groups bigger than a share, "
              "are train")


@dataclass
class BundleSet:
    """Items (row = item index: ``package``, ``title``, ``description``, ``section``) and bundles (names, sections,
    member item indices). ``inputs``/``held_out`` are set for data that ships fixed partial bundles and answers
    (the paper's valid/test files): bundle index -> item indices."""

    items: pd.DataFrame
    names: list[str]
    sections: list[str]
    members: list[np.ndarray]
    report: dict = field(default_factory=dict)
    source: str = ""

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_bundles(self) -> int:
        return len(self.names)

    def titles(self) -> list[str]:
        return self.items["title"].astype(str).tolist()

    def subset(self, bundles) -> BundleSet:
        """The given bundles (in file order) and only the items they contain, re-indexed."""
        keep = np.sort(np.unique(np.asarray(bundles, dtype=np.int64)))
        used = np.unique(np.concatenate([self.members[b] for b in keep]))
        remap = np.full(self.num_items, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        report = {**self.report, "subset": {"bundles": len(keep), "items": len(used)}}
        return BundleSet(self.items.iloc[used].reset_index(drop=True), [self.names[b] for b in keep],
                         [self.sections[b] for b in keep], [remap[self.members[b]] for b in keep], report,
                         self.source)


def find_bundles_snapshot() -> Path:
    """``$GENIR_DEBIAN_BUNDLES``, else ``<repo>/../shared/data/debian-bookworm-bundles.jsonl.gz``."""
    env = os.environ.get(BUNDLES_ENV)
    path = Path(env).expanduser() if env else Path(__file__).resolve().parents[2].parent / "shared" / "data" / \
        BUNDLES_SNAPSHOT
    if path.is_file():
        return path
    raise DatasetError(
        f"{path}: Debian bundles snapshot not found; set ${BUNDLES_ENV} to a copy of {BUNDLES_SNAPSHOT}, or build "
        "one: after `apt-get update`, read `apt-cache dumpavail`, keep packages whose Section ends in metapackages "
        "or whose name starts with task-, and write one gzip JSON line per bundle with bundle, section, depends and "
        "recommends (first alternative of each, name only)")


def _string_list(path: Path, lineno: int, obj: dict, key: str) -> list[str]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{path}:{lineno}: {key!r} must be a list of package names, got {value!r:.80}")
    return value


def _read_texts(path: Path, wanted: set[str]) -> dict[str, tuple[str, str, str]]:
    """package -> (synopsis, description, section) for the wanted packages (first row of a repeated package)."""
    out: dict[str, tuple[str, str, str]] = {}
    for lineno, obj in json_lines(path):
        name = obj.get("package")
        if not isinstance(name, str):
            raise DatasetError(f"{path}:{lineno}: 'package' must be a string, got {name!r}")
        name = name.strip()
        if name in wanted and name not in out:
            out[name] = tuple(str(obj.get(k) or "").strip() for k in ("synopsis", "description", "section"))
    return out


def _problem(report: dict, kind: str, bundle: str, detail: str, strict: bool, source: Path) -> None:
    if strict:
        raise DatasetError(f"{source}: bundle {bundle!r}: {kind.replace('_', ' ')}: {detail}")
    entry = report["problems"].setdefault(kind, {"count": 0, "bundles": {}})
    entry["count"] += 1
    entry["bundles"].setdefault(bundle, []).append(detail)


def read_debian_bundles(bundles: str | Path | None = None, descriptions: str | Path | None = None, *,
                        strict: bool = False, min_members: int = 2) -> BundleSet:
    """The curated Debian bundles joined with their members' texts (see the module docstring)."""
    from genir.data.debian_corpus import find_snapshot

    bpath = Path(bundles) if bundles is not None else find_bundles_snapshot()
    dpath = Path(descriptions) if descriptions is not None else find_snapshot()
    if min_members < 2:
        raise ConfigError(f"read_debian_bundles: min_members must be >= 2 (one to hold out), got {min_members}")
    raw = []
    for lineno, obj in json_lines(bpath):
        name = obj.get("bundle")
        if not isinstance(name, str) or not name.strip():
            raise DatasetError(f"{bpath}:{lineno}: 'bundle' must be a non-empty string, got {name!r}")
        members = _string_list(bpath, lineno, obj, "depends") + _string_list(bpath, lineno, obj, "recommends")
        raw.append((name.strip(), str(obj.get("section") or ""), list(dict.fromkeys(m.strip() for m in members))))
    if not raw:
        raise DatasetError(f"{bpath}: no bundles")
    texts = _read_texts(dpath, {m for _, _, ms in raw for m in ms})
    report: dict = {"bundles_read": len(raw), "problems": {}}
    index: dict[str, int] = {}
    rows, names, sections, members = [], [], [], []
    seen = set()
    for name, section, ms in raw:
        if name in seen:
            _problem(report, "repeated_bundle", name, "second definition ignored", strict, bpath)
            continue
        seen.add(name)
        kept = []
        for m in ms:
            if m == name:
                continue
            if m not in texts:
                _problem(report, "unknown_member", name, m, strict, bpath)
                continue
            synopsis, description, msection = texts[m]
            if not synopsis:
                _problem(report, "member_without_text", name, m, strict, bpath)
                continue
            if m not in index:
                index[m] = len(rows)
                rows.append((m, synopsis, description or synopsis, msection))
            kept.append(index[m])
        if len(kept) < min_members:
            _problem(report, "too_small", name, f"{len(kept)} usable member(s), need {min_members}", strict, bpath)
            continue
        names.append(name)
        sections.append(section)
        members.append(np.asarray(kept, dtype=np.int64))
    for kind, entry in report["problems"].items():
        some = list(entry["bundles"].items())[:3]
        example = "; ".join(f"{b}: {', '.join(map(str, d[:3]))}" for b, d in some)
        warnings.warn(f"{bpath}: {entry['count']} x {kind.replace('_', ' ')} in {len(entry['bundles'])} bundle(s), "
                      f"dropped (e.g. {example})", stacklevel=2)
    if not names:
        raise DatasetError(f"{bpath}: no bundle has {min_members} or more members with text in {dpath}")
    items = pd.DataFrame(rows, columns=["package", "title", "description", "section"])
    report.update(bundles=len(names), items=len(items), memberships=int(sum(len(m) for m in members)),
                  bundles_sha256=file_sha256(bpath), descriptions_sha256=file_sha256(dpath))
    return BundleSet(items, names, sections, members, report, str(bpath))


# -- split ------------------------------------------------------------------------------------------------------
@dataclass
class BundleSplit:
    """Stage of every bundle (``train``/``valid``/``test``), its near-duplicate group, and the rule."""

    stage: np.ndarray  # (num_bundles,) str
    group: np.ndarray  # (num_bundles,) int
    rule: str
    seed: int

    def bundles(self, stage: str) -> np.ndarray:
        return np.flatnonzero(self.stage == stage)

    def summary(self) -> dict:
        return {"rule": self.rule, "seed": self.seed, "groups": int(self.group.max() + 1),
                **{s: int((self.stage == s).sum()) for s in ("train", "valid", "test")}}


def near_duplicate_groups(data: BundleSet, jaccard: float = 0.5) -> np.ndarray:
    """Group id of every bundle under the rule of the module docstring (union-find)."""
    n = data.num_bundles
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(a: int, b: int) -> None:
        parent[find(a)] = find(b)

    tasks = [i for i, name in enumerate(data.names) if name.startswith("task-")]
    for a, b in itertools.pairwise(tasks):
        join(a, b)
    sets = [set(m.tolist()) for m in data.members]
    for a in range(n):
        for b in range(a + 1, n):
            inter = len(sets[a] & sets[b])
            if inter and inter / len(sets[a] | sets[b]) >= jaccard:
                join(a, b)
    roots = [find(i) for i in range(n)]
    _, group = np.unique(roots, return_inverse=True)
    return group.astype(np.int64)


def split_bundles(data: BundleSet, valid_share: float = 0.1, test_share: float = 0.1, seed: int = 0,
                  jaccard: float = 0.5) -> BundleSplit:
    """Train/valid/test by bundle, near-duplicate groups on one side (see the module docstring)."""
    if not (0 < valid_share < 1 and 0 < test_share < 1 and valid_share + test_share < 1):
        raise ConfigError(f"split_bundles: shares must be in (0, 1) and sum below 1, got valid {valid_share}, "
                          f"test {test_share}")
    group = near_duplicate_groups(data, jaccard)
    n = data.num_bundles
    targets = {"test": round(test_share * n), "valid": round(valid_share * n)}
    counts = {"test": 0, "valid": 0}
    stage = np.full(n, "train", dtype=object)
    order = np.random.default_rng(seed).permutation(int(group.max()) + 1)
    sizes = np.bincount(group)
    for g in order:
        for s in ("test", "valid"):
            if counts[s] + sizes[g] <= targets[s]:
                stage[group == g] = s
                counts[s] += sizes[g]
                break
    if counts["test"] == 0 or counts["valid"] == 0 or (stage == "train").sum() == 0:
        raise DatasetError(f"{data.source}: {n} bundles are too few for a train/valid/test split by bundle "
                           f"(valid {counts['valid']}, test {counts['test']})")
    rule = SPLIT_RULE.format(jaccard=jaccard, test_share=test_share, valid_share=valid_share)
    return BundleSplit(stage.astype(str), group, rule, seed)


# -- questions --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleQuestion:
    """A partial bundle, the candidates (item indices, shown in this order) and the index of the right one."""

    bundle: int
    partial: tuple[int, ...]
    candidates: tuple[int, ...]
    answer: int

    @property
    def positive(self) -> int:
        return self.candidates[self.answer]


def _negatives(rng, positive: int, exclude: set[int], n: int, pool: np.ndarray, by_section: dict | None,
               section_of: np.ndarray | None, stats: dict) -> list[int]:
    chosen: list[int] = []
    if by_section is not None:
        same = [i for i in by_section.get(section_of[positive], ()) if i not in exclude]
        if same:
            take = min(n, len(same))
            chosen = [int(x) for x in rng.choice(same, size=take, replace=False)]
        if len(chosen) < n:
            stats["hard_topped_up"] += 1
    taken = exclude | set(chosen)
    if len(set(pool.tolist()) - taken) < n - len(chosen):
        raise ConfigError(f"make_questions: the candidate pool has too few items outside the bundle for "
                          f"{n + 1} candidates")
    while len(chosen) < n:  # rejection sampling: the pool is far larger than a bundle
        x = int(pool[rng.integers(len(pool))])
        if x not in taken:
            chosen.append(x)
            taken.add(x)
    return chosen


def make_questions(data: BundleSet, bundle_ids, *, num_candidates: int = 10, negatives: str = "random",
                   per_bundle: int = 1, max_partial: int = 5, seed: int = 0, pool=None,
                   fixed: dict | None = None) -> tuple[list[BundleQuestion], dict]:
    """(questions, stats) for the given bundles: ``per_bundle`` questions per bundle, each holding out a
    different member (bundles with fewer members give fewer). ``pool``: candidate items (default: every item).
    ``fixed``: bundle -> (inputs, held-out items) for data with given partial bundles (the paper's files); then
    each held-out item is a question's positive and the inputs are its partial bundle."""
    if negatives not in NEGATIVES:
        raise ConfigError(f"make_questions: negatives must be one of {NEGATIVES}, got {negatives!r}")
    if num_candidates < 2:
        raise ConfigError(f"make_questions: num_candidates must be >= 2, got {num_candidates}")
    rng = np.random.default_rng(seed)
    pool = np.arange(data.num_items) if pool is None else np.unique(np.asarray(pool, dtype=np.int64))
    section_of = data.items["section"].astype(str).to_numpy()
    by_section = None
    if negatives == "hard":
        by_section = {}
        for i in pool.tolist():
            by_section.setdefault(section_of[i], []).append(i)
    stats = {"questions": 0, "hard_topped_up": 0, "negatives": negatives, "num_candidates": num_candidates}
    out = []
    for b in np.asarray(bundle_ids).tolist():
        if fixed is not None:
            inputs, held = fixed[b]
            cases = [(list(inputs), int(p)) for p in list(held)[:per_bundle]]
            exclude = set(map(int, inputs)) | set(map(int, held))
        else:
            perm = rng.permutation(data.members[b]).tolist()
            cases = [(perm[:q] + perm[q + 1:], perm[q]) for q in range(min(per_bundle, len(perm)))]
            exclude = set(perm)
        for others, positive in cases:
            if len(others) > max_partial:
                others = [int(x) for x in rng.choice(others, size=max_partial, replace=False)]
            negs = _negatives(rng, positive, exclude, num_candidates - 1, pool, by_section, section_of, stats)
            cands = [positive] + negs
            order = rng.permutation(num_candidates)
            cands = [cands[i] for i in order]
            out.append(BundleQuestion(int(b), tuple(int(x) for x in others), tuple(int(x) for x in cands),
                                      int(np.flatnonzero(order == 0)[0])))
    stats["questions"] = len(out)
    return out, stats


# -- the paper's format ------------------------------------------------------------------------------------------
@dataclass
class BundleConstruction:
    """A dataset in Bundle-MLLM's format: the items and train bundles as a :class:`BundleSet` (bundle ids of the
    files kept as names), plus the fixed valid/test inputs and answers, bundle index -> (inputs, held out)."""

    data: BundleSet
    train: np.ndarray
    fixed: dict[str, dict[int, tuple[list[int], list[int]]]]


def _bundle_lines(path: Path, num_items: int) -> dict[int, list[int]]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (expected lines 'bundle_id, item_id, item_id, ...')")
    out: dict[int, list[int]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids = [int(x) for x in line.replace(",", " ").split()]
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: expected integers 'bundle_id, item_id, ...', got {line!r:.80}") \
                from None
        bad = [i for i in ids[1:] if not 0 <= i < num_items]
        if bad:
            raise DatasetError(f"{path}:{lineno}: bundle {ids[0]}: unknown item id(s) {bad[:5]} (item_info.json has "
                               f"{num_items} items)")
        out.setdefault(ids[0], []).extend(i for i in ids[1:] if i not in out.get(ids[0], []))
    return out


def read_bundle_construction(folder: str | Path, min_members: int = 2) -> BundleConstruction:
    """The paper's files in ``folder`` (see the module docstring); train bundles with fewer than ``min_members``
    items, and valid/test bundles without an input or an answer, are dropped with a counted warning."""
    folder = Path(folder)
    info_path = folder / "item_info.json"
    if not info_path.is_file():
        raise DatasetError(f"{info_path}: file not found")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{info_path}: malformed JSON ({exc})") from None
    entries = info if isinstance(info, list) else [info[k] for k in sorted(info, key=int)] \
        if isinstance(info, dict) and all(str(k).isdigit() for k in info) else None
    if entries is None:
        raise DatasetError(f"{info_path}: expected a list of items or a dict keyed by item id (0..N-1)")
    titles = []
    for i, e in enumerate(entries):
        title = (e.get("title_en") or e.get("title")) if isinstance(e, dict) else e
        if not isinstance(title, str) or not title.strip():
            raise DatasetError(f"{info_path}: item {i} has no title (expected 'title_en' or 'title')")
        titles.append(title.strip())
    items = pd.DataFrame({"package": [str(i) for i in range(len(titles))], "title": titles,
                          "description": [e.get("description", "") if isinstance(e, dict) else "" for e in entries],
                          "section": [e.get("category", "") if isinstance(e, dict) else "" for e in entries]})
    n = len(items)
    train = _bundle_lines(folder / "bi_train.txt", n)
    report: dict = {"problems": {}}
    names, members, fixed = [], [], {"valid": {}, "test": {}}
    train_idx = []
    for b, ms in train.items():
        if len(ms) < min_members:
            _problem(report, "too_small", str(b), f"{len(ms)} item(s) in bi_train.txt", False, folder)
            continue
        train_idx.append(len(names))
        names.append(str(b))
        members.append(np.asarray(ms, dtype=np.int64))
    for stage in ("valid", "test"):
        inputs = _bundle_lines(folder / f"bi_{stage}_input.txt", n)
        gts = _bundle_lines(folder / f"bi_{stage}_gt.txt", n)
        for b in sorted(set(inputs) | set(gts)):
            if not inputs.get(b) or not gts.get(b):
                _problem(report, f"{stage}_incomplete", str(b), "no input or no answer", False, folder)
                continue
            fixed[stage][len(names)] = (inputs[b], gts[b])
            names.append(f"{stage}:{b}")
            members.append(np.asarray(inputs[b] + [g for g in gts[b] if g not in inputs[b]], dtype=np.int64))
    for kind, entry in report["problems"].items():
        warnings.warn(f"{folder}: {entry['count']} x {kind.replace('_', ' ')} dropped (bundles "
                      f"{', '.join(list(entry['bundles'])[:5])})", stacklevel=2)
    data = BundleSet(items, names, [""] * len(names), members, report, str(folder))
    return BundleConstruction(data, np.asarray(train_idx, dtype=np.int64), fixed)
