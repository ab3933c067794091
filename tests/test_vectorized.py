"""Seed-vectorized training: each stacked member is, bit for bit, its own ``fit`` (CPU)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from droplab import metrics
from droplab.config import Config
from droplab.data.splits import Dataset, prepare
from droplab.fit.lit_module import NonFiniteLoss
from droplab.fit.masks import Pcg64Dropout
from droplab.fit.model import MLP
from droplab.fit.stack import kernels
from droplab.fit.stack.grouping import can_stack, group_stackable
from droplab.fit.stack.kernels import dropout_masks, linear
from droplab.fit.stack.members import fit_members
from droplab.fit.trainer import EpochHook, FitResult, TrialStopped, fit

from .conftest import tiny_config

SEEDS = (0, 1)
RATES = (0.0, 0.3, 0.5)


def grid(tmp_path: Path, *overrides: str) -> list[Config]:
    """Seeds x dropout rates of the tiny config: 6 members that share a shape."""
    return [
        tiny_config(tmp_path, f"seed={s}", f"model.dropout={p}", *overrides)
        for s in SEEDS
        for p in RATES
    ]


def assert_same_run(member: FitResult, alone: FitResult) -> None:
    # every per-epoch metric and every summary metric equals the independent fit, bit for bit
    assert member.history == alone.history
    assert member.summary == alone.summary
    # and so do the trained weights
    for (name, a), (_, b) in zip(
        member.model.state_dict().items(), alone.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("uniform_draws", [True, False])
def test_masks_match_nn_dropout_bit_for_bit(
    uniform_draws: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both ways of drawing: float64 uniforms (fast) and bernoulli_ itself (the fallback)
    monkeypatch.setattr(kernels, "_uniform_is_bernoulli", lambda: uniform_draws)
    rates = [0.0, 0.1, 0.3, 0.5, 0.8]
    x = torch.randn(3, 37, 16)
    generators = [torch.Generator().manual_seed(100 + m) for m in range(len(rates))]
    drawn = [dropout_masks(x.shape[1:], rates, generators) for _ in range(3)]
    for m, p in enumerate(rates):
        torch.manual_seed(100 + m)  # the global RNG as member m's fit would hold it
        drop = nn.Dropout(p).train()
        for step in range(3):  # consecutive draws stay in step with the global generator
            # same survivors, same 1 / (1 - p) scaling, same bits
            assert torch.equal(x[step] * drawn[step][m], drop(x[step])), (p, step)
        # and the member's generator ends where the global one does (p = 0 draws nothing)
        assert torch.equal(generators[m].get_state(), torch.get_rng_state()), p


def test_pcg64_masks_match_pcg64_dropout_bit_for_bit() -> None:
    rates = [0.0, 0.1, 0.3, 0.5, 0.8]
    x = torch.randn(3, 37, 16)
    generators = [torch.Generator().manual_seed(100 + m) for m in range(len(rates))]
    drawn = [dropout_masks(x.shape[1:], rates, generators, "pcg64") for _ in range(3)]
    for m, p in enumerate(rates):
        torch.manual_seed(100 + m)
        drop = Pcg64Dropout(p).train()
        for step in range(3):
            assert torch.equal(x[step] * drawn[step][m], drop(x[step])), (p, step)
        assert torch.equal(generators[m].get_state(), torch.get_rng_state()), p


@pytest.mark.parametrize("fan_out", [1, 3, 16])
@pytest.mark.parametrize("rows", [50, 51])
def test_stacked_linear_equals_each_members_own_f_linear(fan_out: int, rows: int) -> None:
    h, w, b = torch.randn(4, rows, 19), torch.randn(4, fan_out, 19), torch.randn(4, fan_out)
    grad = torch.randn(4, rows, fan_out)
    stacked_w = w.transpose(1, 2).contiguous().requires_grad_()
    out = linear(h, stacked_w, b)
    out.backward(grad)
    for m in range(4):
        # fit's own layer: fresh tensors (a member's slice of h starts off a 16-byte
        # boundary when rows x 19 is odd, and MKL's narrow GEMMs round by alignment)
        w_m = w[m].clone().requires_grad_()
        own = F.linear(h[m].clone(), w_m, b[m].clone())
        own.backward(grad[m].clone())
        # batched where batching is exact, per member where it is not: same bits both ways
        assert torch.equal(out[m], own), m
        assert w_m.grad is not None and stacked_w.grad is not None
        assert torch.equal(stacked_w.grad[m].t(), w_m.grad), m


def test_members_equal_independent_fits(tmp_path: Path) -> None:
    cfgs = grid(tmp_path)
    for cfg, member in zip(cfgs, fit_members(cfgs), strict=True):
        # no member stopped early, and all six trained as one stack
        assert member.error is None and member.stacked == len(cfgs)
        assert_same_run(member, fit(cfg))


@pytest.mark.parametrize(
    "overrides",
    [
        ("model.activation=tanh", "model.input_dropout=0.2", "train.pos_weight=auto"),
        ("model.depth=3", "model.activation=gelu", "train.optimizer=adamw"),
        ("train.optimizer=sgd", "train.lr=0.05", "train.weight_decay=0.001"),
        ("data.source=sklearn:digits", "model.activation=leaky_relu"),
        ("model.dropout_rng=pcg64", "model.input_dropout=0.2"),
        # odd sizes: ELU's exp rounds differently in a kernel's vector body and scalar tail,
        # and members' slices start off alignment (MKL's one-logit GEMM rounds by it)
        ("model.activation=elu", "model.width=19", "train.batch_size=101"),
        # two threads: MKL and the elementwise kernels split their work by the thread count
        # (one epoch: two threads on two busy cores spin more than they compute)
        pytest.param(
            ("train.threads=2", "model.width=19", "train.batch_size=101", "train.epochs=1"),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_members_equal_independent_fits_across_settings(
    tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    cfgs = grid(tmp_path, *overrides)[::2]  # 3 members: both seeds, each rate at least once
    rates = [0.5, 0.1, 0.3][: cfgs[0].model.depth]  # and one rate per layer
    cfgs.append(tiny_config(tmp_path, "seed=7", f"model.dropout={rates}", *overrides))
    for cfg, member in zip(cfgs, fit_members(cfgs), strict=True):
        # stacked (no fallback to fit on this machine), and still each member's own fit
        assert member.stacked == len(cfgs)
        assert_same_run(member, fit(cfg))


def test_where_no_stacked_kernel_is_exact_members_train_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as on a machine where the stacked optimizer step rounds apart from fit's
    monkeypatch.setattr(kernels, "optimizer_matches", lambda *_: False)
    cfgs = grid(tmp_path)[:2]
    data = [prepare(c.data, c.seed) for c in cfgs]
    data[1] = with_nan_rows(data[1])
    results = fit_members(cfgs, data=data)
    # each member is then trained by fit itself, one by one
    assert [r.stacked for r in results] == [1, 1]
    assert_same_run(results[0], fit(cfgs[0], data[0]))
    # and a failing one is still a member's failure, not the caller's exception
    assert isinstance(results[1].error, NonFiniteLoss) and results[1].history == []


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_the_optimizer_probe_steps_the_tensors_it_is_given(tmp_path: Path, optimizer: str) -> None:
    cfg = tiny_config(tmp_path, f"train.optimizer={optimizer}").train
    params = [torch.zeros(3, 2), torch.zeros(2)]
    built = kernels.optimizer(params, cfg, foreach=False)
    for p in params:
        p.grad = torch.ones_like(p)
    built.step()
    # the probe compares stepped tensors: an optimizer over copies would leave them unchanged
    assert all(bool((p != 0).all()) for p in params)


def test_result_is_shaped_like_fit(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model.dropout=0.3")
    (member,) = fit_members([cfg])
    # one record per epoch, each with every metric of DESIGN.md section 4
    assert len(member.history) == cfg.train.epochs
    assert all(set(metrics.EPOCH_KEYS) <= set(r) for r in member.history)
    # the summary is the one fit computes from the history
    assert member.summary == metrics.summarize(member.history, cfg.train.monitor)
    # the model is an ordinary MLP, on the CPU, in eval mode (plots, logging, replay)
    assert isinstance(member.model, MLP) and not member.model.training
    assert member.device == "cpu" and member.threads == 1 and member.seconds > 0


def test_can_stack_and_grouping(tmp_path: Path) -> None:
    narrow = grid(tmp_path)
    wide = tiny_config(tmp_path, "model.width=32")
    fast = tiny_config(tmp_path, "train.lr=0.01")
    # seeds and dropout rates may differ inside a stack
    assert can_stack(narrow)
    # another width, or another learning rate, is another shape of work
    assert not can_stack([*narrow, wide]) and not can_stack([narrow[0], fast])
    assert not can_stack([])
    # groups keep the order of first appearance and cover every index once
    assert group_stackable([narrow[0], wide, narrow[1], fast, narrow[2]]) == [[0, 2, 4], [1], [3]]


def test_unstackable_configs_are_refused(tmp_path: Path) -> None:
    cfgs = [tiny_config(tmp_path), tiny_config(tmp_path, "model.width=32")]
    # fit_members never silently trains different shapes together
    with pytest.raises(ValueError, match="group_stackable"):
        fit_members(cfgs)


def with_nan_rows(data: Dataset) -> Dataset:
    x = data.x_train.clone()
    x[:5] = math.nan
    return dataclasses.replace(data, x_train=x)


def test_a_diverging_member_fails_alone(tmp_path: Path) -> None:
    cfgs = grid(tmp_path)[:3]
    data = [prepare(c.data, c.seed) for c in cfgs]
    data[1] = with_nan_rows(data[1])
    results = fit_members(cfgs, data=data)
    # the member whose loss turns NaN ends as fit would, with NonFiniteLoss and no epochs
    assert isinstance(results[1].error, NonFiniteLoss) and results[1].history == []
    # the others never see its NaNs: still exactly their independent fits
    for i in (0, 2):
        assert results[i].error is None
        assert_same_run(results[i], fit(cfgs[i], data[i]))


def test_hooks_are_per_member_and_a_stop_stops_one(tmp_path: Path) -> None:
    cfgs = grid(tmp_path)[:2]
    seen: list[list[tuple[int, dict[str, float]]]] = [[], []]

    def recorder(i: int, stop_at: int | None = None) -> EpochHook:
        def hook(epoch: int, values: Mapping[str, float]) -> None:
            seen[i].append((epoch, dict(values)))
            if epoch == stop_at:
                raise TrialStopped(f"pruned at epoch {epoch}")

        return hook

    results = fit_members(cfgs, [[recorder(0, stop_at=2)], [recorder(1)]])
    # the pruned member keeps the epochs it ran, like fit's hooks saw them
    assert isinstance(results[0].error, TrialStopped) and len(results[0].history) == 2
    # each hook saw its own member's records, epochs numbered from 1
    for i in (0, 1):
        assert seen[i] == list(enumerate(results[i].history, start=1))
    # the other member trained every epoch, unaffected
    assert results[1].error is None and len(results[1].history) == cfgs[1].train.epochs
    assert_same_run(results[1], fit(cfgs[1]))


def test_members_with_different_train_sizes_still_match(tmp_path: Path) -> None:
    cfgs = grid(tmp_path)[:3]
    data = [prepare(c.data, c.seed) for c in cfgs]
    short = data[2]
    data[2] = dataclasses.replace(short, x_train=short.x_train[:-50], y_train=short.y_train[:-50])
    # a member whose batches cannot line up trains in a stack of its own, still exact
    for cfg, d, member in zip(cfgs, data, fit_members(cfgs, data=data), strict=True):
        assert_same_run(member, fit(cfg, d))
