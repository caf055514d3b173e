"""Image-caption sets as query-retrieval tasks: images are the catalogue, captions the queries (text-to-image).

Two readers, one result (a :class:`~genir.data.tasks.QueryRetrievalTask` whose catalogue has an ``image`` column
of references that :func:`genir.features.image.image_embeddings` opens):

* :func:`read_openclipart` - the Open Clip Art Library snapshot (``openclipart-0.18-captions.jsonl.gz`` with the
  rendered ``openclipart-0.18-64px.npz``, same order). A caption is title + keywords (+ description). Boilerplate
  titles (a collection or an author's name repeated over many images: "gramastar", "Part of the Flat Icon
  Collection (...)", "Lemon SVG theme") are dropped (``boilerplate="drop"``, default), moved after the keywords
  (``"last"``: down-weighted by position and by the 48-token truncation of the generators) or kept. "Clipart by
  <author> - <name>" keeps its <name> with ``_`` and digits turned into spaces. Images are referenced as
  ``<file>.npz#<row>``.
* :func:`read_karpathy` - the Karpathy-split JSON of Flickr30k / MS-COCO (``dataset_flickr30k.json``:
  ``images[*].filename``, ``filepath``, ``split`` train/restval/val/test, ``sentences[*].raw``) with an image
  folder; ``restval`` counts as train, as usual.

Both split **by image**: a caption belongs to the stage of its image, every image (test ones included) stays in the
catalogue, so a generative index holds them all, and no test caption is ever a training pair. In the clip art
the same picture often sits in two folders (944 groups of pixel-identical renders cover 2,247 images): identical
images form one group, a group lies in one stage, and a caption's relevant items are all images of its group
(retrieving the identical copy is right). Rendered-blank images (an all-white 64 px render: the SVG did not
rasterise) and unreadable image files are skipped, captions with no text too, each with a counted warning
(``task.read_report``); an image/caption count mismatch is an error naming both files.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.catalogue import Catalogue
from genir.data.clipart import CAPTIONS_NAME, IMAGES_NAME, find_clipart, load_clipart
from genir.data.tasks import QueryRetrievalTask
from genir.errors import ConfigError, DatasetError

BOILERPLATE = ("drop", "last", "keep")
_CLIPART_BY = re.compile(r"^clipart by [^-]+ - (.+)$", re.IGNORECASE)
_BOILERPLATE_PATTERNS = (re.compile(r"^part of the .* collection", re.IGNORECASE),
                         re.compile(r"collection by .*\d{4}", re.IGNORECASE))
_NOISE = re.compile(r"hash\(0x[0-9a-f]+\)", re.IGNORECASE)  # Perl object addresses left in some SVGs' metadata


def find_openclipart() -> tuple[Path, Path]:
    """(captions, images) of the clip-art snapshot (the folder of :func:`genir.data.clipart.find_clipart`)."""
    folder = find_clipart()
    return folder / CAPTIONS_NAME, folder / IMAGES_NAME


def _words(name: str) -> str:
    return " ".join(re.sub(r"[_\d]+", " ", name).split())


def clean_titles(titles: list[str], max_title_repeats: int = 20) -> tuple[list[str], list[bool]]:
    """(descriptive part of each title, whether the original is boilerplate). A title is boilerplate when it
    matches a collection pattern or is shared by more than ``max_title_repeats`` images (a collection or author
    name, not a description); "Clipart by <author> - <name>" keeps the words of <name>."""
    counts = Counter(t.strip().lower() for t in titles)
    out, flags = [], []
    for t in titles:
        s = " ".join(str(t).split())
        m = _CLIPART_BY.match(s)
        if m:
            out.append(_words(m.group(1)))
            flags.append(True)
        elif (counts[s.lower()] > max_title_repeats or any(p.search(s) for p in _BOILERPLATE_PATTERNS)):
            out.append("")
            flags.append(True)
        else:
            out.append(s)
            flags.append(False)
    return out, flags


def clipart_caption(title: str, keywords: list[str], description: str, boilerplate_title: bool,
                    boilerplate: str = "drop", original_title: str = "") -> str:
    """The caption of one image: title, keywords (first occurrence order, repeats and the title's own words
    dropped) and the description when it says more than the title."""
    seen, kws = set(), []
    for k in keywords or []:
        k = " ".join(_NOISE.sub(" ", str(k)).split())
        if k and k.lower() not in seen and k.lower() != title.lower():
            seen.add(k.lower())
            kws.append(k)
    desc = " ".join(_NOISE.sub(" ", str(description or "")).split())
    if desc.lower().rstrip(". ") in (title.lower(), original_title.lower()):
        desc = ""
    head = title
    tail = ""
    if boilerplate_title:
        if boilerplate == "keep":
            head = original_title
        elif boilerplate == "last" and original_title and original_title != title:
            tail = original_title
    parts = [p for p in (head, ", ".join(kws), desc, tail) if p]
    return ". ".join(parts)


def _group_split(groups: np.ndarray, valid: float, test: float, seed: int) -> np.ndarray:
    """Stage of each row: whole groups go to test, then valid, until each holds its share of the rows."""
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ConfigError(f"valid ({valid}) and test ({test}) shares must be in [0, 1) and sum below 1")
    n = len(groups)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    stage_of_group = np.full(len(uniq), "train", dtype=object)
    filled, target = 0, [("test", test * n), ("valid", (test + valid) * n)]
    for g in order:
        for name, limit in target:
            if filled < limit:
                stage_of_group[g] = name
                filled += counts[g]
                break
        else:
            break
    return stage_of_group[inverse]


def _task(name: str, source: str, frame: pd.DataFrame, captions: list[tuple[int, str, str]], groups: np.ndarray,
          stage: np.ndarray, report: dict) -> QueryRetrievalTask:
    """Catalogue from ``frame`` (``id`` + columns), queries = ``captions`` (item row, qid, text) in the stage of
    their image, relevant = every image of the row's group."""
    catalogue = Catalogue.from_frame(name, frame, source=source)
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    queries = pd.DataFrame({"qid": [q for _, q, _ in captions], "text": [t for _, _, t in captions],
                            "stage": [stage[i] for i, _, _ in captions]})
    rel_q, rel_i = [], []
    for i, q, _ in captions:
        for j in members[groups[i]]:
            rel_q.append(q)
            rel_i.append(j)
    qrels = pd.DataFrame({"qid": rel_q, "item": np.asarray(rel_i, dtype=np.int64)})
    task = QueryRetrievalTask(catalogue, queries, qrels, name=name, protocol="text-to-image (split by image)")
    task.read_report = report
    return task


