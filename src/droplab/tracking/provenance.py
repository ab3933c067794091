"""What identifies a run's numbers: config hash, data digest, git state, package versions."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from droplab import tags
from droplab.config.identity import config_hash, flatten, public_dict
from droplab.config.schema import Config
from droplab.data.splits import Dataset
from droplab.fit.trainer import FitResult

_HERE = Path(__file__).resolve().parent  # the code's repository, wherever the user runs


@functools.cache
def git_state() -> tuple[str, bool]:
    """``(commit, dirty)`` of the working directory's repository (``"unknown"`` outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=_HERE,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=_HERE,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit, bool(status.strip())


def run_tags(cfg: Config, data: Dataset) -> dict[str, str]:
    """Tags that identify what a run computed and from which code."""
    commit, dirty = git_state()
    out = {
        tags.CONFIG_HASH: config_hash(cfg),
        tags.DATA_DIGEST: data.digest,
        tags.GIT_COMMIT: commit,
        tags.GIT_DIRTY: str(dirty).lower(),
    }
    if data.positive is not None:
        out[tags.DATA_POSITIVE] = data.positive
    return out


def run_params(cfg: Config) -> dict[str, Any]:
    """The whole resolved config, flattened to dotted keys, secrets masked."""
    return flatten(public_dict(cfg))


_PACKAGES = (
    "torch",
    "pytorch-lightning",
    "torchmetrics",
    "optuna",
    "mlflow",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
)


def manifest(cfg: Config, result: FitResult) -> dict[str, Any]:
    """Everything needed to reproduce a run's numbers, and to know when they cannot match."""
    import platform

    commit, dirty = git_state()
    versions = package_versions()
    return {
        "config_hash": config_hash(cfg),
        "data_digest": result.data.digest,
        "data_source": result.data.source,
        "git": {"commit": commit, "dirty": dirty},
        "packages": dict(versions),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": result.device,
        "precision": result.precision,
        "threads": result.threads,
        "interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        # CPU kernels differ by instruction set (AVX2 vs AVX-512): floats can differ with it.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # and by CPU model at one capability (AMD EPYC vs Intel Xeon, both AVX-512: MKL/oneDNN
        # pick other kernels): the last bits of a float32 sum can differ between them.
        "cpu_model": cpu_model(),
        "cuda": _cuda_facts(),
        "command": sys.argv,
        "deterministic": {
            "train.deterministic": cfg.train.deterministic,
            "torch.use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "seed": cfg.seed,
        },
        "config": public_dict(cfg),
    }


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@functools.cache
def package_versions() -> dict[str, str]:
    """The installed version of each package that can change a run's numbers (read once per
    process: a comparison writes one manifest per seed run, each read costs ~10 ms)."""
    import importlib.metadata

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _cuda_facts() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    return {
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(0),
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
