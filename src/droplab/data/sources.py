"""Load a raw table (features, labels, digest) from any supported source, refusing bad data."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from droplab.config.schema import DataConfig
from droplab.data.errors import DataError
from droplab.data.synthetic import synthesize

SOURCES = ("synthetic", "csv", "parquet", "sklearn:<name>", "toy")


# The seed article's five transactions (Amount, Time) and labels, exactly as it gives them.
TOY_X = ((10.0, 1.0), (50.0, 2.0), (5000.0, 3.0), (200.0, 4.0), (10000.0, 5.0))


TOY_Y = (0, 0, 1, 0, 1)


MAX_CLASSES = 100


@dataclass(frozen=True, eq=False)
class Table:
    """A raw table, before any split.

    Attributes:
        x: Features, float64 ``(n, d)``.
        y: Labels 0..K-1, int64 ``(n,)``.
        feature_names: One name per feature column.
        class_names: Original target values as strings; index = label.
        digest: sha256 hex of the feature names, x and y (see :func:`table_digest`).
        source: Where the rows came from, e.g. ``csv:/abs/path`` or ``sklearn:digits``.
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    digest: str
    source: str


def table_digest(feature_names: tuple[str, ...], x: np.ndarray, y: np.ndarray) -> str:
    """sha256 hex over feature names, x (float64) and y (int64), C-order little-endian.

    Args:
        feature_names: Feature column names.
        x: Features ``(n, d)``.
        y: Labels ``(n,)``.

    Returns:
        The hex digest; equal rows in equal order give equal digests on any platform.
    """
    h = hashlib.sha256()
    h.update("\x1f".join(feature_names).encode("utf-8"))
    h.update(np.asarray(x.shape, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(x, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(y, dtype="<i8").tobytes())
    return h.hexdigest()


def _check_finite(name: str, values: np.ndarray) -> None:
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    if n_nan:
        raise DataError(f"data: column {name!r} has {n_nan} NaN value(s)")
    if n_inf:
        raise DataError(f"data: column {name!r} has {n_inf} inf value(s)")


def _numeric_column(name: str, column: pd.Series) -> np.ndarray:
    """The column as finite float64, or a DataError naming it and one offending value."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        coerced = pd.to_numeric(column, errors="coerce")
        bad = np.flatnonzero((coerced.isna() & column.notna()).to_numpy())
        if len(bad):
            value = column.iloc[bad[0]]
            raise DataError(
                f"data: column {name!r} is not numeric (e.g. {value!r} in data row {bad[0] + 1})"
            )
        values = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    _check_finite(name, values)
    return values


def _label_name(value: Any) -> str:
    # 0.0/1.0 read from a float column should name the classes "0"/"1", as the file means.
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _encode_target(name: str, column: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels 0..K-1 in sorted order of the original values, and the values as names."""
    n_missing = int(column.isna().sum())
    if n_missing:
        raise DataError(f"data: target column {name!r} has {n_missing} NaN/missing value(s)")
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        _check_finite(name, column.to_numpy(dtype=np.float64))
    try:
        classes, y = np.unique(column.to_numpy(), return_inverse=True)
    except TypeError:  # mixed types (e.g. 1 and "a") do not sort; compare them as text
        classes, y = np.unique(column.astype(str).to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"data: target column {name!r} has a single class ({_label_name(classes[0])}); "
            "need at least two"
        )
    if len(classes) > MAX_CLASSES:
        raise DataError(
            f"data: target column {name!r} has {len(classes)} distinct values; "
            "looks like regression, not classification"
        )
    return y.astype(np.int64).reshape(-1), tuple(_label_name(c) for c in classes)


def table_from_frame(frame: pd.DataFrame, target: str, source: str) -> Table:
    """Validate a frame and turn it into a :class:`Table`.

    Args:
        frame: Feature columns plus the target column.
        target: Name of the target column.
        source: Description stored in the table.

    Returns:
        The table; every non-target column becomes a float64 feature.

    Raises:
        DataError: No rows, missing target, non-numeric feature, NaN/inf, one class, or
            a target that looks continuous.
    """
    if len(frame) == 0:
        raise DataError(f"data: {source} has no rows")
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        raise DataError(f"data.target: column {target!r} not found; available: {shown}")
    frame = frame.set_axis(columns, axis=1)
    names = tuple(c for c in columns if c != target)
    if not names:
        raise DataError(f"data: {source} has no feature columns besides the target {target!r}")
    x = np.column_stack([_numeric_column(c, frame[c]) for c in names])
    y, class_names = _encode_target(target, frame[target])
    return Table(x, y, names, class_names, table_digest(names, x, y), source)


def _read_file(cfg: DataConfig) -> pd.DataFrame:
    if cfg.path is None or str(cfg.path).strip() == "":
        raise DataError(f"data.path is required for data.source={cfg.source}")
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(f"data.path: file not found: {cfg.path}")
    try:
        if cfg.source == "csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data.path: file is empty: {cfg.path}") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data.path: cannot read {cfg.source} file {cfg.path}: {reason}") from None


def _sklearn_loaders() -> dict[str, Callable[[], Any]]:
    # Imported lazily: sklearn.datasets is slow to import and only this source needs it.
    from sklearn import datasets

    return {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
    }


def _load_sklearn(name: str) -> Table:
    loaders = _sklearn_loaders()
    if name not in loaders:
        raise DataError(
            f"data.source: unknown sklearn data set {name!r}; supported: "
            + ", ".join(f"sklearn:{n}" for n in loaders)
        )
    bunch = loaders[name]()
    frame = pd.DataFrame(np.asarray(bunch.data, dtype=np.float64), columns=bunch.feature_names)
    # sklearn labels are already 0..K-1; keep them and name them by target_names.
    frame["__target__"] = np.asarray(bunch.target, dtype=np.int64)
    table = table_from_frame(frame, "__target__", f"sklearn:{name}")
    return Table(
        table.x,
        table.y,
        table.feature_names,
        tuple(str(n) for n in bunch.target_names),
        table.digest,
        table.source,
    )


def load_table(cfg: DataConfig, seed: int) -> Table:
    """Load the configured data as a raw, validated table.

    Args:
        cfg: The ``data`` section of the config.
        seed: Run seed; only the synthetic generator uses it.

    Returns:
        The table.

    Raises:
        DataError: Unknown source, unreadable file, or bad data (one-line message).
    """
    if cfg.source == "synthetic":
        try:
            frame = synthesize(cfg.rows, cfg.fraud_rate, cfg.label_noise, seed)
        except ValueError as exc:
            raise DataError(f"data: {exc}") from None
        source = (
            f"synthetic(rows={cfg.rows},fraud_rate={cfg.fraud_rate},"
            f"label_noise={cfg.label_noise},seed={seed})"
        )
        return table_from_frame(frame, "Class", source)
    if cfg.source in ("csv", "parquet"):
        frame = _read_file(cfg)
        source = f"{cfg.source}:{Path(str(cfg.path)).resolve()}"
        return table_from_frame(frame, cfg.target, source)
    if cfg.source.startswith("sklearn:"):
        return _load_sklearn(cfg.source.removeprefix("sklearn:"))
    if cfg.source == "toy":
        frame = pd.DataFrame(TOY_X, columns=["Amount", "Time"]).assign(Class=TOY_Y)
        return table_from_frame(frame, "Class", "toy(seed article, 5 rows)")
    raise DataError(f"data.source: unknown source {cfg.source!r}; allowed: " + ", ".join(SOURCES))
