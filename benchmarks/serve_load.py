"""Load benchmark of ``genir serve``: throughput and latency under rising concurrency, batched vs unbatched, and
memory over a soak, on loopback only.

    python benchmarks/serve_load.py                      # TIGER (index + model) and SASRec on MovieLens-100K
    python benchmarks/serve_load.py --quick              # smoke run: 1-epoch models, few requests, short soak
    python benchmarks/serve_load.py --tiger-index DIR --sasrec-run RUN   # serve models you already trained

For each model the server is started twice as a subprocess (``python -m genir serve``): **batched** (requests
that arrive within ``--max-wait-ms`` share one model call, up to ``--max-batch``) and **unbatched**
(``--max-batch 1``: one model call per request, what a plain request handler does). A bounded load generator
(kept-alive HTTP/1.1 connections on asyncio streams, 127.0.0.1 only) then keeps ``c`` requests in flight for ``c``
in ``--concurrency`` (1, 8, 32, 128) until ``--requests`` requests are answered, each one a random MovieLens user (``{"user": id, "k": 10}``:
the server reads the user's history). Recorded per level: throughput (answers/s), p50/p95/p99 latency, errors
(any non-200 or transport error), and the server's batch-size histogram from ``/metrics``. Then a soak: the
batched server at concurrency 32 for ``--soak-seconds`` (600), its resident memory (``/proc/<pid>/status``)
sampled every 5 s.

The models are trained here for a few epochs unless given: serving cost does not depend on how good they are.
Load generator and server share the machine's cores; the JSON records the machine. Writes
``benchmarks/results/serve_load.json`` (or ``--out``) and a latency-vs-throughput plot beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_models(work: Path, quick: bool) -> tuple[Path, Path]:
    """A TIGER index dir with its model and a SASRec run on MovieLens-100K, trained through the CLI as a user
    would (few epochs: serving cost does not depend on quality)."""
    from genir.cli import main as genir

    epochs = f"epochs={1 if quick else 3}"
    index = work / "tiger-index"
    if not (index / "manifest.json").is_file():
        assert genir(["index", "build", "--scheme", str(ROOT / "tokenizers" / "rq_kmeans.yaml"), "--out", str(index),
                      "--quiet"]) == 0
    if not (index / "model" / "run.json").is_file():
        assert genir(["train", "--index", str(index), epochs, "progress=false"]) == 0
    sasrec = work / "sasrec"
    if not (sasrec / "run.json").is_file():
        assert genir(["train", "--model", "sasrec", "--out", str(sasrec), epochs, "progress=false"]) == 0
    return index, sasrec


class ServerProcess:
    """``genir serve`` in a subprocess on a free loopback port."""

    def __init__(self, target: list[str], max_batch: int, max_wait_ms: float, threads: int):
        self.port = free_port()
        cmd = [sys.executable, "-m", "genir", "serve", *target, "--port", str(self.port),
               "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError("server did not come up")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def batch_histogram(self) -> dict:
        import httpx

        text = httpx.get(self.url + "/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line.startswith("genir_batch_size_bucket"):
                le = line.split('le="')[1].split('"')[0]
                out[le] = float(line.split()[-1])
            elif line.startswith(("genir_batch_size_count", "genir_batch_size_sum")):
                out[line.split()[0].rsplit("_", 1)[1]] = float(line.split()[-1])
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _post(reader, writer, path: str, payload: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection; returns (status, body)."""
    writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next(int(x.split(b":", 1)[1]) for x in lines[1:] if x.lower().startswith(b"content-length:"))
    return status, await reader.readexactly(length)


async def load(url: str, users: list[str], concurrency: int, total: int, seed: int,
               duration: float | None = None) -> dict:
    """Keep ``concurrency`` requests in flight until ``total`` are answered (or ``duration`` seconds pass).

    Each client is one kept-alive loopback connection speaking plain HTTP/1.1 (asyncio streams, no client
    library): a load generator that shares the machine's cores with the server should spend as little as possible
    per request. Every answer is parsed and must hold k results."""
    import json

    host, port = url.removeprefix("http://").split(":")
    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    stop_at = None if duration is None else time.perf_counter() + duration

    async def worker():
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while (sent < total) if stop_at is None else (time.perf_counter() < stop_at):
                sent += 1
                payload = json.dumps({"user": users[int(rng.integers(len(users)))], "k": 10}).encode()
                t0 = time.perf_counter()
                try:
                    status, body = await _post(reader, writer, "/retrieve", payload)
                except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                if status == 200 and len(json.loads(body)["results"]) == 10:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "answered": len(latencies), "errors": errors,
            "error_count": int(sum(errors.values())), "seconds": round(wall, 3),
            "throughput_rps": round(len(latencies) / wall, 2),
            **{f"p{q}_ms": round(float(np.percentile(lat, q)), 2) if len(lat) else None for q in (50, 95, 99)}}


