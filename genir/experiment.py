"""Multi-seed experiments for recipes: train several configurations ("arms") over seeds on one split, then write
one report (results JSON, markdown table of mean +- std, validation curves).

Every recipe under ``recipes/`` runs through here, so all tables follow one protocol: early stopping and model
selection on the validation split only, full-ranking test metrics with the history masked, seeds reported.

>>> arms = [Arm("bpr", "bpr", {"lr": 1e-2}), Arm("metammf", "metammf", {"rank": 8})]
>>> exp = run_arms(arms, seeds=[2020, 2021, 2022], split=split)
>>> write_report(exp, out_dir, title="MetaMMF on MovieLens-100K")
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from genir.atomic import atomic_write
from genir.data.split import Split
from genir.eval import aggregate, markdown_table
from genir.methods import get_method
from genir.runs import RunSpec, environment, train_run
from genir.training import TrainerConfig

COLUMNS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20)] + ["mrr@10"]
TIMING_KEYS = ("seconds_per_epoch", "train_seconds", "total_seconds", "time_to_best", "best_epoch")


@dataclass
class Arm:
    """One row of a results table: a registered method with settings (method fields and trainer fields mixed,
    as on the command line; the method's ``trainer_defaults`` fill the rest)."""

    label: str
    method: str
    settings: dict = field(default_factory=dict)
    cost: float = 1.0  # expected time of one run relative to the other arms: workers start the costliest first


@dataclass
class Experiment:
    """Results of :func:`run_arms`: per arm label, the per-seed results dicts and validation curves."""

    split: Split
    seeds: list[int]
    arms: list[Arm]
    runs: dict[str, list[dict]] = field(default_factory=dict)
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    losses: dict[str, list[list[float]]] = field(default_factory=dict)
    models: dict[str, list] = field(default_factory=dict)

    def test_table(self) -> dict[str, dict]:
        return {label: aggregate([r["test"] for r in runs]) for label, runs in self.runs.items()}

    def valid_table(self) -> dict[str, dict]:
        return {label: aggregate([r["valid"] for r in runs]) for label, runs in self.runs.items()}

    def timing(self) -> dict[str, dict]:
        return {label: aggregate([{k: r[k] for k in TIMING_KEYS if r.get(k) is not None} for r in runs])
                for label, runs in self.runs.items()}


def split_settings(method: str, settings: dict) -> tuple[dict, TrainerConfig]:
    """(method fields, TrainerConfig) from mixed settings, over the method's trainer defaults."""
    config_cls, model_cls = get_method(method)
    fields_ = set(config_cls.__dataclass_fields__)
    return ({k: v for k, v in settings.items() if k in fields_},
            TrainerConfig.for_method(model_cls, {k: v for k, v in settings.items() if k not in fields_}))


def _run_settings(folder: Path | None, arm: Arm, seed: int, common: dict | None) -> tuple:
    """(method settings, TrainerConfig, settings as journaled, journal file or None) of one (arm, seed) run."""
    method, trainer = split_settings(arm.method, {**(common or {}), **arm.settings, "seed": seed})
    settings = json.loads(json.dumps({**method, "trainer": trainer.__dict__}, default=str))
    entry = folder / f"{arm.label}-seed{seed}.json" if folder is not None else None
    return method, trainer, settings, entry


def _journaled(folder: Path | None, arm: Arm, seed: int, common: dict | None) -> tuple[Path | None, dict | None]:
    """(journal file, its saved record or None): None when absent or made with other settings (retrain)."""
    _, _, settings, entry = _run_settings(folder, arm, seed, common)
    saved = json.loads(entry.read_text()) if entry is not None and entry.is_file() else None
    if saved is not None and not (saved["result"]["settings"] == settings and saved["method"] == arm.method):
        saved = None  # a run of other settings under the same label
    return entry, saved


def _train_one(arm: Arm, seed: int, split: Split, common: dict | None, folder: Path | None,
               on_run: Callable | None, log: Callable[[str], None]) -> tuple[dict, list, list, object]:
    """Train and test one (arm, seed) run and journal it; returns (results, curve, loss, model)."""
    method, trainer, settings, entry = _run_settings(folder, arm, seed, common)
    t = time.perf_counter()
    model, result, res = train_run(RunSpec(model=arm.method, split=split.protocol), method, trainer, split=split)
    res["label"], res["settings"], res["environment"] = arm.label, settings, environment()  # commit, threads, load
    curve = [h.get("valid_ndcg@10", float("nan")) for h in result.history]
    loss = [h.get("loss", float("nan")) for h in result.history]
    if on_run is not None:
        on_run(arm, seed, model, res)
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        record = {"method": arm.method, "result": res, "curve": curve, "loss": loss}
        atomic_write(entry, lambda fh, r=record: fh.write(json.dumps(r, default=str).encode()))
    log(f"{arm.label:24s} seed {seed}: best epoch {result.best_epoch:3d}  test ndcg@10 "
        f"{res['test']['ndcg@10']:.4f}  recall@10 {res['test']['recall@10']:.4f}  "
        f"({time.perf_counter() - t:.0f}s, {res['seconds_per_epoch']:.2f}s/epoch)")
    return res, curve, loss, model


def _worker_run(arm: Arm, seed: int, split: Split, common: dict | None, folder: Path, on_run: Callable | None,
                threads: int | None) -> str:
    """One (arm, seed) run in a worker process (results go to the journal only)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    _train_one(arm, seed, split, common, folder, on_run, lambda s: print(s, flush=True))
    return f"{arm.label} seed {seed}"


def worker_pool(workers: int):
    """A ``ProcessPoolExecutor`` of ``workers`` spawned processes (no OpenMP / CUDA state inherited through fork)
    for recipes that run several trainings side by side. On Linux each worker dies with the process that
    started it: a plain ``kill`` of a recipe would otherwise leave its workers training (and writing to the
    journal) until their current run ends."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def run_arms(arms: list[Arm], seeds: list[int], split: Split, *, common: dict | None = None,
             keep_models: bool = False, log: Callable[[str], None] = print, journal: str | Path | None = None,
             on_run: Callable[[Arm, int, object, dict], None] | None = None, train: bool = True,
             workers: int = 1, threads_per_worker: int | None = None) -> Experiment:
    """Train and test every arm once per seed. ``common`` settings (e.g. ``{"cpu": True, "progress": False}``)
    apply to all arms, under each arm's own settings. ``keep_models`` keeps the best model of every run
    (recipes that inspect a trained model afterwards: interpretability, plots).

    ``journal``: a folder where every finished run is saved at once (``<label>-seed<seed>.json``). A run found
    there with the same method and settings is loaded instead of trained, so a long recipe that was stopped
    resumes where it was, and processes that run disjoint arms into one journal share one report. Loaded runs
    have no model (``exp.models`` holds None for them). ``on_run(arm, seed, model, result)`` is called after
    each trained run, before it is journaled: a recipe may add entries to ``result`` (e.g. decoding checks).
    ``train=False`` only reads the journal: runs not in it are skipped (a report of what has finished so far;
    :func:`write_report` marks arms with fewer seeds).

    ``workers > 1`` trains the runs missing from the journal in that many spawned processes (each with
    ``threads_per_worker`` torch threads), then reads the journal: on a CPU, two one-thread workers get more out
    of two cores than one two-thread process. Runs start costliest arm first (``Arm.cost``). Needs a journal;
    ``on_run`` must be picklable (a module-level function or a ``functools.partial`` of one); models stay in the
    workers (no ``keep_models``).
    """
    folder = Path(journal) if journal is not None else None
    if workers > 1 and train:
        if folder is None or keep_models:
            raise ValueError("run_arms(workers > 1) needs a journal and cannot keep models")
        from concurrent.futures import as_completed

        todo = [(arm, seed) for arm in arms for seed in seeds if _journaled(folder, arm, seed, common)[1] is None]
        # longest first: the last runs to finish are short ones, so no worker idles long at the end
        todo.sort(key=lambda job: -job[0].cost)
        with worker_pool(workers) as pool:
            futures = [pool.submit(_worker_run, arm, seed, split, common, folder, on_run, threads_per_worker)
                       for arm, seed in todo]
            for fut in as_completed(futures):
                log(f"finished {fut.result()}")
        train = False  # everything is in the journal now
    exp = Experiment(split=split, seeds=list(seeds), arms=list(arms))
    for arm in arms:
        for seed in seeds:
            entry, saved = _journaled(folder, arm, seed, common)
            if saved is not None:
                res, curve, loss, model = saved["result"], saved["curve"], saved["loss"], None
                log(f"{arm.label:24s} seed {seed}: loaded from {entry}")
            elif not train:
                log(f"{arm.label:24s} seed {seed}: not in the journal, skipped")
                continue
            else:
                res, curve, loss, model = _train_one(arm, seed, split, common, folder, on_run, log)
            exp.runs.setdefault(arm.label, []).append(res)
            exp.curves.setdefault(arm.label, []).append(curve)
            exp.losses.setdefault(arm.label, []).append(loss)
            if keep_models:
                exp.models.setdefault(arm.label, []).append(model)
    return exp


