import pandas as pd
import pytest

from genir.data import load_dataset, read_grouplens_1m, read_grouplens_100k
from genir.errors import DatasetError


def test_grouplens_100k_raw(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t100\n1\t20\t3\t90\n2\t10\t5\t95\n")
    genres = ["0"] * 19
    g = genres.copy()
    g[1] = "1"  # Action
    (tmp_path / "u.item").write_text(f"10|Heat (1995)|01-Jan-1995||http://x|{'|'.join(g)}\n"
                                     f"20|Up (2009)|01-Jan-2009||http://y|{'|'.join(genres)}\n")
    d = load_dataset(tmp_path)
    assert isinstance(d, type(read_grouplens_100k(tmp_path)))
    assert d.num_users == 2 and d.num_items == 2
    heat = d.item_index("10")
    assert d.items["title"].iat[heat] == "Heat" and int(d.items["year"].iat[heat]) == 1995
    assert d.items["genres"].iat[heat] == ["Action"]
    assert d.inter["timestamp"].tolist() == [90, 95, 100]


def test_grouplens_1m_raw(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (tmp_path / "movies.dat").write_text("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                                         "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n")
    d = read_grouplens_1m(tmp_path)
    i = d.item_index(661)
    assert d.items["genres"].iat[i] == ["Animation", "Children's", "Musical"]
    assert d.items["title"].iat[i] == "James and the Giant Peach"


def test_generic_csv_tsv_parquet(tmp_path):
    df = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "timestamp": [3, 1, 2], "rating": [1, 2, 3]})
    df.to_csv(tmp_path / "i.csv", index=False)
    df.to_csv(tmp_path / "i.tsv", index=False, sep="\t")
    df.to_parquet(tmp_path / "i.parquet")
    for name in ("i.csv", "i.tsv", "i.parquet"):
        d = load_dataset(tmp_path / name)
        assert d.num_interactions == 3 and d.inter["timestamp"].tolist() == [1, 2, 3]
        assert "rating" in d.inter.columns


def test_generic_with_items_file(tmp_path):
    (tmp_path / "i.csv").write_text("user,item,timestamp\na,x,1\na,y,2\n")
    (tmp_path / "items.csv").write_text("item,title,year,genres\nx,Ex,2001,A|B\ny,Why,,\n")
    d = load_dataset(tmp_path / "i.csv", items=tmp_path / "items.csv")
    assert d.title(d.item_index("x")) == "Ex"
    assert d.items["genres"].iat[d.item_index("x")] == ["A", "B"]


# ---- bad input: each error names the file and the problem ---------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.csv: file not found"):
        load_dataset(tmp_path / "nope.csv")


def test_malformed_row_names_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("user,item,timestamp\na,x,1\nb,y\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: line 3: malformed row"):
        load_dataset(p)


def test_non_numeric_timestamp_names_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("user,item,timestamp\na,x,1\nb,y,yesterday\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: line 3: column 'timestamp' must be a number"):
        load_dataset(p)


def test_unknown_column(tmp_path):
    p = tmp_path / "cols.csv"
    p.write_text("user,item,timestamp,clicks\na,x,1,3\n")
    with pytest.raises(DatasetError, match=r"cols\.csv: unknown column\(s\) \['clicks'\]"):
        load_dataset(p)


def test_missing_column(tmp_path):
    p = tmp_path / "cols.csv"
    p.write_text("user,item\na,x\n")
    with pytest.raises(DatasetError, match=r"cols\.csv: missing column\(s\) \['timestamp'\]"):
        load_dataset(p)


def test_malformed_grouplens_row(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t100\n1\t20\t3\n")
    with pytest.raises(DatasetError, match=r"u\.data: line 2: malformed row"):
        load_dataset(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("user,item,timestamp\n")
    with pytest.raises(DatasetError, match=r"empty\.csv: no interactions"):
        load_dataset(p)


def test_unknown_dataset_name():
    with pytest.raises(DatasetError, match="unknown dataset 'ml-99k'"):
        load_dataset("ml-99k")


def test_dataset_registry_serves_names(monkeypatch):
    """A reader registered by name (or through the genir.datasets entry-point group) is loaded by that name."""
    from genir.data import DATASETS, Dataset, load_dataset
    from tests.conftest import make_inter

    toy = Dataset.from_frames("toy", make_inter(n_users=5, n_items=6, per_user=4))
    DATASETS.register("toy-registered", lambda: toy)
    try:
        assert load_dataset("toy-registered") is toy
        with pytest.raises(DatasetError, match=r"unknown dataset 'nope': use one of \[.*'ml-100k'.*'toy-registered'"):
            load_dataset("nope")
    finally:
        DATASETS.pop("toy-registered")
