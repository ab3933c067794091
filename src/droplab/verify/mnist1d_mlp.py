"""MNIST-1D: droplab's MLP against the paper's MLP (Greydanus 2020, "Scaling down deep
learning", Table 1: logistic regression 32%, MLP 68%, CNN 94% test accuracy).

Protocol, as the mnist1d repository trains its MLP (``models.py``/``train.py``): the package's
default data (``make_dataset(get_dataset_args())``: 4,000 training and 1,000 test signals of
40 values, seed 42), an MLP of two hidden ReLU layers of 100 units, Adam at lr 1e-2, no weight
decay, batches of 100, 6,000 steps, test accuracy of the final model.

Differences: droplab keeps 250 of the 4,000 training signals for validation (its honest gap
needs a validation split), so it trains on 3,750; 6,000 steps are rounded up to whole epochs
(38 batches each: 158 epochs, 6,004 steps); droplab's default per-feature standardisation is
off, as in the paper (the package already centres and scales the whole set). A later version of
the repository's ``train.py`` uses 256 hidden units and 8,000 steps; the paper's number is for
the smaller budget kept here.

Tolerance: +-5 points of accuracy. It was set after measuring, and here is why: the
repository's own loop (plain torch, all 4,000 training signals, its unshuffled batches, 6,000
steps) on the data that ``mnist1d`` 0.0.2 generates reaches 0.651, 0.646 and 0.631 final test
accuracy for torch seeds 0, 1, 2 -- not 0.68. The locally generated set is not the paper's
pickle, and a single run moves by about 2 points between seeds; +-4 would fail the reference
loop itself. Quick: 12 epochs must beat logistic regression (32%) by a margin, > 40%; chance
is 10%.

Measured (2026-11-29, CPU, 2 shared cores): full 0.635 (158 epochs, 43 s); quick 0.635
(12 epochs, 8 s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from droplab.verify.check import CheckResult, accuracy_on_test, check_config, quiet_fit

NAME = "mnist1d_mlp"
PUBLISHED = 0.68
LOGISTIC = 0.32
TOLERANCE = 0.05
QUICK_FLOOR = 0.40
STEPS, BATCH, TRAIN_ROWS = 6000, 100, 3750


def run(quick: bool, overrides: Sequence[str] = ()) -> list[CheckResult]:
    """Train the paper's MLP on MNIST-1D and compare its test accuracy with 68%."""
    start = time.perf_counter()
    epochs = 12 if quick else math.ceil(STEPS / math.ceil(TRAIN_ROWS / BATCH))
    cfg = check_config(
        [
            "data.source=mnist1d",
            "data.val_fraction=0.05",  # of all 5,000 rows: 250, leaving 3,750 to train on
            "data.scale=false",
            "model.width=100",
            "model.depth=2",
            "model.dropout=0.0",
            "train.lr=0.01",
            f"train.batch_size={BATCH}",
            f"train.epochs={epochs}",
        ],
        overrides,
    )
    accuracy = accuracy_on_test(quiet_fit(cfg))
    if quick:
        passed = accuracy > QUICK_FLOOR
        tolerance = f"quick: >{QUICK_FLOOR:.2f} (logistic {LOGISTIC})"
    else:
        passed = abs(accuracy - PUBLISHED) <= TOLERANCE
        tolerance = f"+-{TOLERANCE:.2f}"
    seconds = time.perf_counter() - start
    return [CheckResult(NAME, f"{accuracy:.3f}", f"{PUBLISHED:.2f}", tolerance, passed, seconds)]
