"""The only module that talks to MLflow: run hierarchy, batched per-epoch metrics, run states.

A :class:`Tracker` is the small interface the rest of droplab uses; the base class is the null
implementation (training runs without MLflow in unit tests), :class:`MlflowTracker` writes
through ``MlflowClient`` so that droplab, not MLflow's exit hooks, decides each run's state.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from droplab import config as C
from droplab import interrupts, metrics, plots
from droplab.config import Config
from droplab.data import Dataset, prepare
from droplab.model import MLP
from droplab.storage import schema_lock
from droplab.training import EpochHook, FitResult, TrialStopped, fit, progress_bar

os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no "creating tables" banners
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# A tracking server that drops mid-study is retried with backoff (1+2+4+8 s), then the trial
# fails with the reason; MLflow's own default waits minutes. Users can still override these.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
COMPLETE, PRUNED, FAIL = "COMPLETE", "PRUNED", "FAIL"

KIND = "droplab.kind"
STATE = "droplab.state"
REASON = "droplab.failure"
CONFIG_HASH = "droplab.config_hash"
DATA_DIGEST = "droplab.data_digest"
GIT_COMMIT = "droplab.git_commit"
GIT_DIRTY = "droplab.git_dirty"
PARENT = "mlflow.parentRunId"
_DUPLICATE = re.compile(r"UNIQUE constraint failed|duplicate key value|IntegrityError", re.I)


class Tracker:
    """Null tracker: every call is accepted and nothing is written.

    ``start_time`` / ``end_time`` (seconds since the epoch) date a run that is logged after
    its training ran (a member of a stacked fit); by default a run is dated when it is
    started and ended.
    """

    def start(
        self,
        name: str,
        kind: str,
        tags: Mapping[str, str],
        parent_id: str | None,
        start_time: float | None = None,
    ) -> str:
        return uuid.uuid4().hex

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None: ...

    def log_metrics(
        self, run_id: str, values: Mapping[str, float], step: int | None = None
    ) -> None: ...

    def log_epoch(self, run_id: str, values: Mapping[str, float], step: int) -> None:
        """One epoch's metrics; the write may finish later, :meth:`flush` waits for it."""
        self.log_metrics(run_id, values, step)

    def flush(self) -> None:
        """Wait for the epoch writes still under way; raise the first that failed."""

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None: ...

    def log_dataset(self, run_id: str, data: Dataset) -> None: ...

    def log_dict(self, run_id: str, content: dict[str, Any], filename: str) -> None: ...

    def log_model(self, run_id: str, model: MLP, example: torch.Tensor) -> None: ...

    def reopen(self, run_id: str) -> None: ...

    def end(
        self,
        run_id: str,
        status: str,
        state: str,
        reason: str | None = None,
        end_time: float | None = None,
    ) -> None: ...


