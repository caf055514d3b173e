"""RQ-VAE on tiny blobs: code shapes and ranges, training lowers the loss and the reconstruction error,
determinism for a seed, an encode that changes nothing, save/load round trip and the shared-codebook option."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.errors import ConfigError
from genir.ids import RQVAE, IdScheme, RQKMeans, SemanticIdError, SemanticIdTable
from tests.ids.conftest import TINY_RQVAE


@pytest.fixture(scope="module")
def trained():
    from tests.ids.conftest import make_blobs

    x = make_blobs()
    return RQVAE(**TINY_RQVAE).fit(x), x


def test_codes_shapes_and_ranges(trained):
    scheme, x = trained
    codes = scheme.encode(x)
    assert codes.shape == (len(x), 2) and codes.dtype == np.int64
    assert scheme.level_sizes == [8, 8] and (codes >= 0).all() and codes.max() < 8
    s = SemanticIdTable.build(scheme, x, "index").stats()
    assert s["levels"][0]["utilisation"] >= 0.75  # k-means init + dead-code re-seeding keep codes in use


def test_training_lowers_loss_and_reconstruction(trained):
    scheme, x = trained
    h = scheme.history
    assert len(h) == TINY_RQVAE["epochs"] and set(h[0]) == {"epoch", "loss", "recon", "quant"}
    assert h[-1]["loss"] < 0.5 * h[0]["loss"] and h[-1]["recon"] < 0.5 * h[0]["recon"]
    short = RQVAE(**{**TINY_RQVAE, "epochs": 1}).fit(x)
    err = scheme.reconstruction_error(x)
    assert err < 0.5 * short.reconstruction_error(x)
    assert err < 0.5 * float(((x - x.mean(0)) ** 2).sum(1).mean())  # better than predicting the mean item


def test_same_seed_same_codes_other_seed_other_weights(trained):
    scheme, x = trained
    again = RQVAE(**TINY_RQVAE).fit(torch.from_numpy(x))
    np.testing.assert_array_equal(again.encode(x), scheme.encode(x))
    for (k, a), b in zip(scheme.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k
    other = RQVAE(**{**TINY_RQVAE, "seed": 1}).fit(x)
    assert not torch.equal(other.model.encoder[0].weight, scheme.model.encoder[0].weight)


def test_encode_is_deterministic_and_updates_nothing(trained):
    scheme, x = trained
    before = {k: v.clone() for k, v in scheme.model.state_dict().items()}
    first = scheme.encode(x)
    np.testing.assert_array_equal(scheme.encode(x[::-1].copy())[::-1], first)  # independent of batch content
    assert all(torch.equal(before[k], v) for k, v in scheme.model.state_dict().items())


def test_save_load_round_trip(trained, tmp_path):
    scheme, x = trained
    scheme.save(tmp_path / "rq")
    loaded = IdScheme.load(tmp_path / "rq")
    assert isinstance(loaded, RQVAE) and loaded.config == scheme.config
    np.testing.assert_array_equal(loaded.encode(x), scheme.encode(x))
    assert loaded.history == scheme.history
    assert loaded.reconstruction_error(x) == pytest.approx(scheme.reconstruction_error(x))
    with pytest.raises(SemanticIdError, match="holds a 'rqvae' scheme, not 'rq_kmeans'"):
        RQKMeans.load(tmp_path / "rq")


def test_decode_and_codebooks(trained):
    scheme, x = trained
    codes = scheme.encode(x)
    np.testing.assert_allclose(scheme.decode(codes), scheme.forward_all(x).x_hat.numpy(), atol=1e-5)
    books = scheme.codebooks
    assert [b.shape for b in books] == [(8, 4), (8, 4)]
    z_q = books[0][codes[:, 0]] + books[1][codes[:, 1]]  # the quantized latent is the sum of the chosen codes
    np.testing.assert_allclose(z_q, scheme.forward_all(x).z_q.numpy(), atol=1e-5)


def test_shared_codebook_and_per_level_sizes():
    from tests.ids.conftest import make_blobs

    x = make_blobs(n=120)
    shared = RQVAE(**{**TINY_RQVAE, "epochs": 3, "shared_codebook": True}).fit(x)
    books = shared.model.quantizer.codebooks  # (L, K, e)
    assert torch.equal(books[0], books[1])
    uneven = RQVAE(**{**TINY_RQVAE, "epochs": 3, "codebook_size": [8, 4]}).fit(x)
    codes = uneven.encode(x)
    assert uneven.level_sizes == [8, 4] and codes[:, 1].max() < 4
    with pytest.raises(ConfigError, match="codebook_size: expected one size for all levels with shared_codebook"):
        RQVAE(codebook_size=[8, 4], num_levels=2, shared_codebook=True)


def test_progress_bar_and_config_errors(capsys):
    from tests.ids.conftest import make_blobs

    RQVAE(**{**TINY_RQVAE, "epochs": 2}).fit(make_blobs(n=64), progress=True)
    assert "rqvae fit" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="rqvae: optimizer: expected one of \\['adam', 'adamw', 'adagrad'\\]"):
        RQVAE(optimizer="sgd")
    with pytest.raises(ConfigError, match="rqvae: unknown field\\(s\\) \\['codebooks'\\]"):
        RQVAE(codebooks=3)
    with pytest.raises(ConfigError, match="device"):
        RQVAE(**TINY_RQVAE).fit(make_blobs(n=64), device="gpu0")


def test_fit_trains_with_the_one_trainer(monkeypatch):
    """The RQ-VAE has no loop of its own: fit() runs genir.training.Trainer (its epochs, its optimizer), with
    the scheme's own batch order and the global RNG left as seeded by the scheme."""
    from genir.training import Trainer

    seen = []
    real_fit = Trainer.fit

    def fit(self):
        seen.append(self.config)
        return real_fit(self)

    monkeypatch.setattr(Trainer, "fit", fit)
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    scheme = RQVAE(num_levels=2, codebook_size=4, latent_dim=4, hidden_dims=[8], epochs=3, batch_size=32,
                   optimizer="adagrad", lr=0.1, progress=False, device="cpu").fit(x)
    assert len(seen) == 1 and seen[0].epochs == 3 and seen[0].optimizer == "adagrad" and not seen[0].seed_rng
    assert [h["epoch"] for h in scheme.history] == [1, 2, 3] and {"recon", "quant"} <= set(scheme.history[0])
