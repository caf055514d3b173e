"""Train the editor with the one Trainer, run it for one and two rounds on held-out chains, and measure it.

Measures (held-out source images only):

* one-round PSNR / SSIM: G(x, a) against the exact T_a, and G(x, b) against T_b;
* two-round PSNR / SSIM: G(G(x, a), b) and G(G(x, b), a) against the exact T_ab;
* error growth: one-round minus two-round PSNR (dB) and SSIM; the order gap: PSNR between the two orders;
* amplification: two-round PSNR when round 2 starts from the exact round-1 picture, minus the two-round PSNR (the
  dB lost because round 2 builds on round 1's own errors);
* per edit family, with the fine-grained ones (badge, border) reported apart: one-round examples of that family
  and two-round chains that contain it;
* composed image retrieval (:mod:`genir.eval.composed_retrieval`): one-round and two-round generated images as
  queries against the gallery of every exact target of the set.

The identity editor (the input returned unchanged) is measured the same way as a floor.
"""

from __future__ import annotations

import numpy as np
import torch

from genir.data.edit_tasks import EditExamples
from genir.data.image_edits import FAMILIES, FINE_GRAINED
from genir.eval.composed_retrieval import composed_retrieval, dedupe_gallery
from genir.eval.image_quality import psnr, ssim
from genir.features.text import encode_texts
from genir.methods.multiround.config import MultiRoundConfig
from genir.methods.multiround.model import MultiRoundEditor, to_tensor, to_uint8
from genir.training.trainer import Trainer, TrainerConfig


def instruction_embeddings(vocabulary: list[str], model_path: str | None = None) -> np.ndarray:
    """(V, d) sentence embeddings of every instruction, once (cached on disk by genir.features)."""
    return encode_texts(vocabulary, model_path, fingerprint="edit-instructions")


def train_editor(task, embeddings: np.ndarray, config: MultiRoundConfig, trainer: dict) -> tuple:
    """(trained editor, TrainResult). ``trainer``: TrainerConfig fields (epochs, lr, seed, progress ...)."""
    tc = TrainerConfig.from_dict({"lr": 2e-3, **trainer}, source="multiround trainer")
    torch.manual_seed(tc.seed)
    editor = MultiRoundEditor(config, task, embeddings)
    editor.total_steps = tc.epochs * config.batches_per_epoch
    result = Trainer(editor, torch.utils.data.TensorDataset(torch.zeros(1)), config=tc).fit()
    return editor, result


@torch.no_grad()
def run_examples(editor: MultiRoundEditor, examples: EditExamples, batch_size: int = 256) -> dict[str, np.ndarray]:
    """uint8 outputs: ``one_a`` G(x, a), ``one_b`` G(x, b), ``two_ab`` G(G(x, a), b), ``two_ba`` G(G(x, b), a);
    ``two_ab_from_exact`` G(T_a, b) and ``two_ba_from_exact`` G(T_b, a) where exact one-round targets exist; and
    ``one_ab`` G(x, a+b) where the examples carry one instruction for both."""
    editor.eval()
    device = editor.text_embeddings.device
    out = {k: [] for k in ("one_a", "one_b", "two_ab", "two_ba", "one_ab", "two_ab_from_exact", "two_ba_from_exact")}
    for s in range(0, len(examples), batch_size):
        x = to_tensor(examples.inputs[s:s + batch_size]).to(device)
        ta = torch.as_tensor(examples.text_a[s:s + batch_size], device=device)
        tb = torch.as_tensor(examples.text_b[s:s + batch_size], device=device)
        ya, yb = editor.edit(x, ta).clamp(0, 1), editor.edit(x, tb).clamp(0, 1)
        out["one_a"].append(to_uint8(ya))
        out["one_b"].append(to_uint8(yb))
        out["two_ab"].append(to_uint8(editor.edit(ya, tb)))
        out["two_ba"].append(to_uint8(editor.edit(yb, ta)))
        if examples.target_a is not None:  # round 2 from the exact round-1 picture: no error to amplify
            out["two_ab_from_exact"].append(to_uint8(editor.edit(to_tensor(examples.target_a[s:s + batch_size])
                                                                 .to(device), tb)))
            out["two_ba_from_exact"].append(to_uint8(editor.edit(to_tensor(examples.target_b[s:s + batch_size])
                                                                 .to(device), ta)))
        if examples.text_ab is not None:
            out["one_ab"].append(to_uint8(editor.edit(x, torch.as_tensor(examples.text_ab[s:s + batch_size],
                                                                         device=device))))
    return {k: np.concatenate(v) for k, v in out.items() if v}


def identity_outputs(examples: EditExamples) -> dict[str, np.ndarray]:
    """What an editor that changes nothing returns (the floor every editor should beat)."""
    x = examples.inputs
    out = {"one_a": x, "one_b": x, "two_ab": x, "two_ba": x}
    if examples.text_ab is not None:
        out["one_ab"] = x
    return out


