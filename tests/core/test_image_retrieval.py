"""Skeleton of text-to-image generative retrieval (AVG) on the one core, with no user or interaction anywhere:
100 small images with captions -> image features (registry slot) -> a shared-codebook RQ-VAE fitted with the
captions' embeddings as paired context -> index dir -> a tiny text -> code generator (T5, shared code tokens)
trained by the one Trainer -> constrained beam search -> retrieval metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from genir.data.catalogue import Catalogue
from genir.data.tasks import QueryRetrievalTask
from genir.index import build_index, load_index
from genir.models.hf_generator import Seq2SeqIdGenerator
from genir.training import Trainer, TrainerConfig
from tests.core.conftest import tiny_t5, word_tokenizer

COLORS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40),
          "black": (10, 10, 10)}
SHAPES = ("square", "circle", "bar", "cross")


def draw(shape: str, rgb, rng) -> np.ndarray:
    img = np.full((16, 16, 3), 255, dtype=np.uint8)
    dx, dy = rng.integers(-2, 3, size=2)
    yy, xx = np.mgrid[0:16, 0:16]
    cy, cx = 8 + dy, 8 + dx
    mask = {"square": (abs(yy - cy) <= 4) & (abs(xx - cx) <= 4),
            "circle": (yy - cy) ** 2 + (xx - cx) ** 2 <= 20,
            "bar": (abs(yy - cy) <= 1) & (abs(xx - cx) <= 6),
            "cross": ((abs(yy - cy) <= 1) & (abs(xx - cx) <= 5)) | ((abs(xx - cx) <= 1) & (abs(yy - cy) <= 5))}[shape]
    img[mask] = rgb
    return img


@pytest.fixture
def images(tmp_path):
    """100 PNG files (20 colour x shape classes, 5 jittered images each) and a catalogue of them."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    rows = []
    for c, (color, rgb) in enumerate(COLORS.items()):
        for s, shape in enumerate(SHAPES):
            for j in range(5):
                name = f"{color}-{shape}-{j}.png"
                Image.fromarray(draw(shape, rgb, rng)).save(folder / name)
                rows.append({"id": f"img{len(rows)}", "image": name, "caption": f"a {color} {shape}"})
    frame = pd.DataFrame(rows)
    (folder / "captions.csv").write_text(frame.to_csv(index=False))
    return Catalogue.from_frame("toy-images", frame, source=str(folder / "captions.csv"))


def test_voken_skeleton(images, tmp_path):
    catalogue = images
    spec = tmp_path / "voken.yaml"
    spec.write_text(yaml.safe_dump({
        "scheme": "rqvae", "features": "image", "paired": "text", "collision": "index",
        "params": {"num_levels": 2, "codebook_size": 16, "shared_codebook": True, "latent_dim": 8,
                   "hidden_dims": [64], "align_weight": 1.0, "epochs": 60, "batch_size": 100, "lr": 3e-3,
                   "seed": 0, "progress": False}}))
    out = build_index(catalogue, spec, tmp_path / "idx", progress=False)
    index = load_index(out)
    m = index.manifest
    assert m["dataset"] is None and m["split"] is None and m["features"]["paired"] == "text"
    assert m["item_columns"] == ["image", "caption"] and index.items["image"].iloc[0] == "red-square-0.png"
    codes = np.asarray(index.table.codes)
    assert codes.shape == (100, 3) and codes[:, :2].max() < 16  # two semantic levels from one codebook + position
    # images of one caption share their semantic vokens far more often than images of different captions (the
    # shared codebook's first level takes one code for all: the residual levels tell the classes apart)
    key = codes[:, 0] * 16 + codes[:, 1]
    same = np.mean([key[i] == key[j] for i in range(100) for j in range(i + 1, 100) if i // 5 == j // 5])
    other = np.mean([key[i] == key[j] for i in range(100) for j in range(i + 1, 100) if i // 5 != j // 5])
    assert same > 0.6 and same > 3 * other, (same, other)

    # split by image: every image stays in the index; test captions are never trained on
    order = np.random.default_rng(1).permutation(100)
    stage = np.array(["train"] * 100, dtype=object)
    stage[order[:10]], stage[order[10:20]] = "valid", "test"
    queries = pd.DataFrame({"qid": [f"c{i}" for i in range(100)], "text": catalogue.columns["caption"],
                            "stage": stage})
    qrels = pd.DataFrame({"qid": [f"c{i}" for i in range(100)], "item": np.arange(100)})
    task = QueryRetrievalTask(catalogue, queries, qrels, name="toy-images")
    assert set(task.train_pairs["item"]) == set(np.flatnonzero(stage == "train"))

    tokenizer = word_tokenizer(catalogue.columns["caption"].tolist())
    model = Seq2SeqIdGenerator(tiny_t5(tokenizer), tokenizer, codes, index.table.level_sizes, shared=True,
                               beam_width=10)
    assert model.layout.shared and model.layout.vocab_end == len(tokenizer) + max(index.table.level_sizes)
    trainer = Trainer(model, task, config=TrainerConfig(epochs=60, batch_size=16, lr=1e-2, metric="hits@10",
                                                        eval_every=10, patience=10, progress=False, seed=0))
    trainer.fit()
    test = trainer.test()
    # a caption names one of 20 classes of 5 images (chance hits@10 = 0.1); the generator can find the test
    # image's semantic vokens but never saw its last, position-in-group code: measured 0.4 on this seed
    assert test["hits@10"] >= 0.3, test
    answer = model.retrieve(["a red circle"], k=5)
    assert (answer.items >= 0).all() and len(set(answer.items[0].tolist())) == 5
