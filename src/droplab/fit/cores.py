"""How many study worker processes, and torch threads each, share this machine's cores.

``study.workers: auto`` follows a rule taken from measurement (README, "Scaling out"): on
CPU, a trial of the main study is mostly small kernels and Python per batch, which a second
thread hardly speeds up, while a second process runs a second trial on its own core. On 2
cores, two trials (3 stacked seeds) in one 2-thread process cost 2.5x (width 1024, whose
GEMMs are what threads split) to 15x (width 16) the CPU time of one trial in each of two
1-thread processes: a second thread spins while it waits, and on a shared machine it waits.
So ``auto`` gives every core its own 1-thread worker, with three limits:

- at least :data:`TRIALS_PER_WORKER` trials each: trials that run side by side are proposed
  and pruned without each other's results, so a short study on many cores would mostly be
  random search that prunes late;
- at least :data:`EPOCHS_PER_WORKER` seed-epochs of budget each (trials x epochs x seeds):
  a worker is a process that imports torch, Lightning and MLflow (~5 s of a core) and opens
  the stores. Measured on 2 cores (20k rows, one seed a trial, ``benchmarks/peers.py``): 20
  trials x 20 epochs, 200 a worker, end 1.26-1.38x sooner with two workers; 8 x 8, 32 a
  worker, 1.2x later (31.4 s against 26.2 s, medians of 3);
- one worker on CUDA: workers there share one device and gain nothing.
"""

from __future__ import annotations

import os

import torch

from droplab.config.schema import Config

TRIALS_PER_WORKER = 4
EPOCHS_PER_WORKER = 80  # between the 32 measured to lose and the 200 measured to gain


def worker_count(cfg: Config) -> int:
    """``study.workers``, with ``auto`` chosen for this machine's cores (module docstring)."""
    if cfg.study.workers != "auto":
        return cfg.study.workers
    device = cfg.train.device
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return 1
    cores = os.cpu_count() or 1
    per_worker = cfg.train.threads or 1
    budget = cfg.study.n_trials * cfg.train.epochs * len(cfg.study.seeds or [cfg.seed])
    by_trials = cfg.study.n_trials // TRIALS_PER_WORKER
    return max(1, min(cores // per_worker, by_trials, budget // EPOCHS_PER_WORKER))
