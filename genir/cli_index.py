"""``genir index`` commands: build, inspect and extend an index dir (:mod:`genir.index`).

    genir index build --dataset ml-100k --scheme tokenizers/rq_kmeans.yaml --out indexes/ml100k [--split temporal]
                      [key=value ...]
    genir index build --corpus BEIR_DIR --scheme tokenizers/hkmeans_docid.yaml --out indexes/docs [--step 0]
                      [--model atomic|semantic] [--train epochs=1 ...]      (documents + their DSI model)
    genir index build --images openclipart-0.18-64px.npz [--captions F.jsonl.gz] --scheme tokenizers/voken.yaml
                      --out indexes/clipart [--encoder efficientnet-lite] [--train epochs=30 ...]
                      (images + their AVG generator; --images FOLDER --captions KARPATHY.json for Flickr30k/COCO)
    genir index info indexes/ml100k [--json]
    genir index add indexes/ml100k --items new_items.csv [--features new.npy]
    genir index add indexes/docs --corpus NEW_BEIR_DIR [--step 1]            (PromptDSI's update, no rebuild)

:func:`add_index_commands` registers them on ``genir``'s subparsers; :func:`main` runs the full ``genir`` parser
with them added (errors a user can cause: one line on stderr, exit status 2, as :func:`genir.cli.main`; so is a
second writer of a dir another process is writing, :class:`genir.index.IndexLockedError`).
"""

from __future__ import annotations

import argparse
import json

from genir.errors import ConfigError


