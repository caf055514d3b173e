"""Image embeddings of a catalogue's images, through a registry of image encoders (the slot AVG and the
image-editing methods plug their backbones into).

An encoder is a factory ``make(**options) -> encoder`` registered in :data:`IMAGE_ENCODERS` (or declared in the
``genir.image_encoders`` entry-point group); the encoder has ``encode(images: list[PIL.Image]) -> (n, d)`` and a
``signature`` string that changes whenever its output could (weights, preprocessing), for the cache key.
Built in:

* ``pixels`` - the image resized to ``size`` x ``size`` RGB, flattened, scaled to [0, 1]: a content baseline that
  needs no weights;
* ``hf`` - any Hugging Face vision backbone loaded by path (``model_path``: a folder with a config, weights and
  an image-processor config, e.g. DINOv2 or a ViT; ``AutoModel`` + ``AutoImageProcessor``, nothing downloaded),
  the pooled output (or the mean of the last hidden states) per image.

The catalogue column ``image`` holds paths (absolute, or relative to ``root``, default: the folder of the
catalogue's source file) or arrays (H, W[, C]) uint8.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genir.data.catalogue import Catalogue
from genir.errors import FeatureError
from genir.features.cache import cached
from genir.registry import Registry

IMAGE_ENCODERS: Registry[Callable[..., object]] = Registry("image encoder", "genir.image_encoders", FeatureError)


class PixelEncoder:
    """Resized RGB pixels in [0, 1], flattened: (n, 3 * size * size)."""

    def __init__(self, size: int = 16):
        if size < 1:
            raise FeatureError(f"pixels image encoder: size must be >= 1, got {size}")
        self.size = int(size)
        self.signature = f"pixels-{self.size}"

    def encode(self, images: list) -> np.ndarray:
        out = np.stack([np.asarray(im.convert("RGB").resize((self.size, self.size)), dtype=np.float32) / 255.0
                        for im in images])
        return out.reshape(len(images), -1)


class HFVisionEncoder:
    """A Hugging Face vision backbone from a local folder; one vector per image (pooled output, else the mean of
    the last hidden states)."""

    def __init__(self, model_path: str, device: str | None = None):
        import torch
        from transformers import AutoImageProcessor, AutoModel

        folder = Path(model_path).expanduser()
        if not folder.is_dir():
            raise FeatureError(f"{model_path}: image model folder not found (a Hugging Face vision model saved "
                               "with save_pretrained, with its image-processor config)")
        try:
            self.processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise FeatureError(f"{folder}: cannot load a vision model and image processor from it: {exc}") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
        self.signature = "hf-" + hashlib.sha256(repr(files).encode()).hexdigest()[:16]

    def encode(self, images: list) -> np.ndarray:
        import torch

        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)
        pooled = getattr(out, "pooler_output", None)
        vec = pooled if pooled is not None else out.last_hidden_state.mean(1)
        return vec.float().cpu().numpy()


IMAGE_ENCODERS.register("pixels", PixelEncoder)
IMAGE_ENCODERS.register("hf", HFVisionEncoder)


def _open(value, root: Path, where: str):
    from PIL import Image

    if isinstance(value, np.ndarray):
        return Image.fromarray(value.astype(np.uint8))
    path = Path(str(value))
    path = path if path.is_absolute() else root / path
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (OSError, ValueError) as exc:
        raise FeatureError(f"{where}: cannot read image {path}: {exc}") from None


def image_embeddings(catalogue: Catalogue, encoder: str = "pixels", column: str = "image",
                     root: str | Path | None = None, batch_size: int = 64, cache: bool = True,
                     progress: bool = False, **options) -> np.ndarray:
    """(num_items, d) float32 embeddings of the catalogue's images by the registered ``encoder``."""
    from tqdm.auto import tqdm

    if not isinstance(catalogue, Catalogue):
        catalogue = getattr(catalogue, "catalogue", catalogue)
    if column not in catalogue.columns.columns:
        raise FeatureError(f"{catalogue.source or catalogue.name}: no {column!r} column for image features "
                           f"(have {list(catalogue.columns.columns)})")
    base = Path(root) if root is not None else (Path(catalogue.source).parent if catalogue.source else Path("."))
    enc = IMAGE_ENCODERS.get(encoder)(**options)
    params = {"encoder": encoder, "signature": enc.signature, "column": column, "root": str(base.resolve())}

    def compute() -> np.ndarray:
        values = catalogue.columns[column].tolist()
        parts = []
        for start in tqdm(range(0, len(values), batch_size), desc=f"image features ({encoder})",
                          disable=not progress, leave=False):
            images = [_open(v, base, catalogue.source or catalogue.name) for v in values[start:start + batch_size]]
            parts.append(np.asarray(enc.encode(images), dtype=np.float32))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    if not cache:
        return compute()
    return cached("image", params, catalogue.fingerprint(), compute)
