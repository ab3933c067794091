"""Seed-vectorized training: members that share a shape train as ONE stacked model.

A comparison trains one network for many seeds and dropout rates. Here each member keeps what
makes it an independent :func:`droplab.training.fit` -- its own data split, initial weights,
dropout masks and batch order -- while the members' weights sit side by side in tensors of
shape ``(members, fan_in, fan_out)`` used by ``torch.baddbmm``, and one forward, one backward
and one optimizer step serve them all.

Each member equals its own ``fit`` bit for bit on CPU (``tests/test_vectorized.py``):

- init: ``seed_all`` then ``build_model``, as ``fit``; the global RNG state right after is the
  one ``fit`` draws its first mask from (Lightning draws nothing in between), so each member
  gets a ``torch.Generator`` holding it, and :func:`dropout_masks` draws what ``F.dropout``
  draws (``bernoulli_(1 - p)``, divided by ``1 - p``), same shapes, same order, as float64
  uniforms kept below ``1 - p``: the CPU kernel's own rule, a third of its cost (checked
  once at run time; ``bernoulli_`` itself otherwise);
- batches: each member's :class:`~droplab.data.Batches` generator draws its permutations; as
  Lightning calls ``iter()`` once before epoch 1 to check the loader, one is drawn and dropped;
- loss: the sum of the members' ``LitMLP.loss``, so each slice gets its own gradient; Adam,
  AdamW and SGD are elementwise. Where a batched kernel would round differently (one output
  unit, some sizes and thread counts, exp/erf/tanh activations) the work is done per member;
- epoch end: each member's own ``LitMLP``, holding a copy of its weights, runs ``close_epoch``:
  the same eval pass, scores, gaps and NaN check as ``fit``.

Not a Trainer (DESIGN.md builds those in ``training.py`` only): Lightning adds about 0.5 ms
to every step (at width 32 ``fit`` takes 1.4x ``benchmarks/plain_loop.py``), about 10% of
``fit_members``' time if paid on each stacked step; the plain loop is ``_train_epoch``.

A member whose running loss turns NaN/inf, or whose hook raises (pruning, the time budget,
which counts the stack's wall time), stops alone with the exception in ``error``; Ctrl-C stops
all. On CUDA the stack runs, but ``fit``'s fused dropout kernel draws other masks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from droplab import config as C
from droplab import metrics
from droplab.config import Config
from droplab.data import Batches, Dataset, prepare
from droplab.lit_module import LitMLP
from droplab.model import MLP
from droplab.training import (
    EpochHook,
    FitResult,
    _time_budget,
    build_model,
    configure_threads,
    positive_weight,
    resolve_device,
    seed_all,
    thread_count,
)

# Keys that may differ inside a stack: they change no tensor shape and no shared setting.
_PER_MEMBER = {
    "seed",
    "model.dropout",
    "model.input_dropout",
    "train.monitor",
    "train.max_seconds",
    "train.predict",
}
_SECTIONS = ("seed", "data", "model", "train")
# Lightning's _check_dataloader_iterable calls iter() on the loader before the first epoch.
_LIGHTNING_CHECK_ITERS = 1


@dataclass
class MemberResult(FitResult):
    """A :class:`FitResult` of one member; ``error`` is why it stopped early, if it did.

    A stopped member keeps the history of the epochs it completed (as ``fit``'s hooks saw).
    """

    error: Exception | None = None


def _shape_key(cfg: Config) -> str:
    flat = C.flatten(C.to_dict(cfg))
    kept = {k: v for k, v in flat.items() if k.split(".")[0] in _SECTIONS}
    shared = {k: v for k, v in kept.items() if k not in _PER_MEMBER}
    return repr(sorted(shared.items())) + f"|threads={thread_count(cfg)}"


def can_stack(cfgs: Sequence[Config]) -> bool:
    """Whether ``cfgs`` can train as one stacked model.

    They must agree on everything but the seed, the dropout rates, the monitor, the time
    budget and ``train.predict`` (same data settings, width, depth, activation, batch size,
    epochs, optimizer, lr, weight decay, device and threads).
    """
    return len(cfgs) > 0 and len({_shape_key(c) for c in cfgs}) == 1


def group_stackable(cfgs: Sequence[Config]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped so that each group can stack, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(_shape_key(cfg), []).append(i)
    return list(groups.values())


def dropout_masks(
    shape: Sequence[int], rates: Sequence[float], generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """Each member's scaled mask ``(members, *shape)``: what ``F.dropout(x, p)`` multiplies by.

    On CPU torch draws ``empty_like(x).bernoulli_(1 - p)`` from the global generator and
    divides it by ``1 - p``; member ``m`` draws the same numbers from ``generators[m]``.
    p = 0 draws nothing, as in torch.
    """
    device = generators[0].device
    keep, scale = _mask_constants(tuple(rates), len(shape), device)
    if device.type == "cpu" and _uniform_is_bernoulli():
        u = torch.empty(len(rates), *shape, dtype=torch.float64)
        for row, p, g in zip(u, rates, generators, strict=True):
            if p > 0:
                row.uniform_(generator=g)
            else:
                row.zero_()  # 0 < 1: p = 0 keeps every unit and draws nothing
        return u.lt_(keep).to(torch.float32).mul_(scale)
    masks = torch.ones(len(rates), *shape, device=device)
    for row, p, g in zip(masks, rates, generators, strict=True):
        if p > 0:
            row.bernoulli_(1 - p, generator=g)
    return masks * scale


@functools.cache
def _mask_constants(
    rates: tuple[float, ...], ndim: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member: the keep probability ``1 - p`` (float64) and the survivors' value.

    The survivors' value is ``1`` divided by ``1 - p`` as torch's ``div_`` divides.
    """
    view = (len(rates),) + (1,) * ndim
    keep = torch.tensor([1.0 - p for p in rates], dtype=torch.float64, device=device)
    scale = torch.stack([torch.ones((), device=device).div_(1 - p) for p in rates])
    return keep.view(view), scale.view(view)


@functools.cache
def _uniform_is_bernoulli() -> bool:
    """Whether ``uniform_`` in float64 then ``< 1 - p`` reproduces ``bernoulli_(1 - p)``.

    It does in torch's CPU kernel (one 53-bit uniform draw per element, kept if below
    ``1 - p``) and costs a third of it; checked once, so another kernel falls back.
    """
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    drawn = torch.empty(123, 45).bernoulli_(0.7, generator=g1)
    ours = torch.rand(123, 45, dtype=torch.float64, generator=g2) < 0.7
    return torch.equal(drawn, ours.float()) and torch.equal(g1.get_state(), g2.get_state())


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of every member (``w``: ``(members, fan_in, fan_out)``), bit for bit."""
    if _batched(h, w):
        return torch.baddbmm(b.unsqueeze(1), h, w)
    return torch.stack(_per_member(h, w, b))


def _linear_each(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> Sequence[torch.Tensor]:
    """As :func:`_linear`, one tensor per member (the logits: no stack to undo)."""
    return _linear(h, w, b).unbind(0) if _batched(h, w) else _per_member(h, w, b)


def _per_member(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
    # nn.Linear's own layout, (fan_out, fan_in) contiguous: exactly the GEMM fit runs.
    w_m, b_m = w.unbind(0), b.unbind(0)
    return [F.linear(x, w_m[m].t().contiguous(), b_m[m]) for m, x in enumerate(h.unbind(0))]


def _batched(h: torch.Tensor, w: torch.Tensor) -> bool:
    members, rows, fan_in = h.shape
    threads = torch.get_num_threads()
    return h.device.type != "cpu" or _gemm_matches(members, rows, fan_in, w.shape[2], threads)


@functools.cache
def _gemm_matches(members: int, rows: int, fan_in: int, fan_out: int, threads: int) -> bool:
    """Whether one ``baddbmm`` gives :func:`_per_member`'s bits, forward and backward.

    MKL picks its kernel (and so its summation order) from the sizes and the thread count:
    one output unit takes a GEMV path, width 1024 on few rows splits otherwise, etc. One
    probe on random numbers per size tells which; the values do not change the kernel.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(members, rows, fan_in, generator=g)
    w = torch.randn(members, fan_in, fan_out, generator=g)
    b = torch.randn(members, fan_out, generator=g)
    grad = torch.randn(members, rows, fan_out, generator=g)
    seen = []
    for batched in (True, False):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        if batched:
            out = torch.baddbmm(leaves[2].unsqueeze(1), leaves[0], leaves[1])
        else:
            out = torch.stack(_per_member(*leaves))
        out.backward(grad)
        seen.append([out.detach(), *(t.grad for t in leaves)])
    return all(torch.equal(a, c) for a, c in zip(*seen, strict=True))


class _Stack(nn.Module):
    """The members' MLPs side by side: per layer, weights ``(members, fan_in, fan_out)``
    (so that a weight's gradient comes out of ``bmm`` in its own layout, with no transposing
    copy) and biases ``(members, fan_out)``."""

    def __init__(self, models: Sequence[MLP], input_rates: Sequence[float]) -> None:
        super().__init__()
        layers = [[m for m in model.net if isinstance(m, nn.Linear)] for model in models]
        self.weights = nn.ParameterList(
            torch.stack([ls[k].weight.detach().t() for ls in layers])
            for k in range(len(layers[0]))
        )
        self.biases = nn.ParameterList(
            torch.stack([ls[k].bias.detach() for ls in layers]) for k in range(len(layers[0]))
        )
        net = list(models[0].net)
        self.activation = net[net.index(layers[0][0]) + 1]
        # rates[0]: input dropout per member; rates[k]: hidden layer k's dropout per member.
        self.rates: list[Sequence[float]] = [
            list(input_rates),
            *zip(*(model.rates for model in models), strict=True),
        ]

    def forward(
        self, x: torch.Tensor, generators: Sequence[torch.Generator]
    ) -> Sequence[torch.Tensor]:
        """Each member's logits (training mode: each member's own dropout masks)."""
        h = self._drop(x, self.rates[0], generators)
        for k in range(len(self.rates) - 1):
            h = _linear(h, self.weights[k], self.biases[k])
            h = self._drop(self._activate(h), self.rates[k + 1], generators)
        return _linear_each(h, self.weights[-1], self.biases[-1])

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if isinstance(self.activation, nn.ReLU | nn.LeakyReLU):
            return self.activation(h)
        # exp/erf/tanh kernels may round differently in a loop's vector body and its scalar
        # tail, and stacking moves elements between the two (ELU at width 19 differed).
        return torch.stack([self.activation(h_m) for h_m in h.unbind(0)])

    def _drop(
        self, h: torch.Tensor, rates: Sequence[float], generators: Sequence[torch.Generator]
    ) -> torch.Tensor:
        if not any(rates):
            return h
        return h * dropout_masks(h.shape[1:], rates, generators).to(h.device)

    @torch.no_grad()
    def copy_to(self, member: int, model: MLP) -> None:
        """Write member ``member``'s weights into its own ``model``."""
        layers = [m for m in model.net if isinstance(m, nn.Linear)]
        for layer, w, b in zip(layers, self.weights, self.biases, strict=True):
            layer.weight.copy_(w[member].t())
            layer.bias.copy_(b[member])


@dataclass
class _Member:
    """One member's own pieces: config, module (loss and eval), batches, dropout generator."""

    cfg: Config
    data: Dataset
    lit: LitMLP
    batches: Batches
    generator: torch.Generator
    hooks: list[EpochHook]
    error: Exception | None = None
    seconds: float | None = None


def _member(cfg: Config, data: Dataset, hooks: Sequence[EpochHook], dev: torch.device) -> _Member:
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
    )
    batches = Batches(data.x_train, data.y_train, cfg.train.batch_size, cfg.seed)
    for _ in range(_LIGHTNING_CHECK_ITERS):
        _permutation(batches)
    return _Member(cfg, data, lit, batches, generator, list(hooks))


