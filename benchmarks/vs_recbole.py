"""genir vs RecBole 1.2.1, side by side in one process, on the same protocol: MovieLens-100K (the copy inside the
recbole wheel, no filtering, no rating threshold), leave-one-out by time (last interaction test, second last
valid), full ranking with the user's history masked, early stopping on validation NDCG@10.

For each model (BPR, SASRec) and each library it records the set-up time (data loading and splitting, model and
trainer construction), every training epoch's time, the fit wall time until early stopping, the wall time from the
start of fit until the best validation NDCG@10 was measured, the best epoch, and test NDCG@10 / Recall@10 / MRR@10
/ Hit@10 of the best model. Ratios are genir / RecBole for metrics and RecBole / genir for times (> 1: genir is
faster). It also checks that both libraries put the same (user, item) pairs in valid and test.

Each library trains with its own defaults for the model (learning rate, batch size, sampling, stopping rule):

* RecBole: ``train_batch_size=2048``, its default ``learning_rate=1e-3``, ``stopping_step=10`` (it stops after
  *11* validations without a strict improvement; a tie counts as an improvement), ``metric_decimal_place=6``.
  SASRec uses ``loss_type='CE'``, ``MAX_ITEM_LIST_LENGTH=50`` and one training example per prefix of every
  sequence.
* genir: ``trainer_defaults`` of the method (its own learning rate and weight decay; BPR: batch 2048; SASRec:
  batch 128 of 51-item windows, so one epoch covers every training interaction once), early stopping after 10
  validations without improvement. Both settings are written to the JSON.

RecBole's SASRec needs about 170-250 s per epoch on 2 idle CPU cores (400-500 s when other processes compete for
them) and dozens of epochs to stop early, so its epochs are capped by default (``--recbole-epochs sasrec=5``).
A capped RecBole run has not converged: its best epoch and time-to-best are lower bounds and its test metrics are
not those of a trained model; the JSON says so (``recbole.capped``, ``comparison.note``) and adds how long genir
needed to reach RecBole's best validation NDCG@10.

The two libraries' held-out pairs differ for a handful of users: see ``HOLDOUT_DIFFERENCE_NOTE``.

Results go to ``benchmarks/results/vs_recbole-<YYYYmmdd-HHMM>.json`` (rewritten after each model, so a run that
dies keeps what finished) and, for a complete non-quick run, to ``benchmarks/results/vs_recbole.json``.

    python benchmarks/vs_recbole.py                               # BPR and SASRec, RecBole SASRec capped at 5
    python benchmarks/vs_recbole.py --models bpr --recbole-epochs none
    python benchmarks/vs_recbole.py --quick                       # 2 epochs each, smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

# On a 2-core machine shared with other processes, OpenMP threads that spin while waiting make training with
# many small ops (BPR) 10-100x slower; passive waiting costs little otherwise. Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import recbole_compat  # installs the shims RecBole needs, before anything imports it
import torch

from genir.data import leave_one_out, load_dataset
from genir.methods import build_method
from genir.runs import environment
from genir.training import Trainer, TrainerConfig

RESULTS_DIR = BENCH_DIR / "results"
MODELS = ("bpr", "sasrec")
RECBOLE_MODEL_NAMES = {"bpr": "BPR", "sasrec": "SASRec"}
DEFAULT_RECBOLE_EPOCH_CAPS = "sasrec=5"
REPORTED_METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit@10")
VALID_METRIC = "ndcg@10"
QUICK_EPOCHS = 2


def recbole_config_dict(model: str, seed: int, epochs: int | None, checkpoint_dir: str) -> dict:
    """RecBole settings for the shared protocol (see the module docstring)."""
    config = {
        "data_path": str(recbole_compat.recbole_dataset_dir()),
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        "val_interval": None,
        "threshold": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "MRR", "Hit"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 6,
        "seed": seed,
        "reproducibility": True,
        "stopping_step": 10,
        "train_batch_size": 2048,
        "show_progress": False,
        "checkpoint_dir": checkpoint_dir,
    }
    if model == "sasrec":
        config.update({"MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "train_neg_sample_args": None})
    if epochs is not None:
        config["epochs"] = epochs
    return config


def summarize_epochs(seconds: list[float]) -> dict:
    """Per-epoch training times: every value plus mean, median and the mean without the first (warm-up) epoch."""
    return {
        "count": len(seconds),
        "mean_s": statistics.fmean(seconds) if seconds else None,
        "median_s": statistics.median(seconds) if seconds else None,
        "mean_after_first_s": statistics.fmean(seconds[1:]) if len(seconds) > 1 else None,
        "all_s": [round(s, 4) for s in seconds],
    }


def external_pairs(user_ids, item_ids) -> set[tuple[str, str]]:
    return {(str(u), str(i)) for u, i in zip(user_ids, item_ids)}


@contextlib.contextmanager
def hidden_command_line():
    """RecBole's Config reads ``--key=value`` settings from sys.argv; this script's own options are not for it."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


