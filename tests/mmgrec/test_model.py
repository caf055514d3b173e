"""MMGRec: trains, decodes only catalogue items, uses the graph vectors and the user-gated relation term."""

import math

import pytest
import torch

from genir.errors import ConfigError, FeatureError
from genir.training import Trainer, TrainerConfig
from tests.mmgrec.conftest import TINY_MODEL
from tests.tiger.test_model import eval_batch


def test_loss_falls_and_ids_are_valid(mmgrec, split):
    result = Trainer(mmgrec, split, config=TrainerConfig(epochs=3, batch_size=16, lr=1e-2, progress=False, cpu=True,
                                                  patience=10)).fit()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    mmgrec.eval()
    res = mmgrec.beam_search(eval_batch(split).history, torch.arange(split.num_users))
    codes = [tuple(c) for c in res.codes[res.valid].tolist()]
    known = {tuple(c) for c in mmgrec.item_codes.tolist()}
    assert codes and all(c in known for c in codes)


def test_encoder_reads_graph_vectors_and_user_gate(mmgrec, split):
    assert mmgrec.item_vectors.shape == (split.num_items + 1, 8) and mmgrec.user_vectors.shape == (split.num_users, 8)
    assert mmgrec.net.pos_emb is None and mmgrec.net.item_proj is not None  # no positional encoding
    mmgrec.eval()
    batch = eval_batch(split)
    with torch.no_grad():
        for block in mmgrec.net.encoder:  # make the relation term matter
            torch.nn.init.normal_(block.self_attn.u_qkv.weight, std=1.0)
        a = mmgrec.exact_full_scores(batch)
        other = batch.__class__(batch.users.roll(1), batch.history, batch.history_len, batch.pad_id)
        b = mmgrec.exact_full_scores(other)  # same histories, other users' gates
    assert not torch.allclose(a, b)


def test_beam_equals_exact_with_a_full_beam(mmgrec, split):
    mmgrec.config.beam_width = split.num_items
    mmgrec.eval()
    batch = eval_batch(split)
    beam, exact = mmgrec.full_scores(batch), mmgrec.exact_full_scores(batch)
    unseen = torch.ones_like(exact, dtype=torch.bool)
    for row, items in enumerate(batch.history):  # history items are excluded inside the beam search
        unseen[row, items[items < split.num_items]] = False
    assert torch.isneginf(beam[~unseen]).all()
    torch.testing.assert_close(beam[unseen], exact[unseen], atol=1e-4, rtol=1e-4)


def test_adhoc_history_and_known_user(mmgrec, split):
    mmgrec.eval()
    hist = [int(x) for x in split.histories("test")[0]][:3]
    for users in (None, [0]):
        out = mmgrec.recommend([hist], k=4, users=users)[0]
        assert len(out) == 4 and not {i for i, _ in out} & set(hist)
        assert all(math.isfinite(s) for _, s in out)


def test_absolute_positions_switch(split, graph_index, feature_file):
    from genir.methods import build_method

    m = build_method("mmgrec", split, {"index": str(graph_index), "graph_features": f"img={feature_file}",
                                       **TINY_MODEL, "position": "absolute"}, seed=0)
    assert m.net.pos_emb is not None and not m.net.encoder[0].self_attn.relation


def test_bad_inputs(split, graph_index, tmp_path):
    from genir.methods import build_method

    with pytest.raises(ConfigError, match="position"):
        build_method("mmgrec", split, {"index": str(graph_index), **TINY_MODEL, "position": "rotary"})
    with pytest.raises(ConfigError, match="relation needs user vectors"):
        build_method("tiger", split, {"index": str(graph_index), "position": "relation"})
    bad = tmp_path / "short.npy"
    import numpy as np

    np.save(bad, np.ones((split.num_items - 1, 6), dtype=np.float32))
    with pytest.raises(FeatureError, match=r"short.npy.*rows"):
        build_method("mmgrec", split, {"index": str(graph_index), **TINY_MODEL, "graph_features": f"img={bad}"})