def read_openclipart(captions: str | Path | None = None, images: str | Path | None = None, *,
                     boilerplate: str = "drop", max_title_repeats: int = 20, skip_blank: bool = True,
                     valid: float = 0.1, test: float = 0.1, seed: int = 0, limit: int | None = None
                     ) -> QueryRetrievalTask:
    """The clip-art snapshot as a text-to-image task (see the module docstring). Defaults: the shared snapshot
    (:func:`find_openclipart`). ``limit``: keep the first ``limit`` usable images (quick runs)."""
    if boilerplate not in BOILERPLATE:
        raise ConfigError(f"boilerplate: expected one of {list(BOILERPLATE)}, got {boilerplate!r}")
    if captions is None or images is None:
        found = find_openclipart()
        captions = captions or found[0]
        images = images or found[1]
    captions, images = Path(captions), Path(images)
    rows, pixels = load_clipart(captions, images)
    titles = [str(r.get("title") or "") for r in rows]
    clean, flags = clean_titles(titles, max_title_repeats)
    blank = (pixels.reshape(len(pixels), -1).min(axis=1) == 255) if skip_blank else np.zeros(len(rows), bool)
    ref = images.name if images.parent.resolve() == captions.parent.resolve() else str(images.resolve())
    keep = np.flatnonzero(~blank)
    if limit is not None:
        keep = keep[:limit]
    digests = [hashlib.sha1(pixels[i].tobytes()).hexdigest() for i in keep]
    frame_rows, texts = [], []
    for j, i in enumerate(keep):
        r = rows[i]
        kws = r.get("keywords") or []
        text = clipart_caption(clean[i], kws if isinstance(kws, list) else [str(kws)], r.get("description") or "",
                               flags[i], boilerplate, titles[i])
        frame_rows.append({"id": str(r["id"]), "image": f"{ref}#{i}", "title": titles[i] or str(r["id"]),
                           "caption": text, "category": str(r.get("category") or "")})
        texts.append(text)
    frame = pd.DataFrame(frame_rows)
    groups = np.unique(np.asarray(digests), return_inverse=True)[1].reshape(-1)
    stage = _group_split(groups, valid, test, seed)
    caps = [(j, f"cap:{frame_rows[j]['id']}", t) for j, t in enumerate(texts) if t.strip()]
    report = {"lines": len(rows), "images": len(keep), "skipped_blank_images": int(blank.sum()),
              "empty_captions": len(keep) - len(caps), "boilerplate_titles": int(sum(flags[i] for i in keep)),
              "duplicate_groups": int((np.bincount(groups) > 1).sum()), "boilerplate": boilerplate}
    _warn_skipped(captions, report)
    return _task("openclipart", str(captions), frame, caps, groups, stage, report)


