"""``droplab replay RUN_ID``: rerun a logged run without tracking and check its numbers match.

The run's ``manifest.json`` holds the resolved config (its params are the same config
flattened); the data digest is checked first (other rows cannot give the same numbers), then
``training.fit`` reruns it and every per-epoch history and summary metric is compared with
what the run logged. Also the small readers of logged runs that ``compare`` reuses.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from droplab import metrics, tags
from droplab.config.identity import config_hash, mask_secrets
from droplab.config.load import from_dict, load_config, set_dotted, with_overrides
from droplab.config.paths import tracking_uri
from droplab.config.schema import Config, ConfigError
from droplab.data.splits import prepare
from droplab.fit.trainer import fit
from droplab.tracking.connect import read_store
from droplab.tracking.provenance import cpu_model, git_state
from droplab.tracking.store import LoggedRun, RunNotFound, Tracker

EXIT_MATCH, EXIT_MISMATCH = 0, 1


NOT_FITS = (tags.KIND_STUDY, tags.KIND_COMPARISON, tags.KIND_CELL)  # kinds that group runs


@dataclass
class Check:
    """One line of the replay: a metric (or the data) and whether it matched."""

    name: str
    ok: bool
    detail: str


@dataclass
class ReplayResult:
    """The checks of one replay; ``exit_code`` is 0 when everything matched, else 1."""

    run_id: str
    uri: str
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def matched(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        return EXIT_MATCH if self.matched else EXIT_MISMATCH


def default_uri() -> str:
    """The MLflow store of the default config (``paths.runs`` of ``conf/default.yaml``)."""
    return tracking_uri(load_config())


def replay(run_id: str, tracking_uri: str | None = None, tolerance: float = 0.0) -> ReplayResult:
    """Rerun the logged run ``run_id`` and compare its numbers with what it logged.

    Args:
        run_id: an MLflow run that trained one model (kind ``seed``, ``trial`` or ``train``).
        tracking_uri: its store; default :func:`default_uri`.
        tolerance: largest absolute difference that still matches (0: bit for bit).

    Returns:
        One check for the data digest, then one per per-epoch metric and summary metric.

    Raises:
        ConfigError: no such store or run, or the run holds no trained model's config.
    """
    start = time.perf_counter()
    uri = tracking_uri or default_uri()
    store = _open_store(uri)
    run = _get_run(store, uri, run_id)
    cfg, notes = _replay_config(store, run)
    result = ReplayResult(run_id, mask_secrets(uri), [], notes)
    data = prepare(cfg.data, cfg.seed)
    logged_digest = run.tags.get(tags.DATA_DIGEST, "")
    result.checks.append(_digest_check(logged_digest, data.digest))
    if result.checks[0].ok:
        replayed = fit(cfg, data)
        result.checks += _history_checks(store, run_id, replayed.history, tolerance)
        result.checks += _summary_checks(run.metrics, replayed.summary, tolerance)
    else:
        result.notes.append("not retrained: other rows cannot reproduce the run's numbers")
    result.seconds = time.perf_counter() - start
    return result


def _open_store(uri: str) -> Tracker:
    """The store to read; a missing SQLite file is refused (reading would create it empty)."""
    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        raise ConfigError(f"tracking URI {uri}: no MLflow store there (pass --tracking-uri)")
    return read_store(uri)


def _get_run(store: Tracker, uri: str, run_id: str) -> LoggedRun:
    try:
        return store.get_run(run_id)
    except RunNotFound:
        raise ConfigError(f"run {run_id} not found in {mask_secrets(uri)}") from None


def _replay_config(store: Tracker, run: LoggedRun) -> tuple[Config, list[str]]:
    """The run's config from its manifest (params as a fallback), set to rerun it as it ran."""
    kind = run.tags.get(tags.KIND, "?")
    if kind in NOT_FITS:
        raise ConfigError(
            f"run {run.id} is a {kind} run, which trained no model; "
            "replay one of its seed, trial or train runs"
        )
    manifest = _manifest(store, run.id)
    tree = manifest.get("config") or params_tree(run.params)
    cfg = from_dict(tree)
    notes = _drift_notes(manifest, run.tags, cfg)
    overrides: dict[str, Any] = {"train.max_seconds": None}
    if manifest.get("threads"):
        overrides["train.threads"] = int(manifest["threads"])  # float sums depend on threads
    overrides["train.device"] = _device(str(manifest.get("device", "cpu")), notes)
    # what train.precision resolved to when it ran (auto depends on the machine); none: 32
    overrides["train.precision"] = str(manifest.get("precision", "32"))
    if run.status == tags.KILLED:  # pruned: replay the epochs it ran
        epochs = len(store.metric_history(run.id, metrics.VAL_LOSS))
        overrides["train.epochs"] = max(1, epochs)
        notes.append(f"the run was pruned: replaying its {epochs} epoch(s)")
    elif run.status != tags.FINISHED:
        notes.append(f"the run is {run.status}: its logged numbers may be incomplete")
    return with_overrides(cfg, overrides), notes


