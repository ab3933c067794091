"""The only door to MLflow: the :class:`Tracker` interface, its null base and the MLflow one.

A :class:`Tracker` is the small interface the rest of droplab uses; the base class is the null
implementation (training runs without MLflow in unit tests), :class:`MlflowTracker` writes
through ``MlflowClient`` so that droplab, not MLflow's exit hooks, decides each run's state.
Reads (find runs, one run, metric histories, downloads) go through it too: no module outside
``droplab.tracking`` imports MLflow. A run read back is a :class:`LoggedRun`, plain data.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from droplab import tags
from droplab.config.identity import mask_secrets
from droplab.data.splits import Dataset
from droplab.fit.model import MLP
from droplab.tracking.models import log_logged_model

_BATCH_METRICS = 1000  # MLflow's limit of metrics per log_batch
_DUPLICATE = re.compile(r"UNIQUE constraint failed|duplicate key value|IntegrityError", re.I)


class RunNotFound(LookupError):
    """The store has no such run (or cannot answer for it); the null tracker has none."""


@dataclass(frozen=True)
class LoggedRun:
    """A run as the store holds it: ``metrics`` are the latest value of each key."""

    id: str
    status: str
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: Mapping[str, float]


class Tracker:
    """Null tracker: every write is accepted and nothing is written; reads find nothing.

    ``start_time`` / ``end_time`` (seconds since the epoch) date a run that is logged after
    its training ran (a member of a stacked fit); by default a run is dated when it is
    started and ended.
    """

    uri = ""  # the store's URI ("" for the null tracker)

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

    def log_history(self, run_id: str, history: Sequence[Mapping[str, float]]) -> None:
        """Every epoch of a fit that already ran (epoch ``i + 1`` at index ``i``)."""
        for epoch, values in enumerate(history, start=1):
            self.log_epoch(run_id, values, epoch)

    def flush(self) -> None:
        """Wait for the epoch writes still under way; raise the first that failed."""

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None: ...

    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None: ...

    def log_dataset(self, run_id: str, data: Dataset) -> None: ...

    def log_dict(self, run_id: str, content: dict[str, Any], filename: str) -> None: ...

    def log_model(
        self, run_id: str, model: MLP, example: torch.Tensor, shown_on: Sequence[str] = ()
    ) -> None: ...

    def reopen(self, run_id: str) -> None: ...

    def end(
        self,
        run_id: str,
        status: str,
        state: str,
        reason: str | None = None,
        end_time: float | None = None,
    ) -> None: ...

    def find_runs(self, labels: Mapping[str, str], status: str | None = None) -> list[LoggedRun]:
        """Runs of the tracker's experiment with all ``labels`` (and ``status``), oldest first."""
        return []

    def get_run(self, run_id: str) -> LoggedRun:
        """The run ``run_id``.

        Raises:
            RunNotFound: the store has no such run.
        """
        raise RunNotFound(f"run {run_id}: tracking is off, no run was stored")

    def metric_history(self, run_id: str, key: str) -> dict[int, list[float]]:
        """Every value logged for ``key``, by step, in the order it was logged.

        Raises:
            RunNotFound: the store cannot answer for that run.
        """
        return {}

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        """Copy the artifact ``path`` of run ``run_id`` into the folder ``dst``; its local path.

        Raises:
            RunNotFound: the null tracker stores no artifacts (a real store raises its own
                error for a missing artifact).
        """
        raise RunNotFound(f"run {run_id}: tracking is off, no artifact {path} was stored")


