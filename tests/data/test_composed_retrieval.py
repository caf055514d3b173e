"""FashionIQ-format triplets and Fashion200k-style pairs read from folders the tests write, the editing task
they give, and their errors."""

import json

import numpy as np
import pytest
from PIL import Image

from genir.data.composed_retrieval import TripletEditTask, load_rgb, read_fashion200k, read_fashioniq
from genir.errors import DatasetError

COLOURS = {"a": (200, 0, 0), "b": (0, 0, 200), "c": (0, 150, 0), "d": (120, 120, 0)}


def write_fashioniq(root, category="dress", mode="RGB"):
    (root / "images").mkdir(parents=True)
    (root / "captions").mkdir()
    for name, colour in COLOURS.items():
        im = Image.new("RGB", (40, 60), colour)  # not square: padded with white
        (im.convert(mode) if name == "d" else im).save(root / "images" / f"{name}.png")
    train = [{"candidate": "a", "target": "b", "captions": ["is blue", "is darker"]},
             {"candidate": "b", "target": "c", "captions": ["is green", " "]}]
    val = [{"candidate": "c", "target": "d", "captions": ["is olive", "has more yellow"]}]
    (root / "captions" / f"cap.{category}.train.json").write_text(json.dumps(train))
    (root / "captions" / f"cap.{category}.val.json").write_text(json.dumps(val))
    (root / "captions" / f"cap.{category}.test.json").write_text(json.dumps([{"candidate": "a", "captions": ["x"]}]))
    return root


def test_fashioniq_triplets_and_task(tmp_path):
    data = read_fashioniq(write_fashioniq(tmp_path), "dress")
    assert data.name == "fashioniq-dress" and len(data.catalogue) == 4
    t = data.triplets
    assert t["stage"].tolist() == ["train", "train", "valid"]  # the test file without targets is skipped
    assert t["captions"].tolist() == [["is blue", "is darker"], ["is green"], ["is olive", "has more yellow"]]
    assert [data.catalogue.ids[i] for i in t["reference"]] == ["a", "b", "c"]
    task = TripletEditTask(data, size=16)
    assert task.images.shape == (4, 16, 16, 3)
    assert tuple(task.images[0, 8, 8]) == COLOURS["a"] and tuple(task.images[0, 8, 0]) == (255, 255, 255)
    batch = task.train_batch(np.random.default_rng(0), n_single=5, n_recon=2, n_chains=3)
    assert batch.single_x.shape == (5, 16, 16, 3) and batch.recon_x.shape == (2, 16, 16, 3)
    # only the first triplet has two captions: every chain is "is blue" / "is darker" towards b
    assert [task.vocabulary[i] for i in batch.chain_a] == ["is blue"] * 3
    assert [task.vocabulary[i] for i in batch.chain_b] == ["is darker"] * 3
    assert (batch.chain_y == task.images[data.catalogue.index("b")]).all()
    ex = task.eval_examples("test")  # no test targets: the validation triplets
    assert len(ex) == 1 and task.vocabulary[ex.text_ab[0]] == "is olive and has more yellow"
    assert ex.target_a is None and (ex.target_ab[0] == task.images[data.catalogue.index("d")]).all()


def test_fashioniq_errors_name_the_file(tmp_path):
    root = write_fashioniq(tmp_path)
    (root / "images" / "c.png").unlink()
    with pytest.raises(DatasetError, match=r"cap\.dress\.train\.json: entry 1: image 'c' not found"):
        read_fashioniq(root, "dress")
    with pytest.raises(DatasetError, match="no FashionIQ caption file"):
        read_fashioniq(root, "shirt")
    (root / "captions" / "cap.dress.train.json").write_text(json.dumps([{"candidate": "a", "target": "b"}]))
    with pytest.raises(DatasetError, match=r"entry 0: expected an object with 'candidate', 'target' and"):
        read_fashioniq(root, "dress")


def test_image_of_the_wrong_mode_is_named(tmp_path):
    root = write_fashioniq(tmp_path, mode="L")
    with pytest.raises(DatasetError, match=r"d\.png: expected an RGB image, got mode 'L'"):
        TripletEditTask(read_fashioniq(root, "dress"), size=16)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read the image"):
        load_rgb(tmp_path / "broken.png", 16)


def test_fashion200k_pairs_differ_in_one_word(tmp_path):
    (tmp_path / "labels").mkdir()
    described = {"w/d/1.jpeg": "black cotton dress", "w/d/2.jpeg": "red cotton dress",
                 "w/d/3.jpeg": "black silk dress", "w/d/4.jpeg": "long red gown"}
    for i, path in enumerate(described):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (i * 60, 0, 0)).save(tmp_path / path)
    lines = [f"{p}\t0.9\t{t}" for p, t in described.items()]
    (tmp_path / "labels" / "dress_train_detect_all.txt").write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "labels" / "dress_test_detect_all.txt").write_text(lines[3] + "\n" + lines[0] + "\n")
    data = read_fashion200k(tmp_path, "dress")
    pairs = {(data.catalogue.ids[r.reference], data.catalogue.ids[r.target], r.captions[0], r.stage)
             for r in data.triplets.itertuples()}
    assert pairs == {("w/d/1.jpeg", "w/d/2.jpeg", "replace black with red", "train"),
                     ("w/d/2.jpeg", "w/d/1.jpeg", "replace red with black", "train"),
                     ("w/d/1.jpeg", "w/d/3.jpeg", "replace cotton with silk", "train"),
                     ("w/d/3.jpeg", "w/d/1.jpeg", "replace silk with cotton", "train")}
    task = TripletEditTask(data, size=8)
    assert len(task.chain_rows) == 0  # one caption per pair: no two-round chains
    assert task.train_batch(np.random.default_rng(0), 4, 1, 4).chain_x.shape == (0, 8, 8, 3)
    (tmp_path / "labels" / "dress_test_detect_all.txt").write_text("w/d/4.jpeg 0.9 long red gown\n")
    with pytest.raises(DatasetError, match=r"dress_test_detect_all\.txt:1: expected 'image path<TAB>score"):
        read_fashion200k(tmp_path, "dress")