def _permutation(batches: Batches) -> torch.Tensor:
    """The row order ``iter(batches)`` draws for an epoch (``_Rows`` then gathers for all)."""
    # TODO(data/splits.py): a public Batches.permutation(), so that _generator stays private.
    return torch.randperm(len(batches.x), generator=batches._generator)


class _Rows:
    """Every member's training split side by side: one gather per step serves all members."""

    def __init__(self, members: Sequence[_Member]) -> None:
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


class _OptimizerSource:
    """Just what ``LitMLP.configure_optimizers`` reads, so the stack gets the same optimizer."""

    def __init__(self, model: nn.Module, cfg: Config) -> None:
        self.model = model
        self.cfg = cfg.train


def _optimizer(stack: _Stack, cfg: Config) -> torch.optim.Optimizer:
    optimizer = LitMLP.configure_optimizers(cast(LitMLP, _OptimizerSource(stack, cfg)))
    for group in optimizer.param_groups:
        group["foreach"] = True  # CPU foreach runs the same per-tensor kernels, in fewer calls
    return optimizer


def _train_epoch(
    stack: _Stack, members: list[_Member], rows: _Rows, optimizer: torch.optim.Optimizer
) -> None:
    """One epoch of every member, in lockstep; each member's running loss is accumulated."""
    alive = [i for i, m in enumerate(members) if m.error is None]
    generators = [m.generator for m in members]
    running = torch.zeros(len(members), device=rows.x.device)
    for x, y in rows.epoch([_permutation(m.batches) for m in members]):
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
    for i, m in enumerate(members):
        m.lit._running_sum = running[i]
        m.lit._running_count = rows.x.shape[1]


