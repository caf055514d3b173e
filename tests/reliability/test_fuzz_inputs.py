"""Property-based fuzzing (hypothesis) of every reader, the CLI's arguments and the server's JSON: every input either
loads or gets one clear error naming the file and the problem (a GenirError; exit 2 on the CLI; a 4xx with a
one-line reason from the server), never another exception, a hang or a half-written output.

Inputs are near misses of each format (the right header with wrong fields, quotes, separators, NaN/inf, huge and
negative numbers, unicode, empty files) mixed with random bytes. Each fuzzer runs a bounded number of examples in
the default suite and many more under ``-m slow``. The input classes are listed in the README's reliability section.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genir.errors import GenirError

QUICK, DEEP = 20, 300


def fuzzer(examples: int, **strategies) -> Callable:
    """``@given(**strategies)`` with ``examples`` examples, no deadline (a first call imports the library)."""
    def wrap(body: Callable) -> Callable:
        return settings(max_examples=examples, deadline=None, derandomize=examples == QUICK,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(
            given(**strategies)(body))
    return wrap


def loads_or_names(path: Path, read: Callable[[], object]) -> None:
    """``read()`` either works or raises a GenirError whose one-line message names ``path``."""
    try:
        read()
    except GenirError as exc:
        msg = str(exc)
        assert str(path) in msg or path.name in msg, msg
        assert "\n" not in msg.strip(), msg
        assert "Traceback" not in msg


# -- near-miss text ------------------------------------------------------------------------------------------------
field = st.one_of(
    st.integers(-2**63, 2**64).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "u1", "i1", "nan", "NULL", '"', '"a,b"', "1e309", "-0", "0x10", "\\N", "🎬", "a\tb",
                     "1,5", "Toy Story (1995)", "01-Jan-1995", "Action|Comedy", "::", "|"]),
    st.text(max_size=12),
)


def delimited(sep: str, headers: list[str]) -> st.SearchStrategy[str]:
    row = st.lists(field, min_size=0, max_size=6).map(sep.join)
    header = st.one_of(st.sampled_from(headers), row)
    body = st.lists(row, max_size=25).map("\n".join)
    return st.one_of(st.tuples(header, body).map(lambda hb: hb[0] + "\n" + hb[1]),
                     st.binary(max_size=300).map(lambda b: b.decode("latin-1")))


INTER_HEADERS = ["user,item,timestamp", "user,item,timestamp,rating", "user,item", "item,user,timestamp",
                 "user,item,timestamp,clicks", "user,,timestamp"]


def _tmp() -> contextlib.AbstractContextManager[str]:
    return tempfile.TemporaryDirectory(prefix="genir-fuzz-")


# -- interactions and item files -----------------------------------------------------------------------------------
def _interactions(text: str, suffix: str) -> None:
    from genir.data import load_dataset

    with _tmp() as d:
        path = Path(d) / f"inter{suffix}"
        path.write_text(text.replace(",", "\t") if suffix == ".tsv" else text, encoding="utf-8", errors="replace")
        loads_or_names(path, lambda: load_dataset(path))


VALID_INTER = "user,item,timestamp\n" + "\n".join(f"u{u},i{(u * 7 + k) % 9},{1000 + 10 * u + k}"
                                                   for u in range(8) for k in range(6))


def _items(text: str) -> None:
    from genir.data import load_dataset

    with _tmp() as d:
        inter, items = Path(d) / "inter.csv", Path(d) / "items.csv"
        inter.write_text(VALID_INTER)
        items.write_text(text, encoding="utf-8", errors="replace")
        loads_or_names(items, lambda: load_dataset(inter, items=items))


ITEM_HEADERS = ["item,title,year,genres", "item,title", "title,year", "item,rating"]


def _parquet(frame: pd.DataFrame) -> None:
    from genir.data import load_dataset

    with _tmp() as d:
        path = Path(d) / "inter.parquet"
        try:
            frame.to_parquet(path)
        except Exception:  # noqa: BLE001  a frame pyarrow cannot store is not an input anyone can give
            return
        loads_or_names(path, lambda: load_dataset(path))


parquet_frames = st.builds(
    lambda cols, n, vals: pd.DataFrame({c: [vals[(i + j) % len(vals)] for i in range(n)] for j, c in enumerate(cols)}),
    st.lists(st.sampled_from(["user", "item", "timestamp", "rating", "x"]), unique=True, max_size=5),
    st.integers(0, 12),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=3)), min_size=1, max_size=6)
    .map(lambda v: v if len({type(x) for x in v}) == 1 else [str(x) for x in v]),
)


def _folder_reader(files: dict[str, tuple[str, str, str]]) -> None:
    """Write each ``name: (text, separator replacing ',', encoding)`` into one folder and load it: it loads or the
    error names one of the files."""
    from genir.data import load_dataset

    with _tmp() as d:
        folder = Path(d)
        for name, (text, sep, encoding) in files.items():
            (folder / name).write_text(text.replace(",", sep), encoding=encoding, errors="replace")
        try:
            load_dataset(folder)
        except GenirError as exc:
            assert any(name in str(exc) for name in files), str(exc)


def _grouplens_100k(data: str, item: str) -> None:
    _folder_reader({"u.data": (data, "\t", "utf-8"), "u.item": (item, "|", "latin-1")})


def _grouplens_1m(data: str, movies: str) -> None:
    _folder_reader({"ratings.dat": (data, "::", "utf-8"), "movies.dat": (movies, "::", "latin-1")})


ATOMIC_HEADERS = ["user_id:token,item_id:token,rating:float,timestamp:float", "user_id:token,item_id:token",
                  "user_id,item_id,timestamp", "user_id:token,item_id:token,timestamp:float"]


def _recbole_atomic(inter: str, item: str) -> None:
    from genir.data import load_dataset

    with _tmp() as d:
        folder = Path(d) / "toy"
        folder.mkdir()
        (folder / "toy.inter").write_text(inter.replace(",", "\t"), encoding="utf-8", errors="replace")
        (folder / "toy.item").write_text(item.replace(",", "\t"), encoding="utf-8", errors="replace")
        try:
            load_dataset(folder)
        except GenirError as exc:
            assert "toy.inter" in str(exc) or "toy.item" in str(exc), str(exc)


# -- feature matrices ----------------------------------------------------------------------------------------------
arrays = st.one_of(
    st.builds(lambda shape, dtype, fill: np.full(shape, fill).astype(dtype, copy=False),
              st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple),
              st.sampled_from(["float32", "float64", "float16", "int8", "int64", "bool", "U3", "complex64"]),
              st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-300, 300))),
    st.builds(lambda v: np.array(v, dtype=object), st.lists(st.one_of(st.none(), st.text(max_size=2)), max_size=4)),
)


def _features_npy(array: np.ndarray | None, raw: bytes) -> None:
    from genir.features.io import load_feature_matrix

    with _tmp() as d:
        path = Path(d) / "feats.npy"
        if array is None:
            path.write_bytes(raw)
        else:
            with contextlib.suppress(ValueError, TypeError):
                np.save(path, array, allow_pickle=True)
            if not path.exists():
                return
        loads_or_names(path, lambda: load_feature_matrix(path, num_items=6))


def _features_parquet(frame: pd.DataFrame) -> None:
    from genir.features.io import load_feature_matrix

    with _tmp() as d:
        path = Path(d) / "feats.parquet"
        try:
            frame.to_parquet(path)
        except Exception:  # noqa: BLE001
            return
        loads_or_names(path, lambda: load_feature_matrix(path, num_items=4, item_ids=["a", "b", "c", "d"]))


feature_frames = st.builds(
    lambda cols, vals: pd.DataFrame({c: vals[: len(vals)] for c in cols}),
    st.lists(st.sampled_from(["item", "f0", "f1", "0", "emb"]), unique=True, max_size=4),
    st.lists(st.one_of(st.floats(allow_nan=True), st.sampled_from(["a", "b", "c", "d", "z"])), min_size=0,
             max_size=6).map(lambda v: v if len({type(x) for x in v}) <= 1 else [str(x) for x in v]),
)


# -- YAML specs ----------------------------------------------------------------------------------------------------
yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=8),
              st.sampled_from(["rq_kmeans", "rqvae", "hkmeans", "atomic", "text", "kg", "cf", "index", "popularity"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.sampled_from(["scheme", "features", "collision", "params", "num_levels", "codebook_size", "seed", "x"]),
        inner, max_size=4)),
    max_leaves=10,
)


def _spec(doc: object, raw: str | None) -> None:
    import yaml

    from genir.ids import load_spec

    with _tmp() as d:
        path = Path(d) / "spec.yaml"
        path.write_text(raw if raw is not None else yaml.safe_dump(doc), encoding="utf-8", errors="replace")
        loads_or_names(path, lambda: load_spec(path))


# -- BEIR folders --------------------------------------------------------------------------------------------------
json_obj = st.dictionaries(st.sampled_from(["_id", "title", "text", "metadata", "id", "x"]),
                           st.one_of(st.none(), st.integers(), st.text(max_size=6), st.lists(st.integers(), max_size=2),
                                     st.floats(allow_nan=True)), max_size=4)
json_lines = st.lists(st.one_of(json_obj.map(json.dumps), st.text(max_size=10)), max_size=6).map("\n".join)
qrel_rows = st.lists(st.lists(field, max_size=4).map("\t".join), max_size=6).map(
    lambda rows: "\n".join(["query-id\tcorpus-id\tscore", *rows]))


def _beir(corpus: str, queries: str, qrels: str) -> None:
    from genir.data.beir import read_beir

    with _tmp() as d:
        folder = Path(d) / "beir"
        (folder / "qrels").mkdir(parents=True)
        (folder / "corpus.jsonl").write_text(corpus, encoding="utf-8", errors="replace")
        (folder / "queries.jsonl").write_text(queries, encoding="utf-8", errors="replace")
        (folder / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8", errors="replace")
        try:
            read_beir(folder)
        except GenirError as exc:
            assert any(n in str(exc) for n in ("corpus.jsonl", "queries.jsonl", "test.tsv", str(folder))), str(exc)
            assert "\n" not in str(exc).strip()


# -- the CLI's arguments -------------------------------------------------------------------------------------------
COMMANDS = [["train", "--model"], ["eval", "--run"], ["retrieve", "--index"], ["index", "info"], ["index", "add"],
            ["index", "build", "--scheme"], ["recommend", "--run"], ["data", "info", "--dataset"]]
FLAGS = ["--dataset", "--items", "--features", "--out", "--config", "--split", "-k", "--history", "--user", "--seed",
         "--protocol", "--corpus", "--step", "--query", "--scheme", "--overwrite", "--quiet", "--json", "--resume"]


def _cli(command: list[str], pairs: list[tuple[str, str]], value: str) -> None:
    from genir.cli import main

    with _tmp() as d:
        junk = Path(d) / "junk.csv"
        junk.write_bytes(b"\x00\xff not a dataset \n,,,\n")
        values = {"JUNK": str(junk), "MISSING": str(Path(d) / "missing"), "DIR": d}
        argv = [*command, values.get(value, value)]
        for flag, v in pairs:
            argv += [flag, values.get(v, v)] if flag not in ("--overwrite", "--quiet", "--json", "--resume") else [flag]
        if argv[:2] in (["train", "--model"], ["index", "build"], ["data", "info"]):
            argv += ["--dataset", str(junk)]  # never the default dataset: a fuzz example must not train on ml-100k
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: a usage line and the reason on stderr
                code = exc.code
        assert code in (0, 2), (argv, code, err.getvalue())
        if code == 2:
            last = err.getvalue().strip().splitlines()[-1]
            assert last.startswith(("genir: error:", "usage:", "genir ")) and "Traceback" not in err.getvalue(), \
                (argv, err.getvalue())
        assert not list(Path(d).glob(".*.tmp*")), argv  # nothing half-written left behind


cli_values = st.sampled_from(["JUNK", "MISSING", "DIR", "", "-1", "0", "3", "1e9", "sasrec", "nope", "epochs=abc",
                              "k", "i1,i2", "loo", "random", "../../etc/passwd"])


# -- the server's JSON ---------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=6),
              st.sampled_from(["i0", "i1", "u0", "../x", "/etc/passwd"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=12,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(["history", "user", "query", "k", "exclude", "path", "index", "x"]), json_values,
                    max_size=4),
    json_values,
)


# -- the tests: QUICK examples each in the default suite, DEEP under -m slow ------------------------------------------
def _pair(name: str, body: Callable, **strategies) -> None:
    quick = fuzzer(QUICK, **strategies)(body)
    deep = pytest.mark.slow(fuzzer(DEEP, **strategies)(body))
    globals()[f"test_fuzz_{name}"] = quick
    globals()[f"test_fuzz_{name}_deep"] = deep


_pair("interactions", _interactions, text=delimited(",", INTER_HEADERS), suffix=st.sampled_from([".csv", ".tsv"]))
_pair("interactions_parquet", _parquet, frame=parquet_frames)
_pair("item_files", _items, text=delimited(",", ITEM_HEADERS))
_pair("grouplens_100k", _grouplens_100k, data=delimited(",", ["1,2,3,4"]), item=delimited(",", ["1,Toy Story"]))
_pair("grouplens_1m", _grouplens_1m, data=delimited(",", ["1,2,3,4"]), movies=delimited(",", ["1,Toy,Comedy"]))
_pair("recbole_atomic", _recbole_atomic, inter=delimited(",", ATOMIC_HEADERS),
      item=delimited(",", ["item_id:token,movie_title:token_seq"]))
_pair("features_npy", _features_npy, array=st.one_of(st.none(), arrays), raw=st.binary(max_size=200))
_pair("features_parquet", _features_parquet, frame=feature_frames)
_pair("yaml_specs", _spec, doc=yaml_values, raw=st.one_of(st.none(), st.text(max_size=60)))
_pair("beir_folders", _beir, corpus=json_lines, queries=json_lines, qrels=qrel_rows)
_pair("cli_arguments", _cli, command=st.sampled_from(COMMANDS),
      pairs=st.lists(st.tuples(st.sampled_from(FLAGS), cli_values), max_size=4), value=cli_values)


@pytest.fixture(scope="module")
def server_client(tmp_path_factory):
    """A served index with a trained TIGER (the serve tests' setup)."""
    from fastapi.testclient import TestClient

    from genir.cli import main
    from genir.serve import Server, create_app
    from tests.conftest import make_inter
    from tests.tiger.test_cli import TRAIN

    d = tmp_path_factory.mktemp("serve-fuzz")
    make_inter().to_csv(d / "inter.csv", index=False)
    np.save(d / "feats.npy", np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))
    (d / "spec.yaml").write_text("scheme: rq_kmeans\nfeatures: text\ncollision: index\n"
                                 "params: {num_levels: 2, codebook_size: 4, niter: 5, seed: 0}\n")
    idx = d / "idx"
    assert main(["index", "build", "--dataset", str(d / "inter.csv"), "--features", str(d / "feats.npy"), "--scheme",
                 str(d / "spec.yaml"), "--out", str(idx), "--quiet"]) == 0
    assert main(["train", "--index", str(idx), *TRAIN]) == 0
    with TestClient(create_app(Server(idx, max_batch=8, max_wait_ms=1))) as client:
        yield client