class MlflowTracker(Tracker):
    """Writes to the MLflow store at ``uri`` under one experiment (created once, race-safe).

    Without ``experiment`` it reads runs by id and creates no experiment (MLflow still creates
    a missing SQLite store: check first where that matters); writing or searching needs one.
    """

    def __init__(
        self, uri: str, experiment: str | None = None, artifact_location: str | None = None
    ) -> None:
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # mlflow sets INFO on import
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        self.experiment_id = (
            None if experiment is None else self._experiment(experiment, artifact_location)
        )
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._write_error: BaseException | None = None

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                found_id = self.client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException:  # another worker created it first
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
            else:
                found = self.client.get_experiment(found_id)
        # Model development: MLflow 3's UI then opens the experiment on its runs, not GenAI.
        if found.tags.get(tags.EXPERIMENT_KIND) != tags.MODEL_DEVELOPMENT:
            try:
                self.client.set_experiment_tag(
                    found.experiment_id, tags.EXPERIMENT_KIND, tags.MODEL_DEVELOPMENT
                )
            except MlflowException:  # another worker set it first (a server on an RDB
                # inserts the tag: the second insert of one key fails); fine if it is set
                again = self.client.get_experiment(found.experiment_id)
                if again.tags.get(tags.EXPERIMENT_KIND) != tags.MODEL_DEVELOPMENT:
                    raise
        return str(found.experiment_id)

    def start(
        self,
        name: str,
        kind: str,
        labels: Mapping[str, str],
        parent_id: str | None,
        start_time: float | None = None,
    ) -> str:
        all_tags = {tags.KIND: kind, **labels}
        if parent_id is not None:
            all_tags[tags.PARENT] = parent_id
        run = self.client.create_run(
            self._experiment_id(), start_time=_ms(start_time), tags=all_tags, run_name=name
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

    def log_history(self, run_id: str, history: Sequence[Mapping[str, float]]) -> None:
        """All the epochs in as few ``log_batch`` calls as MLflow accepts: a fit logged after
        it ran (a stacked member) has no training to overlap one write per epoch with."""
        batch = [m for step, values in enumerate(history, start=1) for m in _metrics(values, step)]
        for i in range(0, len(batch), _BATCH_METRICS):
            self.client.log_batch(run_id, metrics=batch[i : i + _BATCH_METRICS], synchronous=True)

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
        # The encoded feature names (``col=value``, ``col_missing``) say what the model saw.
        names = ",".join(data.feature_names)
        source = CodeDatasetSource({tags.DATA_SOURCE: data.source, tags.FEATURES: names})
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

    def log_model(
        self, run_id: str, model: MLP, example: torch.Tensor, shown_on: Sequence[str] = ()
    ) -> None:
        """An MLflow 3 LoggedModel from ``run_id``, shown on the ``shown_on`` runs too."""
        log_logged_model(self.client, self.uri, run_id, model, example, shown_on)

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status=tags.RUNNING)

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
        labels = {tags.STATE: state}
        if reason:
            labels[tags.REASON] = reason
        self.set_tags(run_id, labels)
        self.client.set_terminated(run_id, status=status, end_time=_ms(end_time))

    def find_runs(self, labels: Mapping[str, str], status: str | None = None) -> list[LoggedRun]:
        clauses = [f"tags.`{k}` = '{v}'" for k, v in labels.items()]
        if status is not None:
            clauses.append(f"attributes.status = '{status}'")
        runs: list[LoggedRun] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self._experiment_id()],
                filter_string=" and ".join(clauses),
                max_results=1000,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            runs.extend(_logged(run) for run in page)
            token = page.token
            if not token:
                return runs

    def get_run(self, run_id: str) -> LoggedRun:
        from mlflow.exceptions import MlflowException

        try:
            return _logged(self.client.get_run(run_id))
        except MlflowException:
            raise RunNotFound(f"run {run_id} not found in {mask_secrets(self.uri)}") from None

    def metric_history(self, run_id: str, key: str) -> dict[int, list[float]]:
        from mlflow.exceptions import MlflowException

        try:
            logged = self.client.get_metric_history(run_id, key)
        except MlflowException as exc:  # e.g. a tracking server that knows no such run
            raise RunNotFound(f"run {run_id}: no history of {key} ({exc})") from exc
        by_step: dict[int, list[float]] = {}
        for m in sorted(logged, key=lambda m: (m.step, m.timestamp)):
            by_step.setdefault(int(m.step), []).append(float(m.value))
        return by_step

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, path, str(dst)))

    def _experiment_id(self) -> str:
        if self.experiment_id is None:
            raise RuntimeError(
                f"the MLflow store {mask_secrets(self.uri)} was opened to read runs by id; "
                "writing or searching runs needs an experiment"
            )
        return self.experiment_id


def _logged(run: Any) -> LoggedRun:
    """An MLflow ``Run`` as plain data."""
    return LoggedRun(
        id=str(run.info.run_id),
        status=str(run.info.status),
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


def _metrics(values: Mapping[str, float], step: int) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)
