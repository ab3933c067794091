"""Seeded synthetic card transactions with the schema of the public credit-card fraud set.

Columns: ``Time`` (seconds over two days), ``V1``..``V28`` (uncorrelated, heavy-tailed,
PCA-like components whose spread shrinks with the index), ``Amount`` (log-normal, positive)
and ``Class`` (0/1).

Fraud is the top ``fraud_rate`` quantile of a non-linear score of a few columns: a ring in
(V14, V17), the product V12*V10, a threshold on V4, both tails of log(Amount) and night
hours. The other 23 V columns carry no signal, so a wide network can memorise them, and
``label_noise`` flips a fixed fraction of labels at random, so there is noise to overfit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N_COMPONENTS = 28
TWO_DAYS_S = 172_800
V_COLUMNS = tuple(f"V{i}" for i in range(1, N_COMPONENTS + 1))
COLUMNS = ("Time", *V_COLUMNS, "Amount", "Class")
MAX_AMOUNT = 25_691.16  # the largest amount in the public data set
FLOAT_FORMAT = "%.6f"
TAIL_DF = 3.0


def _times(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Whole seconds over two days, sorted, busiest mid-afternoon and quietest around 2 am."""
    grid = np.arange(0, TWO_DAYS_S + 1, 60, dtype=np.float64)
    hour = (grid % 86_400) / 3_600
    intensity = 1.0 + 0.8 * np.cos(2 * np.pi * (hour - 14) / 24)
    cdf = np.concatenate([[0.0], np.cumsum((intensity[1:] + intensity[:-1]) / 2)])
    # Inverse-CDF sampling keeps the draw count fixed, so the stream stays seed-stable.
    t = np.interp(rng.random(rows), cdf / cdf[-1], grid)
    return np.sort(np.floor(t))


def _components(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Unit-variance Student-t draws, one column per component, before their PCA-like scaling."""
    # Heavy tails, like the public set's V columns, put the fraud region (the score's top
    # quantile) out in sparse territory: with Gaussian draws a wide MLP could not find it
    # from ~100 training positives (val AUPRC ~0.2 without label noise, ~0.75 with t(3)).
    return rng.standard_t(TAIL_DF, (rows, N_COMPONENTS)) / np.sqrt(TAIL_DF / (TAIL_DF - 2))


def _log_amount(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    # Mildly tied to V2 and V7, as in the public set, so Amount is not an isolated column;
    # clipped so their heavy tails do not pile amounts up at the cap.
    tied = np.clip(z[:, [1, 6]], -3.0, 3.0)
    mix = -0.4 * tied[:, 0] + 0.3 * tied[:, 1]
    return 3.0 + 1.3 * (mix + np.sqrt(1 - 0.25) * rng.standard_normal(len(z)))


def fraud_score(z: np.ndarray, log_amount: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Non-linear fraud score of unit-variance components, log(Amount) and Time.

    Args:
        z: Unit-variance components, shape ``(n, 28)``; column ``k`` is ``V{k+1}`` unscaled.
        log_amount: Natural log of Amount, shape ``(n,)``.
        time: Seconds since the start, shape ``(n,)``.

    Returns:
        Score, shape ``(n,)``; higher means more fraud-like.
    """
    ring = np.hypot(z[:, 13], z[:, 16])  # V14, V17
    interaction = z[:, 11] * z[:, 9]  # V12 * V10
    threshold = np.maximum(z[:, 3] - 1.0, 0.0)  # V4 beyond one sd
    amount_tails = np.abs(log_amount - 3.0) / 1.3
    night = 0.5 * (1 + np.cos(2 * np.pi * ((time % 86_400) / 3_600 - 3) / 24))
    return ring + 0.6 * interaction + 0.6 * threshold + 0.25 * amount_tails + 0.3 * night


def _fraud_labels(score: np.ndarray, fraud_rate: float) -> np.ndarray:
    """Exactly ``round(n * fraud_rate)`` ones at the highest scores (ties broken by order)."""
    n_fraud = int(round(len(score) * fraud_rate))
    labels = np.zeros(len(score), dtype=np.int64)
    if n_fraud > 0:
        labels[np.argsort(-score, kind="stable")[:n_fraud]] = 1
    return labels


def synthesize(rows: int, fraud_rate: float, label_noise: float, seed: int) -> pd.DataFrame:
    """Generate synthetic card transactions.

    The label noise is drawn last, so two calls that differ only in ``label_noise`` (or only
    in ``fraud_rate``) share every feature value.

    Args:
        rows: Number of transactions (>= 1).
        fraud_rate: Fraction of rows labelled fraud before noise, in [0, 1].
        label_noise: Fraction of labels flipped uniformly at random, in [0, 1].
        seed: Seed of the only random generator used.

    Returns:
        Frame with columns ``Time, V1..V28, Amount, Class`` (Class is int64 0/1).

    Raises:
        ValueError: If an argument is out of range.
    """
    if rows < 1:
        raise ValueError(f"synthetic rows must be >= 1, got {rows}")
    for name, value in (("fraud_rate", fraud_rate), ("label_noise", label_noise)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"synthetic {name} must be in [0, 1], got {value}")
    rng = np.random.default_rng(seed)
    time = _times(rng, rows)
    z = _components(rng, rows)
    log_amount = _log_amount(rng, z)
    labels = _fraud_labels(fraud_score(z, log_amount, time), fraud_rate)
    flip = rng.choice(rows, size=int(round(rows * label_noise)), replace=False)
    labels[flip] = 1 - labels[flip]
    # Spread shrinks with the component index, like the public set's V1 (sd ~2) to V28 (~0.3).
    spread = 2.0 * (0.165 ** (np.arange(N_COMPONENTS) / (N_COMPONENTS - 1)))
    frame = pd.DataFrame(z * spread, columns=list(V_COLUMNS))
    frame.insert(0, "Time", time)
    frame["Amount"] = np.clip(np.round(np.exp(log_amount), 2), 0.01, MAX_AMOUNT)
    frame["Class"] = labels
    return frame


def export_synthetic(
    out: str | Path, rows: int, fraud_rate: float, label_noise: float, seed: int
) -> Path:
    """Write :func:`synthesize`'s frame as CSV; the same arguments give the same bytes.

    Args:
        out: Destination file; parent directories are created.
        rows: See :func:`synthesize`.
        fraud_rate: See :func:`synthesize`.
        label_noise: See :func:`synthesize`.
        seed: See :func:`synthesize`.

    Returns:
        The path written.
    """
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = synthesize(rows, fraud_rate, label_noise, seed)
    # A fixed float format and line ending make the bytes independent of platform and repr.
    frame.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
    return path