def _device(logged: str, notes: list[str]) -> str:
    """Replay on the logged device type; a CUDA run replays on the CPU when there is no GPU."""
    import torch

    if not logged.startswith("cuda"):
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    notes.append("the run used CUDA and there is none here: replaying on the CPU")
    return "cpu"


def _manifest(store: Tracker, run_id: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = store.download(run_id, tags.MANIFEST, Path(tmp))
        except Exception:  # noqa: BLE001 - no manifest: fall back to the params
            return {}
        loaded = json.loads(Path(local).read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def params_tree(params: Mapping[str, str]) -> dict[str, Any]:
    """Dotted string params back into a nested config tree (values read as YAML)."""
    import yaml

    tree: dict[str, Any] = {}
    for key, raw in params.items():
        value = None if raw == "None" else yaml.safe_load(raw)
        set_dotted(tree, key, value)
    return tree


def _drift_notes(manifest: Mapping[str, Any], labels: Mapping[str, str], cfg: Config) -> list[str]:
    """What differs from when the run was logged, so a mismatch can be explained."""
    notes = []
    if labels.get(tags.CONFIG_HASH) not in (None, config_hash(cfg)):
        notes.append("config hash differs from the run's: the config schema changed since")
    commit, dirty = git_state()
    logged_git = manifest.get("git", {})
    if logged_git and (logged_git.get("commit"), logged_git.get("dirty")) != (commit, dirty):
        notes.append(f"code differs: run at {logged_git.get('commit')}, now {commit}")
    for name, version in (manifest.get("packages") or {}).items():
        if _version(name) != version:
            notes.append(f"{name} {version} at run time, {_version(name)} now")
    if str(manifest.get("device", "cpu")).startswith("cuda"):
        notes.append("the run used CUDA; bitwise equality is only promised on CPU")
    logged_cpu, cpu = manifest.get("cpu_model"), cpu_model()
    if logged_cpu != cpu:
        was = f"on {logged_cpu}" if logged_cpu else "on a CPU the manifest does not name"
        notes.append(
            f"logged {was}, replayed on {cpu}: float32 kernels may round apart in the last bits "
            "(--tolerance 1e-6 compares at that level)"
        )
    return notes


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _digest_check(logged: str, now: str) -> Check:
    if logged == now:
        return Check("data digest", True, f"{now[:16]}… identical rows")
    return Check("data digest", False, f"logged {logged[:16] or '(none)'}…, now {now[:16]}…")


def _history_checks(
    store: Tracker, run_id: str, history: Sequence[Mapping[str, float]], tol: float
) -> list[Check]:
    checks = []
    keys = [*metrics.EPOCH_KEYS, *metrics.REGRESSION_EPOCH_KEYS]
    keys += [*metrics.CALIBRATION_KEYS, *metrics.MC_KEYS]
    for key in [k for k in keys if not history or k in history[0]]:  # a regression: no AUPRC
        logged = store.metric_history(run_id, key)
        if not logged and key not in metrics.EPOCH_KEYS:
            continue  # logged by later versions only: compare what the run logged
        replayed = {i + 1: epoch[key] for i, epoch in enumerate(history)}
        steps = sorted(set(logged) | set(replayed))
        bad = [d for s in steps if (d := _epoch_diff(s, logged.get(s, []), replayed.get(s), tol))]
        detail = f"{len(replayed)} epochs identical" if not bad else f"{len(bad)} differ; {bad[0]}"
        checks.append(Check(key, not bad, detail))
    return checks


def _epoch_diff(step: int, logged: Sequence[float], replayed: float | None, tol: float) -> str:
    """Empty when every value logged at ``step`` equals the replayed one, else the difference."""
    if logged and all(_same(v, replayed, tol) for v in logged):
        return ""
    return f"epoch {step}: logged {_fmt(logged)}, replayed {_fmt([replayed])}"


def _summary_checks(
    logged: Mapping[str, float], replayed: Mapping[str, float], tol: float
) -> list[Check]:
    checks = []
    extra = [k for k in metrics.REGRESSION_SUMMARY_KEYS if k in replayed]
    for key in (*metrics.SUMMARY_KEYS, *metrics.OPTIONAL_SUMMARY_KEYS, *extra):
        was, now = logged.get(key), replayed.get(key)
        if was is None and key not in metrics.SUMMARY_KEYS:
            continue
        ok = was is not None and _same(was, now, tol)
        checks.append(Check(key, ok, f"logged {_fmt([was])}, replayed {_fmt([now])}"))
    return checks


def _same(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if tol == 0 else abs(a - b) <= tol


def _fmt(values: Sequence[float | None] | None) -> str:
    if not values:
        return "(none)"
    return "/".join("(none)" if v is None else f"{v:.10g}" for v in values)
