"""The typed, frozen config: one section class per top-level key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    # Real tables (issue 15): task, encoding of text columns, missing values, labels.
    task: str = "auto"
    categorical: str | tuple[str, ...] = "auto"
    max_categories: int = 50
    drop: tuple[str, ...] = ()
    positive: str | int | bool | None = None
    missing: str = "refuse"


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
    monitor: str = "auto"
    loss: str = "mse"
    tau: float | None = None
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
FREE_MAPS = {"study.space", "compare.grid", "compare.baseline"}
