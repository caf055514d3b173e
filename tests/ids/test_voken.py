"""AVG's voken tokenizer: the alignment term pulls decoded vokens toward the caption embeddings, rows without a
caption (held out) are ignored, one codebook or one per level, and the spec builds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genir.errors import FeatureError
from genir.ids import SCHEMES, VokenTokenizer, build_scheme, load_spec
from tests.ids.conftest import labelled_blobs

ROOT = Path(__file__).resolve().parents[2]
TINY = {"num_levels": 2, "codebook_size": 8, "latent_dim": 8, "hidden_dims": [32], "epochs": 25, "batch_size": 80,
        "lr": 3e-3, "device": "cpu", "progress": False, "dropout": 0.0, "seed": 0}


def _data():
    x, labels = labelled_blobs(n=160, d=12, centers=4, seed=1)
    # "caption embeddings": a different view of the same classes, in the image features' space and size
    rng = np.random.default_rng(2)
    anchors = rng.normal(size=(4, 12)).astype(np.float32)
    return x, (anchors[labels] + 0.05 * rng.normal(size=(160, 12))).astype(np.float32), labels


def test_alignment_pulls_decoded_vokens_toward_captions_and_ignores_held_out_rows():
    x, captions, _ = _data()
    held_out = np.arange(160) % 5 == 0
    paired = captions.copy()
    paired[held_out] = np.nan
    plain = VokenTokenizer(**TINY, align_weight=1e-6).fit(x, paired=paired)
    aligned = VokenTokenizer(**TINY, align_weight=5.0).fit(x, paired=paired)

    def gap(scheme, rows):
        x_hat = scheme.forward_all(x).x_hat.numpy()
        return float(((x_hat[rows] - captions[rows]) ** 2).sum(1).mean())

    # closer to the captions of the training rows, and (through the shared network) of the held-out rows too
    assert gap(aligned, ~held_out) < 0.7 * gap(plain, ~held_out)
    assert gap(aligned, held_out) < gap(plain, held_out)
    # a held-out row gets no alignment term at all (its caption is never read): a batch of held-out rows only
    import torch

    rows = torch.from_numpy(np.flatnonzero(held_out))
    losses = aligned.training_loss(torch.from_numpy(x[held_out]), rows)
    assert float(losses["align"].detach()) == 0.0 and float(losses["loss"].detach()) > 0
    assert aligned.encode(x).shape == (160, 2) and aligned.encode(x).max() < 8


def test_shared_or_per_level_codebooks_and_checks():
    x, captions, _ = _data()
    shared = VokenTokenizer(**TINY).fit(x, paired=captions)
    books = shared.codebooks
    assert len(books) == 2 and np.array_equal(books[0], books[1]) and books[0].shape == (8, 8)
    per_level = VokenTokenizer(**{**TINY, "shared_codebook": False}).fit(x, paired=captions)
    assert not np.array_equal(per_level.codebooks[0], per_level.codebooks[1])
    with pytest.raises(FeatureError, match="all NaN"):
        bad = captions.copy()
        bad[0, 0] = np.nan
        VokenTokenizer(**TINY).fit(x, paired=bad)
    with pytest.raises(FeatureError, match="one space of one size"):
        VokenTokenizer(**TINY).fit(x, paired=captions[:, :5])
    latent = VokenTokenizer(**TINY, align_target="latent").fit(x, paired=captions[:, :5])  # a head maps sizes
    assert latent.encode(x).shape == (160, 2)


def test_spec_file_and_registry(tmp_path):
    spec = load_spec(ROOT / "tokenizers" / "voken.yaml", {"epochs": 2})
    assert spec.scheme == "voken" and spec.paired == "text" and spec.collision == "index"
    scheme = build_scheme(spec)
    assert isinstance(scheme, VokenTokenizer) and SCHEMES["voken"] is VokenTokenizer
    assert scheme.config.shared_codebook and scheme.config.latent_dim == 128
    x, captions, _ = _data()
    fitted = VokenTokenizer(**TINY).fit(x, paired=captions)
    fitted.save(tmp_path / "s")
    back = VokenTokenizer.load(tmp_path / "s")
    assert np.array_equal(back.encode(x), fitted.encode(x))
