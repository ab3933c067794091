"""The floor: a hand-written PyTorch loop doing exactly the work of ``droplab.training.fit``.

Same data tensors, the same ``droplab.model.MLP`` built after the same seeding, Adam, the same
batches (slices of one seeded permutation per epoch), the dropout-on running loss kept on the
device, and after every epoch the eval-mode pass over the training and validation splits in
``train.eval_batch_size`` chunks, scored with one sort per split (``droplab.scoring``: the
arithmetic of torchmetrics' AUPRC and AUROC, which a careful hand-written loop would use too
rather than sorting four times). Given the same
config, its per-epoch history equals droplab's bit for bit on CPU (``overhead.py`` checks).

Run as a script, it is the "plain process" of the whole-process comparison:
``python benchmarks/plain_loop.py data.rows=285000 model.width=32 train.epochs=5``.
"""

from __future__ import annotations

import math
import os
import random
import sys

import numpy as np
import torch
import torch.nn.functional as F

from droplab.config import Config, load_config
from droplab.data.splits import Dataset, prepare
from droplab.fit.cores import worker_count
from droplab.fit.model import MLP
from droplab.fit.scoring import binary_scores


def evaluate(
    model: MLP, x: torch.Tensor, y: torch.Tensor, chunk: int, prefix: str
) -> dict[str, float]:
    """Loss, AUPRC and AUROC of one split in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])
        auprc, auroc = binary_scores(torch.sigmoid(logits.squeeze(-1)), y)
        return {
            f"{prefix}/auprc": auprc,
            f"{prefix}/auroc": auroc,
            f"{prefix}/loss": float(
                F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.to(logits.dtype))
            ),
        }


def plain_fit(
    cfg: Config, data: Dataset, threads: int, skip_first_permutation: bool = True
) -> list[dict[str, float]]:
    """Train and evaluate as ``droplab.training.fit`` does (binary target, no pos_weight)."""
    torch.set_num_threads(threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)
    m, t = cfg.model, cfg.train
    model = MLP(data.n_features, 1, m.width, m.depth, m.dropout, m.input_dropout, m.activation)
    model = model.to(data.x_train.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    x, y = data.x_train, data.y_train
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    if skip_first_permutation:
        # droplab's Batches draws one permutation per iter(), and Lightning calls iter() once
        # before the first epoch (its "is it iterable" check): that permutation goes unused.
        torch.randperm(len(x), generator=generator)
    history = []
    for _ in range(t.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        running = torch.zeros((), device=x.device)
        for start in range(0, len(x), t.batch_size):
            idx = order[start : start + t.batch_size]
            xb, yb = x[idx], y[idx]
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(xb).squeeze(-1), yb.to(xb.dtype))
            loss.backward()
            optimizer.step()
            running = running + loss.detach() * len(yb)
        record = {"train_running/loss": float(running) / len(x)}
        if not math.isfinite(record["train_running/loss"]):
            raise FloatingPointError("training loss is not finite")
        record.update(evaluate(model, x, y, t.eval_batch_size, "train"))
        record.update(evaluate(model, data.x_val, data.y_val, t.eval_batch_size, "val"))
        record["gap/loss"] = record["val/loss"] - record["train/loss"]
        record["gap/auprc"] = record["train/auprc"] - record["val/auprc"]
        history.append(record)
    return history


def main(overrides: list[str]) -> None:
    """The plain process: config, data and the loop, with droplab's thread count."""
    cfg = load_config(None, overrides)
    threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // worker_count(cfg))
    cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    history = plain_fit(cfg, prepare(cfg.data, cfg.seed).to("cuda" if cuda else "cpu"), threads)
    print(f"plain loop: {len(history)} epochs, val/auprc {history[-1]['val/auprc']:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