def run_recbole(model: str, seed: int, epochs: int | None) -> tuple[dict, dict[str, set]]:
    """Train and test one RecBole model; returns (results, the external (user, item) pairs of valid and test).

    RecBole writes ``log_tensorboard/`` and checkpoints into the working directory, so it runs inside a
    temporary directory. Its pandas-3 warnings (in-place ``fillna`` on a copy, a no-op that does not matter
    here since ML-100K has no missing values) and torch deprecation warnings are silenced.
    """
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    with tempfile.TemporaryDirectory(prefix="recbole_bench_") as workdir, contextlib.chdir(workdir), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_setup = time.perf_counter()
        with hidden_command_line():
            config = Config(model=RECBOLE_MODEL_NAMES[model], dataset="ml-100k",
                            config_dict=recbole_config_dict(model, seed, epochs, workdir))
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])  # as run_recbole does
        net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
        setup_seconds = time.perf_counter() - t_setup

        train_seconds: list[float] = []
        epochs_log: list[dict] = []
        train_epoch = trainer._train_epoch

        def timed_train_epoch(*args, **kwargs):
            t0 = time.perf_counter()
            loss = train_epoch(*args, **kwargs)
            train_seconds.append(time.perf_counter() - t0)
            return loss

        def record_validation(epoch_idx: int, valid_score: float) -> None:
            # called by RecBole's fit after early_stopping(); cur_step == 0 means this epoch became the best
            now = time.perf_counter() - t_fit
            epochs_log.append({"epoch": epoch_idx + 1, "train_s": round(train_seconds[-1], 4),
                               "valid_ndcg@10": float(valid_score), "elapsed_s": round(now, 3),
                               "is_best": trainer.cur_step == 0})
            print(f"  recbole {model} epoch {epoch_idx + 1:3d}  train {train_seconds[-1]:7.2f}s  "
                  f"valid ndcg@10 {valid_score:.4f}{'  *' if trainer.cur_step == 0 else ''}  ({now:.0f}s)",
                  flush=True)

        trainer._train_epoch = timed_train_epoch
        t_fit = time.perf_counter()
        best_score, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                                             callback_fn=record_validation)
        fit_seconds = time.perf_counter() - t_fit
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)

        best = [e for e in epochs_log if e["is_best"]][-1]
        stopped_early = len(epochs_log) < config["epochs"]
        uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
        pairs = {}
        for stage, loader in (("valid", valid_data), ("test", test_data)):
            inter = loader._dataset.inter_feat
            pairs[stage] = external_pairs(dataset.id2token(uid, inter[uid].numpy()),
                                          dataset.id2token(iid, inter[iid].numpy()))
        results = {
            "device": str(config["device"]),
            "config": {k: v for k, v in recbole_config_dict(model, seed, epochs, "<tmp>").items()
                       if k != "data_path"},
            "epochs_run": len(epochs_log),
            "max_epochs": config["epochs"],
            "capped": epochs is not None,
            "stopped_early": stopped_early,
            "setup_seconds": setup_seconds,
            "train_epoch": summarize_epochs(train_seconds),
            "train_seconds": sum(train_seconds),
            "fit_seconds": fit_seconds,
            "time_to_best_seconds": best["elapsed_s"],
            "best_epoch": best["epoch"],
            "best_valid": {k: float(v) for k, v in best_valid.items()},
            "best_valid_score": float(best_score),
            "test": {k: float(v) for k, v in test.items()},
            "history": epochs_log,
            "train_examples": len(train_data._dataset.inter_feat),
        }
        if epochs is not None and not stopped_early:
            results["note"] = (f"capped at {epochs} epochs without early stopping: best_epoch and "
                               "time_to_best_seconds are lower bounds, test metrics are of an unconverged model")
        return results, pairs


