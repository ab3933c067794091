"""``fit(config) -> FitResult``: data, model and Trainer in one readable place.

This is the only module that builds a ``pl.Trainer``. The Trainer is configured for a small
tabular MLP: batches are slices of in-memory tensors, nothing is logged per step, and the
progress bar, model summary, checkpointing and sanity check are off (each costs time per
trial). Epoch hooks (MLflow logging, pruning, time budget) see each epoch's metrics.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from droplab import interrupts, metrics
from droplab.config.schema import Config, ConfigError
from droplab.data.batches import Batches
from droplab.data.splits import Dataset, prepare
from droplab.fit.cores import worker_count
from droplab.fit.lit_module import BF16, Extras, LitMLP
from droplab.fit.model import MLP

EpochHook = Callable[[int, Mapping[str, float]], None]


class TrialStopped(Exception):
    """An epoch hook stopped the fit on purpose (pruning): the run is KILLED, not FAILED."""


class TimeBudgetExceeded(RuntimeError):
    """The fit ran past ``train.max_seconds``."""


@dataclass
class FitResult:
    """What one fit produced: the per-epoch history (epoch ``i + 1`` at index ``i``) and more."""

    history: list[dict[str, float]]
    summary: dict[str, float]
    model: MLP
    data: Dataset
    device: str
    threads: int
    seconds: float
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    """The weights at ``best/epoch`` (CPU copies); ``model`` holds the last epoch's."""
    precision: str = "32"
    """What ``train.precision`` resolved to: ``32`` or ``bf16-mixed``."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when it is there."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


# Below this width bfloat16 does not pay on CPU: the casts cost what the faster products save
# (README "Precision": one training step at widths 32-1024, AVX-512 BF16 + AMX).
AUTO_BF16_MIN_WIDTH = 512


def resolve_precision(cfg: Config) -> str:
    """``train.precision``: ``auto`` is bf16-mixed where the device multiplies bfloat16
    natively (CUDA with bf16; a CPU with AVX-512 BF16 or AMX, from width
    ``AUTO_BF16_MIN_WIDTH``), else 32."""
    setting = cfg.train.precision
    if setting != "auto":
        return setting
    if resolve_device(cfg.train.device).type == "cuda":
        return BF16 if torch.cuda.is_bf16_supported() else "32"
    return BF16 if cfg.model.width >= AUTO_BF16_MIN_WIDTH and native_cpu_bf16() else "32"


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def thread_count(cfg: Config) -> int:
    """``train.threads``, or the cores shared out between study workers."""
    if cfg.train.threads > 0:
        return cfg.train.threads
    return max(1, (os.cpu_count() or 1) // worker_count(cfg))


def configure_threads(n: int) -> None:
    """Set torch's intra-op threads (and OpenMP's, for code that reads it later)."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def seed_all(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; ask for deterministic kernels."""
    pl.seed_everything(seed, workers=False, verbose=False)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def positive_weight(cfg: Config, data: Dataset) -> float | None:
    """``train.pos_weight``: ``auto`` = negatives / positives of the training split."""
    setting = cfg.train.pos_weight
    if data.n_classes != 2 or setting == "none":
        return None
    if setting == "auto":
        negatives, positives = data.class_counts()
        return negatives / max(positives, 1)
    return float(setting)


def build_model(cfg: Config, data: Dataset) -> MLP:
    m = cfg.model
    n_outputs = 1 if data.n_classes in (0, 2) else data.n_classes  # 0: a regression
    return MLP(
        data.n_features,
        n_outputs,
        m.width,
        m.depth,
        m.dropout,
        m.input_dropout,
        m.activation,
        dropout_kind=m.dropout_kind,
        norm=m.norm,
        dropout_rng=m.dropout_rng,
    )


def fit(
    cfg: Config,
    data: Dataset | None = None,
    hooks: Sequence[EpochHook] = (),
) -> FitResult:
    """Train one model as ``cfg`` says and evaluate both splits in eval mode every epoch.

    Args:
        cfg: the resolved config.
        data: prepared splits (loaded from ``cfg.data`` when omitted).
        hooks: called after every epoch, in order.

    Returns:
        The per-epoch history, the summary metrics and the trained model.

    Raises:
        TrialStopped: a hook stopped the fit (e.g. pruning).
        NonFiniteLoss: the training loss became NaN/inf.
        TimeBudgetExceeded: ``train.max_seconds`` ran out.
        interrupts.Interrupted: SIGINT/SIGTERM arrived.
    """
    threads = thread_count(cfg)
    configure_threads(threads)
    device = resolve_device(cfg.train.device)
    data = (data or prepare(cfg.data, cfg.seed)).to(device)
    check_monitor(cfg, data)
    seed_all(cfg.seed, cfg.train.deterministic)
    precision = resolve_precision(cfg)
    module = LitMLP(
        build_model(cfg, data),
        data.n_classes,
        cfg.train,
        train=(data.x_train, data.y_train),
        val=(data.x_val, data.y_val),
        pos_weight=positive_weight(cfg, data),
        extras=Extras.of(cfg),
        target_std=data.target_std,
        precision=precision,
    )
    start = time.perf_counter()
    best_state: dict[str, torch.Tensor] = {}
    hooks = [
        keep_best(module, cfg.train.monitor, best_state),
        *hooks,
        time_budget(cfg.train.max_seconds, start),
    ]
    _run_trainer(
        cfg,
        device,
        module,
        _Epochs(Batches(data.x_train, data.y_train, cfg.train.batch_size, cfg.seed)),
        hooks,
    )
    history = module.history
    return FitResult(
        history=history,
        summary=metrics.summarize(history, cfg.train.monitor),
        model=module.model.cpu().eval(),
        data=data,
        device=str(device),
        threads=threads,
        seconds=time.perf_counter() - start,
        best_state=best_state,
        precision=precision,
    )


