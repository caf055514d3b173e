"""The Open Clip Art Library snapshot as a :class:`~genir.data.catalogue.Catalogue` of images with captions.

Two files (``../shared/data/README.md``): ``openclipart-0.18-64px.npz`` (array ``images``, (N, 64, 64, 3) uint8,
rendered on white) and ``openclipart-0.18-captions.jsonl.gz`` (one JSON line per image, same order: ``id``,
``category``, ``title``, ``description``, ``keywords``). The catalogue keeps each image as an array in the
``image`` column, so the image encoders of :mod:`genir.features.image` read it as they read a path.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.catalogue import Catalogue
from genir.errors import DatasetError

IMAGES_NAME = "openclipart-0.18-64px.npz"
CAPTIONS_NAME = "openclipart-0.18-captions.jsonl.gz"
SNAPSHOT_ENV = "GENIR_CLIPART_DIR"


def find_clipart() -> Path:
    """The folder holding both clip-art files: ``$GENIR_CLIPART_DIR``, else ``<repo>/../shared/data/``."""
    env = os.environ.get(SNAPSHOT_ENV)
    folder = Path(env).expanduser() if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    missing = [n for n in (IMAGES_NAME, CAPTIONS_NAME) if not (folder / n).is_file()]
    if missing:
        raise DatasetError(f"{folder}: clip-art snapshot file(s) {missing} not found; set ${SNAPSHOT_ENV} to the "
                           "folder holding them (rebuild: ../shared/data/README.md, 'Clip art')")
    return folder


def check_rgb_images(images: np.ndarray, where: str, size: int | None = None) -> np.ndarray:
    """``images`` as (N, H, W, 3) uint8 with H == W (== ``size`` if given); DatasetError naming ``where`` and the
    shape or dtype found otherwise."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"{where}: expected RGB images of shape (N, H, W, 3), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DatasetError(f"{where}: expected uint8 pixels, got {images.dtype}")
    if images.shape[1] != images.shape[2] or (size is not None and images.shape[1] != size):
        want = f"{size}x{size}" if size is not None else "square"
        raise DatasetError(f"{where}: expected {want} images, got {images.shape[1]}x{images.shape[2]}")
    return images


def read_clipart(folder: str | Path | None = None, size: int = 64) -> Catalogue:
    """Catalogue ``openclipart``: ids are the images' paths in the collection; columns ``image`` ((64, 64, 3)
    uint8 array), ``title``, ``caption`` (keywords joined, then the description), ``category``."""
    folder = find_clipart() if folder is None else Path(folder)
    npz, captions = folder / IMAGES_NAME, folder / CAPTIONS_NAME
    for path in (npz, captions):
        if not path.is_file():
            raise DatasetError(f"{path}: file not found")
    try:
        with np.load(npz, allow_pickle=False) as data:
            if "images" not in data.files:
                raise DatasetError(f"{npz}: no array 'images' (has {data.files})")
            images = check_rgb_images(data["images"], str(npz), size)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{npz}: not a readable .npz file: {exc}") from None
    rows = []
    try:
        with gzip.open(captions, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{captions}:{n}: not JSON ({exc.msg})") from None
                if not isinstance(rec, dict) or not rec.get("id"):
                    raise DatasetError(f"{captions}:{n}: expected an object with an 'id'")
                keywords = ", ".join(str(k) for k in rec.get("keywords") or [])
                caption = ". ".join(p for p in (keywords, str(rec.get("description") or "").strip()) if p)
                rows.append({"id": rec["id"], "title": str(rec.get("title") or ""), "caption": caption,
                             "category": str(rec.get("category") or "")})
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{captions}: cannot read gzip JSON lines: {exc}") from None
    if len(rows) != len(images):
        raise DatasetError(f"{captions}: {len(rows)} captions but {npz.name} holds {len(images)} images; the two "
                           "files must list the same images in the same order")
    frame = pd.DataFrame(rows)
    frame["image"] = list(images)
    return Catalogue.from_frame("openclipart", frame, source=str(npz))


def catalogue_images(catalogue: Catalogue, column: str = "image") -> np.ndarray:
    """(N, H, W, 3) uint8: the catalogue's image arrays stacked (checked)."""
    if column not in catalogue.columns.columns:
        raise DatasetError(f"{catalogue.source or catalogue.name}: no {column!r} column of image arrays")
    return check_rgb_images(np.stack(catalogue.columns[column].to_list()), catalogue.source or catalogue.name)