def write_report(exp: Experiment, out: str | Path, *, title: str, recipe: str, quick: bool = False,
                 columns: list[str] = COLUMNS, extra: dict | None = None, notes: str = "") -> dict:
    """Write ``results.json``, ``results.md`` (test mean +- std per arm, then validation) and ``curves.png``
    (validation NDCG@10 and training loss per epoch) into ``out``; returns the results dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds_run = {label: [r["seed"] for r in runs] for label, runs in exp.runs.items()}
    partial = {label: s for label, s in seeds_run.items() if len(s) < len(exp.seeds)}

    def marked(table: dict) -> dict:  # an arm with fewer seeds than the experiment says so in its row name
        return {(f"{k} ({len(partial[k])} of {len(exp.seeds)} seeds)" if k in partial else k): v
                for k, v in table.items()}

    test, valid = exp.test_table(), exp.valid_table()
    results = {
        "recipe": recipe, "dataset": exp.split.dataset.name, "split": exp.split.describe(), "seeds": exp.seeds,
        "quick": quick, "command": " ".join([Path(sys.executable).name] + sys.argv),
        "environment": environment(), "arms": [arm.__dict__ for arm in exp.arms], "test": test, "valid": valid,
        "timing": exp.timing(), "seeds_run": seeds_run, "partial": bool(partial), "runs": exp.runs,
        "train_loss_curves": exp.losses,
        "valid_ndcg10_curves": exp.curves, **(extra or {}),
    }
    header = (f"{title}: {exp.split.protocol}, full ranking with history masked, mean ± std over seeds "
              f"{exp.seeds}; model selection on the validation split only.\n\n")
    md = header + "Test split\n\n" + markdown_table(marked(test), columns) + "\n\nValidation split\n\n" + \
        markdown_table(marked(valid), columns) + "\n" + (f"\n{notes}\n" if notes else "")
    atomic_write(out / "results.json", lambda fh: fh.write(json.dumps(results, indent=2, default=str).encode()))
    atomic_write(out / "results.md", lambda fh: fh.write(md.encode()))
    plot_curves(exp, out / "curves.png", title)
    print("\n" + md)
    print(f"wrote {out}/results.json, results.md, curves.png")
    return results


def plot_curves(exp: Experiment, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for color, label in zip(plt.cm.tab10.colors * 3, exp.runs):
        for i, (curve, loss) in enumerate(zip(exp.curves[label], exp.losses[label])):
            axes[0].plot(range(1, len(curve) + 1), curve, color=color, alpha=0.8, label=label if i == 0 else None)
            axes[1].plot(range(1, len(loss) + 1), loss, color=color, alpha=0.8, label=label if i == 0 else None)
    axes[0].set_ylabel("validation NDCG@10")
    axes[1].set_ylabel("training loss")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
