"""``genir serve``: retrieval over HTTP (FastAPI under uvicorn), with requests batched into one model call.

    genir serve --index DIR [--run RUN] [--host 127.0.0.1] [--port 8000] [--max-batch 64] [--max-wait-ms 0]

* ``POST /retrieve`` ``{"history": ["50", "181"]} | {"user": "196"} | {"query": "image viewer"}``, with ``"k"``
  (1..1000, default 10) and optional ``"exclude"`` (item ids never to return). Answers ``{"results": [{"item",
  "title", "score"}, ...]}`` best first. Every field is validated: a malformed body, unknown field, unknown item or
  user id, or a kind of query the model cannot answer gets a 4xx with a one-line reason. Nothing in a request is a
  path: the server reads only what it was started with.
* ``GET /health``, ``GET /info`` (the index manifest summary or the run description) and ``GET /metrics``
  (Prometheus text: requests by endpoint and status, latency and batch-size histograms).

**Batching.** Every request that is waiting when the model becomes free (up to ``max_batch``) is answered by one
call of the model's batched retrieval (one constrained beam search over every history), run in one worker thread
so model calls never overlap: under load, the requests that arrive during one batch form the next, and a lone
request is answered at once. ``max_wait_ms`` (default 0) makes a batch wait that long for more requests, trading
latency at low load for larger batches. A batch that fails answers each of its requests with a 500 and
the server keeps serving.

**Reloading.** Before each batch the served index dir's ``manifest.json`` is checked (its hash); when
``genir index add`` has rewritten the dir, the model is reloaded from it and swapped in between two batches, so a
request is answered by either the old or the new index, never a mix, and none is dropped.

Backends: a recommender run (``--run``, or the model an index dir holds in ``DIR/model``: TIGER, MMGRec, any
trained model) answers histories and user ids; a document index (``genir index build --corpus``) answers text
queries; a text-to-ID run answers text queries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genir.errors import ConfigError, GenirError

ROUTES = ("/retrieve", "/health", "/info", "/metrics")

MAX_K = 1000
MAX_HISTORY = 10_000


class RetrieveBody(BaseModel):
    """The JSON body of ``POST /retrieve`` (unknown fields refused)."""

    model_config = ConfigDict(extra="forbid")
    history: list[str] | None = Field(None, max_length=MAX_HISTORY)
    user: str | None = Field(None, min_length=1, max_length=200)
    query: str | None = Field(None, min_length=1, max_length=2000)
    k: int = Field(10, ge=1, le=MAX_K)
    exclude: list[str] = Field(default_factory=list, max_length=MAX_HISTORY)

    @model_validator(mode="after")
    def one_kind(self):
        given = [name for name in ("history", "user", "query") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of history, user, query (got {given or 'none'})")
        if self.query is not None and not self.query.strip():
            raise ValueError("query is blank")
        return self


class BadRequest(GenirError):
    """A request the backend cannot answer (unknown id, wrong kind of query): a 4xx, not a server error."""


@dataclass
class Query:
    """One validated retrieval request."""

    history: list[str] | None = None
    user: str | None = None
    query: str | None = None
    k: int = 10
    exclude: list[str] = field(default_factory=list)


def _index_version(index_dir: Path | None) -> str | None:
    """sha256 of the index dir's ``manifest.json`` (every rewrite changes it: new file hashes, counts, times)."""
    if index_dir is None:
        return None
    try:
        return hashlib.sha256((index_dir / "manifest.json").read_bytes()).hexdigest()[:16]
    except OSError:
        return None  # between the two renames of a rewrite: keep serving what is loaded