def _close_epoch(stack: _Stack, members: list[_Member], start: float) -> None:
    """Each living member's epoch record and hooks; a member that raises stops alone."""
    for i, m in enumerate(members):
        if m.error is not None:
            continue
        stack.copy_to(i, m.lit.model)
        try:
            record = m.lit.close_epoch()
            epoch = len(m.lit.history)
            for hook in [*m.hooks, _time_budget(m.cfg.train.max_seconds, start)]:
                hook(epoch, record)
        except Exception as exc:  # noqa: BLE001 - the member's failure is its result
            m.error = exc
            m.seconds = time.perf_counter() - start


def _fit_stack(members: list[_Member], threads: int) -> list[MemberResult]:
    cfg = members[0].cfg
    stack = _Stack([m.lit.model for m in members], [m.cfg.model.input_dropout for m in members])
    stack.to(members[0].data.x_train.device).train()
    optimizer = _optimizer(stack, cfg)
    rows = _Rows(members)
    start = time.perf_counter()
    for _ in range(cfg.train.epochs):
        if all(m.error is not None for m in members):
            break
        _train_epoch(stack, members, rows, optimizer)
        _close_epoch(stack, members, start)
    end = time.perf_counter() - start
    return [_result(m, threads, end) for m in members]


def _result(m: _Member, threads: int, seconds: float) -> MemberResult:
    history = m.lit.history
    return MemberResult(
        history=history,
        summary=metrics.summarize(history, m.cfg.train.monitor),
        model=m.lit.model.cpu().eval(),
        data=m.data,
        device=str(m.data.x_train.device),
        threads=threads,
        seconds=m.seconds if m.seconds is not None else seconds,
        error=m.error,
    )


