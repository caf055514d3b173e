"""The BIGRec-style recommender on a tiny random Llama (built here, not pretrained): titles become unique EOS-padded
token rows of the shared prefix index, the answer-only loss falls with the one Trainer, and the constrained search
ranks only catalogue items, never the user's history; BIGRec's L2 grounding runs as the ablation."""

from __future__ import annotations

import numpy as np
import torch

from genir.data import Dataset, leave_one_out
from genir.eval import EvalBatch, pad_histories
from genir.methods.dealrec import draw_pool, training_samples
from genir.methods.dealrec.bigrec import BIGRec, l2_grounding_scores, title_codes, title_states
from genir.training import Trainer, TrainerConfig
from tests.conftest import make_inter, single_threaded
from tests.core.conftest import word_tokenizer
from tests.core.test_causal_generator import tiny_llama

_one_thread = single_threaded()
WORDS = ["red", "blue", "green", "night", "day", "river", "city", "star", "war", "love", "time", "king"]


def movie_titles(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    titles = [f"{' '.join(rng.choice(WORDS, size=2, replace=False))} ({1980 + i % 20})" for i in range(n)]
    titles[5] = titles[3]  # a duplicate, as MovieLens-100K has
    return titles


def test_title_codes_are_unique_and_eos_padded():
    titles = movie_titles(30)
    tok = word_tokenizer(titles + ["[2]"])
    codes, suffixed = title_codes(tok, titles)
    assert suffixed == 1 and len({tuple(r) for r in codes}) == len(titles)
    assert (codes[:, -1] == tok.eos_token_id).all()
    assert tok.decode(codes[5][codes[5] != tok.eos_token_id]).replace(" ", "").endswith("[2]")


def test_bigrec_trains_and_ranks_only_new_catalogue_items(tmp_path):
    split = leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=15, n_items=30, per_user=8)))
    titles = movie_titles(split.num_items)
    from genir.methods.dealrec.bigrec import PROMPT_HEAD, PROMPT_TAIL

    tok = word_tokenizer(titles + [PROMPT_HEAD + PROMPT_TAIL, "[2]"])
    rec = BIGRec(tiny_llama(tok), tok, titles, max_history=4, beam_width=6)
    pool = draw_pool(training_samples(split.histories(None), max_history=4), 60, seed=0)
    config = TrainerConfig(epochs=6, batch_size=16, lr=5e-3, patience=6, progress=False, seed=0,
                           output_dir=str(tmp_path / "run"))
    result = Trainer(rec, rec.pairs(pool.histories, pool.targets), None, config=config).fit()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses

    users = [0, 1, 2]
    hist, lens = pad_histories([split.histories("test")[u] for u in users], split.num_items)
    batch = EvalBatch(torch.as_tensor(users), hist, lens, split.num_items)
    scores = rec.full_scores(batch)
    assert scores.shape == (3, split.num_items)
    for row, h in zip(scores, hist):
        ranked = torch.isfinite(row).nonzero().flatten().tolist()
        assert len(ranked) == 6
        assert not set(ranked) & set(h.tolist())  # history excluded inside the search
    l2 = l2_grounding_scores(rec, batch, title_states(rec))
    assert l2.shape == (3, split.num_items) and torch.isfinite(l2).all()