def run_genir(model: str, seed: int, epochs: int | None) -> tuple[dict, dict[str, set]]:
    """Train and test one genir model with its trainer defaults; returns (results, valid/test external pairs)."""
    t_setup = time.perf_counter()
    dataset = load_dataset("ml-100k")
    split = leave_one_out(dataset)
    torch.manual_seed(seed)
    method = build_method(model, split)
    settings = {"progress": False, "seed": seed, **({"epochs": epochs} if epochs is not None else {})}
    trainer = Trainer(method, split, config=TrainerConfig.for_method(method, settings))
    setup_seconds = time.perf_counter() - t_setup

    fit = trainer.fit()
    test = trainer.test()
    train_seconds = [e["train_s"] for e in fit.history]
    validations = [e for e in fit.history if f"valid_{VALID_METRIC}" in e]
    for e in validations:
        print(f"  genir   {model} epoch {e['epoch']:3d}  train {e['train_s']:7.2f}s  "
              f"valid ndcg@10 {e[f'valid_{VALID_METRIC}']:.4f}{'  *' if e['epoch'] == fit.best_epoch else ''}",
              flush=True)
    pairs = {}
    for stage in ("valid", "test"):
        frame = split.frame(stage)
        pairs[stage] = external_pairs(dataset.user_ids[frame["user"].to_numpy()],
                                      dataset.item_ids[frame["item"].to_numpy()])
    results = {
        "device": str(trainer.device),
        "config": {"trainer": {k: v for k, v in settings.items() if k != "progress"},
                   "method": method.config.to_dict()},
        "epochs_run": len(fit.history),
        "max_epochs": settings.get("epochs", TrainerConfig.epochs),
        "capped": epochs is not None,
        "stopped_early": fit.stopped_early,
        "setup_seconds": setup_seconds,
        "train_epoch": summarize_epochs(train_seconds),
        "train_seconds": fit.train_seconds,
        "fit_seconds": fit.total_seconds,
        "time_to_best_seconds": fit.time_to_best,
        "best_epoch": fit.best_epoch,
        "best_valid": {k: fit.best_valid[k] for k in REPORTED_METRICS},
        "test": {k: test[k] for k in REPORTED_METRICS},
        "history": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items()} for e in fit.history],
        "train_examples": len(method.train_dataset(split)),
    }
    return results, pairs


def genir_time_to_reach(genir: dict, target: float) -> dict | None:
    """First genir epoch whose validation NDCG@10 reaches ``target``, with an estimate of the fit wall time until
    then: training time of the epochs so far plus their share of the validation time (genir logs training time
    per epoch, and validation time only in total)."""
    history = genir["history"]
    validations = [e for e in history if f"valid_{VALID_METRIC}" in e]
    valid_seconds_each = (genir["fit_seconds"] - genir["train_seconds"]) / max(1, len(validations))
    for e in validations:
        if e[f"valid_{VALID_METRIC}"] >= target:
            done = [h for h in history if h["epoch"] <= e["epoch"]]
            seconds = sum(h["train_s"] for h in done) + valid_seconds_each * sum(
                f"valid_{VALID_METRIC}" in h for h in done)
            return {"epoch": e["epoch"], "estimated_seconds": seconds}
    return None


HOLDOUT_DIFFERENCE_NOTE = (
    "RecBole min-max normalizes timestamps (normalize_all: True in its ml-100k.yaml) and stores them as float32, "
    "whose resolution near 1 is about 1.3 s over ML-100K's time range: interactions of a user one second apart "
    "tie and keep file order in RecBole's stable sort, so its last / second-last interaction can differ from the "
    "true latest one that genir (float64 timestamps) holds out"
)


