"""Real tables: the target's task and labels, text columns, missing values.

Everything that learns from values (a category vocabulary, a median, a most frequent value) is
fit on the training split only and then applied to every split, so validation and test rows
never leak into the features: a category seen only outside training encodes as all zeros.
What is decided on the whole table is structural only: which columns are text, which have
missing values (they get an indicator), and whether a column has too many values to be a
category.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from droplab.config.schema import DataConfig
from droplab.data.errors import DataError

MAX_CLASSES = 100


# auto: a float target with more distinct values than this (and non-integers) is regression.
REGRESSION_MIN_VALUES = 10


@dataclass(frozen=True)
class Target:
    """The encoded target: labels 0..K-1 (int64) or regression values (float64)."""

    y: np.ndarray
    class_names: tuple[str, ...]  # () for regression
    positive: str | None = None  # the binary label taken as 1, when chosen (text targets)


def label_name(value: Any) -> str:
    """A class's name: 0.0/1.0 read from a float column are called "0"/"1", as the file means."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _is_text(column: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column))


def resolve_task(column: pd.Series, task: str) -> str:
    """``auto``: a float target with non-integer values and many distinct ones is regression."""
    if task != "auto":
        return task
    if _is_text(column) or pd.api.types.is_bool_dtype(column):
        return "classification"
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    values = values[np.isfinite(values)]
    floats = pd.api.types.is_float_dtype(column) and not np.all(values == np.round(values))
    many = len(np.unique(values)) > REGRESSION_MIN_VALUES
    return "regression" if floats and many else "classification"


