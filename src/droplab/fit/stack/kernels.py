"""The stacked network of :mod:`droplab.vectorized`, and the probes that keep it exact.

Members' weights sit side by side, ``(members, fan_in, fan_out)`` per layer, used by
``torch.baddbmm``. Each kernel is run the way that gives every member the bits its own
:func:`droplab.training.fit` computes on CPU, and where that depends on the machine (MKL picks
its GEMM kernel from the sizes, the thread count and the operands' alignment; the optimizer's
vectorized loops and their scalar tails may round apart) a probe on random numbers decides, once
per size: the values do not change which kernel runs.

- dropout: :func:`dropout_masks` draws what ``F.dropout`` (or
  :class:`~droplab.fit.masks.Pcg64Dropout`) draws, from each member's generator;
- linear layers: one ``baddbmm`` where it gives ``F.linear``'s bits forward and backward, else
  one ``F.linear`` per member on operands aligned as ``fit``'s freshly allocated tensors are
  (a member's slice of a stacked tensor may start off a 16-byte boundary: MKL's GEMMs with one
  or a few outputs then round differently -- the ELU, width 19, batch 101 failure on AMD EPYC);
- activations: ReLU and LeakyReLU on the stack (exact anywhere); exp/erf/tanh ones per member,
  as their vectorized body and scalar tail may round apart and stacking moves elements between
  them;
- optimizer: one optimizer over the stacked tensors where :func:`optimizer_matches`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from droplab.config.schema import TrainConfig
from droplab.fit.lit_module import build_optimizer
from droplab.fit.masks import keep_mask
from droplab.fit.model import MLP

BATCHED, PER_MEMBER = "batched", "member"


_ALIGNMENT = 64  # bytes: where torch's CPU allocator starts every tensor it allocates


def dropout_masks(
    shape: Sequence[int],
    rates: Sequence[float],
    generators: Sequence[torch.Generator],
    rng: str = "torch",
) -> torch.Tensor:
    """Each member's scaled mask ``(members, *shape)``: what ``F.dropout(x, p)`` multiplies by.

    On CPU torch draws ``empty_like(x).bernoulli_(1 - p)`` from the global generator and
    divides it by ``1 - p``; member ``m`` draws the same numbers from ``generators[m]``, as
    float64 uniforms kept below ``1 - p`` (the CPU kernel's own rule, at two thirds of its
    cost; checked once, ``bernoulli_`` itself otherwise). p = 0 draws nothing, as in torch.
    With ``rng="pcg64"`` on CPU each member draws :func:`~droplab.fit.masks.keep_mask`'s bits.
    """
    device = generators[0].device
    keep, scale = _mask_constants(tuple(rates), len(shape), device)
    if device.type == "cpu" and rng == "pcg64":
        kept = torch.ones(len(rates), *shape)
        for row, p, g in zip(kept, rates, generators, strict=True):
            if p > 0:
                row.copy_(keep_mask(shape, p, g))
        return kept.mul_(scale)
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
    ``1 - p``); checked once, so another kernel falls back.
    """
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    drawn = torch.empty(123, 45).bernoulli_(0.7, generator=g1)
    ours = torch.rand(123, 45, dtype=torch.float64, generator=g2) < 0.7
    return torch.equal(drawn, ours.float()) and torch.equal(g1.get_state(), g2.get_state())


