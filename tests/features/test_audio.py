"""The truncated-context Whisper encoder and its per-clip cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.data.audio import load_wav, write_wav
from genir.errors import ConfigError
from genir.features.audio import encode_log_mel, encoder_states, log_mel


def _tiny(source_positions=100):
    from genir.llm.whisper import packaged_tokenizer, tiny_whisper

    try:
        tok = packaged_tokenizer("base")
    except ConfigError as e:
        pytest.skip(str(e))
    return tiny_whisper(tok, d_model=32, layers=1, heads=2, ffn=64, source_positions=source_positions)


def test_full_context_equals_hf_encoder_and_short_context_runs():
    model = _tiny(source_positions=100)
    enc = model.model.encoder
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    full = log_mel([audio], 100)
    assert full.shape == (1, 80, 200)
    with torch.no_grad():
        ours = encode_log_mel(enc, full)
        theirs = enc(full).last_hidden_state
        short = encode_log_mel(enc, log_mel([audio], 40))
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert short.shape == (1, 40, 32)


def test_encoder_states_are_cached_per_clip_content(tmp_path):
    model = _tiny(source_positions=100)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        write_wav(tmp_path / f"c{i}.wav", rng.normal(0, 0.1, 8000).astype(np.float32))
        paths.append(tmp_path / f"c{i}.wav")
    (tmp_path / "copy.wav").write_bytes(paths[0].read_bytes())  # same bytes: same entry
    calls = []

    def load(p):
        calls.append(p)
        return load_wav(p)

    enc = model.model.encoder
    first = encoder_states(enc, "tiny", [*paths, tmp_path / "copy.wav"], load, frames=40, progress=False)
    assert len(calls) == 3 and first[0].dtype == torch.float16 and first[0].shape == (40, 32)
    assert torch.equal(first[0], first[3])
    second = encoder_states(enc, "tiny", paths, load, frames=40, progress=False)
    assert len(calls) == 3  # all from the cache
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    encoder_states(enc, "tiny", paths[:1], load, frames=20, progress=False)  # another context: a new entry
    assert len(calls) == 4