def protocol_check(recbole_pairs: dict[str, set], genir_pairs: dict[str, set]) -> dict:
    """Do both libraries hold out the same (user, item) pairs for valid and test? Lists the users that differ."""
    out = {}
    for stage in ("valid", "test"):
        r, g = recbole_pairs[stage], genir_pairs[stage]
        differing_users = sorted({u for u, _ in r ^ g}, key=lambda u: (len(u), u))
        out[stage] = {"recbole": len(r), "genir": len(g), "common": len(r & g), "identical": r == g,
                      "differing_users": differing_users}
    if not all(stage["identical"] for stage in out.values()):
        out["note"] = HOLDOUT_DIFFERENCE_NOTE
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def compare(genir: dict, recbole: dict) -> dict:
    """genir / RecBole for metrics, RecBole / genir for times (> 1 means genir is faster)."""
    out = {
        "metric_ratio_genir_over_recbole": {
            **{f"test_{m}": ratio(genir["test"][m], recbole["test"].get(m)) for m in REPORTED_METRICS},
            f"best_valid_{VALID_METRIC}": ratio(genir["best_valid"][VALID_METRIC],
                                                recbole["best_valid"].get(VALID_METRIC)),
        },
        "speedup_recbole_over_genir": {
            "train_epoch_median": ratio(recbole["train_epoch"]["median_s"], genir["train_epoch"]["median_s"]),
            "fit_until_stop": ratio(recbole["fit_seconds"], genir["fit_seconds"]),
            "time_to_best": ratio(recbole["time_to_best_seconds"], genir["time_to_best_seconds"]),
            "setup": ratio(recbole["setup_seconds"], genir["setup_seconds"]),
        },
    }
    reach = genir_time_to_reach(genir, recbole["best_valid"][VALID_METRIC])
    out["genir_to_reach_recbole_best_valid"] = reach
    if reach is not None:
        out["speedup_recbole_over_genir"]["time_to_recbole_best_valid"] = ratio(
            recbole["time_to_best_seconds"], reach["estimated_seconds"])
    if recbole["capped"] and not recbole["stopped_early"]:
        out["note"] = ("RecBole was capped before early stopping: its time_to_best is a lower bound (so "
                       "time_to_best and fit_until_stop speedups are lower bounds) and its test metrics are of an "
                       "unconverged model; time_to_recbole_best_valid compares like with like")
    return out


def parse_epoch_caps(text: str) -> dict[str, int]:
    """``"5"`` (every model), ``"sasrec=5,bpr=50"`` (per model) or ``"none"``/``"0"`` (no cap)."""
    if text.strip().lower() in ("", "none", "0"):
        return {}
    if "=" not in text:
        return {m: int(text) for m in MODELS}
    caps = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name not in MODELS:
            raise SystemExit(f"--recbole-epochs: unknown model {name!r}; models: {', '.join(MODELS)}")
        caps[name] = int(value)
    return caps


