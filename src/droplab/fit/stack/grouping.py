"""Which configs can train as one stack (:mod:`.members`) or in lockstep (:mod:`.lockstep`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from droplab.config.identity import flatten, to_dict
from droplab.config.schema import Config
from droplab.fit.trainer import resolve_precision, thread_count

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


# benchmarks/stack_cap.py (AMD EPYC, float32, 2026-12-07): a stack beat its members one by one
# at every width measured, 1.5x at 64 down to 1.05x at 1024 (3 seeds, 2 threads) and 1.24-1.38x
# at 256-512 (8 seeds, 1 thread). Wider than the widest measured, members train one by one.
STACK_MAX_WIDTH = 1024


def _shape_key(cfg: Config) -> str:
    flat = flatten(to_dict(cfg))
    kept = {k: v for k, v in flat.items() if k.split(".")[0] in _SECTIONS}
    shared = {k: v for k, v in kept.items() if k not in _PER_MEMBER}
    return repr(sorted(shared.items())) + f"|threads={thread_count(cfg)}"


def stack_exact(cfg: Config) -> bool:
    """Whether the stacked kernels implement ``cfg``: constant Bernoulli dropout only (no other
    kind, schedule, max-norm, norm layer, label smoothing, MC or bfloat16); others train alone."""
    m, plain = cfg.model, ("bernoulli", "constant", None, "none", 0.0, 0, "32")
    extras = (m.dropout_kind, m.dropout_schedule, m.max_norm, m.norm, cfg.train.label_smoothing)
    return (*extras, cfg.eval.mc_samples, resolve_precision(cfg)) == plain


def can_stack(cfgs: Sequence[Config]) -> bool:
    """Whether ``cfgs`` can train as one stacked model.

    They must agree on everything but the seed, the dropout rates, the monitor, the time
    budget and ``train.predict`` (same data settings, width, depth, activation, batch size,
    epochs, optimizer, lr, weight decay, device and threads), and each must be
    :func:`stack_exact` (or be alone).
    """
    if len(cfgs) > 1 and not all(stack_exact(c) for c in cfgs):
        return False
    return same_shape(cfgs)


def same_shape(cfgs: Sequence[Config]) -> bool:
    """Whether ``cfgs`` differ only where the members of a stack may (:data:`_PER_MEMBER`)."""
    return len(cfgs) > 0 and len({_shape_key(c) for c in cfgs}) == 1


def group_stackable(cfgs: Sequence[Config]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped so that each group can stack, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        key = _shape_key(cfg) if stack_exact(cfg) else f"alone {i}"
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def worth_stacking(cfg: Config) -> bool:
    """Whether members of ``cfg``'s shape train faster stacked than one by one, and exactly.

    On CPU, up to width ``STACK_MAX_WIDTH`` (the widest measured; the saving shrinks with
    width, as each member's products come to dominate). Not on CUDA, where stacked members
    would draw other dropout masks than ``fit`` and so not replay.
    """
    on_cpu = cfg.train.device == "cpu" or (
        cfg.train.device == "auto" and not torch.cuda.is_available()
    )
    # A learned Gaussian precision is a parameter outside the stacked network: fit alone.
    learned_tau = cfg.train.loss == "gaussian_nll" and cfg.train.tau is None
    return on_cpu and cfg.model.width <= STACK_MAX_WIDTH and not learned_tau
