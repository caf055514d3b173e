"""`genir` command line.

    genir data info --dataset ml-100k
    genir train --model sasrec --dataset ml-100k --out runs/sasrec [--config FILE.yaml] [key=value ...]
    genir eval --run runs/sasrec [--stage test]
    genir recommend --run runs/sasrec --user 196 -k 10
    genir demo
    genir index build --dataset ml-100k --scheme tokenizers/rqvae.yaml --out DIR | index info DIR | index add DIR --items F

Errors a user can cause (missing or malformed file, unknown setting, bad run dir) print one line on stderr and
exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from genir.errors import GenirError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _print_metrics(rows: dict[str, dict[str, float]], ks=(5, 10, 20)) -> None:
    from genir.eval import markdown_table

    cols = [f"{m}@{k}" for m in ("recall", "ndcg", "mrr", "hit") for k in ks]
    agg = {name: {c: {"mean": v[c], "std": 0.0, "n": 1} for c in cols if c in v} for name, v in rows.items()}
    print(markdown_table(agg, cols))


def cmd_data_info(args) -> int:
    from genir.data import k_core, load_dataset, make_split

    ds = load_dataset(args.dataset, items=args.items)
    if args.kcore:
        ds = k_core(ds, args.kcore)
    print(json.dumps({"dataset": ds.describe(), "split": make_split(ds, args.split).describe()}, indent=2))
    return 0


def cmd_train(args) -> int:
    from genir.runs import parse_overrides, read_yaml, resolve, train_run

    settings = read_yaml(args.config) if args.config else {}
    for flag in ("dataset", "split", "items", "kcore"):
        if getattr(args, flag) is not None:
            settings[flag] = getattr(args, flag)
    settings.update(parse_overrides(args.overrides))
    if args.out:
        settings["output_dir"] = args.out
    if args.seed is not None:
        settings["seed"] = args.seed
    spec, method, trainer = resolve(settings, model=args.model)
    _, result, results = train_run(spec, method, trainer)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch only rank 0 reports
        return 0
    print(f"best epoch {result.best_epoch}; valid {trainer.metric} {result.best_valid.get(trainer.metric, 0):.4f}; "
          f"{results['train_seconds']:.1f}s training, {results['total_seconds']:.1f}s total on {results['device']}")
    _print_metrics({f"{spec.model} (test)": results["test"]})
    if trainer.output_dir:
        print(f"run saved in {trainer.output_dir}")
    return 0


def cmd_eval(args) -> int:
    from genir.runs import evaluate_model, load_run

    model, split, info = load_run(args.run)
    metrics = evaluate_model(model, split, args.stage)
    _print_metrics({f"{info['spec']['model']} ({args.stage})": metrics})
    if args.json:
        print(json.dumps(metrics))
    return 0


def cmd_recommend(args) -> int:
    from genir.demo import show_recommendations
    from genir.runs import load_run

    model, split, _ = load_run(args.run)
    users = [split.dataset.user_index(u) for u in args.user]
    show_recommendations(model, split, users, k=args.k, stage=args.stage)
    return 0


def cmd_demo(args) -> int:
    from genir.demo import run_demo

    run_demo(quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genir", description="Generative retrieval and recommendation toolkit.")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command", required=True)
    info = data.add_parser("info", help="statistics of a dataset and its split")
    info.add_argument("--dataset", default="ml-100k", help="'ml-100k' or a path (GroupLens folder, .inter folder, "
                                                           "csv/tsv/parquet file)")
    info.add_argument("--items", default=None, help="item side-information file for a generic interactions file")
    info.add_argument("--split", default="loo", choices=["loo", "temporal"])
    info.add_argument("--kcore", type=int, default=0)
    info.set_defaults(func=cmd_data_info)

    tr = sub.add_parser("train", help="train a method, select on validation, report test metrics")
    tr.add_argument("--model", required=True, help="registered method name (pop, bpr, lightgcn, sasrec, ...)")
    tr.add_argument("--dataset", default=None)
    tr.add_argument("--items", default=None)
    tr.add_argument("--split", default=None, choices=["loo", "temporal"])
    tr.add_argument("--kcore", type=int, default=None)
    tr.add_argument("--config", default=None, help="YAML file of settings (overridden by key=value)")
    tr.add_argument("--out", default=None, help="run directory (checkpoints, best weights, log, results)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("overrides", nargs="*", help="key=value settings of the method or trainer, e.g. lr=1e-3")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="full-ranking metrics of a trained run")
    ev.add_argument("--run", required=True)
    ev.add_argument("--stage", default="test", choices=["valid", "test"])
    ev.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    ev.set_defaults(func=cmd_eval)

    rc = sub.add_parser("recommend", help="top-k items for users of a trained run, with titles")
    rc.add_argument("--run", required=True)
    rc.add_argument("--user", nargs="+", required=True, help="external user id(s)")
    rc.add_argument("-k", type=int, default=10)
    rc.add_argument("--stage", default="test", choices=["valid", "test"],
                    help="history cut-off: 'test' uses train+valid items as the history")
    rc.set_defaults(func=cmd_recommend)

    de = sub.add_parser("demo", help="train small models on MovieLens-100K and show recommendations")
    de.add_argument("--quick", action="store_true", help="fewer epochs (for tests)")
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


if __name__ == "__main__":
    sys.exit(main())
