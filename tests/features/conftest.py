"""Shared fixtures: an isolated feature cache per test and a tiny dataset with titles and a small KG."""

from __future__ import annotations

import pandas as pd
import pytest

from genir.data import Dataset


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty GENIR_CACHE and never touches a model hub."""
    monkeypatch.setenv("GENIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return tmp_path / "cache"


TITLES = {
    "10": ("Star Wars", 1977, ["Action", "Sci-Fi"]),
    "20": ("Return of the Jedi", 1983, ["Action", "Sci-Fi"]),
    "30": ("Sense and Sensibility", 1995, ["Drama", "Romance"]),
    "40": ("Toy Story", 1995, ["Animation", "Children's", "Comedy"]),
    "50": ("Fargo", None, []),
    "60": ("Heat", 1995, ["Action", "Crime"]),
}

# films 10 and 20 share four neighbours; 30 and 40 share three others; 50 has one film-specific triple only;
# 60 is not linked
KG = [
    ("e10", "film.film.directed_by", "lucas"), ("e20", "film.film.directed_by", "lucas"),
    ("e10", "film.film.genre", "scifi"), ("e20", "film.film.genre", "scifi"),
    ("e10", "film.film.actor", "ford"), ("e20", "film.film.actor", "ford"),
    ("hamill", "film.actor.film", "e10"), ("hamill", "film.actor.film", "e20"),
    ("e30", "film.film.genre", "drama"), ("e40", "film.film.genre", "drama"),
    ("e30", "film.film.country", "uk"), ("e40", "film.film.country", "uk"),
    ("e30", "film.film.actor", "thompson"), ("e40", "film.film.actor", "thompson"),
    ("e50", "film.film.actor", "mcdormand"),
    ("scifi", "film.film_genre.films_in_this_genre", "e10"), ("scifi", "film.film_genre.films_in_this_genre", "e20"),
    ("drama", "film.film_genre.films_in_this_genre", "e30"), ("drama", "film.film_genre.films_in_this_genre", "e40"),
]


def make_dataset(name: str = "tiny", kg: bool = True, n_users: int = 12) -> Dataset:
    """Each user rates 4 of the 6 items (distinct timestamps), so every user has train, valid and test rows."""
    ids = list(TITLES)
    rows = []
    for u in range(n_users):
        for k in range(4):
            rows.append((f"u{u}", ids[(u + 2 * k) % len(ids)], u * 100 + k))
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    items = pd.DataFrame(
        [(i, t, y, g) for i, (t, y, g) in TITLES.items()], columns=["item", "title", "year", "genres"]
    )
    items["year"] = items["year"].astype("Int64")
    if not kg:
        return Dataset.from_frames(name, inter, items=items)
    kg_df = pd.DataFrame(KG, columns=["head", "relation", "tail"])
    link = pd.DataFrame({"item": ["10", "20", "30", "40", "50"], "entity": ["e10", "e20", "e30", "e40", "e50"]})
    return Dataset.from_frames(name, inter, items=items, kg=kg_df, link=link)


@pytest.fixture
def tiny():
    return make_dataset()


@pytest.fixture
def make_tiny():
    """The factory itself, for tests that need a variant (no KG, another name)."""
    return make_dataset
