"""Optuna storages, the trial-slot lock and recovery of trials left RUNNING by dead workers.

``study.n_trials`` counts finished trials exactly, also with several workers: a worker takes
a trial slot under a lock (a file lock beside local storages, a PostgreSQL advisory
lock for shared servers), so two workers never both start "the last" trial.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from droplab import tags
from droplab.config.identity import first_line, mask_secrets
from droplab.config.paths import runs_dir, study_storage
from droplab.config.schema import Config, ConfigError
from droplab.fit.cores import worker_count
from droplab.locks import advisory_lock, file_lock, schema_lock
from droplab.optuna_compat import rdb_backend, storage_of, trial_id

# Slots are taken by trials that are finished or under way; failed ones are run again.
SLOT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.juicefs",
        "virtiofs",
    }
)


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem that holds ``path`` (from /proc/mounts; None off Linux)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target, best, kind = os.path.realpath(path), "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def refuse_sqlite_on_network(url: str, key: str = "study.storage") -> None:
    """SQLite's file locks do not work on network filesystems: workers would corrupt it."""
    if not url.startswith("sqlite:///"):
        return
    kind = filesystem_type(Path(url.removeprefix("sqlite:///")).parent)
    if kind in NETWORK_FILESYSTEMS:
        raise ConfigError(
            f"{key}={mask_secrets(url)} is on a network filesystem ({kind}): SQLite's locks do "
            "not work there and workers on several machines corrupt it; use postgresql://... "
            "(README, Scaling out), or keep paths.runs on a local disk"
        )


def is_journal(url: str) -> bool:
    return url.endswith(".journal")


def check_storage(cfg: Config) -> str:
    """The storage URL for ``cfg``; refuses several workers on one SQLite file."""
    url = study_storage(cfg)
    if worker_count(cfg) > 1 and url.startswith("sqlite:"):
        raise ConfigError(
            f"study.storage={mask_secrets(url)} with study.workers={cfg.study.workers}: several "
            "processes on one SQLite file fail with 'database is locked'; use a journal file "
            "(study.storage=runs/optuna.journal, the default for workers > 1) or postgresql://..."
        )
    refuse_sqlite_on_network(url)
    if not (is_journal(url) or "://" in url):
        raise ConfigError(
            f"study.storage={mask_secrets(url)} is neither an RDB URL (sqlite:///..., "
            "postgresql://...) nor a journal file (*.journal)"
        )
    return url


def shared(cfg: Config, url: str) -> bool:
    """Whether other processes may ask this study too: several workers here, or a storage
    that other machines can reach (anything but SQLite)."""
    return worker_count(cfg) > 1 or not url.startswith("sqlite:")


def probe(url: str) -> None:
    """Check that the storage can be used, creating nothing: a server answers, a local
    directory is writable. Bad input must not leave a study, a database or a file behind."""
    if url.startswith(("sqlite:///",)) or is_journal(url):
        local = Path(url.removeprefix("sqlite:///")).parent
        _check_dir(local, url)
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:  # driver, DNS, refused, auth: all mean "unreachable"
        raise ConfigError(
            f"study.storage={mask_secrets(url)} is unreachable: {first_line(exc)}"
        ) from None


def _check_dir(path: Path, url: str) -> None:
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    if not (existing.is_dir() and os.access(existing, os.W_OK)):
        raise ConfigError(f"study.storage={mask_secrets(url)}: {path} is not writable")


def open_storage(url: str, heartbeat_seconds: int | None = None) -> BaseStorage:
    """An Optuna storage for ``url``: RDB (with heartbeat) or a journal file.

    Raises:
        ConfigError: the storage cannot be reached or created (one line, secrets masked).
    """
    try:
        if is_journal(url):
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(url))
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), schema_lock(url):  # heartbeat is "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat_seconds,
                grace_period=None if heartbeat_seconds is None else 2 * heartbeat_seconds,
                engine_kwargs={"pool_pre_ping": True} if url.startswith("postgresql") else None,
            )
    except Exception as exc:  # SQLAlchemy, OS and driver errors all mean "unreachable"
        raise ConfigError(
            f"study.storage={mask_secrets(url)} is unreachable: {first_line(exc, limit=10_000)}"
        ) from None


@contextlib.contextmanager
def slot_lock(study: optuna.Study, url: str, cfg: Config) -> Iterator[None]:
    """Serialise 'count the slots, then take one' between workers of one study."""
    rdb = rdb_backend(storage_of(study))
    if rdb is not None and url.startswith("postgresql"):
        name = study.study_name.encode()
        key = int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)
        with advisory_lock(rdb.engine, key):
            yield
        return
    lock_dir = Path(url).parent if is_journal(url) else runs_dir(cfg)
    digest = hashlib.sha256(f"{url}|{study.study_name}".encode()).hexdigest()[:12]
    with file_lock(lock_dir / f".slots-{digest}.lock"):
        yield


def slots_taken(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=SLOT_STATES))


def finished(study: optuna.Study) -> int:
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def claim(trial: optuna.Trial) -> None:
    """Record which process runs ``trial``, so a later start can tell if it died."""
    trial.set_user_attr(tags.HOST, socket.gethostname())
    trial.set_user_attr(tags.PID, os.getpid())


def _dead_here(trial: FrozenTrial) -> bool:
    """RUNNING on this host, but its process is gone (killed with SIGKILL, OOM, power loss)."""
    if trial.user_attrs.get(tags.HOST) != socket.gethostname() or tags.PID not in trial.user_attrs:
        return False
    pid = int(trial.user_attrs[tags.PID])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_stale(study: optuna.Study, on_failed: Callable[[FrozenTrial, str], None]) -> list[int]:
    """Fail the RUNNING trials whose worker is dead; returns their numbers.

    Local workers are checked by process id (immediate); RDB storages also fail trials whose
    heartbeat stopped, which covers workers on other machines.
    """
    failed: list[int] = []
    storage = storage_of(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _dead_here(trial):
            reason = f"worker pid {trial.user_attrs[tags.PID]} died while running the trial"
            storage.set_trial_user_attr(trial_id(trial), tags.FAIL_REASON, reason)
            storage.set_trial_state_values(trial_id(trial), TrialState.FAIL)
            on_failed(trial, reason)
            failed.append(trial.number)
    rdb = rdb_backend(storage)
    if rdb is not None and rdb.get_heartbeat_interval() is not None:
        before = {t.number for t in study.get_trials(states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():  # experimental in Optuna since 2.9, said every call
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(states=(TrialState.RUNNING,))}
        # A trial that left RUNNING between the two reads may have completed normally in its
        # own worker meanwhile: only the ones now FAIL were failed here.
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if trial.number in before - after:
                on_failed(trial, "worker stopped sending heartbeats")
                failed.append(trial.number)
    return failed