def test_losses_count_a_title_and_its_first_eos_never_the_padding():
    """Titles of different lengths: an example's loss is the mean cross-entropy over its title tokens and first
    EOS, and the training loss is the token mean over the batch (the EOS padding counts in neither)."""
    titles = movie_titles(12)
    titles[6], titles[7], titles[8] = "red", "red blue green night day river", "star war (1990)"
    from genir.methods.dealrec.bigrec import PROMPT_HEAD, PROMPT_TAIL

    tok = word_tokenizer(titles + [PROMPT_HEAD + PROMPT_TAIL, "[2]"])
    rec = BIGRec(tiny_llama(tok), tok, titles, max_history=3, beam_width=4)
    batch = rec.collate(list(rec.pairs([[0, 1], [2], [3, 4, 5]], [6, 7, 8])))
    per_example = rec.example_losses(batch)
    assert per_example.shape == (3,) and len(set(per_example.tolist())) == 3
    sums, counts = [], []
    for text, item in zip(*batch):  # one example at a time, the title cut after its first EOS
        row = rec.item_codes[item].tolist()
        title = torch.tensor([row[:row.index(tok.eos_token_id) + 1]])
        prompt = rec._encode_texts([text])["input_ids"]
        logits = rec.model(input_ids=torch.cat([prompt, title], 1)).logits[0, prompt.shape[1] - 1:-1]
        ce = torch.nn.functional.cross_entropy(logits, title[0], reduction="sum")
        sums.append(ce)
        counts.append(title.shape[1])
    assert len(set(counts)) == 3 and max(counts) < rec.item_codes.shape[1]
    torch.testing.assert_close(per_example, torch.stack(sums) / torch.tensor(counts, dtype=torch.float32))
    torch.testing.assert_close(rec.loss(batch), torch.stack(sums).sum() / sum(counts))


def test_effort_with_backward_cut_at_the_last_lora_block_equals_the_full_backward():
    from genir.llm import add_lora
    from genir.methods.dealrec.bigrec import PROMPT_HEAD, PROMPT_TAIL
    from genir.methods.dealrec.procedure import answer_losses, last_lora_linears, only_trainable
    from genir.methods.dealrec.scores import linear_grad_norms

    split = leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=10, n_items=20, per_user=6)))
    titles = movie_titles(split.num_items)
    tok = word_tokenizer(titles + [PROMPT_HEAD + PROMPT_TAIL, "[2]"])
    pool = draw_pool(training_samples(split.histories(None), max_history=3), 12, seed=0)
    norms = []
    for cut in (False, True):
        torch.manual_seed(0)
        rec = BIGRec(add_lora(tiny_llama(tok)), tok, titles, max_history=3, beam_width=4)
        rec.eval()
        linears = last_lora_linears(rec.model)
        if cut:
            linears = only_trainable(rec.model, linears)
            assert sum(p.requires_grad for p in rec.model.parameters()) == sum(
                p.numel() > 0 for m in linears for p in m.parameters())
        pairs = rec.pairs(pool.histories, pool.targets)
        norms.append(linear_grad_norms(answer_losses(rec, pairs), linears, len(pool), batch_size=4))
    assert np.all(norms[0] > 0)
    np.testing.assert_allclose(norms[1], norms[0], rtol=1e-4)


def test_merged_adapter_ranks_as_the_peft_model():
    """for_inference merges the LoRA adapter into the weights: the same items with the same scores."""
    from genir.llm import add_lora
    from genir.methods.dealrec.bigrec import PROMPT_HEAD, PROMPT_TAIL
    from genir.methods.dealrec.procedure import for_inference

    split = leave_one_out(Dataset.from_frames("tiny", make_inter(n_users=10, n_items=20, per_user=6)))
    titles = movie_titles(split.num_items)
    tok = word_tokenizer(titles + [PROMPT_HEAD + PROMPT_TAIL, "[2]"])
    torch.manual_seed(0)
    rec = BIGRec(add_lora(tiny_llama(tok)), tok, titles, max_history=3, beam_width=5)
    with torch.no_grad():  # a trained-looking adapter: B is zero at the start
        for name, p in rec.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    users = [0, 1, 2, 3]
    hist, lens = pad_histories([split.histories("test")[u] for u in users], split.num_items)
    batch = EvalBatch(torch.as_tensor(users), hist, lens, split.num_items)
    merged = for_inference(rec)
    assert not hasattr(merged.model, "peft_config")
    a, b = rec.full_scores(batch), merged.full_scores(batch)
    assert torch.equal(torch.isfinite(a), torch.isfinite(b))
    torch.testing.assert_close(a[torch.isfinite(a)], b[torch.isfinite(b)], rtol=1e-4, atol=1e-4)