def encode_target(name: str, column: pd.Series, cfg: DataConfig) -> Target:
    """Labels (sorted original values; a binary text target's minority or ``data.positive``
    class is 1) or, for a regression, the float values. Raises :class:`DataError`."""
    n_missing = int(column.isna().sum())
    if n_missing:
        raise DataError(f"data: target column {name!r} has {n_missing} NaN/missing value(s)")
    if resolve_task(column, cfg.task) == "regression":
        coerced = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(coerced)):
            raise DataError(f"data: regression target {name!r} has non-numeric or inf values")
        return Target(coerced, ())
    if not _is_text(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise DataError(
                f"data: column {name!r} has {int(np.isinf(values).sum())} inf value(s)"
            )
    try:
        classes, y = np.unique(column.to_numpy(), return_inverse=True)
    except TypeError:  # mixed types (e.g. 1 and "a") do not sort; compare them as text
        classes, y = np.unique(column.astype(str).to_numpy(), return_inverse=True)
    names = tuple(label_name(c) for c in classes)
    _check_classes(name, names, cfg.task)
    y = y.astype(np.int64).reshape(-1)
    if cfg.positive is not None and len(names) != 2:
        raise DataError(
            f"data.positive={cfg.positive!r} needs a binary target; {name!r} has {len(names)} "
            "classes"
        )
    if len(names) == 2 and (cfg.positive is not None or _is_text(column)):
        return _binary(name, y, names, cfg.positive)
    return Target(y, names)


def _check_classes(name: str, names: tuple[str, ...], task: str) -> None:
    if len(names) < 2:
        raise DataError(
            f"data: target column {name!r} has a single class ({names[0]}); need at least two"
        )
    if len(names) > MAX_CLASSES:
        raise DataError(
            f"data: target column {name!r} has {len(names)} distinct values; looks like "
            "regression, not classification (set data.task=regression)"
        )
    if task == "binary" and len(names) != 2:
        raise DataError(f"data.task=binary but target {name!r} has {len(names)} classes")
    if task == "multiclass" and len(names) < 3:
        raise DataError(f"data.task=multiclass but target {name!r} has 2 classes")


def _binary(name: str, y: np.ndarray, names: tuple[str, ...], positive: Any) -> Target:
    """Label 1 is ``positive`` (matched by name), or the minority class when it is None."""
    if positive is None:
        counts = np.bincount(y, minlength=2)
        chosen = 1 if counts[1] <= counts[0] else 0  # ties keep the sorted order
    else:
        matched = _match_label(names, positive)
        if matched is None:
            raise DataError(
                f"data.positive={positive!r} is not a label of {name!r}; labels: "
                + ", ".join(names)
            )
        chosen = matched
    if chosen == 0:
        y, names = 1 - y, (names[1], names[0])
    return Target(y, names, names[1])


def _match_label(names: tuple[str, ...], positive: Any) -> int | None:
    # YAML reads Yes/No as booleans; let data.positive=Yes still mean the label "Yes".
    spellings = {True: ("true", "yes", "y", "1"), False: ("false", "no", "n", "0")}
    wanted = spellings[positive] if isinstance(positive, bool) else (str(positive).lower(),)
    hits = [i for i, n in enumerate(names) if n.lower() in wanted]
    return hits[0] if len(hits) == 1 else None


def text_columns(frame: pd.DataFrame, cfg: DataConfig) -> tuple[str, ...]:
    """The columns to one-hot encode (``data.categorical``), checked against max_categories.

    ``auto`` takes a column whose values are mostly not numbers; a numeric column with a stray
    word stays numeric, and is refused as "not numeric" as before.
    """
    if cfg.categorical == "none":
        chosen: list[str] = []
    elif cfg.categorical == "auto":
        chosen = [c for c in frame.columns if _is_text(frame[c]) and _mostly_words(frame[c])]
    else:
        missing = [c for c in cfg.categorical if c not in frame.columns]
        if missing:
            raise DataError(f"data.categorical: column {missing[0]!r} not found")
        chosen = list(cfg.categorical)
    for column in chosen:
        n = int(frame[column].nunique(dropna=True))
        if n > cfg.max_categories:
            raise DataError(
                f"data: column {column!r} has {n} distinct values (data.max_categories="
                f"{cfg.max_categories}); an identifier? drop it (data.drop) or raise the limit"
            )
    return tuple(chosen)


def _mostly_words(column: pd.Series) -> bool:
    present = column.dropna()
    numbers = pd.to_numeric(present, errors="coerce").notna().sum()
    return bool(numbers * 2 < len(present))


@dataclass(frozen=True)
class ColumnCode:
    """How one raw column becomes features: its training vocabulary or fill value."""

    name: str
    categories: tuple[str, ...] | None  # None: a numeric column
    fill: float | str | None  # None: the column has no missing value


def fit_encoder(
    raw: pd.DataFrame, train: np.ndarray, text: tuple[str, ...]
) -> tuple[ColumnCode, ...]:
    """Fit each column's code on the training rows ``train`` of ``raw``."""
    codes = []
    for column in raw.columns:
        has_missing = bool(raw[column].isna().any())
        fitted = raw[column].iloc[train]
        if column in text:
            words = fitted.dropna().astype(str)
            vocabulary = tuple(sorted(words.unique()))
            fill = str(words.mode().sort_values().iloc[0]) if len(words) else ""
            codes.append(ColumnCode(column, vocabulary, fill if has_missing else None))
        else:
            numbers = pd.to_numeric(fitted, errors="coerce")
            median = float(numbers.median()) if numbers.notna().any() else 0.0
            codes.append(ColumnCode(column, None, median if has_missing else None))
    return tuple(codes)


def encode(raw: pd.DataFrame, codes: tuple[ColumnCode, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Features float64 ``(n, d)`` and their names: ``col``, ``col=value``, ``col_missing``."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for code in codes:
        column = raw[code.name]
        missing = column.isna().to_numpy()
        if code.categories is None:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            if code.fill is not None:
                values = np.where(missing, float(code.fill), values)
            blocks.append(values[:, None])
            names.append(code.name)
        else:
            words = column.astype(object).where(~missing, code.fill).astype(str).to_numpy()
            vocabulary = np.asarray(code.categories, dtype=object)
            blocks.append((words[:, None] == vocabulary[None, :]).astype(np.float64))
            names += [f"{code.name}={v}" for v in code.categories]
        if code.fill is not None:
            blocks.append(missing.astype(np.float64)[:, None])
            names.append(f"{code.name}_missing")
    x = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(raw), 0))
    return x, tuple(names)
