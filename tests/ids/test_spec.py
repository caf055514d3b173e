"""Specs in tokenizers/: every file loads and builds its scheme, the folder holds no Python, and validation errors
name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from genir.errors import ConfigError
from genir.ids import (
    RQVAE,
    SCHEMES,
    HierarchicalKMeans,
    IdScheme,
    RQKMeansConfig,
    SchemeConfig,
    build_scheme,
    describe,
    load_spec,
    register_scheme,
)
from genir.ids.spec import parse_spec

TOKENIZERS = Path(__file__).resolve().parents[2] / "tokenizers"
SPECS = sorted(TOKENIZERS.glob("*.yaml"))


def test_tokenizers_folder_has_no_python():
    """A `tokenizers` package on sys.path would shadow Hugging Face's `tokenizers`, which transformers imports."""
    assert TOKENIZERS.is_dir()
    assert [p.name for p in TOKENIZERS.rglob("*") if p.suffix in (".py", ".pyc") or p.name == "__init__.py"] == []


def test_expected_specs_exist():
    assert {"rqvae.yaml", "rq_kmeans.yaml", "hkmeans_docid.yaml", "atomic.yaml"} <= {p.name for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_spec_loads_and_builds(path):
    spec = load_spec(path)
    scheme = build_scheme(spec)
    assert isinstance(scheme, SCHEMES[spec.scheme]) and scheme.config == spec.config
    assert spec.source == str(path) and spec.description
    assert parse_spec(spec.to_dict(), str(path)) == spec  # the complete form reads back the same


def test_spec_values_and_overrides():
    spec = load_spec(TOKENIZERS / "rqvae.yaml")
    assert spec.scheme == "rqvae" and spec.features == "text" and spec.collision == "index"
    assert spec.config.codebook_size == 64 and spec.config.hidden_dims == [512, 256, 128]
    over = load_spec(TOKENIZERS / "rqvae.yaml", {"params.codebook_size": "32", "epochs": 5,
                                                  "hidden_dims": "[64, 32]", "collision": "popularity"})
    assert (over.config.codebook_size, over.config.epochs, over.config.hidden_dims, over.collision) == \
        (32, 5, [64, 32], "popularity")
    assert isinstance(build_scheme(TOKENIZERS / "rq_kmeans.yaml"), SCHEMES["rq_kmeans"])


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("scheme: rqvae\nparams:\n  codebook_sizes: 8\n", r"unknown field\(s\) \['params.codebook_sizes'\] for RQVAEConfig"),
    ("scheme: rqvae\nparams:\n  codebook_size: eight\n",
     r"params.codebook_size: expected int or a non-empty list of int >= 1, got 'eight'"),
    ("scheme: rqvae\nparams:\n  codebook_size: 0\n", r"params.codebook_size: expected .* >= 1, got 0"),
    ("scheme: rqvae\nparams:\n  codebook_size: [8, 0, 8]\n", r"params.codebook_size: .* got \[8, 0, 8\]"),
    ("scheme: rqvae\nparams:\n  codebook_size: [8, 8]\n", r"params.codebook_size: expected one size per level"),
    ("scheme: rqvae\nparams:\n  beta: -1\n", r"params.beta: expected float >= 0.0, got -1"),
    ("scheme: rqvae\nparams:\n  dropout: 1.5\n", r"params.dropout: expected float in \[0.0, 0.99\], got 1.5"),
    ("scheme: rqvae\nparams:\n  epochs: 1.5\n", r"params.epochs: expected int >= 1, got 1.5"),
    ("scheme: rqvae\nparams:\n  kmeans_init: 1\n", r"params.kmeans_init: expected bool, got 1"),
    ("scheme: rqvae\nparams:\n  num_levels: true\n", r"params.num_levels: expected int in \[1, 16\], got True"),
    ("scheme: rqvae\nparams:\n  hidden_dims: []\n", r"params.hidden_dims: expected a non-empty list of int"),
    ("scheme: rqvae\nparams:\n  optimizer: sgd\n", r"params.optimizer: expected one of \['adam', 'adamw', 'adagrad'\]"),
    ("scheme: hkmeans\nparams:\n  k: 1\n", r"params.k: expected int in \[2, 100000\], got 1"),
    ("scheme: rqvae\ncollision: sinkhorn\n", r"collision: expected one of \['index', 'popularity', 'none'\], got 'sinkhorn'"),
    ("scheme: vqvae\n", r"scheme: expected one of \[.*'rqvae'.*\], got 'vqvae'"),
    ("features: text\n", r"scheme: missing"),
    ("scheme: rqvae\nfeatures: pixels\n", r"features: expected one of \[.*'text'.*\], or several joined by commas \(text,kg\), got 'pixels'"),
    ("scheme: rqvae\ncodebook_size: 8\n", r"unknown field\(s\) \['codebook_size'\]; .*go under params:"),
    ("scheme: rqvae\nparams: [1, 2]\n", r"params: expected a mapping"),
    ("- scheme\n", r"expected a mapping with fields"),
    ("scheme: [rqvae\n", r"not valid YAML"),
])
def test_validation_errors_name_file_and_field(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"^{path}: {message}"):
        load_spec(path)


def test_missing_file_and_bad_override(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}/nope.yaml: spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"params.seed: expected int >= 0, got -3"):
        load_spec(TOKENIZERS / "rq_kmeans.yaml", {"seed": "-3"})


def test_describe_lists_fields_with_defaults():
    text = describe(RQKMeansConfig)
    assert "codebook_size: int or a non-empty list of int = 256  # K codes per level" in text
    assert "niter: int = 20  # k-means iterations per level (>= 1)" in text


def test_register_scheme_extension_point(tmp_path):
    class Voken(RQVAE):
        name = "voken_test"

    try:
        register_scheme("voken_test", Voken)
        spec = parse_spec({"scheme": "voken_test", "params": {"shared_codebook": True}}, "inline")
        assert isinstance(build_scheme(spec), Voken) and spec.config.shared_codebook
        with pytest.raises(ValueError, match="already Voken"):
            register_scheme("voken_test", type("Other", (Voken,), {"name": "voken_test"}))
        with pytest.raises(ValueError, match="name is 'hkmeans'"):
            register_scheme("tree", HierarchicalKMeans)
        with pytest.raises(TypeError, match="not an IdScheme subclass"):
            register_scheme("x", SchemeConfig)
    finally:
        SCHEMES.pop("voken_test", None)
    assert issubclass(Voken, IdScheme)
