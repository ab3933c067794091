"""The plain MLP and PyTorch's inverted dropout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from droplab.fit.activations import draw_activations
from droplab.fit.model import MLP


def test_shapes_and_layers() -> None:
    model = MLP(30, 1, width=8, depth=3, dropout=[0.1, 0.2, 0.3], input_dropout=0.05)
    # one logit per row for a binary target
    assert model(torch.randn(5, 30)).shape == (5, 1)
    # one rate per hidden layer, in order
    assert model.rates == [0.1, 0.2, 0.3]
    # input dropout adds a Dropout before the first Linear
    assert isinstance(model.net[0], torch.nn.Dropout)


def test_eval_mode_is_deterministic_and_train_mode_is_not() -> None:
    torch.manual_seed(0)
    model = MLP(10, 1, width=64, depth=2, dropout=0.5)
    x = torch.randn(32, 10)
    model.eval()
    # eval mode: dropout off, the same input gives the same output
    assert torch.equal(model(x), model(x))
    model.train()
    # training mode: each pass draws a new mask
    assert not torch.equal(model(x), model(x))


def test_dropout_zero_equals_eval_mode() -> None:
    torch.manual_seed(0)
    model = MLP(10, 3, width=32, depth=2, dropout=0.0)
    x = torch.randn(16, 10)
    train_out = model.train()(x)
    # with p = 0 training mode and eval mode compute the same function
    assert torch.allclose(train_out, model.eval()(x))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_inverted_dropout_scales_survivors_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(1)
    model = MLP(4, 1, width=2000, depth=1, dropout=p)
    x = torch.randn(1, 4)
    model.eval()
    pre, eval_post = model.hidden(x)
    # eval mode: nothing is dropped and nothing is scaled
    assert torch.equal(pre, eval_post)
    model.train()
    pre_t, post = model.hidden(x)
    kept = post != 0
    alive = pre_t != 0
    # survivors are multiplied by 1 / (1 - p) at training time (p = drop probability)
    assert torch.allclose(post[kept], pre_t[kept] / (1 - p), rtol=1e-5)
    # about a fraction p of the active units is dropped
    assert abs(1 - kept.sum().item() / alive.sum().item() - p) < 0.05
    # so the expected activation equals the eval-mode activation (no test-time rescaling)
    means = torch.stack([model.hidden(x)[1] for _ in range(400)]).mean(0)
    assert torch.allclose(means.sum(), pre.sum(), rtol=0.03)


def test_depth_must_match_rates() -> None:
    # a list of rates must name every hidden layer
    with pytest.raises(ValueError):
        MLP(4, 1, width=4, depth=2, dropout=[0.1])


def test_the_activations_picture_of_a_model_does_not_depend_on_the_one_drawn_before(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    first, other = MLP(6, 1, 8, 2, 0.5), MLP(6, 1, 8, 2, 0.2)
    x = torch.randn(16, 6)
    a = draw_activations(first, x, 0, tmp_path / "a.png")
    b = draw_activations(other, x * 3, 1, tmp_path / "b.png")
    again = draw_activations(first, x, 0, tmp_path / "again.png")
    # the figure is reused between pictures: the same model and rows give the same picture
    assert a.read_bytes() == again.read_bytes()
    # and another model's numbers, titles and scale do not leak into it
    assert a.read_bytes() != b.read_bytes()
