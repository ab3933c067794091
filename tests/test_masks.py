"""``model.dropout_rng: pcg64``: Bernoulli masks from PCG64 bits, steered by torch's generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from droplab.config.identity import config_hash
from droplab.fit.masks import Pcg64Dropout, keep_mask, threshold
from droplab.fit.model import MLP
from droplab.fit.regularizers import mc_probabilities
from droplab.fit.trainer import fit

from .conftest import tiny_config


@pytest.mark.parametrize("p", [0.05, 0.35, 0.8])
def test_keep_rate_and_scale(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    out = Pcg64Dropout(p).train()(x)
    kept = out != 0
    # 400k units: the kept share is 1 - p within 5 standard errors
    se = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(float(kept.float().mean()) - (1 - p)) < 5 * se
    # survivors scaled by 1 / (1 - p) as nn.Dropout scales them, so E[out] = x
    expected = torch.ones(()).div_(1 - p)
    assert torch.equal(out[kept].unique(), expected.view(1))


def test_masks_are_independent_across_units_and_calls() -> None:
    torch.manual_seed(1)
    a, b = keep_mask((200, 500), 0.5), keep_mask((200, 500), 0.5)
    assert not torch.equal(a, b)
    # neighbouring units (the two halves of one 64-bit draw) are uncorrelated
    fa = a.float().flatten()
    corr = torch.corrcoef(torch.stack([fa[0::2], fa[1::2]]))[0, 1]
    assert abs(float(corr)) < 0.02
    # and a second call is not the first one shifted
    assert abs(float(torch.corrcoef(torch.stack([fa, b.float().flatten()]))[0, 1])) < 0.02


def test_steered_by_torch_seed_and_draws_one_number_per_call() -> None:
    x = torch.randn(64, 32)
    torch.manual_seed(5)
    first = Pcg64Dropout(0.3).train()(x)
    torch.manual_seed(5)
    again = Pcg64Dropout(0.3).train()(x)
    assert torch.equal(first, again)
    # the generator moves by one seed draw, whatever the mask's size
    big = torch.randn(1000, 1000)
    torch.manual_seed(5)
    Pcg64Dropout(0.3).train()(big)
    moved = torch.get_rng_state()
    torch.manual_seed(5)
    torch.randint(0, 2**62, ())
    assert torch.equal(moved, torch.get_rng_state())


def test_eval_mode_and_zero_rate_draw_nothing() -> None:
    x = torch.randn(8, 4)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert torch.equal(Pcg64Dropout(0.5).eval()(x), x)
    assert torch.equal(Pcg64Dropout(0.0).train()(x), x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(Pcg64Dropout(1.0).train()(x), torch.zeros_like(x))


def test_threshold_edges() -> None:
    assert int(threshold(0.5)) == 2**31
    assert int(threshold(1 - 1e-12)) == 2**32 - 1  # never wraps to 0 (would keep everything)


def test_gradient_flows_through_the_survivors_only() -> None:
    torch.manual_seed(2)
    x = torch.randn(50, 20, requires_grad=True)
    out = Pcg64Dropout(0.4).train()(x)
    out.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, (out != 0).float().div_(0.6))


def test_model_uses_it_for_input_and_hidden_bernoulli_dropout() -> None:
    model = MLP(5, 1, 8, 2, 0.3, 0.1, dropout_rng="pcg64")
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 and all(isinstance(m, Pcg64Dropout) for m in drops)
    plain = MLP(5, 1, 8, 2, 0.3, 0.1)
    assert not any(isinstance(m, Pcg64Dropout) for m in plain.modules())
    # MC dropout draws from its own seeded stream: the same with either generator twice
    x = torch.randn(30, 5)
    a = mc_probabilities(model, x, samples=4, chunk=64, seed=9)
    b = mc_probabilities(model, x, samples=4, chunk=64, seed=9)
    assert torch.equal(a, b)


def test_config_identity_and_reproducibility(tmp_path: Path) -> None:
    base = tiny_config(tmp_path, "model.dropout=0.4")
    torch_rng = tiny_config(tmp_path, "model.dropout=0.4", "model.dropout_rng=torch")
    pcg = tiny_config(tmp_path, "model.dropout=0.4", "model.dropout_rng=pcg64")
    # the default keeps every earlier hash; pcg64 is another run
    assert config_hash(base) == config_hash(torch_rng) != config_hash(pcg)
    first, second, plain = fit(pcg), fit(pcg), fit(base)
    assert first.history == second.history  # same config + seed: the same numbers
    assert first.history != plain.history  # other masks: other numbers
