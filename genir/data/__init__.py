"""Datasets, readers, filtering and splits (see each module's docstring)."""

from genir.data.beir import read_beir, write_beir
from genir.data.dataset import Dataset
from genir.data.readers import (
    DATASETS,
    load_dataset,
    read_grouplens_1m,
    read_grouplens_100k,
    read_interactions_file,
    read_recbole_atomic,
    recbole_ml100k_dir,
)
from genir.data.split import (
    SPLIT_PROTOCOLS,
    Split,
    k_core,
    leave_one_out,
    make_split,
    random_split,
    temporal_split,
)

__all__ = [
    "DATASETS",
    "SPLIT_PROTOCOLS",
    "Dataset",
    "Split",
    "k_core",
    "leave_one_out",
    "load_dataset",
    "make_split",
    "random_split",
    "read_beir",
    "read_grouplens_1m",
    "read_grouplens_100k",
    "read_interactions_file",
    "read_recbole_atomic",
    "recbole_ml100k_dir",
    "temporal_split",
    "write_beir",
]
