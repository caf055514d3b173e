"""Bundle-LLM on a tiny randomly initialised Llama (built here; nothing pretrained) and synthetic bundles with random
item features: prompts and slots, which parameters each stage trains, the answer-only loss learning the answer
format, soft tokens receiving gradients, adapter-only checkpoints, and the baselines on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genir.data.bundles import BundleQuestion, make_questions
from genir.llm import FEATURE_MARK, tiny_llama, tiny_tokenizer
from genir.methods.bundlellm import (
    BundleLLM,
    BundleLLMConfig,
    ChoiceEvaluator,
    CoOccurrenceChoice,
    DiscriminativeBundleModel,
    FeatureFusion,
    ItemFeatures,
    PopularityChoice,
    default_trainer_config,
    evaluate_choices,
    parse_letter,
    train_stage,
)
from tests.conftest import single_threaded
from tests.data.test_bundles import _synthetic

_one_thread = single_threaded()
ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _synthetic(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="module")
def feats(data):
    rng = np.random.default_rng(0)
    return ItemFeatures(rng.standard_normal((data.num_items, 24)).astype(np.float32),
                        rng.standard_normal((data.num_items, 8)).astype(np.float32),
                        rng.standard_normal((data.num_items, 8)).astype(np.float32))


@pytest.fixture(scope="module")
def tok(data):
    return tiny_tokenizer(data.titles() + ["A bundle has: Which package completes it? Answer with one letter"],
                          vocab_size=320)


def _model(data, feats, tok, **cfg):
    llm = tiny_llama(tok, hidden_size=32, layers=2, heads=4, seed=0)
    torch.manual_seed(0)
    return BundleLLM(llm, tok, data.titles(), feats, BundleLLMConfig(title_words=3, **cfg),
                     data.items["description"].tolist())


@pytest.mark.parametrize(("text", "n", "expected"), [
    ("A", 4, 0), (" C.", 4, 2), ("D) foo", 4, 3), ("B: x", 2, 1), ("E", 4, None), ("Answer: A", 4, None),
    ("", 4, None), ("a", 4, None), ("AB", 4, None)])
def test_parse_letter(text, n, expected):
    assert parse_letter(text, n) == expected


def test_fusion_gives_one_vector_per_item():
    fusion = FeatureFusion(24, 8, 8, dim=16)
    out = fusion(torch.randn(5, 24), torch.randn(5, 8), torch.randn(5, 8))
    assert out.shape == (5, 16) and torch.isfinite(out).all()


def test_prompts_have_one_slot_per_item_in_hybrid_mode_only(data, feats, tok):
    model = _model(data, feats, tok)
    q, = make_questions(data, [0], num_candidates=6, seed=0)[0]
    hybrid, text = model.prompt(q, "hybrid"), model.prompt(q, "text")
    assert hybrid.count(FEATURE_MARK) == len(q.partial) + 6 and FEATURE_MARK not in text
    assert "A. " in text and "F. " in text and "G. " not in text and "from A to F" in text
    enc, soft = model.encode([q], with_answers=True, mode="hybrid")
    assert int(enc.slot_mask.sum()) == soft.shape[0] == len(q.partial) + 6
    assert soft.shape[1] == 32
    long, _ = model.encode([q], with_answers=False, mode="description")
    short, _ = model.encode([q], with_answers=False, mode="text")
    assert long.input_ids.shape[1] > short.input_ids.shape[1]


def test_stages_train_the_right_parameters(data, feats, tok):
    model = _model(data, feats, tok)

    def trainable():
        return {n.split(".")[0] if not n.startswith("llm.") else "lora" for n, p in model.named_parameters()
                if p.requires_grad}

    model.set_stage("zero-shot")
    assert trainable() == set()
    model.set_stage("stage1")
    assert trainable() == {"lora"} and all("lora_" in n for n, p in model.llm.named_parameters() if p.requires_grad)
    model.set_stage("stage2")
    assert trainable() == {"lora", "fusion", "projector"} and model.mode == "hybrid"
    frozen = _model(data, feats, tok, stage2_lora=False)
    frozen.set_stage("stage2")
    assert not any(p.requires_grad for p in frozen.llm.parameters())


def test_answer_only_training_learns_the_answer_format(data, feats, tok):
    """A few questions trained on (last weights kept): the greedy free-form answers become valid letters."""
    from genir.methods.bundlellm.training import _Fixed
    from genir.training import Trainer

    model = _model(data, feats, tok, lora_targets=ALL_LINEAR)
    qs, _ = make_questions(data, np.arange(6), num_candidates=4, seed=3)
    model.set_stage("zero-shot")
    before = evaluate_choices(model, qs, generate=True)
    model.set_stage("stage1")
    res = Trainer(model, _Fixed(qs), config=default_trainer_config(lr=2e-2, epochs=12, batch_size=3,
                                                                   warmup_steps=0)).fit()
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.5 * losses[0]
    after = evaluate_choices(model, qs, generate=True)
    assert after["valid_ratio"] == 1.0 and before["valid_ratio"] < 1.0, (before, after)


def test_stage2_trains_fusion_and_projector_through_the_soft_tokens(data, feats, tok, tmp_path):
    model = _model(data, feats, tok, stage2_lora=False)
    qs, _ = make_questions(data, np.arange(4), num_candidates=4, seed=5)
    model.set_stage("stage2")
    before = {n: p.detach().clone() for n, p in model.projector.named_parameters()}
    loss0 = model.loss(qs).item()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(15):
        loss = model.loss(qs)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert model.loss(qs).item() < loss0
    assert any(not torch.equal(before[n], p) for n, p in model.projector.named_parameters())
    model.eval()
    scores, _, _ = model.choice_scores(qs)
    model.save_pretrained(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").rglob("*") if p.is_file()}
    assert {"adapter_model.safetensors", "fusion.safetensors", "bundlellm.json"} <= files
    assert "model.safetensors" not in files  # never the base LLM
    fresh = _model(data, feats, tok, stage2_lora=False)
    fresh.load_trained(tmp_path / "ckpt")
    fresh.eval()
    torch.testing.assert_close(fresh.choice_scores(qs)[0], scores)


def test_choice_evaluator_counts_hits_over_all_questions():
    class Fixed:
        def choice_scores(self, questions, generate=False):
            scores = torch.zeros(len(questions), 3)
            scores[:, 1] = 1.0
            texts = ["B", "nonsense", "C."][: len(questions)]
            return scores, texts, None

    qs = [BundleQuestion(0, (0,), (1, 2, 3), a) for a in (1, 1, 2)]
    sums = ChoiceEvaluator(qs, batch_size=2, generate=True).model_sums(Fixed(), "cpu")
    assert sums.count == 3
    assert sums.sums == {"hitrate@1": 2.0, "valid_ratio": 2.0, "gen_hitrate@1": 1.0}  # batch 2 reads "B" again
    out = evaluate_choices(Fixed(), qs, batch_size=3, generate=True)
    assert out["hitrate@1"] == pytest.approx(2 / 3) and out["valid_ratio"] == pytest.approx(2 / 3)
    assert out["gen_hitrate@1"] == pytest.approx(2 / 3)


def test_popularity_and_cooccurrence_on_a_hand_made_case(data):
    # bundles 0 and 1 share items; a question about bundle 2 whose partial bundle holds an item of bundle 0
    m0, m1 = data.members[0].tolist(), data.members[1].tolist()
    partial = (m0[0],)
    partner = m0[1]  # co-occurs with the partial item in training bundle 0
    other = next(i for i in range(data.num_items) if i not in m0 and i not in m1)
    q = BundleQuestion(5, partial, (other, partner), 1)
    co = CoOccurrenceChoice(data, [0, 1], seed=0)
    assert co.choice_scores([q])[0].argmax().item() == 1
    shared = set(m0) & set(m1)
    if shared:
        s = next(iter(shared))
        q2 = BundleQuestion(5, (other,), (other, s), 1)
        assert PopularityChoice(data, [0, 1]).choice_scores([q2])[0].argmax().item() == 1


def test_discriminative_model_fits_training_questions(data, feats):
    torch.manual_seed(0)
    model = DiscriminativeBundleModel(feats.concat(), dim=16)
    qs, _ = make_questions(data, np.arange(20), num_candidates=5, seed=0)
    res = train_stage(model, None, qs, qs, default_trainer_config(lr=1e-2, epochs=15, patience=15, batch_size=20,
                                                                   warmup_steps=0))
    assert res.history[-1]["loss"] < 0.7 * res.history[0]["loss"]
    assert res.best_valid["hitrate@1"] > 0.5
