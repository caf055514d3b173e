"""CPU cost of dropout in the generative transformer: torch's ``F.dropout`` against the byte-mask dropout of
:mod:`genir.models.dropout`, side by side in one run.

    python benchmarks/dropout_cpu.py [--threads 1] [--steps 20]

1. Mask cost alone, on the tensor shapes of an MMGRec training step (batch 64, window 33): cross-attention
   weights, feed-forward and residual activations.
2. Whole training steps (forward, backward, Adam) of MMGRec (the recipe's arm, d_ff 64) and TIGER (the recipe's
   settings) on ml-100k windows, with the genir dropout and with ``F.dropout`` patched in its place (the
   attention weights then go through ``F.dropout`` too, as in SDPA's own CPU path), plus bf16 autocast.

Needs the recipe's index dirs (``python recipes/mmgrec.py`` builds them; ``--indexes`` names their folder).
Writes ``benchmarks/results/dropout_cpu.json`` with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import genir.models.dropout as fast
from genir.data import load_dataset, make_split
from genir.experiment import split_settings
from genir.methods import get_method
from genir.methods.tiger import transformer
from genir.runs import environment

OUT = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"cross-attention weights (64, 4, 128, 33)": (64, 4, 128, 33),
          "feed-forward / residual (64, 128, 64)": (64, 128, 64),
          "feed-forward hidden, d_ff 256 (64, 128, 256)": (64, 128, 256)}


def _time(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def mask_costs(repeats: int) -> dict:
    out = {}
    for name, shape in SHAPES.items():
        x = torch.randn(shape)
        torch_s = _time(lambda x=x: F.dropout(x, 0.1, True), repeats)
        ours_s = _time(lambda x=x: fast.dropout(x, 0.1), repeats)
        out[name] = {"torch_ms": torch_s * 1e3, "genir_ms": ours_s * 1e3, "speedup": torch_s / ours_s,
                     "ns_per_element_torch": torch_s * 1e9 / x.numel()}
        print(f"{name:46s} F.dropout {torch_s * 1e3:6.2f} ms  genir {ours_s * 1e3:6.2f} ms  "
              f"({torch_s / ours_s:.1f}x)", flush=True)
    return out


def step_time(model, batches, bf16: bool) -> float:
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()

    def one(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one(batches[0])
    t = time.perf_counter()
    for b in batches:
        one(b)
    return (time.perf_counter() - t) / len(batches)


def step_costs(indexes: Path, steps: int) -> dict:
    sys.path.insert(0, str(ROOT / "recipes"))
    from mmgrec import GENERATIVE, MMGREC, TIGER

    split = make_split(load_dataset("ml-100k"), "loo")
    arms = {"mmgrec": ("mmgrec", {**GENERATIVE, **MMGREC, "index": str(indexes / "graph-rqvae")}),
            "tiger": ("tiger", {**GENERATIVE, **TIGER, "index": str(indexes / "rqvae-text")})}
    out = {}
    for label, (method, settings) in arms.items():
        fields, trainer = split_settings(method, {**settings, "mixed_precision": "no"})
        config_cls, model_cls = get_method(method)
        torch.manual_seed(0)
        model = model_cls(config_cls(**fields), split)
        loader = torch.utils.data.DataLoader(model.train_dataset(split), batch_size=trainer.batch_size, shuffle=True)
        batches = [b for _, b in zip(range(steps), loader)]
        res = {"steps_per_epoch": len(loader)}
        for name, impl in (("torch F.dropout", F.dropout), ("genir byte-mask dropout", None)):
            original = fast.dropout
            if impl is not None:  # patch both the layer's and the attention's reference
                fast.dropout = transformer.dropout = lambda x, p, training=True, f=impl: f(x, p, training)
            try:
                for bf16 in (False, True):
                    key = f"{name}{' + bf16 autocast' if bf16 else ''}"
                    res[key] = step_time(model, batches, bf16) * 1e3
                    print(f"{label:7s} {key:40s} {res[key]:6.0f} ms/step", flush=True)
            finally:
                fast.dropout = transformer.dropout = original
        res["speedup_dropout"] = res["torch F.dropout"] / res["genir byte-mask dropout"]
        res["speedup_dropout_bf16"] = res["torch F.dropout"] / res["genir byte-mask dropout + bf16 autocast"]
        out[label] = res
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="training steps timed per setting")
    p.add_argument("--repeats", type=int, default=50, help="repeats of each mask timing")
    p.add_argument("--indexes", default="runs/mmgrec/full-v3/indexes")
    p.add_argument("--out", default=str(OUT / "dropout_cpu.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "what": "CPU dropout: torch F.dropout vs genir's byte-mask dropout (mask cost, and MMGRec / TIGER "
                "training steps in ms, forward + backward + Adam, batch 64)",
        "command": "python " + " ".join(["benchmarks/dropout_cpu.py", *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment(),
        "masks": mask_costs(args.repeats),
        "training_steps_ms": step_costs(Path(args.indexes), args.steps),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
