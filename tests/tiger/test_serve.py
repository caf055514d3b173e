"""`genir serve` on an index dir with a trained TIGER: answers, validation, dynamic batching (concurrent requests
answered by fewer model calls, with the same answers as one at a time), metrics, and a `genir index add` picked
up between two requests."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from genir.cli import main
from genir.serve import Server, create_app
from tests.tiger.test_cli import TRAIN


@pytest.fixture
def trained(index_dir, capsys):
    assert main(["train", "--index", str(index_dir), *TRAIN]) == 0
    capsys.readouterr()
    return index_dir


def _batch_count(client) -> float:
    text = client.get("/metrics").text
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("genir_batch_size_count")))


def test_answers_and_refusals(trained, dataset):
    server = Server(trained, max_batch=8, max_wait_ms=2)
    history = [str(x) for x in dataset.item_ids[:3]]
    with TestClient(create_app(server)) as client:
        r = client.post("/retrieve", json={"history": history, "k": 4})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 4 and not {x["item"] for x in results} & set(history)
        assert all(isinstance(x["score"], float) and x["title"] for x in results)
        # exclusions drop items and the list is still k long
        r2 = client.post("/retrieve", json={"history": history, "k": 4, "exclude": [results[0]["item"]]}).json()
        assert [x["item"] for x in r2["results"]] == [x["item"] for x in results[1:]] + [r2["results"][-1]["item"]]
        user = str(dataset.user_ids[0])
        assert client.post("/retrieve", json={"user": user, "k": 2}).status_code == 200
        # refusals: 400 for what the backend cannot answer, 422 for a malformed body; one-line reasons
        for body, status, needle in (
            ({"history": ["no-such-item"]}, 400, "unknown item id(s) ['no-such-item']"),
            ({"user": "no-such-user"}, 400, "unknown user id"),
            ({"query": "a text"}, 400, "not text"),
            ({"history": history, "exclude": ["zzz"]}, 400, "exclude"),
            ({}, 422, "exactly one of history, user, query"),
            ({"history": history, "user": user}, 422, "exactly one"),
            ({"history": history, "k": 0}, 422, "k"),
            ({"history": history, "k": 5000}, 422, "k"),
            ({"history": history, "path": "/etc/passwd"}, 422, "path"),
            ({"history": "i1,i2"}, 422, "history"),
        ):
            r = client.post("/retrieve", json=body)
            assert r.status_code == status and needle in r.json()["error"], (body, r.text)
        r = client.post("/retrieve", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert client.get("/health").json()["status"] == "ok"
        info = client.get("/info").json()
        assert info["model"] == "tiger" and info["items"] == dataset.num_items and info["index"]["n_items"]
        metrics = client.get("/metrics").text
        assert 'genir_requests_total{endpoint="/retrieve",status="200"}' in metrics
        assert 'status="422"' in metrics and 'status="400"' in metrics


@pytest.mark.parametrize("wait_ms", [0, 50])  # 0: the requests that queue while the model runs form the next batch
def test_concurrent_requests_share_model_calls_and_answer_as_alone(trained, dataset, wait_ms):
    server = Server(trained, max_batch=16, max_wait_ms=wait_ms)
    app = create_app(server)
    rng = np.random.default_rng(0)
    histories = [[str(x) for x in rng.choice(dataset.item_ids, size=int(rng.integers(1, 6)), replace=False)]
                 for _ in range(12)]
    with TestClient(app) as client:  # one at a time: one model call each
        alone = [client.post("/retrieve", json={"history": h, "k": 5}).json()["results"] for h in histories]
        before = _batch_count(client)
        assert before == len(histories)

        async def together():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
                replies = await asyncio.gather(*[ac.post("/retrieve", json={"history": h, "k": 5})
                                                 for h in histories])
            return [r.json()["results"] for r in replies]

        batched = client.portal.call(together)
        calls = _batch_count(client) - before
    assert calls < len(histories) / 2  # requests that arrive together share model calls
    for a, b in zip(alone, batched):
        assert [x["item"] for x in a] == [x["item"] for x in b]
        assert np.allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)


def test_index_add_is_picked_up_between_requests(trained, dataset, tmp_path):
    server = Server(trained, max_batch=4, max_wait_ms=1)
    history = [str(x) for x in dataset.item_ids[:3]]
    with TestClient(create_app(server)) as client:
        top = client.post("/retrieve", json={"history": history, "k": 3}).json()["results"][0]["item"]
        features = np.random.default_rng(0).normal(size=(dataset.num_items, 8)).astype(np.float32)
        pd.DataFrame({"item": ["new-1"], "title": ["A re-release"]}).to_csv(tmp_path / "new.csv", index=False)
        np.save(tmp_path / "new.npy", features[[dataset.item_index(top)]])
        assert main(["index", "add", str(trained), "--items", str(tmp_path / "new.csv"), "--features",
                     str(tmp_path / "new.npy")]) == 0
        found = client.post("/retrieve", json={"history": history, "k": 10}).json()["results"]
        assert "new-1" in [x["item"] for x in found]  # the new item's shared prefix brings it in, as via the CLI
        assert client.get("/info").json()["reloads"] == 1
        assert client.get("/health").json()["items"] == dataset.num_items + 1
        assert client.post("/retrieve", json={"history": ["new-1"], "k": 3}).status_code == 200


def test_genir_serve_answers_over_real_http(trained, dataset):
    """The command itself: uvicorn on a loopback port, a real HTTP round trip, a clean stop on SIGTERM."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "genir", "serve", "--index", str(trained), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "server did not come up"
                time.sleep(0.2)
        history = [str(x) for x in dataset.item_ids[:2]]
        r = httpx.post(f"http://127.0.0.1:{port}/retrieve", json={"history": history, "k": 3}, timeout=30)
        assert r.status_code == 200 and len(r.json()["results"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn shuts down, then re-raises the signal it caught
    assert "genir serve: tiger over" in out and "Traceback" not in out


@pytest.mark.slow
def test_load_benchmark_runs_batched_and_unbatched(trained, inter_file, tmp_path, capsys):
    """benchmarks/serve_load.py end to end on tiny models: every request answered, both modes, JSON and plot
    (slow: eight server processes start, ~100 s on 2 cores)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import serve_load

    sasrec = tmp_path / "sasrec"
    assert main(["train", "--model", "sasrec", "--dataset", str(inter_file), "--out", str(sasrec), "epochs=1",
                 "progress=false", "cpu=true", "hidden_size=16"]) == 0
    out = tmp_path / "load.json"
    assert serve_load.main(["--tiger-index", str(trained), "--sasrec-run", str(sasrec), "--dataset", str(inter_file),
                            "--concurrency", "1,8", "--requests", "16", "--soak-seconds", "6",
                            "--server-threads", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for name in ("tiger", "sasrec"):
        model = res["models"][name]
        for mode in ("batched", "unbatched"):
            levels = model["modes"][mode]["levels"]
            assert [x["concurrency"] for x in levels] == [1, 8]
            assert all(x["error_count"] == 0 and x["answered"] >= 16 for x in levels)
        assert model["modes"]["unbatched"]["batch_histogram"]["sum"] == model["modes"]["unbatched"]["batch_histogram"]["count"]
        assert model["soak"]["result"]["error_count"] == 0 and model["soak"]["rss_mb"]
    assert out.with_suffix(".png").stat().st_size > 10_000
