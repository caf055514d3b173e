"""The Open Clip Art Library snapshot as a :class:`~genir.data.catalogue.Catalogue` of images with captions.

Two files (``../shared/data/README.md``): ``openclipart-0.18-64px.npz`` (array ``images``, (N, 64, 64, 3) uint8,
rendered on white) and ``openclipart-0.18-captions.jsonl.gz`` (one JSON line per image, same order: ``id``,
``category``, ``title``, ``description``, ``keywords``). The catalogue keeps each image as an array in the
``image`` column, so the image encoders of :mod:`genir.features.image` read it as they read a path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.catalogue import Catalogue
from genir.data.json_lines import json_lines
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
                           "folder holding them (rebuild: `apt-get download openclipart-svg openclipart-png`, see "
                           "../shared/data/README.md, 'Clip art')")
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


def load_npz_images(path: str | Path, size: int | None = None) -> np.ndarray:
    """The ``images`` array of an ``.npz`` archive, checked by :func:`check_rgb_images`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "images" not in data.files:
                raise DatasetError(f"{path}: no array 'images' (has {data.files})")
            return check_rgb_images(data["images"], str(path), size)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file: {exc}") from None


def load_clipart(captions: str | Path, images: str | Path, size: int | None = None) -> tuple[list[dict], np.ndarray]:
    """The snapshot's two files read and matched: one caption record per image (``id``, ``title``, ``keywords``,
    ``description``, ``category``, as in the file) and the (N, H, W, 3) uint8 renders, same order. A record
    without an ``id`` or a count mismatch is an error naming the file(s)."""
    captions, images = Path(captions), Path(images)
    records = []
    for lineno, rec in json_lines(captions):
        if not rec.get("id"):
            raise DatasetError(f"{captions}:{lineno}: expected an object with an 'id' (and 'title', 'keywords', "
                               "'description')")
        records.append(rec)
    pixels = load_npz_images(images, size)
    if len(pixels) != len(records):
        raise DatasetError(f"{images} holds {len(pixels)} images but {captions} has {len(records)} caption lines; "
                           "the two files must list the same images in the same order")
    return records, pixels


def read_clipart(folder: str | Path | None = None, size: int = 64) -> Catalogue:
    """Catalogue ``openclipart``: ids are the images' paths in the collection; columns ``image`` ((64, 64, 3)
    uint8 array), ``title``, ``caption`` (keywords joined, then the description), ``category``."""
    folder = find_clipart() if folder is None else Path(folder)
    npz = folder / IMAGES_NAME
    records, images = load_clipart(folder / CAPTIONS_NAME, npz, size)
    rows = []
    for rec in records:
        keywords = ", ".join(str(k) for k in rec.get("keywords") or [])
        caption = ". ".join(p for p in (keywords, str(rec.get("description") or "").strip()) if p)
        rows.append({"id": rec["id"], "title": str(rec.get("title") or ""), "caption": caption,
                     "category": str(rec.get("category") or "")})
    frame = pd.DataFrame(rows)
    frame["image"] = list(images)
    return Catalogue.from_frame("openclipart", frame, source=str(npz))


def catalogue_images(catalogue: Catalogue, column: str = "image") -> np.ndarray:
    """(N, H, W, 3) uint8: the catalogue's image arrays stacked (checked)."""
    if column not in catalogue.columns.columns:
        raise DatasetError(f"{catalogue.source or catalogue.name}: no {column!r} column of image arrays")
    return check_rgb_images(np.stack(catalogue.columns[column].to_list()), catalogue.source or catalogue.name)
