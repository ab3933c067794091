"""Lockstep without a stack: members that cannot stack train one epoch each in turn, each
equal to its own ``fit`` bit for bit, and a group hook hears every epoch (CPU)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from droplab.fit.stack.grouping import can_stack
from droplab.fit.stack.lockstep import can_lockstep, fit_lockstep
from droplab.fit.trainer import EpochHook, TrialStopped, fit

from .conftest import tiny_config
from .test_vectorized import assert_same_run


def seeds(tmp_path: Path, *overrides: str) -> list:
    return [
        tiny_config(tmp_path, f"seed={s}", f"model.dropout={p}", *overrides)
        for s, p in ((0, 0.3), (1, 0.3), (2, 0.5))
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        ("train.precision=bf16-mixed", "model.width=24"),
        ("train.precision=bf16-mixed", "model.dropout_rng=pcg64", "model.input_dropout=0.1"),
        ("model.dropout_kind=dropconnect",),
        ("model.dropout_kind=concrete", "model.norm=batch"),
        ("model.dropout_schedule=late", "model.dropout_switch_epoch=2", "model.max_norm=2"),
        ("train.label_smoothing=0.1", "eval.mc_samples=4", "model.dropout_kind=gaussian"),
    ],
)
def test_members_equal_their_own_fit(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    cfgs = seeds(tmp_path, *overrides)
    # none of these can stack, all of them can train in lockstep
    assert not can_stack(cfgs) and can_lockstep(cfgs)
    results = fit_lockstep(cfgs)
    for cfg, member in zip(cfgs, results, strict=True):
        assert member.lockstep and member.stacked == 1 and member.error is None
        alone = fit(cfg)
        assert member.precision == alone.precision
        assert_same_run(member, alone)


def test_group_hook_hears_every_epoch_and_can_stop_all(tmp_path: Path) -> None:
    cfgs = seeds(tmp_path, "train.precision=bf16-mixed")
    heard: list[tuple[int, list[int]]] = []
    own: list[list[int]] = [[], [], []]

    def group(epoch: int, records: Mapping[int, Mapping[str, float]]) -> None:
        heard.append((epoch, sorted(records)))
        if epoch == 2:
            raise TrialStopped("pruned at epoch 2")

    def mine(i: int) -> EpochHook:
        return lambda epoch, _: own[i].append(epoch)

    results = fit_lockstep(cfgs, [[mine(i)] for i in range(3)], group_hook=group)
    # once per epoch, with every living member's record, after each member's own hooks
    assert heard == [(1, [0, 1, 2]), (2, [0, 1, 2])]
    assert own == [[1, 2]] * 3
    # what the group hook raised stopped every member at that epoch
    for r in results:
        assert isinstance(r.error, TrialStopped) and len(r.history) == 2
    # and the epochs they trained are still their own fit's first two
    first_two = fit(tiny_config(tmp_path, "seed=0", "model.dropout=0.3",
                                "train.precision=bf16-mixed", "train.epochs=2"))  # fmt: skip
    assert results[0].history == first_two.history


def test_a_member_that_stops_alone_leaves_the_others_exact(tmp_path: Path) -> None:
    cfgs = seeds(tmp_path, "model.dropout_kind=gaussian")

    def stop(epoch: int, _: Mapping[str, float]) -> None:
        if epoch == 1:
            raise TrialStopped("stopped")

    results = fit_lockstep(cfgs, [[], [stop], []])
    assert isinstance(results[1].error, TrialStopped) and len(results[1].history) == 1
    assert_same_run(results[2], fit(cfgs[2]))


def test_refuses_what_cannot_train_together(tmp_path: Path) -> None:
    assert not can_lockstep([tiny_config(tmp_path)])  # one member: nothing to lockstep
    mixed = [tiny_config(tmp_path), tiny_config(tmp_path, "model.width=32")]
    assert not can_lockstep(mixed)
    with pytest.raises(ValueError, match="lockstep"):
        fit_lockstep(mixed)
