"""Seed-vectorized training: members that share a shape train as ONE stacked model.

A comparison trains one network for many seeds and dropout rates. Here each member keeps what
makes it an independent :func:`droplab.training.fit` -- its own data split, initial weights,
dropout masks and batch order -- while the members' weights sit side by side in tensors of
shape ``(members, fan_in, fan_out)`` (:class:`droplab.stacked.Stack`), and one forward, one
backward and one optimizer step serve them all.

Each member equals its own ``fit`` bit for bit on CPU (``tests/test_vectorized.py``):

- init: ``seed_all`` then ``build_model``, as ``fit``; the global RNG state right after is the
  one ``fit`` draws its first mask from (Lightning draws nothing in between), so each member
  gets a ``torch.Generator`` holding it, and the stack draws its masks from that;
- batches: each member's :class:`~droplab.data.Batches` generator draws its permutations; as
  Lightning calls ``iter()`` once before epoch 1 to check the loader, one is drawn and dropped;
- loss: the sum of the members' ``LitMLP.loss``, so each slice gets its own gradient;
- kernels: where a stacked kernel could round differently from ``fit``'s (GEMM sizes, thread
  counts and alignments, exp/erf/tanh activations, the optimizer's vector loops) the stack
  either works per member or was probed to match (:mod:`droplab.stacked`); when no exact way
  exists for some size, the members train one by one with ``fit`` (``MemberResult.stacked``);
- epoch end: each member's own ``LitMLP``, holding a copy of its weights, runs ``close_epoch``:
  the same eval pass, scores, gaps and NaN check as ``fit``.

Not a Trainer (DESIGN.md builds those in ``training.py`` only): a plain loop,
``_train_epoch``. As ``fit`` runs one Lightning step per epoch, Lightning costs ``fit`` nothing
per mini-batch either, so the speed-up measured against it (``benchmarks/vectorized.py``) is
the stack's own: per-op overhead paid once for all members, uniform draws for the masks.

A member whose running loss turns NaN/inf, or whose hook raises (pruning, the time budget,
which counts the stack's wall time), stops alone with the exception in ``error``; Ctrl-C stops
all. On CUDA the stack runs, but ``fit``'s fused dropout kernel draws other masks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from droplab import metrics
from droplab.config.schema import Config
from droplab.data.batches import Batches
from droplab.data.splits import Dataset, prepare
from droplab.fit.lit_module import Extras, LitMLP
from droplab.fit.stack import kernels
from droplab.fit.stack.grouping import can_stack
from droplab.fit.trainer import (
    EpochHook,
    FitResult,
    build_model,
    configure_threads,
    fit,
    keep_best,
    positive_weight,
    resolve_device,
    resolve_precision,
    seed_all,
    thread_count,
    time_budget,
)

GroupHook = Callable[[int, Mapping[int, Mapping[str, float]]], None]
"""Called once per epoch with ``{member index: record}`` of every living member; what it
raises stops every living member at that epoch (e.g. pruning on the mean over seeds)."""


# Lightning's _check_dataloader_iterable calls iter() on the loader before the first epoch.
_LIGHTNING_CHECK_ITERS = 1


@dataclass
class MemberResult(FitResult):
    """A :class:`FitResult` of one member; ``error`` is why it stopped early, if it did.

    A stopped member keeps the history of the epochs it completed (as ``fit``'s hooks saw).
    ``stacked`` is the number of members it trained with (itself included; 1: alone, by
    ``fit``, whose failure leaves ``model`` at its initial weights).
    """

    error: Exception | None = None
    stacked: int = 1
    lockstep: bool = False
    """Trained epoch by epoch beside the others without a stack (:mod:`.lockstep`): the group
    hook heard every epoch."""


@dataclass
class Member:
    """One member's own pieces: config, module (loss and eval), batches, dropout generator."""

    cfg: Config
    data: Dataset
    lit: LitMLP
    batches: Batches
    generator: torch.Generator
    hooks: list[EpochHook]
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    error: Exception | None = None
    seconds: float | None = None


def prepare_member(
    cfg: Config, data: Dataset, hooks: Sequence[EpochHook], dev: torch.device
) -> Member:
    """What ``fit`` does before its first step, with the dropout RNG state captured."""
    seed_all(cfg.seed, cfg.train.deterministic)
    model = build_model(cfg, data)
    generator = torch.Generator(device="cpu")
    generator.set_state(torch.get_rng_state())
    if dev.type != "cpu":  # fit's fused CUDA dropout cannot be replayed: masks differ there
        generator = torch.Generator(device=dev).manual_seed(cfg.seed)
    lit = LitMLP(
        model.to(dev),
        data.n_classes,
        cfg.train,
        train=(data.x_train, data.y_train),
        val=(data.x_val, data.y_val),
        pos_weight=positive_weight(cfg, data),
        extras=Extras.of(cfg),
        target_std=data.target_std,
        precision=resolve_precision(cfg),
    )
    batches = Batches(data.x_train, data.y_train, cfg.train.batch_size, cfg.seed)
    for _ in range(_LIGHTNING_CHECK_ITERS):
        batches.permutation()
    member = Member(cfg, data, lit, batches, generator, list(hooks))
    member.hooks.insert(0, keep_best(lit, cfg.train.monitor, member.best_state))
    return member


class _Rows:
    """Every member's training split side by side: one gather per step serves all members."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.x = torch.stack([m.data.x_train for m in members])
        self.y = torch.stack([m.data.y_train for m in members])
        self.batch_size = members[0].cfg.train.batch_size
        self.offsets = torch.arange(len(members), device=self.x.device).unsqueeze(1)
        self.offsets *= self.x.shape[1]

    def epoch(self, orders: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` of shapes ``(members, batch, features)`` and ``(members, batch)``."""
        members, n, features = self.x.shape
        rows = torch.stack(list(orders)).to(self.x.device) + self.offsets
        flat_x, flat_y = self.x.view(-1, features), self.y.view(-1)
        for start in range(0, n, self.batch_size):
            idx = rows[:, start : start + self.batch_size].reshape(-1)
            x = flat_x.index_select(0, idx).view(members, -1, features)
            yield x, flat_y.index_select(0, idx).view(members, -1)


def _exact(members: Sequence[Member], threads: int) -> bool:
    """Whether every kernel of the stack can give each member ``fit``'s bits on this machine."""
    cfg, model = members[0].cfg, members[0].lit.model
    if members[0].data.x_train.device.type != "cpu":
        return True  # nothing to match: fit's CUDA dropout draws other masks anyway
    rows, batch = len(members[0].data.x_train), cfg.train.batch_size
    sizes = {min(rows, batch), rows % batch} - {0}
    layers = [m for m in model.net if isinstance(m, nn.Linear)]
    n = len(members)
    gemms = all(
        kernels.gemm_path(n, r, layer.in_features, layer.out_features, threads) is not None
        for r in sizes
        for layer in layers
    )
    shapes = tuple(tuple(p.shape) for p in model.parameters())
    return gemms and kernels.optimizer_matches(cfg.train, n, shapes, threads)


def _train_epoch(
    stack: kernels.Stack,
    members: list[Member],
    rows: _Rows,
    optimizer: torch.optim.Optimizer,
) -> None:
    """One epoch of every member, in lockstep; each member's running loss is accumulated."""
    alive = [i for i, m in enumerate(members) if m.error is None]
    generators = [m.generator for m in members]
    running = torch.zeros(len(members), device=rows.x.device)
    for x, y in rows.epoch([m.batches.permutation() for m in members]):
        logits = stack(x, generators)
        losses = torch.stack(
            [m.lit.loss(z, t) for m, z, t in zip(members, logits, y.unbind(0), strict=True)]
        )
        optimizer.zero_grad()
        # d(sum)/d(loss_m) = 1: each member's slice receives the gradient of its own loss.
        (losses if len(alive) == len(members) else losses[alive]).sum().backward()
        optimizer.step()
        # As LitMLP.training_step: sum of (batch mean x rows), kept on the device.
        running = running + losses.detach() * y.shape[1]
    for i, member in enumerate(members):
        member.lit.set_running_loss(running[i], rows.x.shape[1])


def _close_epoch(stack: kernels.Stack, members: list[Member], start: float) -> None:
    """Each living member's epoch record and hooks; a member that raises stops alone."""
    for i, member in enumerate(members):
        if member.error is not None:
            continue
        stack.copy_to(i, member.lit.model)
        try:
            record = member.lit.close_epoch()
            epoch = len(member.lit.history)
            for hook in [*member.hooks, time_budget(member.cfg.train.max_seconds, start)]:
                hook(epoch, record)
        except Exception as exc:  # noqa: BLE001 - the member's failure is its result
            member.error = exc
            member.seconds = time.perf_counter() - start


def close_group(members: list[Member], group_hook: GroupHook | None, start: float) -> None:
    living = {i: m.lit.history[-1] for i, m in enumerate(members) if m.error is None}
    if group_hook is None or not living:
        return
    try:
        group_hook(len(members[min(living)].lit.history), living)
    except Exception as exc:  # noqa: BLE001 - stops every living member, as its own hook would
        for i in living:
            members[i].error, members[i].seconds = exc, time.perf_counter() - start


def _fit_stack(
    members: list[Member], threads: int, group_hook: GroupHook | None = None
) -> list[MemberResult]:
    cfg = members[0].cfg
    stack = kernels.Stack(
        [m.lit.model for m in members],
        [m.cfg.model.input_dropout for m in members],
        cfg.model.dropout_rng,
    )
    stack.to(members[0].data.x_train.device).train()
    optimizer = kernels.optimizer(list(stack.parameters()), cfg.train, foreach=True)
    rows = _Rows(members)
    start = time.perf_counter()
    with kernels.unfilled_allocations():
        for _ in range(cfg.train.epochs):
            if all(m.error is not None for m in members):
                break
            _train_epoch(stack, members, rows, optimizer)
            _close_epoch(stack, members, start)
            close_group(members, group_hook, start)
    end = time.perf_counter() - start
    return [member_result(m, threads, end, len(members)) for m in members]


def member_result(member: Member, threads: int, seconds: float, size: int) -> MemberResult:
    history = member.lit.history
    return MemberResult(
        history=history,
        summary=metrics.summarize(history, member.cfg.train.monitor),
        model=member.lit.model.cpu().eval(),
        data=member.data,
        device=str(member.data.x_train.device),
        threads=threads,
        seconds=member.seconds if member.seconds is not None else seconds,
        best_state=member.best_state,
        error=member.error,
        stacked=size,
        precision=member.lit.precision,
    )


def _fit_alone(cfg: Config, data: Dataset, hooks: Sequence[EpochHook]) -> MemberResult:
    """``fit``, with a failure kept in ``error`` (and the epochs before it) as a member's."""
    seen: list[dict[str, float]] = []

    def record(_: int, values: Mapping[str, float]) -> None:
        seen.append(dict(values))

    start = time.perf_counter()
    try:
        result = fit(cfg, data, [record, *hooks])
    except Exception as exc:  # noqa: BLE001 - the member's failure is its result
        seed_all(cfg.seed, cfg.train.deterministic)
        return MemberResult(
            history=seen,
            summary=metrics.summarize(seen, cfg.train.monitor),
            model=build_model(cfg, data).eval(),
            data=data,
            device=str(data.x_train.device),
            threads=thread_count(cfg),
            seconds=time.perf_counter() - start,
            error=exc,
            precision=resolve_precision(cfg),
        )
    return MemberResult(**{f: getattr(result, f) for f in FitResult.__dataclass_fields__})


def member_inputs(
    cfgs: Sequence[Config],
    hooks_per_member: Sequence[Sequence[EpochHook]] | None,
    data: Sequence[Dataset | None] | None,
    device: torch.device,
) -> tuple[list[Sequence[EpochHook]], list[Dataset], int]:
    """Each member's hooks and prepared splits on ``device``, and the thread count, set.

    Raises:
        ValueError: the argument lengths differ.
    """
    no_hooks: Sequence[EpochHook] = ()
    hooks = list(hooks_per_member) if hooks_per_member is not None else [no_hooks] * len(cfgs)
    given = list(data) if data is not None else [None] * len(cfgs)
    if not len(hooks) == len(given) == len(cfgs):
        raise ValueError(f"{len(cfgs)} configs, {len(hooks)} hook lists, {len(given)} data sets")
    threads = thread_count(cfgs[0])
    configure_threads(threads)
    splits = [(d or prepare(c.data, c.seed)).to(device) for c, d in zip(cfgs, given, strict=True)]
    return hooks, splits, threads


def fit_members(
    cfgs: Sequence[Config],
    hooks_per_member: Sequence[Sequence[EpochHook]] | None = None,
    data: Sequence[Dataset | None] | None = None,
    group_hook: GroupHook | None = None,
) -> list[MemberResult]:
    """Train stackable configs as one stacked model; each member equals ``fit(cfg)``.

    Args:
        cfgs: configs for which :func:`can_stack` holds.
        hooks_per_member: each member's epoch hooks (as ``fit``'s ``hooks``).
        data: each member's prepared splits (``None``: loaded from its config).
        group_hook: called once per epoch of the stack with every living member's record,
            after their own hooks (:data:`GroupHook`); not called where the members train
            one by one (``stacked == 1``): each has finished before the next starts.

    Returns:
        One result per config, in order. ``seconds`` is the stack's wall time (shared by all
        members, not additive); a member that stopped early has its exception in ``error``.
        Where no stacked kernel is exact on this machine, the members train one by one with
        ``fit`` (``stacked == 1``).

    Raises:
        ValueError: the configs cannot stack, or the argument lengths differ.
        KeyboardInterrupt: Ctrl-C stops every member, as it stops ``fit``.
    """
    if not can_stack(cfgs):
        raise ValueError("configs differ in more than seed and dropout; see group_stackable()")
    device = resolve_device(cfgs[0].train.device)
    hooks, splits, threads = member_inputs(cfgs, hooks_per_member, data, device)
    results: list[MemberResult | None] = [None] * len(cfgs)
    for rows in sorted({len(d.x_train) for d in splits}):
        # train_fraction < 1 can subsample seeds to different sizes: batches must line up.
        idx = [i for i, d in enumerate(splits) if len(d.x_train) == rows]
        members = [prepare_member(cfgs[i], splits[i], hooks[i], device) for i in idx]
        if len(members) > 1 and _exact(members, threads):
            done = _fit_stack(members, threads, group_hook)
        else:  # one member, or no exact stack here: fit itself is the per-member path
            done = [_fit_alone(cfgs[i], splits[i], hooks[i]) for i in idx]
        for i, result in zip(idx, done, strict=True):
            results[i] = result
    return [r for r in results if r is not None]
