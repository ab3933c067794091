"""Split, subsample and scale a table into in-memory tensors, and slice them into batches."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from droplab.config.schema import DataConfig
from droplab.data.encoding import encode, fit_encoder
from droplab.data.errors import DataError
from droplab.data.sources import Table, load_table

SPLITS = ("stratified", "time", "none")


_TENSORS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Prepared tensors: x float32 ``(n, d)``, y int64 ``(n,)`` for train, val and test.

    ``scale_mean``/``scale_std`` were fitted on the (subsampled) train split; they are
    zeros/ones when scaling is off. A regression target (``n_classes == 0``) is float32,
    standardised with the train split's ``target_mean``/``target_std`` (metrics undo it).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    feature_names: tuple[str, ...]
    n_classes: int
    digest: str
    source: str
    scale_mean: np.ndarray
    scale_std: np.ndarray
    class_names: tuple[str, ...] = ()
    positive: str | None = None
    target_mean: float = 0.0
    target_std: float = 1.0

    @property
    def is_regression(self) -> bool:
        """Whether the target is continuous (one output, no classes)."""
        return self.n_classes == 0

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.x_train.shape[1])

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor on ``device``."""
        return replace(self, **{name: getattr(self, name).to(device) for name in _TENSORS})

    def class_counts(self) -> list[int]:
        """Rows per label in the train split, index = label."""
        return [int(c) for c in torch.bincount(self.y_train.cpu(), minlength=self.n_classes)]

    def pos_fraction(self) -> float:
        """Fraction of label 1 in the train split (binary data only)."""
        if self.n_classes != 2:
            raise ValueError(f"pos_fraction needs 2 classes, the data has {self.n_classes}")
        negatives, positives = self.class_counts()
        return positives / (negatives + positives)


def _too_few(table: Table, cfg: DataConfig, label: int, detail: str) -> DataError:
    # In binary data label 1 is the rare, interesting class; call it what the user calls it.
    what = "positives" if len(table.class_names) == 2 and label == 1 else "rows of a class"
    purpose = "to stratify" if cfg.split == "stratified" else "for a time split"
    return DataError(
        f"data: too few {what} {purpose}: class {table.class_names[label]!r} has {detail}; "
        f"train, val and test each need at least one (val_fraction={cfg.val_fraction}, "
        f"test_fraction={cfg.test_fraction})"
    )


def _stratified(table: Table, cfg: DataConfig, seed: int) -> list[np.ndarray]:
    if table.fixed_test is not None:
        return _fixed_test(table, cfg, seed, table.fixed_test)
    if table.is_regression:  # nothing to stratify: a seeded random split
        idx = np.arange(len(table.y))
        rest, test = train_test_split(idx, test_size=cfg.test_fraction, random_state=seed)
        val_share = cfg.val_fraction / (1.0 - cfg.test_fraction)
        train, val = train_test_split(rest, test_size=val_share, random_state=seed)
        return [np.sort(train), np.sort(val), np.sort(test)]
    counts = np.bincount(table.y, minlength=len(table.class_names))
    rarest = int(np.argmin(counts))
    if counts[rarest] < 3:
        raise _too_few(table, cfg, rarest, f"{counts[rarest]} of {len(table.y)} rows")
    idx = np.arange(len(table.y))
    try:
        rest, test = train_test_split(
            idx, test_size=cfg.test_fraction, stratify=table.y, random_state=seed
        )
        val_share = cfg.val_fraction / (1.0 - cfg.test_fraction)
        train, val = train_test_split(
            rest, test_size=val_share, stratify=table.y[rest], random_state=seed
        )
    except ValueError as exc:  # sklearn refuses classes too small for the requested sizes
        detail = f"{counts[rarest]} of {len(table.y)} rows ({str(exc).splitlines()[0]})"
        raise _too_few(table, cfg, rarest, detail) from None
    return [np.sort(train), np.sort(val), np.sort(test)]


def _fixed_test(table: Table, cfg: DataConfig, seed: int, test: np.ndarray) -> list[np.ndarray]:
    """The source's own test rows; the rest splits into train and val (val_fraction of all)."""
    rest = np.setdiff1d(np.arange(len(table.y)), test)
    train, val = train_test_split(
        rest, test_size=cfg.val_fraction * len(table.y) / len(rest), stratify=table.y[rest],
        random_state=seed,
    )  # fmt: skip
    return [np.sort(train), np.sort(val), np.sort(test)]


def _by_time(table: Table, cfg: DataConfig) -> list[np.ndarray]:
    if cfg.time_column not in table.feature_names:
        shown = ", ".join(table.feature_names[:8])
        raise DataError(
            f"data.time_column: column {cfg.time_column!r} not found for split=time; "
            f"available: {shown}{', ...' if len(table.feature_names) > 8 else ''}"
        )
    if table.raw is not None:
        time = pd.to_numeric(table.raw[cfg.time_column], errors="coerce").to_numpy()
    else:
        time = table.x[:, table.feature_names.index(cfg.time_column)]
    order = np.argsort(time, kind="stable")
    n = len(order)
    n_test = int(round(n * cfg.test_fraction))
    n_train = n - int(round(n * cfg.val_fraction)) - n_test
    return [order[:n_train], order[n_train : n - n_test], order[n - n_test :]]


