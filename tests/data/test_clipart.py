"""The clip-art reader and the editing task built on it, on a small snapshot the test writes."""

import gzip
import json

import numpy as np
import pytest

from genir.data.clipart import CAPTIONS_NAME, IMAGES_NAME, read_clipart
from genir.data.edit_tasks import ClipartEditTask
from genir.data.image_edits import Drawing, apply_chain, commutes, render
from genir.errors import ConfigError, DatasetError


def write_snapshot(folder, n=30, shape=(64, 64, 3), dtype=np.uint8, captions=None):
    rng = np.random.default_rng(0)
    images = np.full((n, *shape), 255, dtype)
    for i in range(n):  # a dark block of random size and place on white
        h, w, r, c = rng.integers(10, 30), rng.integers(10, 30), rng.integers(0, 30), rng.integers(0, 30)
        images[i, r:r + h, c:c + w] = rng.integers(0, 150, size=shape[-1])
    np.savez(folder / IMAGES_NAME, images=images)
    rows = captions if captions is not None else [
        {"id": f"cat/img{i}", "category": "cat", "title": f"image {i}", "description": "", "keywords": ["a", "b"]}
        for i in range(n)]
    with gzip.open(folder / CAPTIONS_NAME, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_reader_and_task(tmp_path):
    cat = read_clipart(write_snapshot(tmp_path))
    assert len(cat) == 30 and cat.ids[3] == "cat/img3" and cat.columns["caption"][0] == "a, b"
    assert cat.columns["image"][0].shape == (64, 64, 3)
    task = ClipartEditTask(cat, size=32, eval_sources=5)
    stages = task.stage_items
    assert sum(map(len, stages.values())) + task.left_out == 30
    assert not (set(stages["train"]) & set(stages["test"])) and not (set(stages["valid"]) & set(stages["test"]))
    ex, again = task.eval_examples("test"), task.eval_examples("test")
    assert np.array_equal(ex.target_ab, again.target_ab) and np.array_equal(ex.text_a, again.text_a)
    assert set(ex.source) <= set(stages["test"])
    batch = task.train_batch(np.random.default_rng(1), n_single=6, n_recon=2, n_chains=20)
    assert batch.single_x.shape == (6, 32, 32, 3) and batch.chain_y.shape == (20, 32, 32, 3)
    assert task.filter_counts["proposed"] > 20 and task.filter_counts["dropped"] > 0  # the filter did work
    assert [task.vocabulary[i] for i in batch.recon_text] and all(
        task.vocabulary[i] in ("", "keep it as it is", "leave the picture unchanged", "no change")
        for i in batch.recon_text)


def test_chains_the_task_draws_commute_in_both_orders(tmp_path):
    cat = read_clipart(write_snapshot(tmp_path))
    task = ClipartEditTask(cat, size=32)
    rng = np.random.default_rng(3)
    for _ in range(40):
        d = task.drawings[task.stage_items["train"][rng.integers(len(task.stage_items["train"]))]]
        s = task.random_state(rng)
        a, b = task.random_chain(rng, d, s)
        assert commutes(d, s, a, b)
        assert np.array_equal(render(d, apply_chain(s, (a, b))), render(d, apply_chain(s, (b, a))))


def test_reader_errors_name_the_file(tmp_path):
    write_snapshot(tmp_path, shape=(32, 32, 3))
    with pytest.raises(DatasetError, match=rf"{IMAGES_NAME}: expected 64x64 images, got 32x32"):
        read_clipart(tmp_path)
    write_snapshot(tmp_path, shape=(64, 64, 4))
    with pytest.raises(DatasetError, match=r"expected RGB images of shape \(N, H, W, 3\), got shape \(30, 64, 64, 4\)"):
        read_clipart(tmp_path)
    write_snapshot(tmp_path, dtype=np.float32)
    with pytest.raises(DatasetError, match="expected uint8 pixels, got float32"):
        read_clipart(tmp_path)
    write_snapshot(tmp_path, captions=[{"id": "x", "title": "t"}])
    with pytest.raises(DatasetError, match="holds 30 images but .* has 1 caption lines"):
        read_clipart(tmp_path)
    with pytest.raises(ConfigError, match="three non-negative shares"):
        ClipartEditTask(read_clipart(write_snapshot(tmp_path)), split=(0.5, 0.5, 0.5))


def test_drawing_mask_is_the_non_white_part():
    img = np.full((8, 8, 3), 255, np.uint8)
    img[2:4, 2:6] = 0
    d = Drawing.from_image(img)
    assert d.mask.sum() == 8 and d.foreground_share == 8 / 64
