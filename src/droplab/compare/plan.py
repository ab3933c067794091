"""A comparison's plan: the cells of ``compare.grid``, each with its baseline, and the members
(cell x seed)."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from droplab.config.identity import config_hash
from droplab.config.load import with_overrides
from droplab.config.schema import Config, ConfigError

DEFAULT_BASELINE: dict[str, Any] = {"model.dropout": 0.0}


_SHORT = {"model.dropout": "p", "model.width": "w"}


MAX_STACK = 16  # members per stack: past a few, a bigger stack is no faster per member


@dataclass(frozen=True)
class Cell:
    """One grid point: its dotted overrides, its identity and the baseline it is compared to."""

    key: str  # config hash of the cell at the base seed
    overrides: dict[str, Any]
    label: str  # "p=0.30 w=256"
    group: str  # what it shares with its baseline: "w=256"
    baseline_key: str | None  # None: the cell is a baseline

    @property
    def is_baseline(self) -> bool:
        return self.baseline_key is None


@dataclass(frozen=True)
class Member:
    """One (cell, seed) to train: a seed fixes split, init, dropout masks and batch order."""

    cell: Cell
    seed: int
    cfg: Config

    @property
    def key(self) -> tuple[str, int]:
        return (self.cell.key, self.seed)


def plan(cfg: Config) -> list[Cell]:
    """The cells of ``compare.grid`` plus the baselines they need, each baseline first.

    Raises:
        ConfigError: an empty grid, or a grid/baseline key outside data, model and train.
    """
    grid, baseline = cfg.compare.grid, cfg.compare.baseline or DEFAULT_BASELINE
    if not grid:
        raise ConfigError("compare.grid={} is empty; allowed: {model.dropout: [0.0, 0.5], ...}")
    for key in [*grid, *baseline]:
        if not key.startswith(("data.", "model.", "train.")):
            raise ConfigError(
                f"compare key {key} is not allowed; allowed: data.*, model.*, train.*"
            )
    cells: dict[str, Cell] = {}
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values, strict=True))
        base = {**overrides, **baseline}
        base_key, key = _key(cfg, base), _key(cfg, overrides)
        group = _label({k: v for k, v in overrides.items() if k not in baseline}) or "all"
        cells.setdefault(base_key, Cell(base_key, base, _label(base), group, None))
        if key != base_key:
            cells.setdefault(key, Cell(key, overrides, _label(overrides), group, base_key))
    groups = list(dict.fromkeys(c.group for c in cells.values()))
    return sorted(cells.values(), key=lambda c: (groups.index(c.group), not c.is_baseline))


def _key(cfg: Config, overrides: Mapping[str, Any]) -> str:
    return config_hash(with_overrides(cfg, dict(overrides)))


def _label(overrides: Mapping[str, Any]) -> str:
    keys = [k for k in _SHORT if k in overrides] + [k for k in overrides if k not in _SHORT]
    return " ".join(f"{_SHORT.get(k, k.split('.')[-1])}={_fmt(k, overrides[k])}" for k in keys)


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        return "/".join(_fmt(key, v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}" if key == "model.dropout" else f"{value:g}"
    return str(value)


def members(cfg: Config, cells: Sequence[Cell]) -> list[Member]:
    """Every (cell, seed), seed-major: an interruption leaves whole paired replicates."""
    seeds = cfg.compare.seeds
    return [
        Member(c, s, with_overrides(cfg, {**c.overrides, "seed": s})) for s in seeds for c in cells
    ]


def comparison_id(cells: Sequence[Cell], seeds: Sequence[int]) -> str:
    """The comparison's identity: its cells (their config hashes) and seeds."""
    blob = json.dumps({"cells": sorted(c.key for c in cells), "seeds": list(seeds)})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