class RecommenderBackend:
    """A trained recommender (a run dir): answers item histories and known users."""

    kind = "items"

    def __init__(self, run_dir: Path):
        from genir.runs import item_names, load_run

        self.model, self.split, self.run_info = load_run(run_dir)
        self.ids, self.titles = item_names(self.model, self.split)
        self.position = {x: i for i, x in enumerate(self.ids)}
        self.text = callable(getattr(self.model, "retrieve", None))
        self.user_histories = self.split.histories("test")  # once: it sorts every interaction (12 ms on ML-100K)

    def info(self) -> dict:
        return {"kind": self.kind, "model": self.run_info["spec"]["model"], "items": len(self.ids),
                "dataset": self.split.dataset.name, "split": self.split.protocol}

    def _items(self, ids: list[str], what: str) -> list[int]:
        unknown = [x for x in ids if x not in self.position]
        if unknown:
            raise BadRequest(f"{what}: unknown item id(s) {unknown[:5]}")
        return [self.position[x] for x in ids]

    def check(self, q: Query) -> None:
        """Raise BadRequest for what this backend cannot answer, before the request joins a batch."""
        if q.query is not None and not self.text:
            raise BadRequest(f"model {self.run_info['spec']['model']!r} answers histories and users, not text")
        if q.history is not None:
            if getattr(self.model, "needs_known_users", False):
                raise BadRequest(f"model {self.run_info['spec']['model']!r} scores known users only: give a user id")
            self._items(q.history, "history")
        if q.user is not None:
            try:
                self.split.dataset.user_index(q.user)
            except GenirError:
                raise BadRequest(f"user: unknown user id {q.user!r}") from None
        self._items(q.exclude, "exclude")

    def answer(self, queries: list[Query]) -> list[list[dict]]:
        """One batched model call for every history/user request of the batch, one for the text ones."""
        out: list[list[dict] | None] = [None] * len(queries)
        rec = [j for j, q in enumerate(queries) if q.query is None]
        if rec:
            histories, users = [], []
            for j in rec:
                q = queries[j]
                if q.user is not None:
                    u = self.split.dataset.user_index(q.user)
                    histories.append([int(i) for i in self.user_histories[u]])
                    users.append(u)
                else:
                    histories.append(self._items(q.history, "history"))
                    users.append(None)
            k = max(queries[j].k + len(queries[j].exclude) for j in rec)
            found = self.model.recommend(histories, k=k, users=users)
            for j, items in zip(rec, found):
                out[j] = self._rows(items, queries[j])
        text = [j for j, q in enumerate(queries) if q.query is not None]
        if text:
            k = max(queries[j].k + len(queries[j].exclude) for j in text)
            lists = self.model.retrieve([queries[j].query for j in text], k=k)
            for row, j in enumerate(text):
                pairs = [(int(i), float(s)) for i, s in zip(lists.items[row].tolist(), lists.scores[row].tolist())
                         if i >= 0]
                out[j] = self._rows(pairs, queries[j])
        return out  # type: ignore[return-value]

    def _rows(self, found: list[tuple[int, float]], q: Query) -> list[dict]:
        skip = set(self._items(q.exclude, "exclude"))
        return [{"item": self.ids[i], "title": self.titles[i], "score": s} for i, s in found if i not in skip][:q.k]


class DocumentBackend:
    """A document index with its DSI model: answers text queries."""

    kind = "documents"

    def __init__(self, index_dir: Path):
        from genir.methods.dsi.document_index import DocumentIndex

        self.index = DocumentIndex(index_dir)
        self.ids = set(self.index.items["item"].astype(str))

    def info(self) -> dict:
        return {"kind": self.kind, "model": f"dsi-{self.index.info.get('kind')}", "items": len(self.index.items),
                "prompted": bool(self.index.info.get("pool"))}

    def check(self, q: Query) -> None:
        if q.query is None:
            raise BadRequest("a document index answers text queries: give \"query\"")
        unknown = [x for x in q.exclude if x not in self.ids]
        if unknown:
            raise BadRequest(f"exclude: unknown document id(s) {unknown[:5]}")

    def answer(self, queries: list[Query]) -> list[list[dict]]:
        k = max(q.k + len(q.exclude) for q in queries)
        found = self.index.search([q.query for q in queries], k=k)
        out = []
        for rows, q in zip(found, queries):
            skip = set(q.exclude)
            out.append([{"item": d, "title": t, "score": s} for d, t, s in rows if d not in skip][:q.k])
        return out


def load_backend(index_dir: str | Path | None, run_dir: str | Path | None):
    """The backend for ``--index`` (a document index, or the model in ``DIR/model``) or ``--run``."""
    from genir.methods.dsi.document_index import DocumentIndex

    if run_dir is not None:
        return RecommenderBackend(Path(run_dir))
    if index_dir is None:
        raise ConfigError("genir serve: give --index DIR or --run RUN")
    if DocumentIndex.is_document_index(index_dir):
        return DocumentBackend(Path(index_dir))
    model_dir = Path(index_dir) / "model"
    if not (model_dir / "run.json").is_file():
        from genir.errors import CheckpointError

        raise CheckpointError(f"no trained model in {model_dir}: run `genir train --index {index_dir}` first")
    return RecommenderBackend(model_dir)


