"""Frozen Whisper encoder states of audio clips, on a truncated context, cached on disk per clip.

Whisper pads every input to 30 s (1,500 encoder frames). The clips here are at most a few seconds, so the encoder
runs on a shorter context instead, like whisper.cpp's ``audio_ctx``: ``frames`` output frames (400 = 8 s) from
``2 * frames`` log-mel frames, with the positional embeddings sliced to the first ``frames`` rows.
:func:`encode_log_mel` is that forward, written over the encoder's own modules (HF's ``WhisperEncoder.forward``
refuses any input that is not 3,000 mel frames); with ``frames = max_source_positions`` it is exactly HF's
encoder. The model never saw a short context in training, so transcripts can differ from the 30-s ones; the
Double Mixture recipe measures the WER of both.

:func:`encoder_states` encodes each clip once and caches its ``last_hidden_state`` (float16, ``(frames, d)``) in
the feature cache (:mod:`genir.features.cache`) under a key of (model signature, sha256 of the clip's bytes,
frames), so a renamed clip hits the cache and a changed one never does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from genir.atomic import file_sha256
from genir.errors import FeatureError
from genir.features.cache import cached, entry_paths

SAMPLE_RATE = 16_000
HOP = 160  # samples per log-mel frame; two mel frames per encoder frame
CACHE_KIND = "whisper-encoder"


def log_mel(audios: Sequence[np.ndarray], frames: int, n_mels: int = 80) -> torch.Tensor:
    """(B, n_mels, 2 * frames) Whisper log-mel features of 16-kHz mono clips, each cut or zero-padded to
    ``frames`` encoder frames (``frames / 50`` seconds)."""
    from transformers import WhisperFeatureExtractor

    seconds = math.ceil(2 * frames * HOP / SAMPLE_RATE)
    extractor = WhisperFeatureExtractor(feature_size=n_mels, chunk_length=seconds)
    feats = extractor([np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=SAMPLE_RATE,
                      return_tensors="np").input_features
    return torch.from_numpy(np.ascontiguousarray(feats[:, :, :2 * frames]))


def encode_log_mel(encoder, features: torch.Tensor) -> torch.Tensor:
    """(B, T, d) ``last_hidden_state`` of a HF ``WhisperEncoder`` for (B, n_mels, 2T) features, any T up to
    ``max_source_positions`` (positions sliced to the first T)."""
    frames = features.shape[-1] // 2
    if frames > encoder.embed_positions.weight.shape[0]:
        raise FeatureError(f"Whisper encoder: {frames} frames exceed its {encoder.embed_positions.weight.shape[0]}"
                           " positions")
    x = F.gelu(encoder.conv1(features))
    x = F.gelu(encoder.conv2(x)).permute(0, 2, 1)  # (B, T, d)
    x = x + encoder.embed_positions.weight[:frames]
    for layer in encoder.layers:
        x = layer(x, None)
    return encoder.layer_norm(x)


def clip_digest(path: str | Path) -> str:
    return file_sha256(Path(path))


def encoder_states(encoder, signature: str, paths: Sequence[str | Path], load: Callable[[str], np.ndarray], *,
                   frames: int = 400, batch_size: int = 8, cache: bool = True, progress: bool = True,
                   dtype: torch.dtype = torch.float16) -> list[torch.Tensor]:
    """(frames, d) encoder states of every clip in ``paths`` (``load(path)`` gives 16-kHz mono float32), cached.

    ``signature`` identifies the weights (:attr:`genir.llm.whisper.Whisper.signature`). Clips missing from the
    cache are encoded in batches of ``batch_size``; a clip whose bytes are identical to another's is encoded
    once."""
    params = {"model": signature, "frames": int(frames), "dtype": str(dtype).removeprefix("torch.")}
    digests = [clip_digest(p) for p in paths]
    todo = sorted({d: p for d, p in zip(digests, paths)
                   if not (cache and entry_paths(CACHE_KIND, params, d)[1].is_file())}.items())
    fresh: dict[str, np.ndarray] = {}
    n_mels = encoder.conv1.weight.shape[1]
    device = encoder.conv1.weight.device
    bar = tqdm(total=len(todo), desc="Whisper encoder", unit="clip", disable=not progress or not todo)

    @torch.no_grad()
    def encode(batch: list) -> np.ndarray:
        feats = log_mel([load(str(p)) for p in batch], frames, n_mels).to(device)
        return encode_log_mel(encoder, feats).to(dtype).cpu().numpy()

    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        for (d, _), s in zip(chunk, encode([p for _, p in chunk])):
            fresh[d] = s
        bar.update(len(chunk))
    bar.close()
    out, memo = [], {}
    for d, p in zip(digests, paths):
        if d not in memo:  # an unreadable cache entry is recomputed by cached()
            arr = (cached(CACHE_KIND, params, d, lambda d=d, p=p: fresh[d] if d in fresh else encode([p])[0])
                   if cache else fresh[d])
            memo[d] = torch.from_numpy(np.array(arr))
        out.append(memo[d])
    return out
