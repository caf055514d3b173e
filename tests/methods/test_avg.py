"""AVG's generator and the image index: the listwise loss is the cross-entropy of the raw sequence
log-probabilities (those the beam search ranks by), mined negatives are never the caption's image, and
`genir index build --images` + `genir retrieve --save-grid` run end to end on a tiny clip-art snapshot."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from genir.data.image_captions import read_openclipart
from genir.decoding import exact_scores_seq2seq
from genir.methods.avg import AVGConfig, make_generator, same_image_groups
from tests.methods.avg_data import write_toy_clipart

ROOT = Path(__file__).resolve().parents[2]
TINY = {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 32, "dropout": 0.0, "negatives": 3, "mine_beams": 6}
SCRATCH = {**TINY, "text_encoder": "scratch"}  # token ids in: the decoding module's exact scorer reads them


@pytest.fixture
def toy(tmp_path):
    captions, images = write_toy_clipart(tmp_path / "data", per_class=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_openclipart(captions, images, valid=0.2, test=0.2)


def _generator(task, seed=0):
    n = len(task.catalogue)
    i = np.random.default_rng(seed).permutation(n)
    codes = np.stack([i % 4, (i // 4) % 5, i // 20], 1)  # unique
    return make_generator(task, codes, [4, 5, int(codes[:, 2].max()) + 1], True, AVGConfig(**SCRATCH), seed)


def test_listwise_loss_is_cross_entropy_of_raw_sequence_scores(toy):
    torch.manual_seed(0)
    gen = _generator(toy)
    texts, items = ["red square", "blue bar"], torch.tensor([0, 7])
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    for _ in range(15):  # make the scores far from uniform, where a double softmax would not show
        opt.zero_grad()
        gen.loss((texts, items))["loss"].backward()
        opt.step()
    gen.eval()
    negatives = torch.tensor([[1, 2, 3], [8, 9, 10]])
    gen._mine = lambda inputs, items: negatives
    gen.stage, gen.ltr_weight = "discriminative", 1.0
    out = gen.loss((texts, items))
    # the scores the constrained beam search ranks by, computed by the decoder's own teacher-forced scoring
    inputs = gen._encode_texts(texts)
    scores = exact_scores_seq2seq(gen.model, inputs["input_ids"], gen.item_codes, gen.layout,
                                  attention_mask=inputs["attention_mask"]).float()  # (2, N)
    cand = torch.cat([items[:, None], negatives], 1)
    raw = scores.gather(1, cand)
    expected = -torch.log_softmax(raw, 1)[:, 0].mean()
    assert torch.allclose(out["ltr"], expected, atol=1e-4), (out["ltr"], expected)
    double = torch.nn.functional.cross_entropy(torch.softmax(raw, 1), torch.zeros(2, dtype=torch.long))
    assert out["ltr"] < double - 0.1  # the released code's double softmax (bounded below by log(1 + m / e))
    assert torch.isclose(out["loss"], out["gen"] + out["ltr"])
    gen.stage = "generative"
    assert torch.isclose(gen.loss((texts, items))["loss"], out["gen"], atol=1e-5)


def test_mined_negatives_are_real_images_never_the_caption_s_group(toy):
    gen = _generator(toy)
    group = same_image_groups(toy)
    copies = [i for i in range(len(group)) if (group == group[i]).sum() > 1]
    assert copies  # the toy snapshot has pixel-identical copies
    items = torch.tensor(copies[:2] + [5])
    inputs = gen._encode_texts(["red square", "red square", "green circle"])
    neg = gen._mine(inputs, items)
    assert neg.shape == (3, 3) and (neg >= 0).all() and (neg < len(group)).all()
    for r, i in enumerate(items.tolist()):
        assert not np.isin(group[neg[r].numpy()], group[i]).any()


def test_cli_image_index_build_info_retrieve_and_grid(tmp_path, capsys, monkeypatch):
    from genir.cli import main

    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    captions, images = write_toy_clipart(tmp_path / "data", per_class=4)
    settings = [f"--train={k}={v}" for k, v in {**TINY, "epochs": 6, "eval_every": 3, "disc_epochs": 1,
                                                 "tower_epochs": 3, "batch_size": 16}.items()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["index", "build", "--images", str(images), "--captions", str(captions),
                     "--scheme", str(ROOT / "tokenizers" / "voken.yaml"), "--out", str(tmp_path / "idx"),
                     "--encoder", "pixels", "--quiet", *settings, "codebook_size=8", "num_levels=2", "epochs=10",
                     "hidden_dims=[32]"])
    out = capsys.readouterr().out
    assert code == 0 and "image index written to" in out and "82 images" in out
    meta = json.loads((tmp_path / "idx" / "avg" / "avg.json").read_text())
    losses = meta["training"]["losses"]
    assert losses[-1] < losses[0]  # the generator learned (generative stage, then the listwise one)
    assert meta["read_report"]["skipped_blank_images"] == 1
    assert main(["index", "info", str(tmp_path / "idx")]) == 0
    out = capsys.readouterr().out
    assert "scheme       voken on matrix features (d = 256)" in out and "collisions   rate" in out
    assert "codebook     one shared by the 2 semantic levels" in out
    grid = tmp_path / "grid.png"
    assert main(["retrieve", "--index", str(tmp_path / "idx"), "--query", "red circle", "-k", "5",
                 "--save-grid", str(grid)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()[:1].isdigit()]
    assert len(lines) == 5 and all(x.split()[1].startswith(("shapes/", "copies/")) for x in lines)
    assert grid.stat().st_size > 5_000
    assert main(["retrieve", "--index", str(tmp_path / "idx"), "--user", "1"]) == 2
    assert "answers text queries" in capsys.readouterr().err


def test_negative_pool_limits_mined_negatives_to_images_with_training_captions(toy):
    from genir.methods.avg.pipeline import negative_pool

    gen = _generator(toy)
    pool = negative_pool(toy, "trained")
    assert negative_pool(toy, "all") is None
    assert 2 <= pool.sum() < len(pool)  # the toy split holds images without a training caption
    assert set(np.flatnonzero(pool)) == set(toy.train_pairs["item"].tolist())
    gen.set_negative_pool(pool)
    items = torch.tensor(np.flatnonzero(pool)[:3])
    neg = gen._mine(gen._encode_texts(["red square", "green circle", "blue star"]), items)
    assert pool[neg.numpy()].all()
    with pytest.raises(ValueError, match="negative_pool"):
        gen.set_negative_pool(np.zeros(len(pool), bool))


def test_prefix_listwise_loss_ranks_semantic_prefixes_with_distinct_prefix_negatives(toy):
    torch.manual_seed(0)
    n = len(toy.catalogue)
    codes = np.stack([np.arange(n) % 4, (np.arange(n) // 4) % 5, np.arange(n) // 20], 1)  # prefix = first 2 levels
    assert n > 23  # items i and i + 20 share their prefix
    gen = make_generator(toy, codes, [4, 5, int(codes[:, 2].max()) + 1], True,
                         AVGConfig(**{**SCRATCH, "ltr_over": "prefixes"}), 0, semantic_levels=2)
    assert gen.ltr_levels == 2
    texts, items = ["red square", "blue bar"], torch.tensor([0, 7])
    neg = gen._mine(gen._encode_texts(texts), items)
    for r, i in enumerate(items.tolist()):
        prefixes = {tuple(codes[j, :2]) for j in neg[r].tolist()}
        assert len(prefixes) == 3 and tuple(codes[i, :2]) not in prefixes
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    for _ in range(15):  # scores far from uniform, so that a level that enters the ranking shows
        opt.zero_grad()
        gen.loss((texts, items))["loss"].backward()
        opt.step()
    gen.eval()
    gen.stage = "discriminative"
    losses = []
    for negatives in (torch.tensor([[1, 2, 3], [8, 9, 10]]), torch.tensor([[21, 22, 23], [28, 29, 30]])):
        gen._mine = lambda inputs, items, negatives=negatives: negatives
        losses.append(gen.loss((texts, items))["ltr"])
    assert torch.isclose(losses[0], losses[1], atol=1e-6)  # the collision level does not enter the ranking
    gen.ltr_levels = None  # whole strings: the last level does enter
    assert not torch.isclose(gen.loss((texts, items))["ltr"], losses[0], atol=1e-6)


def test_keep_start_restores_the_generative_checkpoint_when_no_discriminative_epoch_beats_it(toy):
    from genir.methods.avg.pipeline import train_generator

    gen = _generator(toy)
    cfg = AVGConfig(**{**SCRATCH, "epochs": 1, "disc_epochs": 1, "disc_lr": 1.0, "keep_start": True,
                       "batch_size": 8})
    train_generator(gen, toy, cfg, "generative")
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    result = train_generator(gen, toy, cfg, "discriminative")
    same = all(torch.equal(before[k], v) for k, v in gen.state_dict().items())
    assert same == (result.best_epoch == 0)  # restored exactly when the start won on valid
    assert result.best_epoch in (0, 1) and "hits@10" in result.best_valid