class MlflowTracker(Tracker):
    """Writes to the MLflow store at ``uri`` under one experiment (created once, race-safe)."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # mlflow sets INFO on import
        # MLflow prints "View run ... at: URL" on every run it ends through a server.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.experiment_id = self._experiment(experiment, artifact_location)
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._write_error: BaseException | None = None

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name, artifact_location=artifact_location))
        except MlflowException:  # another worker created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def start(
        self,
        name: str,
        kind: str,
        tags: Mapping[str, str],
        parent_id: str | None,
        start_time: float | None = None,
    ) -> str:
        all_tags = {KIND: kind, **tags}
        if parent_id is not None:
            all_tags[PARENT] = parent_id
        run = self.client.create_run(
            self.experiment_id, start_time=_ms(start_time), tags=all_tags, run_name=name
        )
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow accepts 100 params per batch
            self.client.log_batch(run_id, params=items[i : i + 100], synchronous=True)

    def log_metrics(
        self, run_id: str, values: Mapping[str, float], step: int | None = None
    ) -> None:
        self.client.log_batch(run_id, metrics=_metrics(values, step or 0), synchronous=True)

    def log_epoch(self, run_id: str, values: Mapping[str, float], step: int) -> None:
        """Queue the epoch's ``log_batch`` on a writer thread: the fit goes on while the store
        commits (half of the ~11 ms a write takes on SQLite is waiting for the disk). The
        error of an earlier write is raised here, at the first epoch after it failed."""
        self._raise_failed()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="droplab-mlflow")
        self._pending.append(self._writer.submit(self._write, run_id, _metrics(values, step)))

    def _write(self, run_id: str, batch: list[Any]) -> None:
        if self._write_error is not None:  # the store failed: skip, do not retry every epoch
            raise self._write_error
        try:
            self.client.log_batch(run_id, metrics=batch, synchronous=True)
        except BaseException as exc:
            self._write_error = exc
            raise

    def _raise_failed(self) -> None:
        if self._write_error is not None:
            self.flush()
        self._pending = [f for f in self._pending if not f.done()]  # the rest went through

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        wait(pending)
        # A failed write leaves its error here (and the writes after it skip): raise it once;
        # the next run tries the store again.
        error, self._write_error = self._write_error, None
        if error is not None:
            raise error

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        self.client.log_batch(run_id, tags=batch, synchronous=True)

    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    def log_dict(self, run_id: str, content: dict[str, Any], filename: str) -> None:
        self.client.log_dict(run_id, content, filename)

    def log_dataset(self, run_id: str, data: Dataset) -> None:
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.numpy_dataset import from_numpy
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        # An explicit source: MLflow refuses a source string whose scheme it does not know
        # (``sklearn:digits``, ``csv:/path``). The digest is ours (over the raw table).
        source = CodeDatasetSource({"droplab.source": data.source})
        x, y = data.x_train.cpu().numpy()[:0], data.y_train.cpu().numpy()[:0]
        dataset = from_numpy(
            x, targets=y, source=source, name=data.source, digest=data.digest[:32]
        )
        tag = InputTag(key="mlflow.data.context", value="training")
        inputs = [DatasetInput(dataset._to_mlflow_entity(), [tag])]
        try:
            self.client.log_inputs(run_id, datasets=inputs)
        except MlflowException as exc:
            # Workers logging one dataset at the same moment both insert it; the loser's retry
            # finds it and only links it to its run.
            if not _DUPLICATE.search(str(exc)):
                raise
            self.client.log_inputs(run_id, datasets=inputs)

    def log_model(self, run_id: str, model: MLP, example: torch.Tensor) -> None:
        import mlflow
        import mlflow.pytorch
        from mlflow.models import infer_signature

        model = model.cpu().eval()
        with torch.no_grad():
            logits = model(example).numpy()
        signature = infer_signature(example.numpy(), logits)
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=run_id):
            # Naming the requirement skips MLflow's slow inference of the environment.
            mlflow.pytorch.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example.numpy(),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        # start_run(run_id) resumed the run; leave it RUNNING for end() to decide.
        self.client.update_run(run_id, status="RUNNING")

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def end(
        self,
        run_id: str,
        status: str,
        state: str,
        reason: str | None = None,
        end_time: float | None = None,
    ) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - ending a run on a failure path: that error wins
            pass
        tags = {STATE: state}
        if reason:
            tags[REASON] = reason
        self.set_tags(run_id, tags)
        self.client.set_terminated(run_id, status=status, end_time=_ms(end_time))


def _metrics(values: Mapping[str, float], step: int) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def make_tracker(cfg: Config) -> Tracker:
    """The MLflow tracker for ``cfg`` (its SQLite store under ``paths.runs`` by default)."""
    if not cfg.tracking.enabled:
        return Tracker()
    uri = C.tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif uri.startswith("sqlite:///"):
        _writable_dir(C.runs_dir(cfg))
    # A tracking server stores artifacts itself (mlflow-artifacts:/): a local root would send
    # each machine's files to its own disk, out of reach of the server and the other machines.
    remote = uri.startswith(("http://", "https://"))
    try:
        # Processes started together on a fresh store take turns to create it: MLflow's
        # schema migrations fail when several run at once.
        with schema_lock(uri):
            return MlflowTracker(
                uri, C.experiment_name(cfg), None if remote else C.artifact_root(cfg)
            )
    except Exception as exc:  # bad URI scheme, driver missing, database refused...
        raise C.ConfigError(
            f"tracking.uri={C.mask_secrets(uri)} cannot be used: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return C.mask_secrets(lines[0] if lines else type(exc).__name__)[:300]


def _writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".droplab-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise C.ConfigError(f"paths.runs={path} is not writable: {exc.strerror}") from None


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Refuse an HTTP tracking server that does not answer, before any training starts."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
            if reply.status == 200:
                return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise C.ConfigError(
            f"tracking.uri={C.mask_secrets(uri)} is unreachable: {reason}"
        ) from None
    raise C.ConfigError(f"tracking.uri={C.mask_secrets(uri)} is not an MLflow server")


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
    return {
        CONFIG_HASH: C.config_hash(cfg),
        DATA_DIGEST: data.digest,
        GIT_COMMIT: commit,
        GIT_DIRTY: str(dirty).lower(),
    }


def run_params(cfg: Config) -> dict[str, Any]:
    """The whole resolved config, flattened to dotted keys, secrets masked."""
    return C.flatten(C.public_dict(cfg))


MANIFEST = "manifest.json"
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
    import importlib.metadata
    import platform

    commit, dirty = git_state()
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "config_hash": C.config_hash(cfg),
        "data_digest": result.data.digest,
        "data_source": result.data.source,
        "git": {"commit": commit, "dirty": dirty},
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": result.device,
        "threads": result.threads,
        "interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        # CPU kernels differ by instruction set (AVX2 vs AVX-512): floats can differ with it.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": _cuda_facts(),
        "command": sys.argv,
        "deterministic": {
            "train.deterministic": cfg.train.deterministic,
            "torch.use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "seed": cfg.seed,
        },
        "config": C.public_dict(cfg),
    }


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


@dataclass
class TrackedFit:
    run_id: str
    result: FitResult


def _epoch_logger(tracker: Tracker, run_id: str, seen: list[dict[str, float]]) -> EpochHook:
    def log(epoch: int, values: Mapping[str, float]) -> None:
        seen.append(dict(values))
        tracker.log_epoch(run_id, values, step=epoch)  # one log_batch per epoch

    return log


def open_run(
    cfg: Config,
    tracker: Tracker,
    data: Dataset,
    *,
    kind: str,
    name: str,
    parent_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
    start_time: float | None = None,
) -> str:
    """Create a fit's run: its tags (config hash, data digest, commit), params and data input.

    ``on_start`` hears the run id as soon as the run exists. If logging fails the run is
    ended FAILED with the reason and the error raised.
    """
    run_id = tracker.start(
        name, kind, {**run_tags(cfg, data), **(tags or {})}, parent_id, start_time=start_time
    )
    try:
        if on_start is not None:
            on_start(run_id)
        tracker.log_params(run_id, run_params(cfg))
        tracker.log_dataset(run_id, data)
    except BaseException as exc:
        end_quietly(tracker, run_id, FAILED, FAIL, failure_reason(exc))
        raise
    return run_id


def close_run(
    cfg: Config,
    tracker: Tracker,
    run_id: str,
    result: FitResult,
    *,
    log_model: bool = False,
    activations: bool = True,
    manifest_extra: Mapping[str, Any] | None = None,
    end_time: float | None = None,
) -> None:
    """End a finished fit's run FINISHED, after its summary, manifest, plot (and model).

    ``activations=False`` skips the activations picture even where ``tracking.activations``
    asks for it (a study draws it for its best trial only, see :func:`log_activations`).
    """
    tracker.flush()  # every epoch written, or the run fails with the write's error
    tracker.log_metrics(run_id, result.summary)
    tracker.log_dict(run_id, {**manifest(cfg, result), **(manifest_extra or {})}, MANIFEST)
    if cfg.tracking.activations and activations:
        log_activations(tracker, run_id, result.model, result.data.x_val, cfg.seed)
    if log_model:
        tracker.log_model(run_id, result.model, result.data.x_val[:5].cpu())
    tracker.end(run_id, FINISHED, COMPLETE, end_time=end_time)


def fail_run(
    cfg: Config,
    tracker: Tracker,
    run_id: str,
    exc: BaseException,
    history: Sequence[Mapping[str, float]],
    end_time: float | None = None,
) -> None:
    """End the run of a fit stopped by ``exc``: a :class:`TrialStopped` (pruning) is KILLED
    with the summary of the epochs in ``history``; any other error or an interrupt is FAILED
    with the reason (quietly: if the store is down too, the caller's error wins)."""
    if isinstance(exc, TrialStopped):
        tracker.flush()  # the epochs first, then the summary of them
        tracker.log_metrics(run_id, metrics.summarize(history, cfg.train.monitor))
        tracker.end(run_id, KILLED, PRUNED, str(exc), end_time=end_time)
        return
    end_quietly(tracker, run_id, FAILED, FAIL, failure_reason(exc), end_time=end_time)


def run_fit(
    cfg: Config,
    tracker: Tracker,
    *,
    kind: str,
    name: str,
    parent_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    hooks: Sequence[EpochHook] = (),
    data: Dataset | None = None,
    log_model: bool = False,
    activations: bool = True,
    on_start: Callable[[str], None] | None = None,
) -> TrackedFit:
    """One fit inside one MLflow run whose final state droplab sets itself.

    The data is loaded before the run is created, so bad data leaves no run behind. A hook
    that raises :class:`TrialStopped` ends the run KILLED (state PRUNED); any other error or
    an interrupt ends it FAILED with the reason; success ends it FINISHED.
    """
    data = data or prepare(cfg.data, cfg.seed)
    run_id = open_run(
        cfg, tracker, data, kind=kind, name=name, parent_id=parent_id, tags=tags, on_start=on_start
    )
    seen: list[dict[str, float]] = []
    try:
        result = fit(cfg, data, hooks=[_epoch_logger(tracker, run_id, seen), *hooks])
        close_run(cfg, tracker, run_id, result, log_model=log_model, activations=activations)
    except BaseException as exc:
        fail_run(cfg, tracker, run_id, exc, seen)
        raise
    return TrackedFit(run_id, result)


def log_fitted(
    cfg: Config,
    tracker: Tracker,
    result: FitResult,
    error: Exception | None,
    *,
    kind: str,
    name: str,
    parent_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    on_start: Callable[[str], None] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
) -> TrackedFit:
    """Log a fit that already ran (a member of a stacked fit) as :func:`run_fit` logs one.

    The same run: tags, params, data input, one ``log_batch`` per epoch of ``result.history``,
    then the summary and manifest and FINISHED; or, when ``error`` stopped the fit, the end
    ``run_fit`` gives a fit that raised it, and ``error`` is raised. The run is created only
    now, so a process killed while the fit trained leaves no run RUNNING; ``start_time`` and
    ``end_time`` date it when the fit ran.
    """
    run_id = open_run(
        cfg,
        tracker,
        result.data,
        kind=kind,
        name=name,
        parent_id=parent_id,
        tags=tags,
        on_start=on_start,
        start_time=start_time,
    )
    seen: list[dict[str, float]] = []
    log = _epoch_logger(tracker, run_id, seen)
    try:
        for epoch, values in enumerate(result.history, start=1):
            log(epoch, values)
        if error is not None:
            raise error
        close_run(cfg, tracker, run_id, result, manifest_extra=manifest_extra, end_time=end_time)
    except BaseException as exc:
        fail_run(cfg, tracker, run_id, exc, seen, end_time=end_time)
        raise
    return TrackedFit(run_id, result)


_RUN_FOR_STATE = {COMPLETE: (FINISHED, COMPLETE), PRUNED: (KILLED, PRUNED)}


def reconcile_runs(tracker: Tracker, parent_id: str, states: Mapping[str, str]) -> int:
    """Close child runs left RUNNING whose trial has ended (e.g. the store was down when it
    ended); ``states`` maps trial numbers (as tag strings) to Optuna state names."""
    if not isinstance(tracker, MlflowTracker):
        return 0
    running = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`{PARENT}` = '{parent_id}' and attributes.status = 'RUNNING'",
    )
    closed = 0
    for child in running:
        state = states.get(child.data.tags.get("optuna.trial_number", ""), "RUNNING")
        if state in ("RUNNING", "WAITING"):
            continue
        status, tag = _RUN_FOR_STATE.get(state, (FAILED, FAIL))
        tracker.end(child.info.run_id, status, tag, f"closed to match trial state {state}")
        closed += 1
    return closed


