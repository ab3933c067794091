"""Members that share a shape but cannot stack, trained in lockstep: one epoch of each in turn.

A study's seeds train beside each other so that the pruner hears their mean every epoch
(``study.seeds``). Where the stack cannot give each member ``fit``'s bits -- bfloat16
(``train.precision``), another dropout kind or a schedule, max-norm, a norm layer, label
smoothing, MC dropout -- each member keeps its own model and optimizer and runs
:meth:`~droplab.fit.lit_module.LitMLP.train_epoch` as ``fit`` runs it, drawing its masks from
its own generator, which is swapped into torch's global one for the member's epoch (and its
eval pass). Nothing is shared but the loop: each member costs what its ``fit`` costs, less
Lightning's per-fit start-up; each equals its own ``fit`` bit for bit
(``tests/test_lockstep.py``), and the group hook can stop them all after any epoch.

CPU only: ``fit``'s CUDA dropout draws from the device's generator, which is not swapped here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence

import torch

from droplab.config.schema import Config
from droplab.data.splits import Dataset
from droplab.fit.stack import kernels
from droplab.fit.stack.grouping import same_shape
from droplab.fit.stack.members import (
    GroupHook,
    Member,
    MemberResult,
    close_group,
    member_inputs,
    member_result,
    prepare_member,
)
from droplab.fit.trainer import (
    EpochHook,
    check_monitor,
    resolve_device,
    time_budget,
)


def can_lockstep(cfgs: Sequence[Config]) -> bool:
    """Whether ``cfgs`` can train in lockstep: several, on CPU, differing only where the
    members of a stack may (seed, dropout rates, monitor, time budget)."""
    on_cpu = resolve_device(cfgs[0].train.device).type == "cpu" if cfgs else False
    return len(cfgs) > 1 and on_cpu and same_shape(cfgs)


def fit_lockstep(
    cfgs: Sequence[Config],
    hooks_per_member: Sequence[Sequence[EpochHook]] | None = None,
    data: Sequence[Dataset | None] | None = None,
    group_hook: GroupHook | None = None,
) -> list[MemberResult]:
    """Train ``cfgs`` (:func:`can_lockstep`) one epoch each in turn; each equals ``fit(cfg)``.

    Arguments and results as :func:`~droplab.fit.stack.members.fit_members`' (``stacked`` is
    1, ``lockstep`` True); ``group_hook`` is called after every epoch of all members.

    Raises:
        ValueError: the configs cannot train in lockstep, or the argument lengths differ.
    """
    if not can_lockstep(cfgs):
        raise ValueError("lockstep needs several CPU configs that differ only in seed and dropout")
    device = torch.device("cpu")
    hooks, splits, threads = member_inputs(cfgs, hooks_per_member, data, device)
    for cfg, split in zip(cfgs, splits, strict=True):
        check_monitor(cfg, split)
    members = [
        prepare_member(c, d, h, device) for c, d, h in zip(cfgs, splits, hooks, strict=True)
    ]
    return _train_lockstep(members, threads, group_hook)


def _train_lockstep(
    members: list[Member], threads: int, group_hook: GroupHook | None = None
) -> list[MemberResult]:
    """Every epoch: each living member's epoch, eval pass and hooks, then the group hook."""
    optimizers = [m.lit.configure_optimizers() for m in members]
    for member in members:
        member.lit.train()
    start = time.perf_counter()
    with kernels.unfilled_allocations():
        for _ in range(members[0].cfg.train.epochs):
            if all(m.error is not None for m in members):
                break
            for member, optimizer in zip(members, optimizers, strict=True):
                if member.error is None:
                    _one_epoch(member, optimizer, start)
            close_group(members, group_hook, start)
    end = time.perf_counter() - start
    return [dataclasses.replace(member_result(m, threads, end, 1), lockstep=True) for m in members]


def _one_epoch(member: Member, optimizer: torch.optim.Optimizer, start: float) -> None:
    """One epoch as ``fit``'s Lightning loop runs it; a member that raises stops alone."""
    with _global_rng(member.generator):
        try:
            member.lit.on_train_epoch_start()
            member.lit.train_epoch(iter(member.batches), optimizer)
            record = member.lit.close_epoch()
            epoch = len(member.lit.history)
            for hook in [*member.hooks, time_budget(member.cfg.train.max_seconds, start)]:
                hook(epoch, record)
        except Exception as exc:  # noqa: BLE001 - the member's failure is its result
            member.error = exc
            member.seconds = time.perf_counter() - start


@contextlib.contextmanager
def _global_rng(generator: torch.Generator) -> Iterator[None]:
    """torch's global CPU generator holds ``generator``'s state inside, and gives it back."""
    outside = torch.get_rng_state()
    torch.set_rng_state(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(torch.get_rng_state())
        torch.set_rng_state(outside)