def _warn_skipped(source, report: dict) -> None:
    names = {"skipped_blank_images": "blank (unrendered) images", "unreadable_images": "unreadable images",
             "empty_captions": "captions with no text"}
    parts = [f"{report[k]} {v}" for k, v in names.items() if report.get(k)]
    if parts:
        warnings.warn(f"{source}: skipped " + ", ".join(parts), stacklevel=3)


def read_karpathy(json_path: str | Path, image_root: str | Path | None = None, *, check_images: bool = True,
                  max_captions: int | None = None, limit: int | None = None) -> QueryRetrievalTask:
    """A Karpathy-split JSON (Flickr30k, MS-COCO) as a text-to-image task; images under ``image_root`` (default:
    the JSON's folder) at ``<filepath>/<filename>``. ``check_images``: open every image once and skip those that
    cannot be read (counted)."""
    path = Path(json_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{path}: expected a Karpathy-split JSON with an 'images' list")
    root = Path(image_root) if image_root is not None else path.parent
    stages = {"train": "train", "restval": "train", "val": "valid", "valid": "valid", "test": "test"}
    frame_rows, caps, stage, unreadable, empty = [], [], [], 0, 0
    for n, img in enumerate(data["images"]):
        if limit is not None and len(frame_rows) >= limit:
            break
        if not isinstance(img, dict) or "filename" not in img:
            raise DatasetError(f"{path}: images[{n}]: expected an object with 'filename', 'split', 'sentences'")
        split = stages.get(str(img.get("split", "")))
        if split is None:
            raise DatasetError(f"{path}: images[{n}].split: expected train, restval, val or test, got "
                               f"{img.get('split')!r}")
        rel = Path(str(img.get("filepath") or "")) / str(img["filename"])
        if check_images and not _readable(root / rel):
            unreadable += 1
            continue
        image_id = str(img.get("cocoid", img.get("imgid", img["filename"])))
        row = len(frame_rows)
        sentences = img.get("sentences") or []
        good = []
        for s in sentences:
            raw = s.get("raw", "") if isinstance(s, dict) else str(s)
            raw = " ".join(str(raw).split())
            if raw:
                good.append(raw)
            else:
                empty += 1
        if max_captions is not None:
            good = good[:max_captions]
        frame_rows.append({"id": image_id, "image": str(rel) if image_root is None else str(root / rel),
                           "title": good[0] if good else str(img["filename"]), "caption": good[0] if good else ""})
        stage.append(split)
        caps.extend((row, f"{image_id}#{j}", t) for j, t in enumerate(good))
    if not frame_rows:
        raise DatasetError(f"{path}: no readable image")
    report = {"images": len(frame_rows), "unreadable_images": unreadable, "empty_captions": empty,
              "captions": len(caps)}
    _warn_skipped(path, report)
    name = str(data.get("dataset") or path.stem)
    return _task(name, str(path), pd.DataFrame(frame_rows), caps, np.arange(len(frame_rows)),
                 np.asarray(stage, dtype=object), report)


def _readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (OSError, ValueError, SyntaxError):
        return False
