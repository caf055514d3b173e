"""The byte-mask CPU dropout: drop rate, scaling, gradients, reproducibility, and the F.dropout fallbacks."""

import pytest
import torch
import torch.nn.functional as F

from genir.models.dropout import Dropout, byte_threshold, dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_drop_rate_and_scale_match_the_rounded_probability(p):
    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = dropout(x, p)
    q = byte_threshold(p) / 256
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - q) < 0.003  # binomial std at n=4e5 is < 0.001
    assert abs(q - p) <= 1 / 512
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - q)))
    assert abs(y.mean().item() - 1.0) < 0.01  # the expectation is kept


def test_mask_is_independent_across_positions_of_a_word():
    """Four mask bytes come from one 32-bit draw: neighbouring elements must still be dropped independently."""
    torch.manual_seed(1)
    y = dropout(torch.ones(4 * 100_000), 0.5).view(-1, 4) == 0
    both = (y[:, 0] & y[:, 1]).float().mean().item()
    assert abs(both - 0.25) < 0.01


def test_gradient_flows_through_kept_elements_only():
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.2)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.all(x.grad[~kept] == 0)
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 256 / (256 - byte_threshold(0.2))))


def test_seeded_runs_repeat_and_eval_mode_is_identity():
    x = torch.randn(3, 5, 7)
    torch.manual_seed(3)
    a = dropout(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.1))
    layer = Dropout(0.1).eval()
    assert layer(x) is x
    assert dropout(x, 0.0) is x


def test_probabilities_that_round_to_0_or_1_fall_back_to_f_dropout():
    x = torch.ones(1000)
    torch.manual_seed(4)
    expected = F.dropout(x, 0.001, True)
    torch.manual_seed(4)
    assert torch.equal(dropout(x, 0.001), expected)
    assert torch.all(dropout(x, 1.0) == 0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)
