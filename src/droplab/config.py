"""YAML -> frozen, typed config: defaults, experiment file, dotted overrides, validation.

Precedence (lowest first): ``conf/default.yaml``, the experiment file, CLI ``key=value``
arguments, trial parameters. Everything is validated once, up front, so a bad key costs the
user one line and writes nothing. This module never imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from droplab import metrics


class ConfigError(ValueError):
    """A config problem; ``str(error)`` is one line: the key, the value, what is allowed."""


@dataclass(frozen=True)
class PathsConfig:
    runs: str = "runs"


@dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"
    path: str | None = None
    target: str = "Class"
    rows: int = 20000
    fraud_rate: float = 0.01
    label_noise: float = 0.005
    split: str = "stratified"
    time_column: str = "Time"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    train_fraction: float = 1.0
    scale: bool = True


@dataclass(frozen=True)
class ModelConfig:
    width: int = 256
    depth: int = 2
    dropout: float | tuple[float, ...] = 0.0
    input_dropout: float = 0.0
    activation: str = "relu"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 512
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    pos_weight: float | str = "none"
    monitor: str = "val/auprc"
    device: str = "auto"
    threads: int = 0
    deterministic: bool = True
    eval_batch_size: int = 65536
    max_seconds: float | None = None
    predict: tuple[tuple[float, ...], ...] = ()


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    activations: bool = True
    log_model: bool = False


@dataclass(frozen=True)
class StudyConfig:
    name: str | None = None
    storage: str | None = None
    n_trials: int = 20
    workers: int = 1
    sampler: str = "tpe"
    pruner: str = "median"
    objectives: tuple[str, ...] = (metrics.BEST_VAL_AUPRC,)
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    baselines: bool = True
    baseline_widths: tuple[int, ...] = ()
    sampler_seed: int | None = None
    startup_trials: int = 5
    warmup_epochs: int = 3
    heartbeat_seconds: int = 30
    timeout_seconds: float | None = None


@dataclass(frozen=True)
class CompareConfig:
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    baseline: dict[str, Any] = field(default_factory=dict)
    vectorize: bool = True


@dataclass(frozen=True)
class Config:
    name: str = "droplab"
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)


# Sections whose values are free-form maps (keys are dotted config keys, checked separately).
_FREE_MAPS = {"study.space", "compare.grid", "compare.baseline"}

DEFAULT_FILE = "default.yaml"


def default_yaml_path() -> Path:
    """``conf/default.yaml``: inside the installed package, or at the repository root."""
    packaged = Path(__file__).parent / "conf" / DEFAULT_FILE
    return packaged if packaged.exists() else Path(__file__).parents[2] / "conf" / DEFAULT_FILE


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader (a config can never name code to import)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"malformed YAML in {p}{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{p} must hold a mapping of keys, got {type(loaded).__name__}")
    return loaded


def parse_override(arg: str) -> tuple[str, Any]:
    """``"model.dropout=0.3"`` -> ``("model.dropout", 0.3)``; the value is read as YAML."""
    key, sep, raw = arg.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {arg!r} is not key=value (e.g. model.dropout=0.3)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {key}: value {raw!r} is not valid YAML") from None
    return key.strip(), value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key = "a.b"``, creating sections as needed."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def merge(base: dict[str, Any], extra: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base``; free-form maps are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict) and dotted not in _FREE_MAPS:
            out[key] = merge(out[key], value, f"{dotted}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(
    experiment: str | Path | None = None,
    overrides: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Config:
    """Defaults <- experiment file <- CLI overrides <- ``extra`` (trial params), validated.

    Raises:
        ConfigError: on the first unknown key, wrong type or out-of-range value.
    """
    tree = read_yaml(default_yaml_path())
    if experiment is not None:
        tree = merge(tree, read_yaml(experiment))
    dotted: dict[str, Any] = dict(parse_override(a) for a in overrides or [])
    dotted.update(extra or {})
    for key, value in dotted.items():
        patch: dict[str, Any] = {}
        set_dotted(patch, key, value)
        tree = merge(tree, patch)
    return from_dict(tree)


def from_dict(tree: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a nested mapping."""
    cfg = _build(Config, tree, "")
    from droplab.validation import validate  # late: validation needs the built types

    validate(cfg)
    return cfg


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted ``overrides`` applied and validated (trial params, seeds)."""
    tree = to_dict(cfg)
    for key, value in overrides.items():
        patch: dict[str, Any] = {}
        set_dotted(patch, key, value)
        tree = merge(tree, patch)
    return from_dict(tree)


def _build(cls: Any, tree: Any, prefix: str) -> Any:
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {tree!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(tree) - names)
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; allowed under {prefix.rstrip('.') or 'top level'}"
            f": {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name in names & set(tree):
        hint, value = hints[name], tree[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint``; lists become tuples (frozen)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        raise _type_error(key, value, hint)
    if hint is type(None):
        if value is None:
            return None
        raise _type_error(key, value, hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _type_error(key, value, hint)
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(key, value, hint)
        return _numbers(dict(value))
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(key, value, hint)
        return list(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    if hint is int and isinstance(value, bool):
        raise _type_error(key, value, hint)
    if isinstance(value, hint):
        return value
    raise _type_error(key, value, hint)


def _numbers(value: Any) -> Any:
    """Inside free-form maps (search space, grid), read ``1e-3`` as the number it means."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_error(key: str, value: Any, hint: Any) -> ConfigError:
    wanted = str(hint).replace("typing.", "").replace("NoneType", "null")
    wanted = wanted.replace("<class '", "").replace("'>", "")
    return ConfigError(f"{key}={value!r} has the wrong type; allowed: {wanted}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts and lists (tuples become lists), YAML/JSON ready."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else _plain(value)
    return out


def public_dict(cfg: Config) -> dict[str, Any]:
    """:func:`to_dict` with passwords in URLs masked: safe to log, print or store."""

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        return mask_secrets(value) if isinstance(value, str) else value

    return dict(mask(to_dict(cfg)))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"model.width": 256, ...}``; free-form maps become JSON strings."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in _FREE_MAPS:
            out.update(flatten(value, f"{dotted}."))
        elif isinstance(value, dict | list):
            out[dotted] = json.dumps(value, sort_keys=True)
        else:
            out[dotted] = value
    return out


