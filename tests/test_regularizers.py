"""The regularizer arena: dropout kinds, schedules, max-norm, label smoothing, norm layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from droplab import metrics
from droplab.config import Config, TrainConfig, config_hash, load_config
from droplab.fit import regularizers
from droplab.fit.lit_module import LitMLP
from droplab.fit.model import MLP
from droplab.fit.stack.grouping import can_stack, group_stackable
from droplab.fit.trainer import fit

from .conftest import tiny_config

KINDS = ["gaussian", "alpha", "dropconnect", "concrete"]


def _noise_mean(model: MLP, x: torch.Tensor, layer: int, draws: int) -> torch.Tensor:
    model.train()
    return torch.stack([model.hidden(x, layer)[1] for _ in range(draws)]).mean(0)


@pytest.mark.parametrize("kind", ["gaussian", "concrete"])
def test_unit_noise_keeps_the_expected_activation(kind: str) -> None:
    torch.manual_seed(0)
    model = MLP(4, 1, width=500, depth=1, dropout=0.5, dropout_kind=kind)
    x = torch.randn(1, 4)
    model.eval()
    pre, eval_post = model.hidden(x)
    # eval mode: the noise layer is the identity (nothing is rescaled at test time)
    assert torch.equal(pre, eval_post)
    # training mode: each pass draws new noise
    model.train()
    assert not torch.equal(model.hidden(x)[1], model.hidden(x)[1])
    # the mean over many draws equals the eval-mode activation (concrete: relaxed, ~1%)
    means = _noise_mean(model, x, 0, 2000)
    assert torch.allclose(means.sum(), pre.sum(), rtol=0.03)


def test_alpha_dropout_uses_selu_and_lecun_normal_init() -> None:
    torch.manual_seed(0)
    model = MLP(400, 1, width=400, depth=2, dropout=0.1, dropout_kind="alpha")
    kinds = [type(m) for m in model.net]
    # alpha dropout pairs with SELU, whatever model.activation says
    assert nn.SELU in kinds and nn.AlphaDropout in kinds
    first = model.net[0]
    assert isinstance(first, nn.Linear)
    # LeCun normal: weight variance 1 / fan_in, zero bias
    assert first.weight.var().item() == pytest.approx(1 / 400, rel=0.05)
    assert torch.count_nonzero(first.bias) == 0
    # AlphaDropout keeps the mean (and variance) of SELU's standard-normal fixed point, so the
    # expected activation is the eval-mode one for the inputs it is designed for
    z = torch.randn(200_000)
    noisy = nn.AlphaDropout(0.1).train()(z)
    assert abs(noisy.mean().item() - z.mean().item()) < 0.01
    assert noisy.var().item() == pytest.approx(z.var().item(), rel=0.02)


def test_dropconnect_masks_weights_not_units_and_keeps_the_expected_preactivation() -> None:
    torch.manual_seed(0)
    layer = regularizers.DropConnectLinear(50, 40, p=0.5)
    x = torch.randn(3, 50)
    layer.train()
    one, two = layer(x), layer(x)
    # a fresh mask per call (per mini-batch)
    assert not torch.equal(one, two)
    # weights are dropped, not units: no output unit is zeroed for every row
    assert (one != 0).all()
    # rows of one batch share the weight mask: a repeated row gets the same pre-activation
    same = layer(torch.cat([x[:1], x[:1]]))
    assert torch.allclose(same[0], same[1], atol=1e-6)
    # the expectation over masks equals the eval-mode pre-activation
    mean = torch.stack([layer(x) for _ in range(3000)]).mean(0)
    layer.eval()
    assert torch.allclose(mean, layer(x), atol=0.08)
    # the model puts it on the hidden Linear layers and drops nothing after the activation
    model = MLP(5, 1, width=8, depth=2, dropout=0.3, dropout_kind="dropconnect")
    masked = [m for m in model.net if isinstance(m, regularizers.DropConnectLinear)]
    assert len(masked) == 2 and not any(isinstance(m, nn.Dropout) for m in model.net)


def test_max_norm_caps_each_units_incoming_weights() -> None:
    torch.manual_seed(0)
    model = MLP(10, 1, width=6, depth=2)
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=3.0)
    out_before = model.net[-1].weight.clone()
    regularizers.apply_max_norm(model, 1.5)
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    # every hidden unit's incoming weight vector has norm <= c
    assert all(float(m.weight.detach().norm(dim=1).max()) <= 1.5 + 1e-5 for m in hidden)
    # the output layer is not constrained
    assert torch.equal(model.net[-1].weight, out_before)


def _cfg(tmp_path: Path, *overrides: str) -> Config:
    return tiny_config(tmp_path, "tracking.enabled=false", "model.dropout=0.5", *overrides)


def test_max_norm_bound_holds_after_every_optimizer_step(tmp_path: Path) -> None:
    seen: list[float] = []

    def watch(module: nn.Module, _: tuple[torch.Tensor, ...]) -> None:
        # before each forward the weights are those the last step (and renorm) left
        if isinstance(module, nn.Linear) and module.out_features == 16 and module.training:
            seen.append(float(module.weight.detach().norm(dim=1).max()))

    handle = nn.modules.module.register_module_forward_pre_hook(watch)
    try:
        fit(_cfg(tmp_path, "model.max_norm=0.5", "train.lr=0.05"))
    finally:
        handle.remove()
    # the bound holds at every training step after the first (init may exceed it)
    assert len(seen) > 20 and max(seen[2:]) <= 0.5 + 1e-5


def test_concrete_rates_move_and_stay_in_the_unit_interval(tmp_path: Path) -> None:
    result = fit(_cfg(tmp_path, "model.dropout_kind=concrete", "train.lr=0.05"))
    keys = [metrics.dropout_rate(1), metrics.dropout_rate(2)]
    rates = [[epoch[k] for k in keys] for epoch in result.history]
    # one learned rate per hidden layer, logged every epoch
    assert all(len(r) == 2 for r in rates)
    # the rates are learned: they move away from model.dropout
    assert any(abs(r - 0.5) > 1e-3 for r in rates[-1])
    # and stay probabilities
    assert all(0 < r < 1 for epoch in rates for r in epoch)


def _epochs(result_history: list[dict[str, float]], n: int) -> list[dict[str, float]]:
    keys = metrics.EPOCH_KEYS
    return [{k: e[k] for k in keys} for e in result_history[:n]]


def test_schedules_switch_at_the_switch_epoch(tmp_path: Path) -> None:
    args = ("train.epochs=4",)
    on = fit(_cfg(tmp_path, *args)).history
    off = fit(_cfg(tmp_path, *args, "model.dropout=0.0")).history
    early = fit(
        _cfg(tmp_path, *args, "model.dropout_schedule=early", "model.dropout_switch_epoch=3")
    )
    late = fit(
        _cfg(tmp_path, *args, "model.dropout_schedule=late", "model.dropout_switch_epoch=3")
    )
    # early: epochs 1-2 train exactly as constant dropout, epoch 3 no longer does
    assert _epochs(early.history, 2) == _epochs(on, 2)
    assert early.history[2][metrics.TRAIN_LOSS] != on[2][metrics.TRAIN_LOSS]
    # late: epochs 1-2 train exactly as no dropout, epoch 3 no longer does
    assert _epochs(late.history, 2) == _epochs(off, 2)
    assert late.history[2][metrics.TRAIN_LOSS] != off[2][metrics.TRAIN_LOSS]


def test_label_smoothing_changes_training_not_the_eval_loss_definition(tmp_path: Path) -> None:
    plain = fit(_cfg(tmp_path))
    smooth = fit(_cfg(tmp_path, "train.label_smoothing=0.2"))
    # smoothed targets change the optimisation
    assert smooth.history[-1][metrics.TRAIN_LOSS] != plain.history[-1][metrics.TRAIN_LOSS]
    # the running (training) loss is measured on the smoothed targets: it cannot reach 0
    assert smooth.history[-1][metrics.TRAIN_RUNNING_LOSS] > 0.3


def test_batch_norm_logs_its_variance_shift_and_layer_norm_trains(tmp_path: Path) -> None:
    batch = fit(_cfg(tmp_path, "model.norm=batch"))
    key = metrics.variance_shift(1)
    # one ratio per BatchNorm layer per epoch, positive
    assert all(epoch[key] > 0 for epoch in batch.history)
    assert metrics.variance_shift(2) in batch.history[-1]
    layer = fit(_cfg(tmp_path, "model.norm=layer"))
    # LayerNorm has no running statistics: no variance shift is logged
    assert key not in layer.history[-1]


def test_defaults_change_no_number_and_no_config_hash(tmp_path: Path) -> None:
    cfg = load_config(None)
    # config hashes of existing configs are unchanged (new keys at defaults stay out of it)
    assert config_hash(cfg) == "f72f91902fd4fcac"
    explicit = _cfg(tmp_path, "model.dropout_kind=bernoulli", "model.norm=none")
    # the defaults written out are the same run as the defaults left implicit
    assert config_hash(explicit) == config_hash(_cfg(tmp_path))


@pytest.mark.parametrize(
    "extra",
    [
        "model.dropout_kind=gaussian",
        "model.max_norm=3.0",
        "model.norm=batch",
        "train.label_smoothing=0.1",
        "eval.mc_samples=4",
        "model.dropout_kind=concrete",
    ],
)
def test_non_bernoulli_members_never_stack(tmp_path: Path, extra: str) -> None:
    cfgs = [_cfg(tmp_path, extra, f"seed={s}") for s in range(3)]
    plain = [_cfg(tmp_path, f"seed={s}") for s in range(3)]
    # plain Bernoulli members of one shape stack
    assert can_stack(plain) and group_stackable(plain) == [[0, 1, 2]]
    # members the stacked kernels do not implement train one by one
    assert not can_stack(cfgs) and group_stackable(cfgs) == [[0], [1], [2]]


def _lit(n_classes: int) -> LitMLP:
    x, y = torch.randn(8, 3), torch.zeros(8, dtype=torch.long)
    model = MLP(3, 1 if n_classes == 2 else n_classes, width=4, depth=1)
    return LitMLP(model, n_classes, TrainConfig(), (x, y), (x, y))


def test_label_smoothing_targets() -> None:
    logits, y = torch.randn(6, 1), torch.tensor([0, 1, 0, 1, 1, 0])
    smoothed = y.float() * (1 - 0.2) + 0.2 / 2
    expected = F.binary_cross_entropy_with_logits(logits.squeeze(-1), smoothed)
    # binary: the targets move to y (1 - e) + e / 2
    assert torch.allclose(_lit(2).loss(logits, y, 0.2), expected)
    # no smoothing: the plain loss, bit for bit (what eval-mode losses always use)
    assert torch.equal(
        _lit(2).loss(logits, y), F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.float())
    )
    many, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    # several classes: cross-entropy's own label_smoothing
    assert torch.equal(
        _lit(4).loss(many, labels, 0.1), F.cross_entropy(many, labels, label_smoothing=0.1)
    )
