"""A comparison's plan: the cells of ``compare.grid`` (times ``compare.arms``, when named
settings are given), each with its baseline, and the members (cell x seed)."""

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
    arm: str = ""  # the named setting of compare.arms ("" for a plain grid)

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
    """The cells of ``compare.grid`` (times ``compare.arms``) plus the baselines they need,
    each baseline first.

    Raises:
        ConfigError: an empty grid without arms, a grid/baseline key outside data, model,
            train (and eval, in arms), or a cell whose combined overrides are invalid.
    """
    grid = cfg.compare.grid
    if not grid and not cfg.compare.arms:
        raise ConfigError("compare.grid={} is empty; allowed: {model.dropout: [0.0, 0.5], ...}")
    for key in grid:
        _check_key(key)
    if cfg.compare.arms:
        return _arm_cells(cfg)
    baseline = cfg.compare.baseline
    assert isinstance(baseline, dict)  # validate: a string baseline needs arms
    baseline = baseline or DEFAULT_BASELINE
    for key in baseline:
        _check_key(key)
    cells: dict[str, Cell] = {}
    for overrides in _grid_points(grid):
        base = {**overrides, **baseline}
        base_key, key = _key(cfg, base), _key(cfg, overrides)
        group = _label({k: v for k, v in overrides.items() if k not in baseline}) or "all"
        cells.setdefault(base_key, Cell(base_key, base, _label(base), group, None))
        if key != base_key:
            cells.setdefault(key, Cell(key, overrides, _label(overrides), group, base_key))
    return _baselines_first(cells)


def _arm_cells(cfg: Config) -> list[Cell]:
    """Arms x grid: each arm's settings at each grid point, against the baseline arm there."""
    arms, base_arm = cfg.compare.arms, str(cfg.compare.baseline)
    cells: dict[str, Cell] = {}
    for point in _grid_points(cfg.compare.grid):
        group = _label(point) or "all"
        base = {**point, **arms[base_arm]}
        base_key = _key(cfg, base)
        cells.setdefault(base_key, _arm_cell(base_key, base, base_arm, group, None))
        for arm, settings in arms.items():
            overrides = {**point, **settings}
            key = _key(cfg, overrides)
            if key != base_key:
                cells.setdefault(key, _arm_cell(key, overrides, arm, group, base_key))
    return _baselines_first(cells)


def _arm_cell(key: str, overrides: dict[str, Any], arm: str, group: str, base: str | None) -> Cell:
    label = arm if group == "all" else f"{arm} {group}"
    return Cell(key, overrides, label, group, base, arm)


def _grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def _baselines_first(cells: Mapping[str, Cell]) -> list[Cell]:
    groups = list(dict.fromkeys(c.group for c in cells.values()))
    return sorted(cells.values(), key=lambda c: (groups.index(c.group), not c.is_baseline))


def _check_key(key: str) -> None:
    if not key.startswith(("data.", "model.", "train.", "eval.")):
        raise ConfigError(f"compare key {key} is not allowed; allowed: data.*, model.*, train.*")


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