def _finite_mean(values: np.ndarray) -> float:
    """Mean PSNR with exact reproductions (inf dB) counted at 60 dB, the level of one grey level in 1,000."""
    return float(np.mean(np.minimum(values, 60.0))) if len(values) else float("nan")


def edit_metrics(outputs: dict[str, np.ndarray], examples: EditExamples) -> dict:
    """PSNR / SSIM of one and two rounds, their growth, the order gap, and the same per edit family."""
    res: dict = {}
    one_p, one_s, fam_one = [], [], []
    if examples.target_a is not None:
        one_p = np.concatenate([psnr(outputs["one_a"], examples.target_a), psnr(outputs["one_b"], examples.target_b)])
        one_s = np.concatenate([ssim(outputs["one_a"], examples.target_a), ssim(outputs["one_b"], examples.target_b)])
        fam_one = np.concatenate([examples.family_a, examples.family_b])
    elif "one_ab" in outputs:  # triplets: one instruction for both captions, one target
        one_p, one_s = psnr(outputs["one_ab"], examples.target_ab), ssim(outputs["one_ab"], examples.target_ab)
        fam_one = examples.family_a
    two_p = np.concatenate([psnr(outputs["two_ab"], examples.target_ab), psnr(outputs["two_ba"], examples.target_ab)])
    two_s = np.concatenate([ssim(outputs["two_ab"], examples.target_ab), ssim(outputs["two_ba"], examples.target_ab)])
    res["psnr_1"], res["ssim_1"] = _finite_mean(one_p), float(np.mean(one_s))
    res["psnr_2"], res["ssim_2"] = _finite_mean(two_p), float(np.mean(two_s))
    res["psnr_growth"] = res["psnr_1"] - res["psnr_2"]  # dB lost from round 1 to round 2
    res["ssim_growth"] = res["ssim_1"] - res["ssim_2"]
    res["order_gap_psnr"] = _finite_mean(psnr(outputs["two_ab"], outputs["two_ba"]))
    if "two_ab_from_exact" in outputs:  # how much of round 2's error comes from building on round 1's errors
        exact_first = np.concatenate([psnr(outputs["two_ab_from_exact"], examples.target_ab),
                                      psnr(outputs["two_ba_from_exact"], examples.target_ab)])
        res["psnr_2_from_exact"] = _finite_mean(exact_first)
        res["amplification"] = res["psnr_2_from_exact"] - res["psnr_2"]
    fam_two = np.concatenate([examples.family_a, examples.family_b])
    two_chain_p = np.concatenate([two_p.reshape(2, -1).mean(0)] * 2)  # each chain counted for both its edits
    two_chain_s = np.concatenate([two_s.reshape(2, -1).mean(0)] * 2)
    per = {}
    for f in FAMILIES:
        sel1, sel2 = fam_one == f, fam_two == f
        if sel1.any() or sel2.any():
            per[f] = {"psnr_1": _finite_mean(one_p[sel1]) if len(one_p) else float("nan"),
                      "ssim_1": float(np.mean(one_s[sel1])) if sel1.any() else float("nan"),
                      "psnr_2": _finite_mean(two_chain_p[sel2]),
                      "ssim_2": float(np.mean(two_chain_s[sel2])) if sel2.any() else float("nan"),
                      "one_round_examples": int(sel1.sum()), "two_round_chains": int(sel2.sum())}
    res["per_family"] = per
    fine1 = np.isin(fam_one, FINE_GRAINED)
    fine2 = np.isin(fam_two, FINE_GRAINED)
    res["fine_grained"] = {"psnr_1": _finite_mean(one_p[fine1]) if len(one_p) else float("nan"),
                           "ssim_1": float(np.mean(one_s[fine1])) if fine1.any() else float("nan"),
                           "psnr_2": _finite_mean(two_chain_p[fine2]),
                           "ssim_2": float(np.mean(two_chain_s[fine2])) if fine2.any() else float("nan")}
    return res


def retrieval_metrics(outputs: dict[str, np.ndarray], examples: EditExamples, encoder: str = "pixels",
                      **options) -> dict:
    """Recall@1/10/50 of one-round and two-round generated images against the gallery of exact targets."""
    targets = [examples.target_ab]
    if examples.target_a is not None:
        targets = [examples.target_a, examples.target_b, examples.target_ab]
    gallery, rows = dedupe_gallery(np.concatenate(targets))
    m = len(examples)
    row_ab = rows[-m:]
    queries = {"two_round": (np.concatenate([outputs["two_ab"], outputs["two_ba"]]), np.concatenate([row_ab, row_ab]))}
    if examples.target_a is not None:
        queries["one_round"] = (np.concatenate([outputs["one_a"], outputs["one_b"]]), rows[:2 * m])
    elif "one_ab" in outputs:
        queries["one_round"] = (outputs["one_ab"], row_ab)
    if encoder == "pixels":
        options.setdefault("size", gallery.shape[1])  # every pixel of the working size
    res = composed_retrieval(queries, gallery, encoder, **options)
    res["gallery_size"] = len(gallery)
    return res
