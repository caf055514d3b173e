"""RQ-KMeans: shapes and ranges, residual levels that lower the error, determinism, save/load round trip and the
errors of bad features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.errors import ConfigError, FeatureError
from genir.ids import IdScheme, RQKMeans, SemanticIdError
from tests.ids.conftest import labelled_blobs


def test_fit_encode_shapes_ranges_and_residual_error(blobs):
    scheme = RQKMeans(num_levels=3, codebook_size=[8, 4, 4], niter=10).fit(blobs)
    codes = scheme.encode(blobs)
    assert codes.shape == (len(blobs), 3) and codes.dtype == np.int64
    assert scheme.level_sizes == [8, 4, 4]
    assert (codes >= 0).all() and (codes.max(axis=0) < np.array([8, 4, 4])).all()
    errors = []
    for levels in range(1, 4):  # each level explains more of the features
        recon = sum(cb[codes[:, lv]] for lv, cb in enumerate(scheme.codebooks[:levels]))
        errors.append(float(((blobs - recon) ** 2).sum(1).mean()))
    assert errors[0] > errors[1] > errors[2]
    np.testing.assert_allclose(scheme.quantize(blobs), recon, atol=1e-5)


def test_level_one_recovers_the_blobs():
    x, labels = labelled_blobs(n=300, centers=5, spread=0.05, seed=3)
    codes = RQKMeans(num_levels=1, codebook_size=5, nredo=5).fit_encode(x)
    assert len(set(zip(labels.tolist(), codes[:, 0].tolist()))) == 5  # a one-to-one match of blobs and codes


def test_same_seed_same_codes_and_torch_input(blobs):
    a = RQKMeans(codebook_size=8, seed=7).fit_encode(blobs)
    b = RQKMeans(codebook_size=8, seed=7).fit_encode(torch.from_numpy(blobs))
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(blobs, tmp_path):
    scheme = RQKMeans(codebook_size=8).fit(blobs)
    scheme.save(tmp_path / "s")
    for loaded in (RQKMeans.load(tmp_path / "s"), IdScheme.load(tmp_path / "s")):
        assert isinstance(loaded, RQKMeans) and loaded.config == scheme.config
        np.testing.assert_array_equal(loaded.encode(blobs), scheme.encode(blobs))


def test_state_dict_round_trip_in_memory(blobs):
    scheme = RQKMeans(num_levels=2, codebook_size=[8, 4]).fit(blobs)
    state = scheme.state_dict()
    assert state["scheme"] == "rq_kmeans" and state["meta"] == {"num_features": 16}
    assert [a.shape for a in state["arrays"].values()] == [(8, 16), (4, 16)]
    other = RQKMeans().load_state_dict(state)  # the config comes with the state
    assert other.level_sizes == [8, 4]
    np.testing.assert_array_equal(other.encode(blobs), scheme.encode(blobs))


def test_load_errors_name_the_file(blobs, tmp_path):
    with pytest.raises(SemanticIdError, match=f"{tmp_path}/scheme.json: not found"):
        IdScheme.load(tmp_path)
    RQKMeans(codebook_size=4).fit(blobs).save(tmp_path)
    (tmp_path / "state.safetensors").write_bytes(b"garbage")
    with pytest.raises(SemanticIdError, match="state.safetensors: unreadable"):
        IdScheme.load(tmp_path)
    (tmp_path / "scheme.json").write_text('{"format_version": 1, "scheme": "vq"}')
    with pytest.raises(SemanticIdError, match="scheme.json: unknown scheme 'vq'"):
        IdScheme.load(tmp_path)


def test_errors(blobs):
    with pytest.raises(ConfigError, match="codebook_size 512 exceeds the 240 items"):
        RQKMeans(codebook_size=512).fit(blobs)
    with pytest.raises(ConfigError, match="rq_kmeans: codebook_size: expected one size per level"):
        RQKMeans(num_levels=2, codebook_size=[4, 4, 4])
    with pytest.raises(RuntimeError, match="not fitted"):
        RQKMeans().encode(blobs)
    bad = blobs.copy()
    bad[5, 2] = np.nan
    with pytest.raises(FeatureError, match="1 NaN or infinite values \\(first in row 5\\)"):
        RQKMeans(codebook_size=4).fit(bad)
    fitted = RQKMeans(codebook_size=4).fit(blobs)
    with pytest.raises(FeatureError, match="have 15 columns; the scheme was fitted on 16"):
        fitted.encode(blobs[:, :15])
    with pytest.raises(FeatureError, match="expected a 2-D"):
        fitted.encode(blobs[0])
    with pytest.raises(FeatureError, match="expected float or integer values, got dtype bool"):
        fitted.encode(blobs > 0)
    with pytest.raises(FeatureError, match="empty matrix"):
        fitted.encode(blobs[:0])