def end_quietly(
    tracker: Tracker,
    run_id: str,
    status: str,
    state: str,
    reason: str,
    end_time: float | None = None,
) -> None:
    """Close a run on the failure path; if the store is down too, the original error wins
    (the next ``droplab study`` reconciles the run with Optuna's state)."""
    try:
        tracker.end(run_id, status, state, reason, end_time=end_time)
    except Exception as exc:  # noqa: BLE001 - the caller re-raises the real failure
        logging.getLogger(__name__).warning("could not close run %s: %s", run_id, _first_line(exc))


def failure_reason(exc: BaseException) -> str:
    """One line saying why a run stopped."""
    if isinstance(exc, interrupts.Interrupted):
        return f"interrupted by {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def log_activations(
    tracker: Tracker, run_id: str, model: MLP, x_val: torch.Tensor, seed: int
) -> None:
    """``activations.png`` of ``model`` on the first 64 validation rows, on run ``run_id``."""
    if not isinstance(tracker, MlflowTracker):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.activations(model, x_val[:64].cpu(), seed, Path(tmp) / "activations.png")
        tracker.log_artifact(run_id, path)


def train(cfg: Config, progress: bool = False) -> TrackedFit:
    """``droplab train``: one run of kind ``train`` in the experiment's MLflow store."""
    data = prepare(cfg.data, cfg.seed)  # bad data stops here, before any store is created
    for row in cfg.train.predict:
        if len(row) != data.n_features:
            raise C.ConfigError(
                f"train.predict row {list(row)} has {len(row)} values; the data has "
                f"{data.n_features} features ({', '.join(data.feature_names[:5])}...)"
            )
    tracker = make_tracker(cfg)
    hooks = [progress_bar(cfg.train.epochs, cfg.name)] if progress else []
    return run_fit(
        cfg,
        tracker,
        kind="train",
        name=f"train-{cfg.name}",
        data=data,
        hooks=hooks,
        log_model=cfg.tracking.log_model,
    )
