"""Composed-image-retrieval data: FashionIQ triplets and Fashion200k-style pairs, and the editing task they give.

Both readers return :class:`EditTriplets`: a :class:`~genir.data.catalogue.Catalogue` of images (column ``image``:
the file path) and a frame of (reference, captions, target, stage) rows with internal ids.

* FashionIQ (Wu et al. 2021) folder: ``captions/cap.<category>.<split>.json`` (a list of ``{"candidate",
  "target", "captions": [two relative captions]}``), ``images/<id>.png|.jpg`` (``image_splits/`` is not needed);
  splits ``train`` -> stage train, ``val`` -> valid, ``test`` -> test (when its file has targets).
* Fashion200k (Han et al. 2017) folder: ``labels/<category>_<split>_detect_all.txt`` (tab-separated: image path
  relative to the folder, detection score, product description); as in TIRG (Vo et al. 2019), two images of one
  split whose descriptions differ in exactly one word make a pair with the caption "replace <old> with <new>".

:class:`TripletEditTask` serves them to the multi-round editor with the interface of
:mod:`genir.data.edit_tasks`: one round = the captions joined (the FashionIQ convention), two rounds = one caption
after the other, in both orders, against the target (there is no exact intermediate image).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.catalogue import Catalogue
from genir.data.edit_tasks import EditBatch, EditExamples
from genir.data.image_edits import IDENTITY_TEMPLATES
from genir.errors import ConfigError, DatasetError

FASHIONIQ_STAGES = {"train": "train", "val": "valid", "test": "test"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class EditTriplets:
    """Reference image + relative captions -> target image. ``triplets``: ``reference``, ``target`` (internal ids
    of ``catalogue``), ``captions`` (list of str, at least one), ``stage`` (train, valid or test)."""

    catalogue: Catalogue
    triplets: pd.DataFrame
    name: str = ""

    def __post_init__(self):
        for col in ("reference", "target", "captions", "stage"):
            if col not in self.triplets.columns:
                raise DatasetError(f"{self.name}: triplets need a {col!r} column (have {list(self.triplets.columns)})")
        if len(self.triplets) == 0:
            raise DatasetError(f"{self.name}: no triplets")

    def stage(self, stage: str) -> pd.DataFrame:
        return self.triplets[self.triplets["stage"] == stage].reset_index(drop=True)


def _image_path(folder: Path, image_id: str, where: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{image_id}{suffix}"
        if path.is_file():
            return path
    raise DatasetError(f"{where}: image {image_id!r} not found in {folder} (tried {', '.join(IMAGE_SUFFIXES)})")


def read_fashioniq(root: str | Path, category: str, splits=("train", "val", "test")) -> EditTriplets:
    """The triplets of one FashionIQ ``category`` (dress, shirt, toptee) over the ``splits`` whose caption file
    exists (a test file without targets is skipped)."""
    root = Path(root)
    rows, images = [], {}
    for split in splits:
        path = root / "captions" / f"cap.{category}.{split}.json"
        if not path.is_file():
            continue
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: not a JSON list of triplets ({exc})") from None
        if not isinstance(entries, list):
            raise DatasetError(f"{path}: expected a JSON list of triplets, got {type(entries).__name__}")
        if split == "test" and entries and all("target" not in e for e in entries if isinstance(e, dict)):
            continue  # the public test file withholds targets
        for n, e in enumerate(entries):
            where = f"{path}: entry {n}"
            if not isinstance(e, dict) or any(k not in e for k in ("candidate", "target", "captions")):
                raise DatasetError(f"{where}: expected an object with 'candidate', 'target' and 'captions'")
            caps = [str(c).strip() for c in e["captions"] if str(c).strip()] if isinstance(e["captions"], list) \
                else []
            if not caps:
                raise DatasetError(f"{where}: 'captions' must be a non-empty list of strings")
            for key in ("candidate", "target"):
                if e[key] not in images:
                    images[e[key]] = _image_path(root / "images", str(e[key]), where)
            rows.append({"reference": e["candidate"], "target": e["target"], "captions": caps,
                         "stage": FASHIONIQ_STAGES[split]})
    if not rows:
        raise DatasetError(f"{root}: no FashionIQ caption file captions/cap.{category}.<split>.json for splits "
                           f"{list(splits)}")
    return _triplets(f"fashioniq-{category}", images, rows, str(root))


def read_fashion200k(root: str | Path, category: str, splits=("train", "test"),
                     max_pairs_per_group: int = 20) -> EditTriplets:
    """Pairs of one Fashion200k ``category`` (dress, jacket, pants, skirt, top) whose descriptions differ in one
    word; at most ``max_pairs_per_group`` pairs per group of descriptions sharing all other words."""
    root = Path(root)
    rows, images = [], {}
    for split in splits:
        path = root / "labels" / f"{category}_{split}_detect_all.txt"
        if not path.is_file():
            raise DatasetError(f"{path}: Fashion200k label file not found")
        described: dict[str, str] = {}
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise DatasetError(f"{path}:{n}: expected 'image path<TAB>score<TAB>description', got {line!r}")
            described.setdefault(parts[0], " ".join(parts[2].lower().split()))
        groups: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
        for image, text in described.items():
            words = text.split()
            for i in range(len(words)):
                groups[(len(words), i, tuple(words[:i]), tuple(words[i + 1:]))].append((image, words[i]))
        for members in groups.values():
            pairs = ((a, wa, b, wb) for a, wa in members for b, wb in members if wa != wb)
            for _, (a, wa, b, wb) in zip(range(max_pairs_per_group), pairs):
                for img in (a, b):
                    if img not in images:
                        if not (root / img).is_file():
                            raise DatasetError(f"{path}: image {img!r} not found under {root}")
                        images[img] = root / img
                rows.append({"reference": a, "target": b, "captions": [f"replace {wa} with {wb}"],
                             "stage": "train" if split == "train" else "test"})
    if not rows:
        raise DatasetError(f"{root}: no pair of {category} descriptions differs in exactly one word")
    return _triplets(f"fashion200k-{category}", images, rows, str(root))


def _triplets(name: str, images: dict, rows: list[dict], source: str) -> EditTriplets:
    ids = sorted(images)
    catalogue = Catalogue.from_frame(name, pd.DataFrame({"id": ids, "image": [str(images[i]) for i in ids]}),
                                     source=source)
    frame = pd.DataFrame(rows)
    frame["reference"] = [catalogue.index(x) for x in frame["reference"]]
    frame["target"] = [catalogue.index(x) for x in frame["target"]]
    return EditTriplets(catalogue, frame, name)


def load_rgb(path: str | Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the image padded with white to a square and resized; a DatasetError naming the file
    when it is unreadable or not RGB."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                raise DatasetError(f"{path}: expected an RGB image, got mode {im.mode!r} (convert the file to RGB)")
            side = max(im.size)
            square = Image.new("RGB", (side, side), (255, 255, 255))
            square.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
            return np.asarray(square.resize((size, size), Image.BOX))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the image: {exc}") from None


@dataclass
class TripletEditTask:
    """The editing-task interface (:mod:`genir.data.edit_tasks`) over :class:`EditTriplets` at ``size`` px."""

    data: EditTriplets
    size: int = 32
    eval_sources: int = 1000
    images: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if self.size % 4:
            raise ConfigError(f"size must be a multiple of 4, got {self.size}")
        self.images = np.stack([load_rgb(p, self.size) for p in self.data.catalogue.columns["image"]])
        texts = list(IDENTITY_TEMPLATES)
        for caps in self.data.triplets["captions"]:
            texts += [*caps, " and ".join(caps)]
        self.vocabulary = list(dict.fromkeys(texts))
        self._index = {t: i for i, t in enumerate(self.vocabulary)}
        self.identity_text = 0
        self.train_rows = self.data.stage("train")
        if len(self.train_rows) == 0:
            raise DatasetError(f"{self.data.name}: no training triplets")
        self.chain_rows = self.train_rows[self.train_rows["captions"].map(len) >= 2].reset_index(drop=True)
        self.filter_counts = {"proposed": 0, "dropped": 0}

    def train_batch(self, rng: np.random.Generator, n_single: int, n_recon: int, n_chains: int) -> EditBatch:
        rows = self.train_rows.iloc[rng.integers(len(self.train_rows), size=n_single)]
        recon = rng.integers(len(self.images), size=n_recon)
        chains = (self.chain_rows.iloc[rng.integers(len(self.chain_rows), size=n_chains)]
                  if len(self.chain_rows) and n_chains else self.chain_rows.iloc[:0])
        return EditBatch(
            self.images[rows["reference"].to_numpy()],
            np.array([self._index[" and ".join(c)] for c in rows["captions"]], np.int64),
            self.images[rows["target"].to_numpy()], self.images[recon],
            rng.integers(len(IDENTITY_TEMPLATES), size=n_recon),
            self.images[chains["reference"].to_numpy()],
            np.array([self._index[c[0]] for c in chains["captions"]], np.int64),
            np.array([self._index[c[1]] for c in chains["captions"]], np.int64),
            self.images[chains["target"].to_numpy()])

    def eval_examples(self, stage: str = "test", n_sources: int | None = None) -> EditExamples:
        rows = self.data.stage(stage)
        if len(rows) == 0 and stage == "test":
            rows = self.data.stage("valid")
        if len(rows) == 0:
            raise DatasetError(f"{self.data.name}: no {stage} triplets")
        rows = rows.iloc[:n_sources or self.eval_sources]
        first = [self._index[c[0]] for c in rows["captions"]]
        second = [self._index[c[1] if len(c) > 1 else c[0]] for c in rows["captions"]]
        fam = np.array(["caption"] * len(rows))
        return EditExamples(self.images[rows["reference"].to_numpy()], np.array(first), np.array(second), None, None,
                            self.images[rows["target"].to_numpy()], fam, fam, rows["reference"].to_numpy(),
                            np.array([self._index[" and ".join(c)] for c in rows["captions"]]))

    def describe(self) -> dict:
        return {"catalogue": self.data.name, "images": len(self.images), "size": self.size,
                "triplets": self.data.triplets["stage"].value_counts().to_dict(),
                "two_caption_train_triplets": len(self.chain_rows), "instructions": len(self.vocabulary)}
