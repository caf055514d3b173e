"""Double Mixture's pieces on a tiny random Whisper with the real (packaged) tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.errors import ConfigError
from genir.methods.doublemix import (
    DoubleMixConfig,
    EventDecoder,
    MixtureOfAdapters,
    hybrid_indices,
    rehearsal_based,
    replay_indices,
)
from genir.tensor_files import load_tensors, save_tensors
from tests.conftest import single_threaded

_one_thread = single_threaded()


@pytest.fixture(scope="module")
def whisper():
    from genir.llm.whisper import packaged_tokenizer, tiny_whisper, wrap_whisper

    try:
        tok = packaged_tokenizer("base")
    except ConfigError as e:
        pytest.skip(str(e))
    return wrap_whisper(tiny_whisper(tok, d_model=32, layers=2, heads=2, ffn=64, source_positions=100), tok, "t")


def _batch(model, n=3, frames=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    texts = ["hello world <event> conflict:attack", "none <event> nature:rain",
             "a b <event> movement:transport <event> nature:wind"]
    return model.collate([{"enc": torch.randn(frames, 32, generator=g), "target": model.encode_target(texts[i % 3])}
                          for i in range(n)])


def test_router_sends_each_token_to_exactly_one_expert():
    torch.manual_seed(0)
    moe = MixtureOfAdapters(16, 4, 5)
    for e in moe.experts:
        torch.nn.init.normal_(e.up.weight)
    x = torch.randn(2, 7, 16)
    out, balance = moe(x)
    routes = moe.last_routes
    assert routes.shape == (2, 7) and routes.min() >= 0 and routes.max() < 5
    probs = moe.router(x).softmax(-1)
    for b in range(2):
        for t in range(7):
            k = int(routes[b, t])
            assert k == int(probs[b, t].argmax())
            assert torch.allclose(out[b, t], probs[b, t, k] * moe.experts[k](x[b, t]), atol=1e-6)
    assert int(moe.usage.sum()) == 14 and balance.item() >= 1.0 - 1e-6  # Switch loss is >= 1, = 1 when uniform


def test_experts_are_one_per_task_and_the_baselines_have_none(whisper):
    assert len(EventDecoder(whisper, DoubleMixConfig(), 7).appended.mixture.experts) == 7
    assert len(EventDecoder(whisper, DoubleMixConfig(n_experts=3), 7).appended.mixture.experts) == 3
    assert len(EventDecoder(whisper, DoubleMixConfig(variant="adapter"), 7).appended.mixture.experts) == 1
    assert EventDecoder(whisper, DoubleMixConfig(variant="finetune"), 7).appended.mixture is None
    l2p = EventDecoder(whisper, DoubleMixConfig(variant="l2p"), 7)
    trainable = {n for n, p in l2p.named_parameters() if p.requires_grad}
    assert trainable == {"event_row", "pool.keys", "pool.prompts"}
    assert rehearsal_based("doublemix") and rehearsal_based("replay") and not rehearsal_based("l2p")
    assert not rehearsal_based("ewc") and rehearsal_based("joint")


def test_replay_and_hybrid_sample_sizes():
    rng = np.random.default_rng(0)
    picks = replay_indices(100, {"a": 50, "b": 5}, 0.1, rng)
    assert len(picks["a"]) == 10 and len(set(picks["a"])) == 10 and len(picks["b"]) == 5
    assert replay_indices(100, {"a": 50}, 0.0, rng)["a"].size == 0
    hyb = hybrid_indices(100, {"conflict", "nature"}, {("conflict", "nature"): 40, ("movement", "nature"): 40},
                         0.1, 1.0, rng)
    assert set(hyb) == {("conflict", "nature")} and len(hyb[("conflict", "nature")]) == 10


def test_labels_round_trip_and_only_new_parts_get_gradients(whisper):
    from genir.data.speech_events import parse_event_output

    model = EventDecoder(whisper, DoubleMixConfig(), 3)
    ids = model.encode_target("hello world <event> conflict:attack")
    assert ids.count(model.event_id) == 1
    assert parse_event_output(model.decode_ids(ids + [model.eot_id, 5])) == ("hello world", ["conflict:attack"])
    model.train()
    out = model(_batch(model))
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert model.event_row.grad is not None and model.event_row.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.decoder.parameters())


def test_cached_greedy_decoding_matches_a_full_forward(whisper):
    torch.manual_seed(1)
    model = EventDecoder(whisper, DoubleMixConfig(variant="l2p"), 3).eval()
    enc = torch.randn(2, 12, 32)
    generated = model.generate(enc, max_new_tokens=6)
    # teacher-force prompt + generated and check each step's argmax
    for b in range(2):
        seq = torch.tensor([model.prompt_ids + generated[b]])
        prefix, _ = model._prefix(enc[b:b + 1])
        embeds = torch.cat([prefix, model.embed(seq)], 1)
        h, _ = model.hidden(embeds, model._cross(enc[b:b + 1]), None, 0)
        start = prefix.shape[1] + len(model.prompt_ids) - 1
        preds = model.logits(h[0, start:start + len(generated[b])]).argmax(-1).tolist()
        assert preds == generated[b]


def test_ewc_penalty_is_zero_at_the_anchor_and_grows_away_from_it(whisper):
    model = EventDecoder(whisper, DoubleMixConfig(variant="ewc", ewc_lambda=10.0), 3)
    with torch.no_grad():
        model.appended.fc2.weight.normal_(0, 0.02)
    model.consolidate([_batch(model)])
    assert model.ewc_penalty().item() == 0.0
    assert sum(float(f.sum()) for f in model.ewc_fisher.values()) > 0
    with torch.no_grad():
        model.appended.fc2.weight.add_(0.1)
    assert model.ewc_penalty().item() > 0


def test_trainable_state_round_trip(whisper, tmp_path):
    torch.manual_seed(0)
    a = EventDecoder(whisper, DoubleMixConfig(), 3)
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_tensors(tmp_path / "state.safetensors", a.trainable_state())
    b = EventDecoder(whisper, DoubleMixConfig(), 3)
    b.load_trainable_state(load_tensors(tmp_path / "state.safetensors"))
    for n, t in a.trainable_state().items():
        assert torch.equal(t, b.trainable_state()[n]), n
    enc = torch.randn(2, 12, 32)
    assert a.generate(enc, 5) == b.generate(enc, 5)


def test_what_trains_in_each_variant(whisper):
    def trainable(variant, **kw):
        m = EventDecoder(whisper, DoubleMixConfig(variant=variant, **kw), 3)
        return {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("appended") else "")
                for n, p in m.named_parameters() if p.requires_grad}

    assert trainable("finetune") == {"event_row", "appended.self_attn", "appended.encoder_attn", "appended.fc1",
                                     "appended.fc2", "appended.self_attn_layer_norm",
                                     "appended.encoder_attn_layer_norm", "appended.final_layer_norm"}
    assert trainable("doublemix", train_attention=False) == {"event_row", "appended.mixture"}
    assert "appended.self_attn" in trainable("doublemix")


def test_precomputed_frozen_cross_attention_gives_the_same_loss_and_decoding(whisper):
    torch.manual_seed(0)
    model = EventDecoder(whisper, DoubleMixConfig(), 3)
    with torch.no_grad():
        for p in model.appended.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    batch = _batch(model)
    plain = model(batch)["loss"]
    kv = model.frozen_cross(batch["enc"], dtype=torch.float32)
    assert kv.shape[:3] == (3, 2, 2)
    assert torch.allclose(model({**batch, "frozen_kv": kv})["loss"], plain, atol=1e-5)
    assert model.generate(batch["enc"], 6) == model.generate(batch["enc"], 6, frozen_kv=kv)


def test_the_trainer_gives_the_experts_their_own_learning_rate(whisper):
    from genir.methods.doublemix.procedures import Examples
    from genir.training.trainer import Trainer, TrainerConfig

    model = EventDecoder(whisper, DoubleMixConfig(adapter_lr_scale=4.0), 3)
    opt = Trainer(model, Examples([]), config=TrainerConfig(lr=1e-4, progress=False))._optimizer(model)
    router = model.appended.mixture.router.weight
    event = model.event_row
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(router)] == pytest.approx(4e-4) and lr_of[id(event)] == pytest.approx(1e-4)