def aligned(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a contiguous copy of it that starts where a fresh allocation would."""
    if t.is_contiguous() and t.data_ptr() % _ALIGNMENT == 0:
        return t
    return t.clone(memory_format=torch.contiguous_format)


def linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``F.linear`` of every member (``w``: ``(members, fan_in, fan_out)``), bit for bit."""
    if _path(h, w) == BATCHED:
        return torch.baddbmm(b.unsqueeze(1), h, w)
    return torch.stack(_per_member(h, w, b))


def linear_each(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> Sequence[torch.Tensor]:
    """As :func:`linear`, one tensor per member (the logits: no stack to undo)."""
    if _path(h, w) == BATCHED:
        return torch.baddbmm(b.unsqueeze(1), h, w).unbind(0)
    return _per_member(h, w, b)


def _per_member(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
    # nn.Linear's own layout, (fan_out, fan_in) contiguous, with the weight, the input and the
    # incoming gradient aligned as fit's are: exactly the GEMMs fit runs. (A one-unit weight
    # is "contiguous" transposed too: .contiguous() would keep it off-alignment.)
    out = []
    for x, w_m, b_m in zip(h.unbind(0), w.unbind(0), b.unbind(0), strict=True):
        y = F.linear(aligned(x), aligned(w_m.t()), b_m)
        if y.requires_grad:
            y.register_hook(aligned)
        out.append(y)
    return out


def _path(h: torch.Tensor, w: torch.Tensor) -> str:
    if h.device.type != "cpu":
        return BATCHED
    members, rows, fan_in = h.shape
    path = gemm_path(members, rows, fan_in, w.shape[2], torch.get_num_threads())
    if path is None:  # fit_members probes every size before it stacks
        raise RuntimeError(f"no exact GEMM for {members} x ({rows}, {fan_in}, {w.shape[2]})")
    return path


@functools.cache
def gemm_path(members: int, rows: int, fan_in: int, fan_out: int, threads: int) -> str | None:
    """How a layer of these sizes gives every member ``F.linear``'s bits, forward and backward.

    The reference is ``F.linear`` on freshly allocated operands in ``nn.Linear``'s layout, as
    ``fit`` runs it. ``"batched"``: one ``baddbmm`` matches it; ``"member"``: only per-member
    ``F.linear`` on aligned operands does; ``None``: neither (the stack would not be exact).
    ``threads`` (torch's current count) is part of the key: MKL splits work by it.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(members, rows, fan_in, generator=g)
    w = torch.randn(members, fan_in, fan_out, generator=g)
    b = torch.randn(members, fan_out, generator=g)
    grad = torch.randn(members, rows, fan_out, generator=g)
    with torch.enable_grad():
        want = [_fresh_linear(x[m], w[m], b[m], grad[m]) for m in range(members)]
        for path in (BATCHED, PER_MEMBER):
            leaves = [t.clone().requires_grad_() for t in (x, w, b)]
            if path == BATCHED:
                out = torch.baddbmm(leaves[2].unsqueeze(1), leaves[0], leaves[1])
            else:
                out = torch.stack(_per_member(*leaves))
            out.backward(grad.clone())
            got = [out.detach(), *(cast(torch.Tensor, t.grad) for t in leaves)]
            if all(_equal(want[m], [t[m] for t in got]) for m in range(members)):
                return path
    return None


def _fresh_linear(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, grad: torch.Tensor
) -> list[torch.Tensor]:
    """``F.linear`` forward and backward on fresh copies: output, then x, w, b gradients."""
    leaves = [t.clone(memory_format=torch.contiguous_format) for t in (x, w.t(), b)]
    for t in leaves:
        t.requires_grad_()
    out = F.linear(*leaves)
    out.backward(grad.clone())
    grads = [cast(torch.Tensor, t.grad) for t in leaves]
    return [out.detach(), grads[0], grads[1].t(), grads[2]]


def _equal(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return all(torch.equal(s, t) for s, t in zip(a, b, strict=True))


def optimizer(
    params: Sequence[torch.Tensor], cfg: TrainConfig, foreach: bool
) -> torch.optim.Optimizer:
    """``fit``'s optimizer over ``params``; ``foreach``: the same kernels, in fewer calls."""
    built = build_optimizer(params, cfg)
    if foreach:
        for group in built.param_groups:
            group["foreach"] = True
    return built


@functools.cache
def optimizer_matches(
    cfg: TrainConfig, members: int, shapes: tuple[tuple[int, ...], ...], threads: int
) -> bool:
    """Whether one optimizer over stacked tensors updates each member as ``fit``'s does.

    Adam, AdamW and SGD are elementwise, but a kernel's vectorized body and scalar tail may
    round apart, and the stack puts a member's elements elsewhere (transposed weights, an
    offset): three steps on random numbers, ``shapes`` being ``fit``'s parameter shapes.
    """
    g = torch.Generator().manual_seed(0)
    own = [[torch.randn(s, generator=g) for s in shapes] for _ in range(members)]
    grads = [[[torch.randn(s, generator=g) for s in shapes] for _ in own] for _ in range(3)]
    stacked = [torch.stack([_stack_layout(p[k]) for p in own]) for k in range(len(shapes))]
    optimizers = [optimizer(p, cfg, foreach=False) for p in own]
    together = optimizer(stacked, cfg, foreach=True)
    with torch.no_grad():
        for step in grads:
            for params, opt, step_grads in zip(own, optimizers, step, strict=True):
                for p, grad in zip(params, step_grads, strict=True):
                    p.grad = grad.clone()
                opt.step()
            for k, p in enumerate(stacked):
                p.grad = torch.stack([_stack_layout(s[k]) for s in step])
            together.step()
    return all(
        torch.equal(_stack_layout(own[m][k]), stacked[k][m])
        for m in range(members)
        for k in range(len(shapes))
    )


def _stack_layout(t: torch.Tensor) -> torch.Tensor:
    """A weight ``(fan_out, fan_in)`` as the stack holds it, ``(fan_in, fan_out)``."""
    return t.t() if t.dim() == 2 else t


class Stack(nn.Module):
    """The members' MLPs side by side: per layer, weights ``(members, fan_in, fan_out)``
    (so that a weight's gradient comes out of ``bmm`` in its own layout, with no transposing
    copy) and biases ``(members, fan_out)``."""

    def __init__(
        self, models: Sequence[MLP], input_rates: Sequence[float], rng: str = "torch"
    ) -> None:
        super().__init__()
        self.rng = rng
        layers = [[m for m in model.net if isinstance(m, nn.Linear)] for model in models]
        self.weights = nn.ParameterList(
            torch.stack([_stack_layout(ls[k].weight.detach()) for ls in layers])
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
            h = linear(h, self.weights[k], self.biases[k])
            h = self._drop(self._activate(h), self.rates[k + 1], generators)
        return linear_each(h, self.weights[-1], self.biases[-1])

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if isinstance(self.activation, nn.ReLU | nn.LeakyReLU):
            return self.activation(h)
        # exp/erf/tanh kernels may round differently in a loop's vector body and its scalar
        # tail, and stacking moves elements between the two (ELU at width 19 differs).
        return torch.stack([self.activation(h_m) for h_m in h.unbind(0)])

    def _drop(
        self, h: torch.Tensor, rates: Sequence[float], generators: Sequence[torch.Generator]
    ) -> torch.Tensor:
        if not any(rates):
            return h
        return h * dropout_masks(h.shape[1:], rates, generators, self.rng).to(h.device)

    @torch.no_grad()
    def copy_to(self, member: int, model: MLP) -> None:
        """Write member ``member``'s weights into its own ``model``."""
        layers = [m for m in model.net if isinstance(m, nn.Linear)]
        for layer, w, b in zip(layers, self.weights, self.biases, strict=True):
            layer.weight.copy_(_stack_layout(w[member]))
            layer.bias.copy_(b[member])


@contextlib.contextmanager
def unfilled_allocations() -> Iterator[None]:
    """Skip the NaN fill of every new tensor that deterministic mode asks for: a debugging
    aid that costs the stack ~10% (its masks and copies are fresh each step) and changes no
    result, as no kernel reads memory it has not written."""
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