def fit_members(
    cfgs: Sequence[Config],
    hooks_per_member: Sequence[Sequence[EpochHook]] | None = None,
    data: Sequence[Dataset | None] | None = None,
) -> list[MemberResult]:
    """Train stackable configs as one stacked model; each member equals ``fit(cfg)``.

    Args:
        cfgs: configs for which :func:`can_stack` holds.
        hooks_per_member: each member's epoch hooks (as ``fit``'s ``hooks``).
        data: each member's prepared splits (``None``: loaded from its config).

    Returns:
        One result per config, in order. ``seconds`` is the stack's wall time (shared by all
        members, not additive); a member that stopped early has its exception in ``error``.

    Raises:
        ValueError: the configs cannot stack, or the argument lengths differ.
        KeyboardInterrupt: Ctrl-C stops every member, as it stops ``fit``.
    """
    if not can_stack(cfgs):
        raise ValueError("configs differ in more than seed and dropout; see group_stackable()")
    hooks = list(hooks_per_member) if hooks_per_member is not None else [()] * len(cfgs)
    given = list(data) if data is not None else [None] * len(cfgs)
    if not len(hooks) == len(given) == len(cfgs):
        raise ValueError(f"{len(cfgs)} configs, {len(hooks)} hook lists, {len(given)} data sets")
    threads = thread_count(cfgs[0])
    configure_threads(threads)
    device = resolve_device(cfgs[0].train.device)
    splits = [(d or prepare(c.data, c.seed)).to(device) for c, d in zip(cfgs, given, strict=True)]
    results: list[MemberResult | None] = [None] * len(cfgs)
    for rows in sorted({len(d.x_train) for d in splits}):
        # train_fraction < 1 can subsample seeds to different sizes: batches must line up.
        idx = [i for i, d in enumerate(splits) if len(d.x_train) == rows]
        members = [_member(cfgs[i], splits[i], hooks[i], device) for i in idx]
        for i, result in zip(idx, _fit_stack(members, threads), strict=True):
            results[i] = result
    return [r for r in results if r is not None]