class Batcher:
    """Dynamic batching: the requests queued when the model is free (at most ``max_batch``, after waiting up to
    ``max_wait`` seconds for more) are answered by one worker thread in one model call; between batches the backend
    is reloaded if its index dir changed."""

    def __init__(self, server: Server, max_batch: int, max_wait: float):
        self.server = server
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.queue: asyncio.Queue | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genir-model")
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=True)

    async def submit(self, q: Query) -> list[dict]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((q, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():  # all that waited while the model ran
                batch.append(self.queue.get_nowait())
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch and self.max_wait > 0:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            live = [(q, f) for q, f in batch if not f.cancelled()]  # a client that went away
            if not live:
                continue
            self.server.batch_sizes.observe(len(live))
            try:
                answers = await loop.run_in_executor(self.executor, self.server.answer_batch, [q for q, _ in live])
            except Exception as e:  # noqa: BLE001  one failed batch must not stop the server
                answers = [RuntimeError(f"retrieval failed: {type(e).__name__}: {e}")] * len(live)
            for (_, f), a in zip(live, answers):
                if f.done():
                    continue
                if isinstance(a, Exception):
                    f.set_exception(a)
                else:
                    f.set_result(a)


class Server:
    """The served backend, its reload logic and its metrics."""

    def __init__(self, index_dir: str | Path | None = None, run_dir: str | Path | None = None, *,
                 max_batch: int = 64, max_wait_ms: float = 0.0):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        if max_batch < 1 or max_wait_ms < 0:
            raise ConfigError(f"--max-batch must be >= 1 and --max-wait-ms >= 0, got {max_batch}, {max_wait_ms}")
        self.index_dir = Path(index_dir) if index_dir is not None and run_dir is None else None
        self.run_dir = run_dir
        self.backend = load_backend(index_dir, run_dir)
        self.version = _index_version(self.index_dir)
        self.reloads = 0
        self.started = time.time()
        self.registry = CollectorRegistry()
        self.requests = Counter("genir_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("genir_request_seconds", "latency of /retrieve", registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.batch_sizes = Histogram("genir_batch_size", "requests per model call", registry=self.registry,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batcher = Batcher(self, max_batch, max_wait_ms / 1000.0)

    def maybe_reload(self) -> None:
        """Swap in a backend loaded from the index dir if ``genir index add`` rewrote it (model thread only)."""
        version = _index_version(self.index_dir)
        if self.index_dir is None or version is None or version == self.version:
            return
        fresh = load_backend(self.index_dir, None)
        self.backend, self.version = fresh, version  # one reference swap: a request sees one backend or the other
        self.reloads += 1

    def answer_batch(self, queries: list[Query]) -> list[list[dict] | BadRequest]:
        """Each request's results, or the BadRequest of a request the (possibly just reloaded) backend refuses:
        one bad request does not fail the others of its batch."""
        self.maybe_reload()
        backend = self.backend
        out: list = [None] * len(queries)
        good = []
        for j, q in enumerate(queries):  # re-checked against the backend that answers
            try:
                backend.check(q)
                good.append(j)
            except BadRequest as e:
                out[j] = e
        if good:
            for j, a in zip(good, backend.answer([queries[j] for j in good])):
                out[j] = a
        return out

    def info(self) -> dict:
        out = {**self.backend.info(), "reloads": self.reloads, "uptime_seconds": round(time.time() - self.started, 1),
               "max_batch": self.batcher.max_batch, "max_wait_ms": self.batcher.max_wait * 1000}
        if self.index_dir is not None:
            from genir.index import index_info

            out["index"] = {k: v for k, v in index_info(self.index_dir).items() if k != "stats"}
        return out


def create_app(server: Server):
    """The FastAPI app of ``server``."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def lifespan(app):
        await server.batcher.start()
        yield
        await server.batcher.stop()

    from contextlib import asynccontextmanager

    app = FastAPI(title="genir", lifespan=asynccontextmanager(lifespan))

    def one_line(text: object) -> str:  # a field name or a reason may hold newlines: escape them, as JSON does
        return json.dumps(str(text), ensure_ascii=False)[1:-1]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        server.requests.labels(request.url.path, "422").inc()
        reasons = "; ".join(f"{'.'.join(one_line(x) for x in e['loc'][1:]) or 'body'}: {one_line(e['msg'])}"
                            for e in exc.errors())
        return JSONResponse(status_code=422, content={"error": reasons})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # e.g. a body that is not UTF-8, a 404
        path = request.url.path if request.url.path in ROUTES else "other"  # bounded label values
        server.requests.labels(path, str(exc.status_code)).inc()
        return JSONResponse(status_code=exc.status_code, content={"error": one_line(exc.detail)},
                            headers=getattr(exc, "headers", None))

    @app.post("/retrieve")
    async def retrieve(body: RetrieveBody) -> Any:
        t0 = time.perf_counter()
        q = Query(**body.model_dump())
        try:
            server.backend.check(q)
            results = await server.batcher.submit(q)
        except BadRequest as e:
            server.requests.labels("/retrieve", "400").inc()
            return JSONResponse(status_code=400, content={"error": str(e)})
        except RuntimeError as e:
            server.requests.labels("/retrieve", "500").inc()
            return JSONResponse(status_code=500, content={"error": str(e)})
        server.latency.observe(time.perf_counter() - t0)
        server.requests.labels("/retrieve", "200").inc()
        return JSONResponse({"results": results, "k": q.k})  # plain JSON: no per-field encoder pass

    @app.get("/health")
    async def health() -> Any:
        server.requests.labels("/health", "200").inc()
        return {"status": "ok", "items": server.backend.info()["items"], "index_version": server.version}

    @app.get("/info")
    async def info() -> Any:
        server.requests.labels("/info", "200").inc()
        return server.info()

    @app.get("/metrics")
    async def metrics() -> Any:
        from prometheus_client import generate_latest

        return PlainTextResponse(generate_latest(server.registry).decode(), media_type="text/plain; version=0.0.4")

    return app


def serve(index_dir=None, run_dir=None, *, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64,
          max_wait_ms: float = 0.0) -> None:
    """Load the backend, then serve until interrupted."""
    import uvicorn

    server = Server(index_dir, run_dir, max_batch=max_batch, max_wait_ms=max_wait_ms)
    info = server.backend.info()
    print(f"genir serve: {info['model']} over {info['items']} {info['kind']} on http://{host}:{port} "
          f"(batches of up to {max_batch}, waiting {max_wait_ms:g} ms)", flush=True)
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning")
