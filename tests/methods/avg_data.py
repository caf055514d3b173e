"""A tiny clip-art snapshot in the real files' formats (64 px renders in an ``.npz``, captions as gzip JSON
lines), written by the AVG tests: 5 colours x 4 shapes, jittered; captions name the colour and the shape, and a
share of the titles are boilerplate, as in the Open Clip Art Library."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40),
          "black": (10, 10, 10)}
SHAPES = ("square", "circle", "bar", "cross")


def draw(shape: str, rgb, rng, size: int = 64) -> np.ndarray:
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    s = size / 16
    dx, dy = rng.integers(-2, 3, size=2) * s
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = size / 2 + dy, size / 2 + dx
    mask = {"square": (abs(yy - cy) <= 4 * s) & (abs(xx - cx) <= 4 * s),
            "circle": (yy - cy) ** 2 + (xx - cx) ** 2 <= 20 * s * s,
            "bar": (abs(yy - cy) <= 1 * s) & (abs(xx - cx) <= 6 * s),
            "cross": ((abs(yy - cy) <= 1 * s) & (abs(xx - cx) <= 5 * s))
            | ((abs(xx - cx) <= 1 * s) & (abs(yy - cy) <= 5 * s))}[shape]
    img[mask] = rgb
    return img


def write_toy_clipart(folder: Path, per_class: int = 6, seed: int = 0, blank: int = 1, duplicates: int = 2
                      ) -> tuple[Path, Path]:
    """(captions, images) files with 20 classes x ``per_class`` images, plus ``blank`` all-white renders and
    ``duplicates`` pixel-identical copies (in another category) of the first images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, images = [], []
    for color, rgb in COLORS.items():
        for shape in SHAPES:
            for j in range(per_class):
                title = f"{color} {shape}" if j % 3 else "Part of the Flat Icon Collection (Wed Aug 25 2004)"
                rows.append({"id": f"shapes/{color}_{shape}_{j}", "category": "shapes", "title": title,
                             "description": "", "keywords": [color, shape, "shape"]})
                images.append(draw(shape, rgb, rng))
    for j in range(duplicates):
        rows.append({**rows[j], "id": rows[j]["id"].replace("shapes/", "copies/"), "category": "copies"})
        images.append(images[j].copy())
    for j in range(blank):
        rows.append({"id": f"broken/blank_{j}", "category": "broken", "title": "blank", "description": "",
                     "keywords": ["nothing"]})
        images.append(np.full((64, 64, 3), 255, dtype=np.uint8))
    captions = folder / "toy-captions.jsonl.gz"
    with gzip.open(captions, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    archive = folder / "toy-64px.npz"
    np.savez_compressed(archive, images=np.stack(images))
    return captions, archive