def check_monitor(cfg: Config, data: Dataset) -> None:
    """A regression has no AUPRC/AUROC to monitor, a classification no RMSE/NLL."""
    regression_keys = (metrics.VAL_RMSE, metrics.VAL_NLL)
    monitor = cfg.train.monitor
    if monitor not in (metrics.AUTO, metrics.VAL_LOSS) and (
        (monitor in regression_keys) != data.is_regression
    ):
        task = "regression" if data.is_regression else "classification"
        raise ConfigError(
            f"train.monitor={monitor!r} is not allowed for a {task} target; allowed: auto, "
            + ", ".join((*regression_keys, metrics.VAL_LOSS) if data.is_regression else
                        (metrics.VAL_AUPRC, metrics.VAL_AUROC, metrics.VAL_LOSS))
        )  # fmt: skip


class _Epochs:
    """The Trainer's loader: one item per epoch, the epoch's mini-batches (see ``LitMLP``).

    ``iter()`` on it is ``iter()`` on the batches, so the batches draw one permutation per
    epoch (and one for Lightning's check that the loader is iterable), as they would alone.
    """

    def __init__(self, batches: Batches) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        return iter([iter(self.batches)])


def _run_trainer(
    cfg: Config, device: torch.device, module: LitMLP, batches: _Epochs, hooks: list[EpochHook]
) -> None:
    # Lightning sets its loggers to INFO when it is imported (after runtime.setup may have
    # run): its per-fit banners (accelerator, tips) would print once per trial.
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=cfg.train.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=1,  # one step per epoch (LitMLP); nothing is logged per step anyway
        callbacks=[_EpochHooks(hooks)],
    )
    sigint = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, train_dataloaders=batches)
    except SystemExit as exc:
        # Lightning exits on Ctrl-C and SIGTERM; give the caller an exception it can handle.
        signum = signal.SIGTERM if isinstance(exc, SIGTERMException) else interrupts.last_signal()
        raise interrupts.Interrupted(signum) from None
    finally:
        # Lightning sets SIGINT to "ignore" after catching Ctrl-C; restore ours.
        if sigint is not None:
            signal.signal(signal.SIGINT, sigint)


class _EpochHooks(pl.Callback):
    """Closes each epoch: the eval-mode pass over both splits, then the hooks, in order."""

    def __init__(self, hooks: Sequence[EpochHook]) -> None:
        self.hooks = hooks

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, LitMLP)
        record = pl_module.close_epoch()
        for hook in self.hooks:
            hook(len(pl_module.history), record)


def keep_best(module: LitMLP, monitor: str, best: dict[str, torch.Tensor]) -> EpochHook:
    """Copy the weights whenever ``monitor`` improves, so the best epoch's model is kept."""
    score: list[float] = []

    def keep(_: int, values: Mapping[str, float]) -> None:
        key = metrics.resolve_monitor(monitor, values)
        if metrics.is_better(key, values[key], score[-1] if score else None):
            score.append(values[key])
            best.update(
                {k: v.detach().cpu().clone() for k, v in module.model.state_dict().items()}
            )

    return keep


def time_budget(max_seconds: float | None, start: float) -> EpochHook:
    def check(epoch: int, _: Mapping[str, float]) -> None:
        elapsed = time.perf_counter() - start
        if max_seconds is not None and elapsed > max_seconds:
            raise TimeBudgetExceeded(
                f"train.max_seconds={max_seconds:g} exceeded after epoch {epoch} ({elapsed:.1f}s)"
            )

    return check


def predict_proba(result: FitResult, rows: Sequence[Sequence[float]]) -> list[list[float]]:
    """Class probabilities for raw (unscaled) feature rows, scaled as the training split was."""
    x = torch.tensor(rows, dtype=torch.float32)
    mean = torch.as_tensor(result.data.scale_mean, dtype=torch.float32)
    std = torch.as_tensor(result.data.scale_std, dtype=torch.float32)
    with torch.no_grad():
        logits = result.model.eval()((x - mean) / std)
    if result.data.is_regression:  # the prediction, in the target's units
        d = result.data
        return [[float(v) * d.target_std + d.target_mean] for v in logits.squeeze(-1)]
    if result.data.n_classes == 2:
        p = torch.sigmoid(logits.squeeze(-1))
        return [[float(1 - v), float(v)] for v in p]
    return torch.softmax(logits, dim=-1).tolist()