def split_indices(table: Table, cfg: DataConfig, seed: int) -> list[np.ndarray]:
    """Row indices of train, val and test, each holding every class at least once.

    Args:
        table: The raw table.
        cfg: Data config (split, time_column, val_fraction, test_fraction).
        seed: Seed of the stratified split.

    Returns:
        ``[train, val, test]`` index arrays (time split: each in time order).

    Raises:
        DataError: Unknown split, missing time column, or a class missing from a split.
    """
    if not (cfg.val_fraction > 0 and cfg.test_fraction > 0):
        raise DataError("data: val_fraction and test_fraction must both be > 0")
    if cfg.val_fraction + cfg.test_fraction >= 1:
        raise DataError("data: val_fraction + test_fraction must be < 1 to leave a train split")
    if cfg.split == "stratified":
        parts = _stratified(table, cfg, seed)
    elif cfg.split == "time":
        parts = _by_time(table, cfg)
    elif cfg.split == "none":
        # Too few rows to split (the seed toy): every split is the whole table, gap = 0.
        everything = np.arange(len(table.y))
        parts = [everything, everything, everything]
    else:
        raise DataError(f"data.split: unknown split {cfg.split!r}; allowed: {', '.join(SPLITS)}")
    for name, part in zip(("train", "val", "test"), parts, strict=True):
        if table.is_regression:
            break
        counts = np.bincount(table.y[part], minlength=len(table.class_names))
        for label in np.flatnonzero(counts == 0):
            total = int(np.sum(table.y == label))
            raise _too_few(table, cfg, int(label), f"{total} rows, none in {name}")
    return parts


def subsample(train: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Stratified, seeded subsample of train indices, keeping at least one row per class.

    Args:
        train: Train row indices.
        y: Labels of the whole table.
        fraction: Share of each class to keep, in (0, 1]; 1 returns ``train`` unchanged.
        seed: Seed of the draw.

    Returns:
        The kept indices, in their original order.
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"data.train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return train
    rng = np.random.default_rng(seed)
    if y.dtype.kind == "f":  # a regression target: a plain seeded draw
        size = max(1, int(round(len(train) * fraction)))
        return np.sort(rng.choice(train, size=size, replace=False))
    kept = []
    for label in np.unique(y[train]):
        members = train[y[train] == label]
        size = max(1, int(round(len(members) * fraction)))
        kept.append(rng.choice(members, size=size, replace=False))
    return np.sort(np.concatenate(kept))


def fit_scaler(x_train: np.ndarray, scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the train split; zeros/ones when ``scale`` is off."""
    d = x_train.shape[1]
    if not scale:
        return np.zeros(d), np.ones(d)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    # A constant column has std 0 (or rounding dust); dividing by it would blow up.
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean, std


def dataset_from_table(
    table: Table, cfg: DataConfig, seed: int, device: torch.device | str = "cpu"
) -> Dataset:
    """Split, subsample, encode, scale and move a table to ``device`` (see :func:`prepare`).

    The split is drawn on raw rows; text columns and missing values are then encoded with
    what the (subsampled) training split alone holds.
    """
    train, val, test = split_indices(table, cfg, seed)
    train = subsample(train, table.y, cfg.train_fraction, seed)
    x_all, names = table.x, table.feature_names
    if table.raw is not None:
        x_all, names = encode(table.raw, fit_encoder(table.raw, train, table.text))
    mean, std = fit_scaler(x_all[train], cfg.scale)
    y_all, y_mean, y_std = table.y, 0.0, 1.0
    if table.is_regression:
        y_mean, y_std = float(table.y[train].mean()), float(table.y[train].std()) or 1.0
        y_all = ((table.y - y_mean) / y_std).astype(np.float32)

    def tensors(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = ((x_all[idx] - mean) / std).astype(np.float32)
        return torch.from_numpy(x).to(device), torch.from_numpy(y_all[idx]).to(device)

    x_train, y_train = tensors(train)
    x_val, y_val = tensors(val)
    x_test, y_test = tensors(test)
    return Dataset(
        x_train, y_train, x_val, y_val, x_test, y_test,
        feature_names=names,
        n_classes=len(table.class_names),
        digest=table.digest,
        source=table.source,
        scale_mean=mean,
        scale_std=std,
        class_names=table.class_names,
        positive=table.positive,
        target_mean=y_mean,
        target_std=y_std,
    )  # fmt: skip


def prepare(cfg: DataConfig, seed: int, device: torch.device | str = "cpu") -> Dataset:
    """Load, split, subsample and scale the configured data into tensors on ``device``.

    Args:
        cfg: The ``data`` section of the config.
        seed: Run seed (synthetic rows, stratified split and subsample).
        device: Where the tensors live.

    Returns:
        The prepared data set.

    Raises:
        DataError: Bad data or a split that cannot hold every class (one-line message).
    """
    return dataset_from_table(load_table(cfg, seed), cfg, seed, device)