def _pairs(values, what: str) -> dict[str, str]:
    out = {}
    for pair in values or []:
        if "=" not in pair:
            raise ConfigError(f"{what} {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def cmd_index_build(args) -> int:
    from genir.index import build_index, index_info

    overrides = _pairs(args.overrides, "override")
    if args.images:
        return _build_images(args, overrides)
    if args.captions or args.encoder or args.limit is not None:
        raise ConfigError("--captions, --encoder and --limit belong to an image index (--images PATH)")
    if args.corpus:
        return _build_documents(args, overrides)
    if args.train or args.step is not None or args.model:
        raise ConfigError("--train, --step and --model belong to a document index (--corpus PATH)")
    out = build_index(args.dataset or "ml-100k", args.scheme, args.out, overrides, progress=not args.quiet,
                      features=args.features, items=args.items, overwrite=args.overwrite, split=args.split)
    info = index_info(out)
    print(f"index written to {out}: {info['n_items']} items, scheme {info['scheme']}, IDs of length "
          f"{info['id_length']} (level sizes {info['level_sizes']}), collision rate "
          f"{info['stats']['collision_rate']:.2%}, {_bytes(info['total_bytes'])}")
    return 0


def _build_documents(args, overrides: dict) -> int:
    from genir.index import index_info
    from genir.methods.dsi.document_index import build_document_index

    if args.items or args.features or args.dataset:
        raise ConfigError("--corpus builds a document index from a BEIR folder; --dataset, --items and --features "
                          "belong to item indexes")
    result = build_document_index(args.corpus, args.scheme, args.out, model=args.model or "atomic",
                                  settings=_pairs(args.train, "--train"), overrides=overrides, step=args.step,
                                  pseudo=args.pseudo, overwrite=args.overwrite, progress=not args.quiet)
    info = index_info(result["index"])
    train = result["training"]
    print(f"document index written to {result['index']}: {info['n_items']} documents, docids of length "
          f"{info['id_length']} (level sizes {info['level_sizes']}); {result['model']} DSI trained on "
          f"{train['pairs']} pairs in {train['seconds']:.0f} s (loss {' -> '.join(f'{x:.3f}' for x in train['losses'])})")
    return 0


def _build_images(args, overrides: dict) -> int:
    from genir.index import index_info
    from genir.methods.avg.pipeline import build_image_index

    if args.corpus or args.items or args.features or args.dataset or args.step is not None or args.model:
        raise ConfigError("--images builds an image index; --corpus, --dataset, --items, --features, --step and "
                          "--model belong to other indexes")
    result = build_image_index(args.images, args.scheme, args.out, captions=args.captions,
                               settings=_pairs(args.train, "--train"), overrides=overrides,
                               encoder=args.encoder or "efficientnet-lite", overwrite=args.overwrite,
                               progress=not args.quiet, limit=args.limit)
    info = index_info(result["index"])
    train = result["training"]
    print(f"image index written to {result['index']}: {info['n_items']} images, vokens of length "
          f"{info['id_length']} (level sizes {info['level_sizes']}, collision rate "
          f"{info['stats']['collision_rate']:.2%}); AVG generator trained in {train['seconds']:.0f} s, valid "
          f"Recall@10 {train['valid'].get('hits@10', float('nan')):.3f} (two-tower {result['two_tower_valid'].get('hits@10', float('nan')):.3f})")
    return 0


def cmd_index_info(args) -> int:
    from genir.index import index_info

    info = index_info(args.dir)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(format_info(info))
    return 0


def cmd_index_add(args) -> int:
    from genir.index import add_items

    if bool(args.items) == bool(args.corpus):
        raise ConfigError("genir index add: give --items FILE (items) or --corpus PATH (documents)")
    if args.corpus:
        if args.features:
            raise ConfigError("--features belongs to --items; a document corpus is embedded by the index's encoder")
        from genir.methods.dsi.document_index import add_document_corpus

        result = add_document_corpus(args.dir, args.corpus, step=args.step, progress=not args.quiet)
        train = result["training"]
        print(f"added {result['added']} document(s) to {result['index']}: now {result['n_items']} documents; "
              f"PromptDSI update: {train['trained_parameters']:,} parameters trained on {train['pairs']} pairs in "
              f"{train['seconds']:.0f} s (loss {' -> '.join(f'{x:.3f}' for x in train['losses'])})"
              + (f"; {result['pool']}" if result.get("pool") else ""))
        return 0
    if args.step is not None:
        raise ConfigError("--step belongs to --corpus")
    result = add_items(args.dir, args.items, features=args.features, progress=not args.quiet)
    print(f"added {result['added']} item(s) to {result['index']}: now {result['n_items']} items, level sizes "
          f"{result['level_sizes']}")
    return 0


def format_info(info: dict) -> str:
    """A readable summary of :func:`genir.index.index_info`: header lines and a per-level table."""
    stats = info["stats"]
    ds = info.get("dataset") or {}
    cat = info.get("catalogue") or {}
    feats = info.get("features") or {}
    lines = [
        (f"index        {info['path']} (format {info['format_version']}, genir {info.get('genir_version')}, "
         f"created {info.get('created_at')})"),
        (f"catalogue    {cat.get('name')}: {cat.get('n_items')} items at build, columns "
         f"{', '.join(info.get('item_columns') or []) or '-'} (fingerprint {cat.get('fingerprint')})"),
        f"dataset      {ds.get('name')} (fingerprint {ds.get('fingerprint')})" if ds else
        "dataset      none (a catalogue without interactions)",
        (f"scheme       {info['scheme']} on {feats.get('name')} features (d = {feats.get('dim')}), "
         f"collision {info.get('collision')}"),
        f"split        {_split_line(info.get('split')) if ds else 'none (no interactions)'}",
        f"items        {info['n_items']} ({info.get('added', 0)} addition(s) since build)",
        f"IDs          length {info['id_length']}, level sizes {info['level_sizes']}, vocab {stats['vocab_size']}",
        (f"collisions   rate {stats['collision_rate']:.2%}, colliding items {stats['colliding_fraction']:.2%}, "
         f"max group {stats['max_group']}"),
        "",
        "| level | size | used | utilisation | perplexity | semantic |",
        "|---|---|---|---|---|---|",
    ]
    for lv in stats["levels"]:
        lines.append(f"| {lv['level']} | {lv['size']} | {lv['used']} | {lv['utilisation']:.1%} | "
                     f"{lv['perplexity']:.1f} | {'yes' if lv['semantic'] else 'no'} |")
    shared = info.get("shared_codebook")
    if shared:
        lines.append(f"codebook     one shared by the {shared['levels']} semantic levels: {shared['used']} of "
                     f"{shared['size']} codes used ({shared['utilisation']:.1%}), perplexity "
                     f"{shared['perplexity']:.1f}")
    lines.append("")
    lines.append("disk         " + ", ".join(f"{k} {_bytes(v)}" for k, v in info["disk_bytes"].items())
                 + f"; total {_bytes(info['total_bytes'])}")
    return "\n".join(lines)


def _split_line(split: dict | None) -> str:
    if not split:
        return "not recorded (built before genir recorded it: leave-one-out)"
    cutoff = "" if split.get("cutoff") is None else f" before {split['cutoff']:g}"
    used = ", ".join(split.get("used_for") or []) or "nothing (no interactions read)"
    return (f"{split.get('protocol')}: {split.get('train_interactions')} training interactions{cutoff} "
            f"(sha256 {str(split.get('train_fingerprint'))[:12]}), used for {used}")


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def add_index_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``index build|info|add`` on ``genir``'s subparsers; returns the ``index`` parser."""
    index = subparsers.add_parser("index", help="build, inspect and extend a semantic-ID index dir")
    sub = index.add_subparsers(dest="index_command", required=True)

    b = sub.add_parser("build", help="fit an identifier scheme on a dataset (or a document corpus, with its DSI "
                       "model) and write an index dir")
    b.add_argument("--dataset", default=None, help="'ml-100k' (default) or a path (see genir data info)")
    b.add_argument("--corpus", default=None, help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/): index its "
                   "documents and train a DSI on them, e.g. with --scheme tokenizers/hkmeans_docid.yaml")
    b.add_argument("--model", default=None, choices=["atomic", "semantic"], help="with --corpus: DSI with a "
                   "classifier row per document (default; extended by `index add --corpus`) or decoding the docids")
    b.add_argument("--step", type=int, default=None, help="with --corpus: index only this step of its steps.tsv")
    b.add_argument("--pseudo", type=int, default=2, help="with --corpus: pseudo-queries per document (default 2)")
    b.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                   help="with --corpus: DSI settings, e.g. --train epochs=1 --train max_length=32; with --images: "
                        "AVG settings (genir.methods.avg.AVGConfig), e.g. --train epochs=30")
    b.add_argument("--images", default=None, help="an .npz image archive (clip-art format, with --captions "
                   "F.jsonl.gz) or a folder of images (with --captions KARPATHY.json): index the images with a "
                   "voken spec and train AVG's generator on their training captions")
    b.add_argument("--captions", default=None, help="with --images: the captions file")
    b.add_argument("--encoder", default=None, help="with --images: registered image encoder (default "
                   "efficientnet-lite, ImageNet-pretrained; hf takes a model folder)")
    b.add_argument("--limit", type=int, default=None, help="with --images: index only the first N usable images")
    b.add_argument("--items", default=None, help="item side-information file for a generic interactions file")
    b.add_argument("--scheme", required=True, help="identifier spec, e.g. tokenizers/rq_kmeans.yaml")
    b.add_argument("--out", required=True, help="index dir to write")
    b.add_argument("--features", default=None, help=".npy/.parquet item feature matrix instead of the spec's")
    b.add_argument("--split", default="loo", choices=["loo", "temporal", "random"],
                   help="split whose training interactions give popularity, CF features and the graph (default "
                        "loo); use the protocol the models on this index are evaluated with")
    b.add_argument("--overwrite", action="store_true", help="replace an existing index dir")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("overrides", nargs="*", help="spec overrides key=value, e.g. codebook_size=32")
    b.set_defaults(func=cmd_index_build)

    i = sub.add_parser("info", help="what an index dir holds: sizes, ID statistics, collisions")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true", help="print the full report as JSON")
    i.set_defaults(func=cmd_index_info)

    a = sub.add_parser("add", help="give new items (or a new document corpus) IDs with the fitted scheme (no "
                       "refit)")
    a.add_argument("dir")
    a.add_argument("--items", default=None, help="csv/tsv/parquet with 'item' and the side columns")
    a.add_argument("--corpus", default=None, help="a BEIR folder of new documents for a document index: they get "
                   "docids and the DSI model PromptDSI's update (prompts + their rows; no rebuild)")
    a.add_argument("--step", type=int, default=None, help="with --corpus: add only this step of its steps.tsv")
    a.add_argument("--features", default=None, help=".npy/.parquet feature matrix of the new items (file order)")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=cmd_index_add)
    return index
