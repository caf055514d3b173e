"""`genir` command line.

    genir data info --dataset ml-100k
    genir data debian --out corpora/debian-10k --docs 10000     (a BEIR folder with corpus steps D0..D3)
    genir train --model sasrec --dataset ml-100k --out runs/sasrec [--config FILE.yaml] [key=value ...]
    genir eval --run runs/sasrec [--stage test]
    genir recommend --run runs/sasrec --user 196 -k 10
    genir train --index DIR [key=value ...]        (TIGER on an index dir; the run is saved in DIR/model)
    genir retrieve --index DIR | --run RUN  --history 1,50,181 -k 10 | --user 196 | --batch FILE | --query TEXT
    genir eval --index DIR
    genir demo
    genir serve --index DIR [--port 8000]          (HTTP: POST /retrieve, GET /health, /info, /metrics)
    genir index build --dataset ml-100k --scheme tokenizers/rqvae.yaml --out DIR | index info DIR | index add DIR --items F
    genir index build --corpus BEIR_DIR --scheme tokenizers/hkmeans_docid.yaml --out DIR | index add DIR --corpus NEW
    genir retrieve --index DIR --query "image viewer" -k 10      (a document index: ids, synopses, scores)
    genir retrieve --index DIR --query "red apple" -k 5 [--save-grid out.png]   (an image index: ids, titles, scores)

Errors a user can cause (missing or malformed file, unknown setting, bad run dir) print one line on stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from genir.errors import GenirError
from genir.eval.report import print_metrics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cmd_data_info(args) -> int:
    from genir.data import k_core, load_dataset, make_split

    ds = load_dataset(args.dataset, items=args.items)
    if args.kcore:
        ds = k_core(ds, args.kcore)
    print(json.dumps({"dataset": ds.describe(), "split": make_split(ds, args.split).describe()}, indent=2))
    return 0


def cmd_data_debian(args) -> int:
    from genir.data.debian_corpus import debian_to_beir, find_snapshot

    summary = debian_to_beir(args.snapshot or find_snapshot(), args.out, docs=args.docs, seed=args.seed,
                             overwrite=args.overwrite)
    steps = ", ".join(f"D{s['step']} {s['documents']}" for s in summary["steps"])
    queries = ", ".join(f"{k} {v}" for k, v in summary["queries"].items())
    print(f"BEIR folder written to {args.out}: {summary['rows']['documents']} documents ({steps}); queries {queries}; "
          "rules and counts in genir_corpus.json")
    return 0


def _index_model_dir(index_dir: str) -> Path:
    return Path(index_dir) / "model"


def cmd_train(args) -> int:
    from genir.errors import ConfigError
    from genir.runs import parse_overrides, read_yaml, resolve, train_run

    settings = read_yaml(args.config) if args.config else {}
    for flag in ("dataset", "split", "items", "kcore"):
        if getattr(args, flag) is not None:
            settings[flag] = getattr(args, flag)
    settings.update(parse_overrides(args.overrides))
    model = args.model
    lock = contextlib.nullcontext()
    if args.index:
        from genir.index import index_lock, read_manifest

        manifest = read_manifest(args.index)  # refuses a dir that is not an index before any training
        settings["index"] = str(Path(args.index).resolve())
        model = model or "tiger"
        if "dataset" not in settings:  # the catalogue the index was built from
            ds = manifest.get("dataset") or {}
            if not ds:
                raise ConfigError(f"{args.index}: the index was built from a catalogue without interactions; "
                                  "`genir train --index` trains a recommender on a dataset's interactions")
            settings["dataset"] = ds.get("name") if ds.get("name") == "ml-100k" else ds.get("source")
        seen = (manifest.get("split") or {}).get("protocol", "")
        if "split" not in settings and seen.startswith(("temporal", "random")):
            settings["split"] = seen.split("(")[0]  # the interactions the index's IDs saw
        if not args.out:
            args.out = str(_index_model_dir(args.index))
        if args.resume:  # fine-tune the index's model, e.g. after `genir index add`
            previous = Path(args.out)
            if not (previous / "best_model.safetensors").is_file():
                raise ConfigError(f"--resume: no trained model in {previous} (train one with `genir train --index "
                                  f"{args.index}` first)")
            settings["init_from"] = str(_snapshot_run(previous))
        lock = index_lock(args.index)  # no `genir index add` while the model in DIR/model is written
    elif args.resume:
        settings["resume"] = "true"
    if args.out and not args.index:
        from genir.index import index_lock

        lock = index_lock(args.out)  # one writer per run dir: a second `genir train --out` there is refused
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch only rank 0 writes, and locks
        lock = contextlib.nullcontext()
    if not model and "model" not in settings:
        raise ConfigError("genir train: give --model NAME (or --index DIR to train tiger on an index)")
    if args.out:
        settings["output_dir"] = args.out
    if args.seed is not None:
        settings["seed"] = args.seed
    spec, method, trainer = resolve(settings, model=model)
    with lock:
        _, result, results = train_run(spec, method, trainer)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch only rank 0 reports
        return 0
    print(f"best epoch {result.best_epoch}; valid {trainer.metric} {result.best_valid.get(trainer.metric, 0):.4f}; "
          f"{results['train_seconds']:.1f}s training, {results['total_seconds']:.1f}s total on {results['device']}")
    print_metrics({f"{spec.model} (test)": results["test"]})
    if trainer.output_dir:
        print(f"run saved in {trainer.output_dir}")
    return 0


def _snapshot_run(run_dir: Path) -> Path:
    """A copy of a run's best weights beside it (``.<name>.init``), so the run dir can be rewritten by the
    fine-tuning that starts from them."""
    import shutil

    snap = run_dir.with_name(f".{run_dir.name}.init")
    shutil.rmtree(snap, ignore_errors=True)
    snap.mkdir(parents=True)
    shutil.copy2(run_dir / "best_model.safetensors", snap / "best_model.safetensors")
    return snap


def cmd_eval(args) -> int:
    from genir.errors import ConfigError
    from genir.runs import evaluate_model, load_run

    if args.index:
        args.run = str(_require_index_model(args.index))
    if not args.run:
        raise ConfigError("genir eval: give --run DIR (or --index DIR)")
    model, split, info = load_run(args.run)
    rows = {f"{info['spec']['model']} ({args.stage})": evaluate_model(model, split, args.stage)}
    out = {"metrics": next(iter(rows.values()))}
    if args.exact:
        if not hasattr(model, "exact_full_scores"):
            raise ConfigError(f"{args.run}: model {info['spec']['model']!r} has no exact mode (--exact is for "
                              "generative models over an index)")
        from genir.eval.agreement import ranking_agreement

        device = next(model.parameters()).device
        agree = ranking_agreement(split, lambda b: model.full_scores(b.to(device)),
                                  lambda b: model.exact_full_scores(b.to(device)), args.stage, k=10)
        rows[f"{info['spec']['model']} exact ({args.stage})"] = agree["metrics_exact"]
        out["agreement"] = agree
    for other in args.compare or []:
        m, s, i = load_run(other)
        if s.dataset.fingerprint() != split.dataset.fingerprint() or s.protocol != split.protocol:
            raise ConfigError(f"{other}: trained on another dataset or split than {args.run}; not comparable")
        rows[f"{i['spec']['model']} ({args.stage})"] = evaluate_model(m, s, args.stage)
        out.setdefault("compare", {})[other] = rows[f"{i['spec']['model']} ({args.stage})"]
    print_metrics(rows)
    if args.exact:
        a = out["agreement"]
        print(f"\nbeam vs exact top-10 over {a['users']} users: same list {a['same_top_k_list']:.1%}, same set "
              f"{a['same_top_k_set']:.1%}, mean overlap {a['mean_overlap']:.1%}, lists shorter than 10 "
              f"{a['short_lists']:.1%}; NDCG@10 beam - exact = "
              f"{a['metric_difference']['ndcg@10']:+.4f}")
    if args.json:
        print(json.dumps(out if len(out) > 1 else out["metrics"]))
    return 0


def cmd_recommend(args) -> int:
    from genir.demo import show_recommendations
    from genir.runs import load_run

    model, split, _ = load_run(args.run)
    users = [split.dataset.user_index(u) for u in args.user]
    show_recommendations(model, split, users, k=args.k, stage=args.stage)
    return 0


def _require_index_model(index_dir: str) -> Path:
    from genir.errors import CheckpointError

    model_dir = _index_model_dir(index_dir)
    if not (model_dir / "run.json").is_file():
        raise CheckpointError(f"no trained model in {model_dir}: run `genir train --index {index_dir}` first")
    return model_dir


def _retrieve_queries(args, split, ids: list[str]) -> list[tuple[str, list[int]]]:
    """(label, internal item history) per query of ``--history``, ``--user`` or ``--batch``; ``ids``: the
    external id of every item the model knows (items added to its index included)."""
    from genir.errors import ConfigError, DatasetError

    ds = split.dataset
    position = {x: i for i, x in enumerate(ids)}

    def from_items(text: str) -> list[int]:
        out = []
        for x in (x.strip() for x in text.split(",")):
            if x and x not in position:
                raise DatasetError(f"{ds.name}: unknown item id {x!r}")
            if x:
                out.append(position[x])
        return out

    def from_user(user: str) -> tuple[str, list[int], int]:
        u = ds.user_index(user)
        return f"user {user}", [int(i) for i in split.histories("test")[u]], u

    if args.history is not None:
        return [(f"history {args.history}", from_items(args.history), None)]
    if args.user is not None:
        return [from_user(args.user)]
    path = Path(args.batch)
    if not path.is_file():
        raise ConfigError(f"{path}: batch file not found")
    queries = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("user:"):
            queries.append(from_user(line[5:].strip()))
        else:
            queries.append((f"history {line}", from_items(line), None))
    if not queries:
        raise ConfigError(f"{path}: no queries (one per line: item ids separated by commas, or user:ID)")
    return queries


def cmd_retrieve(args) -> int:
    """One retrieval interface for every trained model: generative ones decode with the constrained beam search
    (history excluded inside the search), score-based ones rank the catalogue (history masked)."""
    from genir.errors import ConfigError
    from genir.runs import load_run

    if bool(args.index) == bool(args.run):
        raise ConfigError("genir retrieve: give --index DIR (its trained model) or --run RUN")
    if args.index:
        from genir.methods.avg.pipeline import ImageIndex
        from genir.methods.dsi.document_index import DocumentIndex

        if ImageIndex.is_image_index(args.index):
            return _retrieve_images(args)
        if DocumentIndex.is_document_index(args.index):
            return _retrieve_documents(args)
    if getattr(args, "save_grid", None):
        raise ConfigError("--save-grid draws the images an image index returns (genir index build --images)")
    run_dir = _require_index_model(args.index) if args.index else Path(args.run)
    model, split, info = load_run(run_dir)
    if args.k < 1:
        raise ConfigError(f"-k must be >= 1, got {args.k}")
    if args.query is not None:
        if not callable(getattr(model, "retrieve", None)):
            raise ConfigError(f"{run_dir}: model {info['spec']['model']!r} retrieves from item histories "
                              "(--history, --user, --batch); --query TEXT needs a text-to-ID model")
        answer = model.retrieve([args.query], k=args.k)
        queries = [(f"query {args.query!r}", None, None)]
        results = [[(int(i), float(s)) for i, s in zip(answer.items[0].tolist(), answer.scores[0].tolist()) if i >= 0]]
    from genir.runs import item_names

    ids, titles = item_names(model, split)
    if args.query is None:
        queries = _retrieve_queries(args, split, ids)
        results = model.recommend([h for _, h, _ in queries], k=args.k, users=[u for _, _, u in queries])
    for (label, _, _), found in zip(queries, results):
        print(f"# {label}")
        for rank, (item, score) in enumerate(found, 1):
            added = "  (added to the index)" if item >= split.num_items else ""
            print(f"{rank:3d}  {ids[item]}  {titles[item]}  {score:.4f}{added}")
    return 0


def _retrieve_documents(args) -> int:
    """``genir retrieve --index DIR --query TEXT`` on a document index: document ids, synopses/titles, scores."""
    from genir.errors import ConfigError
    from genir.methods.dsi.document_index import DocumentIndex

    if args.query is None or args.history is not None or args.user is not None or args.batch is not None:
        raise ConfigError(f"{args.index}: a document index answers text queries: give --query TEXT")
    if args.k < 1:
        raise ConfigError(f"-k must be >= 1, got {args.k}")
    index = DocumentIndex(args.index)
    print(f"# query {args.query!r}")
    for rank, (doc, text, score) in enumerate(index.search([args.query], k=args.k)[0], 1):
        print(f"{rank:3d}  {doc}  {text}  {score:.4f}")
    return 0


def _retrieve_images(args) -> int:
    """``genir retrieve --index DIR --query TEXT`` on an image index: image ids, titles, voken-sequence scores;
    ``--save-grid`` draws them."""
    from genir.errors import ConfigError
    from genir.methods.avg.pipeline import ImageIndex

    if args.query is None or args.history is not None or args.user is not None or args.batch is not None:
        raise ConfigError(f"{args.index}: an image index answers text queries: give --query TEXT")
    if args.k < 1:
        raise ConfigError(f"-k must be >= 1, got {args.k}")
    index = ImageIndex(args.index)
    found = index.search([args.query], k=args.k)[0]
    print(f"# query {args.query!r}")
    for rank, (_, image_id, title, score) in enumerate(found, 1):
        print(f"{rank:3d}  {image_id}  {title}  {score:.4f}")
    if args.save_grid:
        from genir.methods.avg.grid import save_grid

        row = [(index.image(i), title, score, None) for i, _, title, score in found]
        print(f"grid written to {save_grid([(args.query, row)], args.save_grid)}")
    return 0


def cmd_serve(args) -> int:
    from genir.serve import serve

    if bool(args.index) == bool(args.run):
        from genir.errors import ConfigError

        raise ConfigError("genir serve: give --index DIR (a document index, or an index with its model) or --run RUN")
    serve(args.index, args.run, host=args.host, port=args.port, max_batch=args.max_batch,
          max_wait_ms=args.max_wait_ms)
    return 0


def cmd_demo(args) -> int:
    from genir.demo import run_demo

    run_demo(quick=args.quick, out=args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genir", description="Generative retrieval and recommendation toolkit.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command", required=True)
    info = data.add_parser("info", help="statistics of a dataset and its split")
    info.add_argument("--dataset", default="ml-100k", help="'ml-100k' or a path (GroupLens folder, .inter folder, "
                                                           "csv/tsv/parquet file)")
    info.add_argument("--items", default=None, help="item side-information file for a generic interactions file")
    info.add_argument("--split", default="loo", choices=["loo", "temporal", "random"])
    info.add_argument("--kcore", type=int, default=0)
    info.set_defaults(func=cmd_data_info)
    deb = data.add_parser("debian", help="convert the Debian package-descriptions snapshot into a BEIR folder with "
                          "corpus steps (documents: descriptions; queries: synopses)")
    deb.add_argument("--out", required=True, help="BEIR folder to write")
    deb.add_argument("--docs", type=int, default=None, help="a fixed random subset of this many packages (default: "
                     "all)")
    deb.add_argument("--snapshot", default=None, help="the .jsonl.gz snapshot (default: $GENIR_DEBIAN_DESCRIPTIONS "
                     "or ../shared/data/)")
    deb.add_argument("--seed", type=int, default=0)
    deb.add_argument("--overwrite", action="store_true")
    deb.set_defaults(func=cmd_data_debian)

    tr = sub.add_parser("train", help="train a method, select on validation, report test metrics")
    tr.add_argument("--model", default=None, help="registered method name (pop, bpr, lightgcn, sasrec, tiger, ...)")
    tr.add_argument("--index", default=None, help="index dir (genir index build): sets index=DIR, the model "
                                                  "(default tiger), the dataset and --out (default DIR/model)")
    tr.add_argument("--dataset", default=None)
    tr.add_argument("--items", default=None)
    tr.add_argument("--split", default=None, choices=["loo", "temporal", "random"])
    tr.add_argument("--kcore", type=int, default=None)
    tr.add_argument("--config", default=None, help="YAML file of settings (overridden by key=value)")
    tr.add_argument("--out", default=None, help="run directory (checkpoints, best weights, log, results)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--resume", action="store_true",
                    help="with --index: fine-tune the index's trained model (after `genir index add`: new items "
                         "keep their IDs, the generator keeps its weights); otherwise continue an interrupted run "
                         "from --out's checkpoint (resume=true)")
    tr.add_argument("overrides", nargs="*", help="key=value settings of the method or trainer, e.g. lr=1e-3")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="full-ranking metrics of a trained run")
    ev.add_argument("--run", default=None)
    ev.add_argument("--index", default=None, help="evaluate the model trained on this index dir (DIR/model)")
    ev.add_argument("--stage", default="test", choices=["valid", "test"])
    ev.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    ev.add_argument("--exact", action="store_true",
                    help="generative models: also rank by the exact log-probability of every ID and report how "
                         "often the beam's top-10 agrees with it")
    ev.add_argument("--compare", nargs="+", default=None, metavar="RUN",
                    help="other run dirs (same dataset and split) evaluated into the same table, e.g. a SASRec run")
    ev.set_defaults(func=cmd_eval)

    rc = sub.add_parser("recommend", help="top-k items for users of a trained run, with titles")
    rc.add_argument("--run", required=True)
    rc.add_argument("--user", nargs="+", required=True, help="external user id(s)")
    rc.add_argument("-k", type=int, default=10)
    rc.add_argument("--stage", default="test", choices=["valid", "test"],
                    help="history cut-off: 'test' uses train+valid items as the history")
    rc.set_defaults(func=cmd_recommend)

    rt = sub.add_parser("retrieve", help="top-k items of a trained model: decoded from an index dir's model "
                                         "(DIR/model) or ranked by any run")
    rt.add_argument("--index", default=None, help="index dir whose trained model (DIR/model) decodes IDs")
    rt.add_argument("--run", default=None, help="any run dir (generative or score-based)")
    query = rt.add_mutually_exclusive_group(required=True)
    query.add_argument("--history", default=None, help="external item ids in time order, e.g. 1,50,181")
    query.add_argument("--user", default=None, help="external user id (history: train + valid items)")
    query.add_argument("--batch", default=None, help="file, one query per line: item ids (a,b,c) or user:ID")
    query.add_argument("--query", default=None, help="a text query, for text-to-ID models over a text catalogue")
    rt.add_argument("-k", type=int, default=10)
    rt.add_argument("--save-grid", default=None, metavar="PNG", help="an image index: draw the query's top-k images")
    rt.set_defaults(func=cmd_retrieve)

    sv = sub.add_parser("serve", help="retrieval over HTTP: POST /retrieve, GET /health, /info, /metrics; "
                        "concurrent requests are batched into one model call")
    sv.add_argument("--index", default=None, help="an index dir (its model in DIR/model, or a document index)")
    sv.add_argument("--run", default=None, help="a run dir instead")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-batch", type=int, default=64, help="requests per model call at most")
    sv.add_argument("--max-wait-ms", type=float, default=0.0,
                    help="how long a batch waits for more requests (default 0: the requests that queued while the "
                         "model was busy form the next batch)")
    sv.set_defaults(func=cmd_serve)
    de = sub.add_parser("demo", help="semantic-ID index, a small generator and SASRec on MovieLens-100K: "
                                     "recommendations side by side, index stats, metrics")
    de.add_argument("--quick", action="store_true", help="one epoch each (for tests)")
    de.add_argument("--out", default="runs/demo", help="where the index dir and runs are written")
    de.set_defaults(func=cmd_demo)

    from genir.cli_index import add_index_commands

    add_index_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GenirError as exc:
        print(f"genir: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only or vanished folder: the file and the reason, no traceback
        where = "genir" if exc.filename is None else str(exc.filename)
        if exc.filename2 is not None:  # a copy or a rename: both ends
            where += f" -> {exc.filename2}"
        print(f"genir: error: {where}: {exc.strerror or exc} (errno {exc.errno})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