def _post(client, body) -> None:
    r = client.post("/retrieve", json=body)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (body, r.status_code, r.text)
    if r.status_code != 200:
        err = r.json()["error"]
        assert isinstance(err, str) and err and "\n" not in err and "Traceback" not in err, (body, err)
    else:
        assert isinstance(r.json()["results"], list)


@fuzzer(QUICK, body=bodies)
def _server_quick(client, body):
    _post(client, body)


@fuzzer(DEEP, body=bodies)
def _server_deep(client, body):
    _post(client, body)


def test_fuzz_server_json(server_client):
    _server_quick(server_client)
    for raw in (b"\xff{", b'{"history": NaN}', b'{"history": ["i1"], "k": Infinity}', b"[" * 5000, b"",
                b'{"history": ["i1"], "k": 1e999}'):  # not JSON, JSON extensions Python accepts, deep nesting
        r = server_client.post("/retrieve", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and "\n" not in r.json()["error"], (raw[:40], r.text)
    r = server_client.get("/no-such-page")
    assert r.status_code == 404 and r.json()["error"]
    assert 'endpoint="other",status="404"' in server_client.get("/metrics").text


@pytest.mark.slow
def test_fuzz_server_json_deep(server_client):
    _server_deep(server_client)


# -- crashes the fuzzers found, kept as regression tests -----------------------------------------------------------
def test_regression_atomic_item_file_without_item_id(tmp_path):
    from genir.data import load_dataset

    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\n")
    (folder / "toy.item").write_text("\x00\n")  # was: KeyError 'item'
    with pytest.raises(GenirError, match=r"toy\.item: missing column 'item_id'"):
        load_dataset(folder)


def test_regression_binary_config_file(tmp_path, capsys):
    from genir.cli import main

    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\x00\xff not yaml")  # was: UnicodeDecodeError traceback
    assert main(["train", "--model", "pop", "--config", str(junk)]) == 2
    assert capsys.readouterr().err.strip() == (f"genir: error: {junk}: not a UTF-8 text file (invalid start byte "
                                               "at byte 1)")


def test_regression_server_error_lines(server_client):
    r = server_client.post("/retrieve", json={"\n": None})  # was: a newline inside the one-line error
    assert r.status_code == 422 and r.json()["error"] == "\\n: Extra inputs are not permitted"
