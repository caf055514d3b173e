"""The same recipes under two protocols, side by side: leave-one-out by time (RecBole's; the next item) and MMRec's
random 80/10/10 per user (what MMGRec, MetaMMF, MIG-GT and AD-DRL report; several held-out items per user).

    python benchmarks/protocols.py        # reads the committed results.json of each recipe under both protocols

Reads ``benchmarks/results/<recipe>/results.json`` (leave-one-out; for the baselines, the same settings' rows in
the MIG-GT and MMGRec runs) and
``benchmarks/results/<recipe>/random/results.json`` (random), as written by ``recipes/<recipe>.py --protocol ...``,
and writes ``benchmarks/results/protocols.md`` and ``protocols.json``: per recipe, test NDCG@10 / Recall@10 /
NDCG@20 / Recall@20 (mean ± std over the seeds) under each protocol, and each protocol's ordering of the methods.
Nothing is trained here; every figure is one of those files'.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPES = {  # recipe: (leave-one-out results, random results)
    # the baselines' leave-one-out rows are those of the same settings and seeds in the MIG-GT and MMGRec runs
    "baselines": ("miggt:pop,bpr,lightgcn+mmgrec:sasrec", "baselines/random"),
    "mmgrec": ("mmgrec", "mmgrec/random"),
    "metammf": ("metammf", "metammf/random"),
    "miggt": ("miggt", "miggt/random"),
    "addrl": ("addrl", "addrl/random"),
}
METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")


def _read(where: str) -> dict | None:
    """A recipe's results.json under RESULTS, or ``folder:m1,m2+folder2:m3``: the named methods' rows of
    several runs merged (their commands joined)."""
    if ":" not in where:
        path = RESULTS / where / "results.json"
        return json.loads(path.read_text()) if path.is_file() else None
    merged: dict = {"test": {}, "commands": [], "split": {}, "seeds": None}
    for part in where.split("+"):
        folder, methods = part.split(":")
        res = _read(folder)
        if res is None:
            return None
        merged["test"].update({m: res["test"][m] for m in methods.split(",")})
        merged["commands"].append(f"{res['command']} ({methods})")
        merged["split"], merged["seeds"] = res["split"], res["seeds"]
    merged["command"] = "; ".join(merged.pop("commands"))
    return merged


def _cell(stats: dict | None) -> str:
    return "-" if not stats else f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def compare(recipe: str, loo: dict | None, rnd: dict | None) -> dict:
    methods = list(dict.fromkeys([*(loo or {}).get("test", {}), *(rnd or {}).get("test", {})]))
    rows = {m: {p: {k: (res or {}).get("test", {}).get(m, {}).get(k) for k in METRICS}
                for p, res in (("loo", loo), ("random", rnd))} for m in methods}
    order = {p: sorted([m for m in methods if rows[m][p]["ndcg@10"]], key=lambda m: -rows[m][p]["ndcg@10"]["mean"])
             for p in ("loo", "random")}
    info = {p: {"split": (res or {}).get("split", {}).get("protocol"), "seeds": (res or {}).get("seeds"),
                "command": (res or {}).get("command")} for p, res in (("loo", loo), ("random", rnd))}
    return {"recipe": recipe, "rows": rows, "order_by_test_ndcg@10": order, "runs": info}


def markdown(cmp: dict) -> str:
    lines = [f"### {cmp['recipe']}", ""]
    for p in ("loo", "random"):
        r = cmp["runs"][p]
        lines.append(f"- {p}: `{r['command']}` ({r['split']}, seeds {r['seeds']})" if r["command"] else
                     f"- {p}: not run")
    lines += ["", "| method | " + " | ".join(f"loo {k}" for k in METRICS[:2]) + " | "
              + " | ".join(f"random {k}" for k in METRICS) + " |",
              "|---|" + "---|" * 6]
    for m, row in cmp["rows"].items():
        cells = [_cell(row["loo"][k]) for k in METRICS[:2]] + [_cell(row["random"][k]) for k in METRICS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Ordering by test NDCG@10: leave-one-out " + " > ".join(cmp["order_by_test_ndcg@10"]["loo"])
              + "; random " + " > ".join(cmp["order_by_test_ndcg@10"]["random"]), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS / "protocols"))
    args = p.parse_args(argv)
    out = []
    for recipe, (loo, rnd) in RECIPES.items():
        out.append(compare(recipe, _read(loo), _read(rnd)))
    text = ("# Leave-one-out vs MMRec's random split, test metrics on MovieLens-100K\n\n"
            "Full ranking over all items, training items masked; mean ± std over seeds. Leave-one-out has one "
            "held-out item per user (the next one); random holds out 10% of each user's items, so its Recall@K "
            "divides by that number and its NDCG@K by the ideal DCG of min(K, that number) (MMRec's definitions). "
            "The two protocols' figures are not comparable with each other, only their orderings are.\n\n"
            "Generated by `python benchmarks/protocols.py` from each recipe's committed results.json.\n\n"
            + "\n".join(markdown(c) for c in out))
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
