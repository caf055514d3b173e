"""Where does PromptDSI's D0 forgetting come from: the new corpora's classifier rows outscoring D0's documents, or
the prompts moving D0's query encodings? One seed on a fixed Debian subset, the recipe's CPU settings.

    python benchmarks/promptdsi_forgetting.py [DOCS [GUARD]]   # default 5000 documents, guard weight 1.0;
                                                              # writes benchmarks/results/promptdsi/forgetting-<DOCS>.json

After the last step it measures D0's test Hits@10 (a) with PromptDSI as is, (b) ranked among D0's documents only
(prompts on: only the query drift is left), (c) with the prompts switched off but PromptDSI's new rows kept (only
the rows are left), (d) with the new rows rescaled to the old rows' mean norm (weight alignment), (e) PromptDSI
trained with the old-row guard (``row_guard`` = GUARD, genir.methods.dsi.prompts), beside IncDSI.
"""
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
import promptdsi as R

from genir.data.pseudo_queries import with_pseudo_queries
from genir.eval.retrieval import RetrievalEvaluator
from genir.methods.dsi.procedures import (
    DSIConfig,
    QueryCache,
    atomic_dsi,
    document_texts,
    incdsi_step,
    make_encoder,
    pairs_of,
    prompt_model,
    prompt_step,
    train_dsi,
)
from genir.runs import environment

torch.set_num_threads(1)
docs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
guard = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
out = ROOT / "runs" / f"promptdsi-forgetting-{docs}"
out.mkdir(parents=True, exist_ok=True)


class A:
    beir, full, quick, docs = None, False, False, docs


task, _ = R.load_corpus(A, out)
task = with_pseudo_queries(task, 2, seed=0)
cfg = DSIConfig.from_dict(dict(R.CPU), coerce=True)
print("steps", [len(s) for s in task.steps], flush=True)
base = make_encoder(cfg); t0=time.time()
base.precompute(task.train_pairs["text"].tolist() + task.queries["text"].tolist(), progress=False)
emb = base.embed(document_texts(task, np.arange(len(task.catalogue))), progress=False)
print("cache", time.time()-t0, flush=True)
steps = task.steps; d0 = steps[0]; seed = 0
valid = RetrievalEvaluator(task, "valid", ks=(10,), metrics=("hits",), step=0, corpus_step=0)
torch.manual_seed(0)
atomic = atomic_dsi(copy.deepcopy(base), task, d0, cfg, emb)
train_dsi(atomic, task, d0, valid, cfg, seed, False); atomic.eval()
print("d0 trained", time.time()-t0, R.evaluate(atomic, task, 0, 0), flush=True)
d0_texts = document_texts(task, d0)
pm = prompt_model(copy.deepcopy(atomic), d0_texts, cfg, learn_keys=False, seed=seed)
gcfg = DSIConfig.from_dict({**cfg.to_dict(), "row_guard": guard}, coerce=True)
pg = prompt_model(copy.deepcopy(atomic), d0_texts, gcfg, learn_keys=False, seed=seed)
inc = copy.deepcopy(atomic); cache = QueryCache(inc, pairs_of(task, d0), cfg.incdsi_cache, seed)
last = len(steps) - 1
for t in range(1, last + 1):
    prompt_step(pm, task, steps[t], cfg, seed + t, False)
    prompt_step(pg, task, steps[t], gcfg, seed + t, False)
    incdsi_step(inc, task, steps[t], cache, cfg, seed + t)
res = {}
res["atomic_d0_at0"] = R.evaluate(atomic, task, 0, 0)["hits@10"]
res["promptdsi_d0"] = R.evaluate(pm, task, 0, last)["hits@10"]
res["promptdsi_d0_among_d0_only"] = R.evaluate(pm, task, 0, 0)["hits@10"]
res["promptdsi_new"] = float(np.mean([R.evaluate(pm, task, j, last)["hits@10"] for j in range(1, last + 1)]))
res["promptdsi_guard_d0"] = R.evaluate(pg, task, 0, last)["hits@10"]
res["promptdsi_guard_new"] = float(np.mean([R.evaluate(pg, task, j, last)["hits@10"] for j in range(1, last + 1)]))
res["incdsi_d0"] = R.evaluate(inc, task, 0, last)["hits@10"]
res["incdsi_new"] = float(np.mean([R.evaluate(inc, task, j, last)["hits@10"] for j in range(1, last + 1)]))
# prompts off for every query, PromptDSI's rows kept
noprompt = copy.deepcopy(pm.dsi)
res["rows_only_d0"] = R.evaluate(noprompt, task, 0, last)["hits@10"]
res["rows_only_new"] = float(np.mean([R.evaluate(noprompt, task, j, last)["hits@10"] for j in range(1, last + 1)]))
norms = [b.detach().norm(dim=1) for b in pm.dsi.blocks]
res["row_norms"] = [(float(n.mean()), float(n.std())) for n in norms]
res["inc_row_norms"] = [(float(b.detach().norm(dim=1).mean()),) for b in inc.blocks]
# weight alignment: new rows rescaled to the old rows' mean norm
wa = copy.deepcopy(pm)
with torch.no_grad():
    target = wa.dsi.blocks[0].norm(dim=1).mean()
    for b in list(wa.dsi.blocks)[1:]:
        b.mul_(target / b.norm(dim=1, keepdim=True))
res["wa_d0"] = R.evaluate(wa, task, 0, last)["hits@10"]
res["wa_new"] = float(np.mean([R.evaluate(wa, task, j, last)["hits@10"] for j in range(1, last + 1)]))
res = {"command": "python benchmarks/promptdsi_forgetting.py " + " ".join(sys.argv[1:]), "machine": environment(),
       "steps": [len(s) for s in steps], "seed": seed, "config": cfg.to_dict(), "row_guard": guard, **res}
print(json.dumps(res, indent=1), flush=True)
dest = ROOT / "benchmarks" / "results" / "promptdsi" / f"forgetting-{docs}.json"
dest.write_text(json.dumps(res, indent=1))