def bench_model(name: str, target: list[str], users: list[str], args) -> dict:
    out = {"target": target, "modes": {}}
    for mode, (batch, wait) in {"batched": (args.max_batch, args.max_wait_ms), "unbatched": (1, 0.0)}.items():
        server = ServerProcess(target, batch, wait, args.server_threads)
        try:
            server.wait()
            asyncio.run(load(server.url, users, 4, 20, seed=0))  # warm-up, not recorded
            levels = []
            for c in args.concurrency:
                r = asyncio.run(load(server.url, users, c, args.requests, seed=c))
                levels.append(r)
                print(f"{name:7s} {mode:9s} c={c:4d}: {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']} ms  "
                      f"p95 {r['p95_ms']} ms  p99 {r['p99_ms']} ms  errors {r['error_count']}", flush=True)
            out["modes"][mode] = {"max_batch": batch, "max_wait_ms": wait, "levels": levels,
                                  "batch_histogram": server.batch_histogram()}
            if mode == "batched" and args.soak_seconds > 0:
                out["soak"] = soak(server, users, args.soak_seconds)
        finally:
            server.stop()
    b, u = out["modes"]["batched"]["levels"], out["modes"]["unbatched"]["levels"]
    out["batching_gain"] = {str(x["concurrency"]): round(x["throughput_rps"] / max(y["throughput_rps"], 1e-9), 2)
                            for x, y in zip(b, u)}
    return out


def soak(server: ServerProcess, users: list[str], seconds: float) -> dict:
    samples = []

    async def run():
        task = asyncio.create_task(load(server.url, users, 32, 10**9, seed=99, duration=seconds))
        t0 = time.perf_counter()
        while not task.done():
            samples.append((round(time.perf_counter() - t0, 1), round(server.rss_mb(), 1)))
            await asyncio.sleep(5)
        return await task

    result = asyncio.run(run())
    rss = [m for _, m in samples]
    half = len(rss) // 2
    growth = float(np.mean(rss[half:]) - np.mean(rss[:half])) if half else 0.0
    print(f"soak {seconds:.0f}s: {result['answered']} answered, {result['error_count']} errors, RSS "
          f"{rss[0] if rss else '?'} -> {rss[-1] if rss else '?'} MB", flush=True)
    return {"seconds": seconds, "result": result, "rss_mb": samples,
            "second_half_minus_first_half_mb": round(growth, 1)}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, res in results["models"].items():
        for mode, style in (("batched", "-o"), ("unbatched", "--s")):
            levels = res["modes"][mode]["levels"]
            ax.plot([x["throughput_rps"] for x in levels], [x["p95_ms"] for x in levels], style,
                    label=f"{name} {mode}")
            for x in levels:
                ax.annotate(str(x["concurrency"]), (x["throughput_rps"], x["p95_ms"]), fontsize=7)
    ax.set_xlabel("throughput (answers / s)")
    ax.set_ylabel("p95 latency (ms)")
    ax.set_yscale("log")
    ax.set_title("genir serve on loopback (labels: concurrent clients)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiger-index", default=None, help="an index dir with a trained model (default: train one)")
    p.add_argument("--sasrec-run", default=None, help="a SASRec run dir (default: train one)")
    p.add_argument("--work", default="runs/serve_load", help="where models trained here are kept")
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument("--requests", type=int, default=400, help="answered requests per concurrency level")
    p.add_argument("--soak-seconds", type=float, default=600)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=0.0)
    p.add_argument("--server-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--models", default="tiger,sasrec")
    p.add_argument("--dataset", default="ml-100k", help="the dataset the served models were trained on (its users "
                   "make the requests)")
    p.add_argument("--quick", action="store_true", help="1-epoch models, 40 requests per level, 10 s soak")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.quick:
        args.requests = min(args.requests, 40)
        args.soak_seconds = min(args.soak_seconds, 10)
    t0 = time.perf_counter()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    index, sasrec = train_models(work, args.quick) if not (args.tiger_index and args.sasrec_run) else (None, None)
    targets = {"tiger": ["--index", str(args.tiger_index or index)], "sasrec": ["--run", str(args.sasrec_run or sasrec)]}
    from genir.data import load_dataset

    users = [str(u) for u in load_dataset(args.dataset).user_ids]
    import torch

    results = {"command": "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
                          f"cuda {torch.cuda.is_available()}; load generator and server on the same cores",
               "requests_per_level": args.requests, "models": {}}
    for name in args.models.split(","):
        results["models"][name] = bench_model(name, targets[name], users, args)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from genir.atomic import write_json

    write_json(out, results)
    plot(results, out.with_suffix(".png"))
    for name, res in results["models"].items():
        print(f"{name}: batching gain (throughput batched / unbatched) by concurrency {res['batching_gain']}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