# Only these sections change what a training run computes; names, paths, tracking and the
# study/compare settings do not, so they stay out of an experiment's identity.
_IDENTITY_SECTIONS = ("seed", "data", "model", "train")
_EXECUTION_KEYS = {
    "train.device",
    "train.threads",
    "train.eval_batch_size",
    "train.max_seconds",
    "train.predict",
}


def config_hash(cfg: Config) -> str:
    """A short hash of what determines a run's numbers: asking twice for it runs once."""
    flat = flatten(to_dict(cfg))
    keep = {k: v for k, v in flat.items() if k.split(".")[0] in _IDENTITY_SECTIONS}
    for key in _EXECUTION_KEYS:
        keep.pop(key, None)
    blob = json.dumps(keep, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def runs_dir(cfg: Config) -> Path:
    """The one root for local state (``paths.runs``), as an absolute path."""
    return Path(os.path.abspath(cfg.paths.runs))


def tracking_uri(cfg: Config) -> str:
    """``tracking.uri`` or the SQLite MLflow store under ``paths.runs``."""
    return cfg.tracking.uri or f"sqlite:///{runs_dir(cfg) / 'mlflow.db'}"


def artifact_root(cfg: Config) -> str:
    return (runs_dir(cfg) / "mlartifacts").as_uri()


def experiment_name(cfg: Config) -> str:
    return cfg.tracking.experiment or cfg.name


def study_name(cfg: Config) -> str:
    return cfg.study.name or cfg.name


def study_storage(cfg: Config) -> str:
    """``study.storage``, or SQLite for one worker and a journal file for several."""
    if cfg.study.storage:
        return cfg.study.storage
    if cfg.study.workers > 1:
        return str(runs_dir(cfg) / "optuna.journal")
    return f"sqlite:///{runs_dir(cfg) / 'optuna.db'}"


_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)([^@\s]+)(?=@)")


def mask_secrets(text: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return _PASSWORD.sub(r"\1***", text)