def machine_info() -> dict:
    from importlib.metadata import version

    import pandas
    import scipy

    return {**environment(), "cuda_available": torch.cuda.is_available(), "scipy": scipy.__version__,
            "pandas": pandas.__version__, "recbole": version("recbole")}


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: other processes on the machine skew every timing."""
    return [round(x, 2) for x in os.getloadavg()]


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def print_summary(model: str, genir: dict, recbole: dict, comparison: dict) -> None:
    rows = [
        ("test ndcg@10", genir["test"]["ndcg@10"], recbole["test"]["ndcg@10"]),
        ("test recall@10", genir["test"]["recall@10"], recbole["test"]["recall@10"]),
        ("best valid ndcg@10", genir["best_valid"]["ndcg@10"], recbole["best_valid"]["ndcg@10"]),
        ("best epoch", genir["best_epoch"], recbole["best_epoch"]),
        ("epochs run", genir["epochs_run"], recbole["epochs_run"]),
        ("train s/epoch (median)", genir["train_epoch"]["median_s"], recbole["train_epoch"]["median_s"]),
        ("fit s (until stop)", genir["fit_seconds"], recbole["fit_seconds"]),
        ("time to best s", genir["time_to_best_seconds"], recbole["time_to_best_seconds"]),
        ("setup s", genir["setup_seconds"], recbole["setup_seconds"]),
    ]
    print(f"\n== {model}: genir vs RecBole{' (RecBole capped)' if recbole['capped'] else ''}")
    print(f"{'':26s}{'genir':>12s}{'recbole':>12s}")
    for name, g, r in rows:
        fmt = "{:>12d}" if isinstance(g, int) else "{:>12.4f}"
        print(f"{name:26s}{fmt.format(g)}{fmt.format(r)}")
    print("metric ratios genir/RecBole:", {k: round(v, 3) for k, v in
                                           comparison["metric_ratio_genir_over_recbole"].items() if v is not None})
    print("speedups RecBole/genir:", {k: round(v, 2) for k, v in
                                      comparison["speedup_recbole_over_genir"].items() if v is not None})
    if "note" in comparison:
        print("note:", comparison["note"])
    print(flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: bpr,sasrec")
    parser.add_argument("--recbole-epochs", default=DEFAULT_RECBOLE_EPOCH_CAPS,
                        help="cap on RecBole's epochs: N (every model), model=N[,model=N] or none "
                             f"(default: {DEFAULT_RECBOLE_EPOCH_CAPS}; RecBole's SASRec takes ~170-250 s/epoch "
                             "on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads for both libraries (default 0: torch's default, one per core)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs per library and model "
                        "(smoke test; results go to a -quick file and never to vs_recbole.json)")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; models: {', '.join(MODELS)}")
    recbole_caps = {m: QUICK_EPOCHS for m in models} if args.quick else parse_epoch_caps(args.recbole_epochs)
    genir_epochs = QUICK_EPOCHS if args.quick else None

    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    out_path = RESULTS_DIR / f"vs_recbole-{'quick-' if args.quick else ''}{stamp}.json"
    report = {
        "benchmark": "genir vs RecBole 1.2.1, MovieLens-100K, leave-one-out, full ranking",
        "started": datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["vs_recbole.py", *argv]),
        "quick": args.quick,
        "seeds": {"genir": args.seed, "recbole": args.seed},
        "recbole_epoch_caps": recbole_caps,
        "genir_epoch_cap": genir_epochs,
        "machine": machine_info(),
        "protocol": {
            "dataset": "ml-100k from the recbole wheel's dataset_example (no filtering, no rating threshold)",
            "split": "leave-one-out by timestamp per user: last = test, second last = valid",
            "ranking": "full catalogue, the user's earlier interactions masked",
            "model_selection": "best validation NDCG@10, early stopping",
        },
        "models": {},
    }
    print(f"writing {out_path}", flush=True)
    for model in models:
        print(f"\n-- {model}: genir", flush=True)
        load_before = load_average()
        genir, genir_pairs = run_genir(model, args.seed, genir_epochs)
        genir["load_average_before_after"] = [load_before, load_average()]
        cap = recbole_caps.get(model)
        print(f"-- {model}: RecBole ({f'at most {cap} epochs' if cap else 'until early stopping'})", flush=True)
        load_before = load_average()
        recbole, recbole_pairs = run_recbole(model, args.seed, cap)
        recbole["load_average_before_after"] = [load_before, load_average()]
        comparison = compare(genir, recbole)
        report["models"][model] = {"genir": genir, "recbole": recbole, "comparison": comparison,
                                   "same_holdout": protocol_check(recbole_pairs, genir_pairs)}
        print_summary(model, genir, recbole, comparison)
        holdout = report["models"][model]["same_holdout"]
        print("same held-out pairs: " + ", ".join(
            f"{stage} {holdout[stage]['common']}/{holdout[stage]['recbole']}" for stage in ("valid", "test")), flush=True)
        report["finished"] = datetime.now().isoformat(timespec="seconds")
        report["load_average_at_finish"] = load_average()
        write_json_atomic(out_path, report)

    if not args.quick and set(models) == set(MODELS):
        write_json_atomic(RESULTS_DIR / "vs_recbole.json", report)
    print(f"\nresults: {out_path}", flush=True)


if __name__ == "__main__":
    main()
