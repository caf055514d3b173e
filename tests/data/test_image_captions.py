"""Image-caption readers: the clip-art snapshot format (written by the test) and the Karpathy-split JSON."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from genir.data.image_captions import clean_titles, clipart_caption, read_karpathy, read_openclipart
from genir.errors import DatasetError
from tests.methods.avg_data import write_toy_clipart


def test_clipart_reader_splits_by_image_and_counts_what_it_skips(tmp_path):
    captions, images = write_toy_clipart(tmp_path, per_class=6, blank=2, duplicates=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = read_openclipart(captions, images, valid=0.2, test=0.2, seed=3)
    assert any("2 blank (unrendered) images" in str(w.message) for w in caught)
    report = task.read_report
    assert report["lines"] == 125 and report["images"] == 123 and report["skipped_blank_images"] == 2
    cat = task.catalogue
    assert len(cat) == 123 and cat.columns["image"].iloc[5] == "toy-64px.npz#5"
    # boilerplate titles are dropped from captions, the descriptive ones kept
    caps = dict(zip(task.queries["qid"], task.queries["text"]))
    assert caps["cap:shapes/red_square_1"] == "red square. red, square, shape"
    assert caps["cap:shapes/red_square_0"] == "red, square, shape"
    # pixel-identical copies: one group, one stage, both relevant to each other's caption
    rel = task.relevant("cap:copies/red_square_0").tolist()
    assert sorted(rel) == sorted([cat.index("shapes/red_square_0"), cat.index("copies/red_square_0")])
    stage = dict(zip(task.queries["qid"], task.queries["stage"]))
    assert stage["cap:copies/red_square_0"] == stage["cap:shapes/red_square_0"]
    # split by image: no valid/test caption is a training pair, and every image is in the catalogue
    held_out = set(task.queries.loc[task.queries["stage"] != "train", "text"]) - set(
        task.queries.loc[task.queries["stage"] == "train", "text"])
    assert held_out and not held_out & set(task.train_pairs["text"])
    test_items = {i for q in task.stage_queries("test")["qid"] for i in task.relevant(q)}
    assert test_items and not test_items & set(task.train_pairs["item"])
    counts = task.queries["stage"].value_counts()
    assert 0.1 < counts["test"] / len(task.queries) < 0.3


def test_clipart_count_mismatch_names_both_files(tmp_path):
    captions, images = write_toy_clipart(tmp_path, per_class=2, blank=0, duplicates=0)
    with np.load(images) as z:
        np.savez(images, images=z["images"][:-1])
    with pytest.raises(DatasetError, match=r"toy-64px.npz holds 39 images but .*toy-captions.jsonl.gz has 40"):
        read_openclipart(captions, images)


def test_boilerplate_titles():
    titles = ["gramastar"] * 30 + ["Clipart by Nicu Buculei - arrow08_4", "Part of the Flat Icon Collection (x)",
                                   "red apple"]
    clean, flags = clean_titles(titles, max_title_repeats=20)
    assert clean[0] == "" and flags[0] and clean[-3] == "arrow" and clean[-2] == "" and clean[-1] == "red apple"
    assert not flags[-1]
    assert clipart_caption("", ["hash(0x86a0bb0)", "apple", "Apple", "fruit"], "HASH(0x85caca8)", True, "drop",
                           "gramastar") == "apple, fruit"
    assert clipart_caption("", ["apple"], "", True, "last", "gramastar") == "apple. gramastar"
    assert clipart_caption("", ["apple"], "", True, "keep", "gramastar") == "gramastar. apple"


def test_karpathy_reader_skips_corrupt_images_and_empty_captions(tmp_path):
    from PIL import Image

    folder = tmp_path / "flickr" / "images"
    folder.mkdir(parents=True)
    images = []
    for i, split in enumerate(["train", "restval", "val", "test", "test"]):
        name = f"{i}.jpg"
        if i == 4:
            (folder / name).write_bytes(b"not an image")
        else:
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(folder / name)
        images.append({"filename": name, "filepath": "images", "imgid": i, "split": split,
                       "sentences": [{"raw": f"a photo number {i}"}, {"raw": "  "}, {"raw": f"picture {i}"}]})
    path = tmp_path / "flickr" / "dataset_flickr30k.json"
    path.write_text(json.dumps({"dataset": "flickr30k", "images": images}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = read_karpathy(path)
    message = " ".join(str(w.message) for w in caught)
    assert "1 unreadable images" in message and "4 captions with no text" in message
    assert task.read_report == {"images": 4, "unreadable_images": 1, "empty_captions": 4, "captions": 8}
    assert task.catalogue.columns["image"].tolist() == [f"images/{i}.jpg" for i in range(4)]
    assert task.queries.groupby("stage").size().to_dict() == {"test": 2, "train": 4, "valid": 2}
    assert task.relevant("3#1").tolist() == [3]
    with pytest.raises(DatasetError, match="images\\[0\\].split"):
        path.write_text(json.dumps({"images": [{**images[0], "split": "dev"}]}))
        read_karpathy(path)
